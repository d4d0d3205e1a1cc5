"""loadgen -> inference server -> real Prometheus: the latency histogram answers histogram_quantile, a
thermal fault injected on the server's simulated GPU raises P95 visibly, and the exemplars Prometheus stores
name traces the server exported."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.integration import http_probe
from tests.integration.servers import free_port, require_binary, running

pytestmark = pytest.mark.integration

CLI = [sys.executable, "-c", "from gpuwarden.cli import main; main()"]
LATENCY = "gpuwarden_inference_request_duration_seconds"
ROUTE = "/v1/chat/completions"


def prometheus_argv(tmp_path: Path, port: int, target: str) -> list[str]:
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: inference\n    static_configs: [{{targets: ['{target}']}}]\n"
    )
    return [
        require_binary("prometheus"),
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp_path / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--enable-feature=exemplar-storage",
    ]


def query(prom: str, expr: str) -> list[dict[str, object]]:
    r = http_probe.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=5)
    r.raise_for_status()
    result: list[dict[str, object]] = r.json()["data"]["result"]
    return result


def scalar(prom: str, expr: str) -> float:
    result = query(prom, expr)
    assert len(result) == 1, (expr, result)
    value = result[0]["value"]
    assert isinstance(value, list)
    return float(value[1])


def wait_for_requests(prom: str, at_least: int, timeout: float = 20.0) -> None:
    """Poll until Prometheus has scraped ``at_least`` requests on the chat route."""
    deadline = time.monotonic() + timeout
    seen = 0.0
    while time.monotonic() < deadline:
        result = query(prom, f'sum({LATENCY}_count{{route="{ROUTE}"}})')
        if result:
            value = result[0]["value"]
            assert isinstance(value, list)
            seen = float(value[1])
            if seen >= at_least:
                return
        time.sleep(0.5)
    raise AssertionError(f"Prometheus saw {seen} requests, expected {at_least}")


@contextmanager
def otlp_receiver(port: int) -> Iterator[set[str]]:
    """A local OTLP/HTTP traces receiver on ``port``: yields the trace ids (hex) of the spans it received."""
    received: set[str] = set()

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            batch = ExportTraceServiceRequest.FromString(self.rfile.read(int(self.headers["Content-Length"])))
            for resource in batch.resource_spans:
                for scope in resource.scope_spans:
                    received.update(span.trace_id.hex() for span in scope.spans)
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield received
    finally:
        server.shutdown()
        server.server_close()


def loadgen(url: str, requests: int) -> dict[str, object]:
    out = subprocess.run(
        [
            *CLI,
            "loadgen",
            "--url",
            url,
            "--requests",
            str(requests),
            "--rate",
            "25",
            "--concurrency",
            "4",
            "--max-tokens",
            "32",
            "--duration",
            "20",
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    report: dict[str, object] = json.loads(out.stdout)
    assert report["ok"] == requests, report
    return report


def p95(prom: str, window_seconds: int) -> float:
    buckets = f'increase({LATENCY}_bucket{{route="{ROUTE}"}}[{window_seconds}s])'
    expr = f"histogram_quantile(0.95, sum by (le) ({buckets}))"
    return scalar(prom, expr)


def test_thermal_fault_on_the_servers_gpu_raises_p95_seen_by_prometheus(tmp_path: Path) -> None:
    srv_port, prom_port, otlp_port = free_port(), free_port(), free_port()
    server_url = f"http://127.0.0.1:{srv_port}"
    prom = f"http://127.0.0.1:{prom_port}"
    otlp = f"http://127.0.0.1:{otlp_port}/v1/traces"
    server_argv = [*CLI, "inference-server", "--port", str(srv_port), "--otlp-endpoint", otlp]
    with (
        otlp_receiver(otlp_port) as exported,
        running(server_argv, f"{server_url}/healthz", tmp_path / "server.log"),
        running(
            prometheus_argv(tmp_path, prom_port, f"127.0.0.1:{srv_port}"),
            f"{prom}/-/ready",
            tmp_path / "prom.log",
        ),
    ):
        # One request first, so the series exists in a scrape before the load: increase() needs a base.
        loadgen(server_url, 1)
        wait_for_requests(prom, 1)
        start = time.monotonic()
        loadgen(server_url, 60)
        wait_for_requests(prom, 61)
        healthy = p95(prom, int(time.monotonic() - start) + 2)

        r = http_probe.post(
            f"{server_url}/sim/faults",
            json={"kind": "hw_thermal_slowdown", "node": "node-01", "gpu": 0, "params": {"factor": 0.2}},
        )
        assert r.status_code == 201, r.text
        deadline = time.monotonic() + 10
        while http_probe.get(f"{server_url}/healthz").json()["speed_factor"] > 0.5:
            assert time.monotonic() < deadline, "the thermal fault never slowed the GPU"
            time.sleep(0.2)

        hot_start = time.monotonic()
        time.sleep(1.5)  # let one scrape land between the phases so the window starts clean
        loadgen(server_url, 60)
        wait_for_requests(prom, 121)
        hot = p95(prom, int(time.monotonic() - hot_start) + 1)

        assert healthy > 0  # no upper bound: that would be a speed claim on a loaded machine
        assert hot > 2 * healthy, (healthy, hot)

        # Exemplars made it into Prometheus: a slow bucket links to a trace id the server exported (its
        # batch processor sends every 5 s: the last requests' spans may still be on their way).
        r = http_probe.get(
            f"{prom}/api/v1/query_exemplars",
            params={"query": f"{LATENCY}_bucket", "start": time.time() - 120, "end": time.time()},
        )
        linked = {e["labels"]["trace_id"] for series in r.json()["data"] for e in series["exemplars"]}
        assert linked and all(len(trace_id) == 32 for trace_id in linked)
        deadline = time.monotonic() + 15
        while not linked <= exported:
            assert time.monotonic() < deadline, f"exemplars name traces never exported: {linked - exported}"
            time.sleep(0.5)
