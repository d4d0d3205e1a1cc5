"""A real Prometheus scrapes ``gpuwarden exporter --simulate 2x8``; XID 79 takes exactly one GPU down."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from tests.integration import http_probe
from tests.integration.gpuwarden_server import gpuwarden_argv, simulated_exporter_argv
from tests.integration.prometheus_queries import query, wait_for
from tests.integration.servers import free_port, prometheus_argv, require_binary, running

pytestmark = pytest.mark.integration


def test_prometheus_reads_the_fleet_and_sees_one_gpu_fall_off_the_bus(tmp_path: Path) -> None:
    prometheus = require_binary("prometheus")
    port, prom_port = free_port(), free_port()
    exporter = f"http://127.0.0.1:{port}"
    prom = f"http://127.0.0.1:{prom_port}"
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 900ms\n"
        "scrape_configs:\n  - job_name: gpuwarden\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
    )
    exporter_argv = [
        *gpuwarden_argv(), "exporter", "--simulate", "2x8", "--port", str(port),
        "--listen-address", "127.0.0.1", "--interval", "1",
    ]  # fmt: skip
    prom_argv = [
        prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{prom_port}",
    ]  # fmt: skip
    with (
        running(exporter_argv, f"{exporter}/healthz", tmp_path / "exporter.log"),
        running(prom_argv, f"{prom}/-/ready", tmp_path / "prometheus.log"),
    ):
        wait_for("16 GPUs up in Prometheus", lambda: len(query(prom, "gpuwarden_gpu_up == 1")) == 16, 20)
        utils = query(prom, "DCGM_FI_DEV_GPU_UTIL")
        assert len(utils) == 16
        assert {r["metric"]["Hostname"] for r in utils} == {"node-01", "node-02"}
        assert all(0 <= float(r["value"][1]) <= 100 for r in utils)
        assert {"gpu", "UUID", "pci_bus_id", "device", "modelName"} <= set(utils[0]["metric"])

        reply = http_probe.post(
            f"{exporter}/sim/faults", json={"kind": "xid", "node": "node-01", "gpu": 3, "xid": 79}, timeout=5
        )
        assert reply.status_code == 201, reply.text
        lost = 'gpuwarden_gpu_up{Hostname="node-01",gpu="3"} == 0'
        wait_for("node-01 GPU 3 down", lambda: len(query(prom, lost)) == 1, 15)
        xid = query(prom, 'gpuwarden_xid_errors_total{Hostname="node-01",gpu="3",xid="79"}')
        assert [float(r["value"][1]) for r in xid] == [1.0]
        dcgm_xid = query(prom, 'DCGM_FI_DEV_XID_ERRORS{Hostname="node-01",gpu="3"}')
        assert [float(r["value"][1]) for r in dcgm_xid] == [79.0]

        # Served as text 0.0.4 although Prometheus asks for OpenMetrics first: DCGM counters keep their type.
        metadata = http_probe.get(
            f"{prom}/api/v1/targets/metadata",
            params={"match_target": '{job="gpuwarden"}', "metric": "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"},
            timeout=5,
        ).json()["data"]
        assert {m["type"] for m in metadata} == {"counter"}

        up = query(prom, "gpuwarden_gpu_up == 1")
        assert len(up) == 15
        assert ("node-01", "3") not in {(r["metric"]["Hostname"], r["metric"]["gpu"]) for r in up}
        fresh = query(prom, "count(timestamp(DCGM_FI_DEV_GPU_UTIL) > time() - 10)")
        assert [float(r["value"][1]) for r in fresh] == [15.0]  # the other 15 GPUs keep reporting


def test_the_example_config_keeps_the_workloads_pod_where_service_discovery_labels_the_exporters(
    tmp_path: Path,
) -> None:
    """Kubernetes SD puts the exporter pod's own pod/namespace on the target; without honor_labels the GPU's
    workload labels became exported_pod/exported_namespace."""
    port, prom_port = free_port(), free_port()
    prom = f"http://127.0.0.1:{prom_port}"
    example = yaml.safe_load(
        (Path(__file__).resolve().parents[2] / "deploy" / "prometheus.example.yml").read_text()
    )
    [job] = [j for j in example["scrape_configs"] if j["job_name"] == "dcgm"]
    sd_labels = {"pod": "gpuwarden-exporter-x7k2p", "namespace": "gpu-monitoring"}  # what SD relabelling sets
    job["static_configs"] = [{"targets": [f"127.0.0.1:{port}"], "labels": sd_labels}]
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({"global": {"scrape_interval": "1s", "scrape_timeout": "900ms"},
                                      "scrape_configs": [job]}))  # fmt: skip
    exporter_argv = simulated_exporter_argv("1x8", port)
    prom_argv = prometheus_argv(config, prom_port)
    with (
        running(exporter_argv, f"http://127.0.0.1:{port}/healthz", tmp_path / "exporter.log"),
        running(prom_argv, f"{prom}/-/ready", tmp_path / "prometheus.log"),
    ):
        served = http_probe.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        workloads = {
            s.labels["UUID"]: s.labels["pod"]
            for family in text_string_to_metric_families(served)
            for s in family.samples
            if s.name == "DCGM_FI_DEV_GPU_UTIL" and "pod" in s.labels
        }
        assert workloads  # the simulated fleet runs inference pods on some GPUs
        in_prometheus = "DCGM_FI_DEV_GPU_UTIL{pod=~'llm-.*'}"
        wait_for("the GPUs' workload pods", lambda: len(query(prom, in_prometheus)) == len(workloads), 20)
        stored = {r["metric"]["UUID"]: r["metric"]["pod"] for r in query(prom, "DCGM_FI_DEV_GPU_UTIL")}
        assert {
            uuid: stored[uuid] for uuid in workloads
        } == workloads  # the workload's pod, not the exporter's
        assert query(prom, "{__name__=~'DCGM_.*', exported_pod!=''}") == []
