"""The whole pipeline as it runs in production, every stage a real process.

``gpuwarden exporter --simulate`` -> a real Prometheus -> ``gpuwarden anomaly run`` (PromQL source,
APScheduler, /metrics) -> ``gpuwarden serve``. An XID 79 injected into the exporter must become an incident
in ``serve``, carrying the anomaly service's recommended action, and Prometheus must scrape the service's
vmanomaly-shaped scores.
"""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from anomaly.signatures import load_xid_catalog
from gpuwarden.xid import xid_action
from tests.integration import http_probe
from tests.integration.gpuwarden_server import (
    TOKEN,
    gpuwarden_binary,
    gpuwarden_serve,
    simulated_exporter_argv,
)
from tests.integration.prometheus_queries import query, wait_for
from tests.integration.servers import free_port, prometheus_argv, require_binary, running

pytestmark = pytest.mark.integration


def _incidents(url: str) -> list[dict[str, object]]:
    return list(http_probe.get(f"{url}/api/v1/incidents", timeout=5).json())


def test_an_xid_in_the_exporter_becomes_an_incident_through_prometheus_and_anomaly_run(
    tmp_path: Path,
) -> None:
    exporter_port, prom_port, anomaly_port = free_port(), free_port(), free_port()
    exporter, prom = f"http://127.0.0.1:{exporter_port}", f"http://127.0.0.1:{prom_port}"
    (tmp_path / "prometheus.yml").write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "scrape_timeout": "900ms"},
                "scrape_configs": [
                    {"job_name": "dcgm", "static_configs": [{"targets": [f"127.0.0.1:{exporter_port}"]}]},
                    {"job_name": "anomaly", "static_configs": [{"targets": [f"127.0.0.1:{anomaly_port}"]}]},
                ],
            }
        )
    )
    exporter_argv = simulated_exporter_argv("1x4", exporter_port)
    prom_argv = prometheus_argv(tmp_path / "prometheus.yml", prom_port)
    with (
        running(exporter_argv, f"{exporter}/healthz", tmp_path / "exporter.log"),
        running(prom_argv, f"{prom}/-/ready", tmp_path / "prometheus.log"),
        gpuwarden_serve(tmp_path, str(tmp_path / "gw.db")) as (serve, _),
    ):
        config = tmp_path / "gpuwarden.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "anomaly": {
                        "source": "prometheus",
                        "prometheus_url": prom,
                        "infer_every_seconds": 1,
                        "alert_url": serve,
                        "port": anomaly_port,
                        "queries": [
                            {"name": name, "expr": name, "step_seconds": 1}
                            for name in (
                                "DCGM_FI_DEV_XID_ERRORS",
                                "gpuwarden_gpu_up",
                                "DCGM_FI_DEV_POWER_USAGE",
                            )
                        ],
                    }
                }
            )
        )
        wait_for("4 GPUs in Prometheus", lambda: len(query(prom, "gpuwarden_gpu_up == 1")) == 4, 30)
        state = ["--state-file", str(tmp_path / "anomaly.state.npz")]  # not the working directory's
        argv = [gpuwarden_binary(), "anomaly", "run", "--config", str(config), *state]
        env = {**os.environ, "GPUWARDEN_API_TOKEN": TOKEN}
        with (tmp_path / "anomaly.log").open("wb") as log:
            anomaly = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
            try:
                wait_for(
                    "the anomaly service's scores in Prometheus",
                    lambda: bool(query(prom, 'gpuwarden_anomaly_score{for="DCGM_FI_DEV_POWER_USAGE"}')),
                    60,
                )
                assert _incidents(serve) == []  # a healthy fleet: nothing raised
                reply = http_probe.post(
                    f"{exporter}/sim/faults",
                    json={"kind": "xid", "node": "node-01", "gpu": 2, "xid": 79},
                    timeout=5,
                )
                assert reply.status_code == 201, reply.text
                wait_for("an incident in serve", lambda: len(_incidents(serve)) == 1, 60)
                (incident,) = _incidents(serve)
                detail = http_probe.get(f"{serve}/api/v1/incidents/{incident['id']}", timeout=5).json()
                names = {a["labels"]["alertname"] for a in detail["alerts"]}
                assert "GpuXidError" in names, detail["alerts"]
                xid = next(a for a in detail["alerts"] if a["labels"]["alertname"] == "GpuXidError")
                assert xid["labels"]["xid"] == "79" and xid["labels"]["gpu"] == "2"
                expected = xid_action(load_xid_catalog()[79])  # what the XID catalog says to do
                assert xid["recommended_action"] == expected.value and xid["score"] > 1
                assert xid["annotations"]["summary"].startswith("XID 79")
                wait_for(
                    "the forwarder's counter in Prometheus",
                    lambda: bool(query(prom, "gpuwarden_anomaly_alerts_forwarded_total > 0")),
                    30,
                )
            finally:
                anomaly.send_signal(signal.SIGTERM)
                code = anomaly.wait(timeout=30)
        assert code == 0, (tmp_path / "anomaly.log").read_text()


EXAMPLE_PROMETHEUS = Path(__file__).resolve().parents[2] / "deploy" / "prometheus.example.yml"


def _example_scrape_config(exporter: str, anomaly: str) -> dict[str, Any]:
    """deploy/prometheus.example.yml with this test's targets, scraping every second; beside its anomaly
    job, the same job without ``honor_labels`` (what a scrape config written without the example does)."""
    config = yaml.safe_load(EXAMPLE_PROMETHEUS.read_text())
    config.pop("alerting")
    config["global"] = {"scrape_interval": "1s", "scrape_timeout": "900ms"}
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for job in jobs.values():  # the test's 1 s pace for every job
        job.pop("scrape_interval", None)
        job.pop("scrape_timeout", None)
    jobs["dcgm"]["static_configs"] = [{"targets": [exporter]}]
    jobs["gpuwarden-anomaly"]["static_configs"] = [{"targets": [anomaly]}]
    plain = {k: v for k, v in jobs["gpuwarden-anomaly"].items() if k != "honor_labels"}
    config["scrape_configs"] = [jobs["dcgm"], jobs["gpuwarden-anomaly"], {**plain, "job_name": "plain"}]
    return dict(config)


def test_the_example_prometheus_config_keeps_the_scored_series_instance_and_job(tmp_path: Path) -> None:
    exporter_port, prom_port, anomaly_port = free_port(), free_port(), free_port()
    exporter, prom = f"127.0.0.1:{exporter_port}", f"http://127.0.0.1:{prom_port}"
    config = _example_scrape_config(exporter, f"127.0.0.1:{anomaly_port}")
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    exporter_argv = simulated_exporter_argv("1x2", exporter_port)
    prom_argv = prometheus_argv(tmp_path / "prometheus.yml", prom_port)
    power = "DCGM_FI_DEV_POWER_USAGE"
    anomaly_config = tmp_path / "gpuwarden.yaml"
    anomaly_config.write_text(
        yaml.safe_dump(
            {
                "anomaly": {
                    "source": "prometheus",
                    "prometheus_url": prom,
                    "infer_every_seconds": 1,
                    "port": anomaly_port,
                    "detectors": ["adaptive"],
                    "queries": [{"name": power, "expr": power, "step_seconds": 1}],
                }
            }
        )
    )
    state = ["--state-file", str(tmp_path / "anomaly.state.npz")]  # not the working directory's
    argv = [gpuwarden_binary(), "anomaly", "run", "--config", str(anomaly_config), *state]
    with (
        running(exporter_argv, f"http://{exporter}/healthz", tmp_path / "exporter.log"),
        running(prom_argv, f"{prom}/-/ready", tmp_path / "prometheus.log"),
        running(argv, f"http://127.0.0.1:{anomaly_port}/healthz", tmp_path / "anomaly.log", timeout=60),
    ):
        scored = f'gpuwarden_anomaly_score{{for="{power}"}}'
        wait_for(
            "scores from both jobs",
            lambda: {s["metric"]["job"] for s in query(prom, scored)} >= {"dcgm", "plain"},
            60,
        )
        honored = [s["metric"] for s in query(prom, f'gpuwarden_anomaly_score{{for="{power}",job="dcgm"}}')]
        plain = [s["metric"] for s in query(prom, f'gpuwarden_anomaly_score{{for="{power}",job="plain"}}')]
        # Scraped gzipped, the scores in one gzip member and the service's own families in a second after
        # it (with the OpenMetrics "# EOF", without which Prometheus 2.42 drops the whole scrape): both read.
        own = {s["metric"]["job"] for s in query(prom, "gpuwarden_anomaly_series")}
    assert own == {"gpuwarden-anomaly", "plain"}
    # The example's job: the score carries its input series' instance and job, so it joins it on them.
    assert {(m["instance"], m["job"], "exported_instance" in m) for m in honored} == {
        (exporter, "dcgm", False)
    }
    assert len(honored) == 2  # one per GPU
    # Without honor_labels, the input's were renamed and the anomaly service's target took their place.
    assert {(m["exported_instance"], m["exported_job"], m["instance"]) for m in plain} == {
        (exporter, "dcgm", f"127.0.0.1:{anomaly_port}")
    }


def test_the_example_prometheus_config_is_one_promtool_accepts() -> None:
    promtool = require_binary("promtool")
    checked = subprocess.run(
        [promtool, "check", "config", "--syntax-only", str(EXAMPLE_PROMETHEUS)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
