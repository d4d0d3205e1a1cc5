"""The example configuration's inference queries, sent as `anomaly run` sends them, to a real Prometheus
scraping a running `inference-server` under `loadgen`: each parses and answers a series per server and
route, and an anomaly alert on such a series is the scraped service's incident, not a node's."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from alerting.faults import classify
from alerting.topology import locate
from anomaly.promquery import PromQuery
from gpuwarden.config import load_config
from gpuwarden.model import FaultKind, WorkloadKind, WorkloadRef
from tests.integration import http_probe
from tests.integration.prometheus_queries import query, wait_for
from tests.integration.servers import free_port, prometheus_argv, running

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "deploy" / "gpuwarden.example.yaml"
CLI = [sys.executable, "-c", "from gpuwarden.cli import main; main()"]
CHAT = "/v1/chat/completions"
JOB = "llama"  # the scrape job: the service an alert on its series is about


def loadgen(url: str, requests: int, *, exit_status: int = 0) -> None:
    argv = [*CLI, "loadgen", "--url", url, "--requests", str(requests), "--rate", "20", "--max-tokens", "8"]
    done = subprocess.run(
        [*argv, "--duration", "20", "--quiet"], check=False, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == exit_status, done.stdout + done.stderr


def fault(
    server: str, method: str, path: str = "", body: dict[str, object] | None = None
) -> dict[str, object]:
    r = http_probe.request(method, f"{server}/sim/faults{path}", json=body or {})
    assert r.status_code < 300, r.text
    answer: dict[str, object] = r.json()
    return answer


def test_the_example_s_inference_queries_answer_per_route_from_a_real_prometheus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("GPUWARDEN_API_TOKEN", "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"):
        monkeypatch.setenv(name, f"secret-{name}")
    anomaly = load_config(EXAMPLE).anomaly
    queries = [
        (q, PromQuery(q.name, q.expr, q.step_seconds, q.kind, q.guard))
        for q in anomaly.queries
        if "gpuwarden_inference_" in q.expr
    ]
    assert {q.name for q, _ in queries} == {
        "inference_latency_p99",
        "inference_error_ratio",
        "inference_ok_requests_per_second",
    }
    srv_port, prom_port = free_port(), free_port()
    server, prom = f"http://127.0.0.1:{srv_port}", f"http://127.0.0.1:{prom_port}"
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"scrape_configs:\n  - job_name: {JOB}\n    static_configs: [{{targets: ['127.0.0.1:{srv_port}']}}]\n"
    )
    with (
        running(
            [*CLI, "inference-server", "--port", str(srv_port)], f"{server}/healthz", tmp_path / "srv.log"
        ),
        running(prometheus_argv(config, prom_port), f"{prom}/-/ready", tmp_path / "prom.log"),
    ):
        # Prometheus scrapes its first target seconds after it is ready (its target manager hands over
        # targets every 5 s): rate() needs a sample from before the requests, each counter's 0.
        wait_for(
            "Prometheus to scrape the server before any request",
            lambda: bool(query(prom, f'gpuwarden_inference_requests_total{{route="{CHAT}"}}')),
            timeout=30,
        )
        loadgen(server, 30)
        # Some requests fail: a hung GPU answers 503 until the fault is cleared.
        hung = fault(server, "POST", body={"kind": "hung", "node": "node-01", "gpu": 0})
        loadgen(server, 5, exit_status=1)  # none succeeded
        fault(server, "DELETE", f"/{hung['id']}")
        loadgen(server, 10)
        errors = f'sum(gpuwarden_inference_errors_total{{route="{CHAT}", status_class="5xx"}})'
        requests = f'sum(gpuwarden_inference_requests_total{{route="{CHAT}"}})'

        def scraped() -> bool:
            seen = [query(prom, errors), query(prom, requests)]
            return all(seen) and float(seen[0][0]["value"][1]) >= 5 and float(seen[1][0]["value"][1]) >= 45

        wait_for("Prometheus to scrape the last requests", scraped, timeout=30)
        for config_query, sent in queries:
            expr, _ = sent.sent
            series = [s for s in query(prom, expr) if s["metric"].get("route") == CHAT]
            assert len(series) == 1, (config_query.name, expr, series)
            labels, value = series[0]["metric"], float(series[0]["value"][1])
            assert labels["job"] == JOB and labels["instance"] == f"127.0.0.1:{srv_port}", labels
            assert math.isfinite(value) and value >= 0, (config_query.name, value)
            if config_query.name == "inference_error_ratio":
                assert 0 < value < 1, value  # the 503s, of all the route's requests
            # What `anomaly run` raises on it: a service degraded, about the scraped job, not a node.
            deviation = "down" if config_query.direction == "down" else "up"
            alert = {
                **labels,
                "alertname": "GpuwardenAnomaly",
                "for": config_query.name,
                "model": "adaptive",
                "deviation": deviation,
            }
            kind = classify(alert)
            assert kind is FaultKind.SERVICE_DEGRADED, (config_query.name, kind)
            where = locate(alert, kind)
            assert where.path == (), (config_query.name, where)
            assert set(where.workloads) == {WorkloadRef(WorkloadKind.INFERENCE_SERVICE, "default", JOB)}
