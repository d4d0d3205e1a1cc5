"""``anomaly run``'s HTTP port: /metrics, /healthz (200 ok / 503 with reasons) and 404 for other paths."""

from __future__ import annotations

import gzip
import json
import logging
import socket
import struct
import threading
import urllib.error
import urllib.request

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily

from anomaly.health import STALL_TICKS, liveness, readiness, stall_seconds
from anomaly.service import AnomalyService
from anomaly.sources import CollectorSource
from gpuwarden.cli.anomaly_http import serve_http
from gpuwarden.clock import FakeClock
from gpuwarden.config_anomaly import AnomalyConfig
from tests.anomaly.fakes import TableCollector

GPU = {"gpu": "0", "UUID": "GPU-0", "Hostname": "n1", "modelName": "H100"}


def _service():
    clock = FakeClock()
    col = TableCollector()
    col.set("DCGM_FI_DEV_GPU_TEMP", [(GPU, 60.0)])
    return clock, col, AnomalyService(AnomalyConfig(), [CollectorSource([col], clock)], clock)


def _get(url):
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _get_gzip(url):
    request = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(request, timeout=10) as resp:
        return resp.headers.get("Content-Encoding"), gzip.decompress(resp.read()).decode()


def test_readiness_is_ok_after_a_tick_and_503_with_a_reason_when_ticks_stall_or_the_source_is_down():
    clock, col, service = _service()
    clock.advance(30)
    service.infer()
    status, body = readiness(service)
    assert (status, body["status"], body["ticks"]) == (200, "ok", 1)
    clock.advance(stall_seconds(service) + 1)  # no tick ended since: the scheduler died or a read hangs
    status, body = readiness(service)
    assert status == 503 and body["status"] == "stalled" and "since the last tick ended" in body["reasons"][0]
    col.fail = True
    service.infer()
    status, body = readiness(service)
    assert status == 503 and body["status"] == "source_down"
    assert body["reasons"][0].startswith("source_down: ") and body["sources"]


def test_a_stall_is_reported_within_a_read_deadline_of_its_ticks_however_many_queries_are_read():
    # The queries are read concurrently within one deadline: 20 of them at a 10 s timeout used to push a
    # stall's report to 290 s (3 ticks + 20 x 10 s) though no tick's reads could take more than 10 s.
    queries = [{"name": f"q{i}", "expr": f"metric_{i}"} for i in range(20)]
    cfg = AnomalyConfig.model_validate({"queries": queries, "query_timeout_seconds": 10})
    clock, col = FakeClock(), TableCollector()
    col.set("DCGM_FI_DEV_GPU_TEMP", [(GPU, 60.0)])
    service = AnomalyService(cfg, [CollectorSource([col], clock)], clock)
    clock.advance(30)
    service.infer()
    clock.advance(STALL_TICKS * cfg.infer_every_seconds + cfg.query_timeout_seconds + 1)
    status, body = readiness(service)
    assert (status, body["status"]) == (503, "stalled")


def test_the_port_serves_metrics_healthz_an_index_and_404_for_anything_else():
    clock, _, service = _service()
    clock.advance(30)
    service.infer()
    registry = CollectorRegistry()
    registry.register(service.collector.status)  # as anomaly run: /metrics writes the bands itself
    server = serve_http(service, registry, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        metrics = _get(f"{base}/metrics")
        zipped = _get_gzip(f"{base}/metrics")  # as Prometheus asks
        healthz = _get(f"{base}/healthz")
        index = _get(f"{base}/")
        other = _get(f"{base}/api/v1/whatever")
    finally:
        server.shutdown()
        server.server_close()
    assert metrics[0] == 200 and "gpuwarden_anomaly_series" in metrics[1]
    lines = metrics[1].splitlines()
    assert lines.count("# TYPE gpuwarden_anomaly_score gauge") == 1
    assert lines.count("# TYPE gpuwarden_anomaly_series gauge") == 1
    assert any(line.startswith("gpuwarden_anomaly_score{") for line in lines)
    assert zipped == ("gzip", metrics[1])
    assert healthz[0] == 200 and json.loads(healthz[1])["status"] == "ok"
    assert index[0] == 200 and "/healthz" in index[1] and "gpuwarden_anomaly_series" not in index[1]
    assert other[0] == 404 and "gpuwarden_anomaly_series" not in other[1]


def test_a_source_outage_fails_readiness_only_and_a_stall_fails_liveness_too():
    # A liveness probe that failed on source_down restarted `anomaly run` all through a Prometheus outage,
    # which a restart cannot mend; a stalled loop is what a restart is for.
    clock, col, service = _service()
    registry = CollectorRegistry()
    server = serve_http(service, registry, "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    paths = ("/healthz", "/-/healthy", "/-/ready")
    try:
        col.fail = True
        clock.advance(30)
        service.infer()
        outage = {path: _get(base + path) for path in paths}
        clock.advance(stall_seconds(service) + 1)
        stalled = {path: _get(base + path) for path in paths}
    finally:
        server.shutdown()
        server.server_close()
    assert {path: status for path, (status, _) in outage.items()} == {
        "/healthz": 200,
        "/-/healthy": 200,
        "/-/ready": 503,
    }
    assert all(json.loads(body)["status"] == "source_down" for _, body in outage.values())
    assert {path: status for path, (status, _) in stalled.items()} == dict.fromkeys(paths, 503)
    assert all(json.loads(body)["status"] == "stalled" for _, body in stalled.values())


class _SlowMetrics:
    """A collector that answers only once the client has gone, with a body larger than a socket buffer."""

    def __init__(self) -> None:
        self.client_gone = threading.Event()

    def collect(self):
        self.client_gone.wait(10)
        family = GaugeMetricFamily("probe_padding", "padding", labels=["i"])
        for i in range(20_000):
            family.add_metric([f"{i:064d}"], float(i))
        yield family


def test_a_scraper_that_leaves_before_its_answer_leaves_no_traceback_on_stderr(capfd):
    # Prometheus drops a scrape at its scrape_timeout; socketserver printed a BrokenPipeError traceback on
    # stderr for each one, which buried the service's own log lines on a busy machine.
    _, _, service = _service()
    slow = _SlowMetrics()
    registry = CollectorRegistry()
    registry.register(slow)
    handled = threading.Event()

    class Seen(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            handled.set()

    log = logging.getLogger("gpuwarden.cli.anomaly_http")
    seen, level = Seen(), log.level
    log.addHandler(seen)
    log.setLevel(logging.DEBUG)
    server = serve_http(service, registry, "127.0.0.1", 0)
    try:
        with socket.create_connection(server.server_address[:2]) as conn:
            conn.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with RST
        slow.client_gone.set()
        assert handled.wait(10), "the server did not note the client that left"
    finally:
        log.removeHandler(seen)
        log.setLevel(level)
        server.shutdown()
        server.server_close()
    # What socketserver prints for a request that failed (its default handle_error), not any traceback or
    # error name: another test's OpenTelemetry exporter thread, shutting down on this worker meanwhile, may
    # write its own, ConnectionResetError included, to the same stderr.
    err = capfd.readouterr().err
    assert "Exception occurred during processing of request" not in err, err


def test_readiness_and_liveness_say_when_the_source_answers_with_no_series_at_all():
    # Every exporter gone: Prometheus answers, with nothing. GpuwardenSourceStale fired, yet /-/ready and
    # /healthz said "ok" with the source up, for as long as it lasted.
    clock, col, service = _service()
    clock.advance(30)
    service.infer()
    col.rows.clear()
    clock.advance(30)
    service.infer()
    assert readiness(service)[0] == 200  # one empty read is not yet an outage
    clock.advance(service.cfg.absent_after_seconds)
    service.infer()
    status, body = readiness(service)
    assert status == 503 and body["status"] == "source_empty", body
    assert body["reasons"][0].startswith("source_empty: ") and "no series" in body["reasons"][0]
    assert liveness(service)[0] == 200  # a restart would not bring the exporters back
    col.set("DCGM_FI_DEV_GPU_TEMP", [(GPU, 60.0)])
    clock.advance(30)
    service.infer()
    assert readiness(service)[0] == 200


def _request(base: str, method: str, path: str) -> tuple[int, str, str]:
    request = urllib.request.Request(f"{base}{path}", method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.headers.get("Allow", ""), resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Allow", ""), exc.read().decode()


def test_head_probes_answer_as_get_and_other_methods_405_naming_get_and_head():
    # serve answers HEAD /-/healthy (Alertmanager's probe paths take it); this port answered every method
    # but GET with socketserver's 501 HTML page: a HEAD probe read a healthy service as failing.
    clock, _, service = _service()
    clock.advance(30)
    service.infer()
    server = serve_http(service, CollectorRegistry(), "127.0.0.1", 0)
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        head = {path: _request(base, "HEAD", path) for path in ("/-/healthy", "/-/ready", "/metrics", "/x")}
        others = {m: _request(base, m, "/-/healthy") for m in ("POST", "PUT", "DELETE", "PATCH", "PURGE")}
    finally:
        server.shutdown()
        server.server_close()
    assert {path: status for path, (status, _, _) in head.items()} == {
        "/-/healthy": 200,
        "/-/ready": 200,
        "/metrics": 200,
        "/x": 404,
    }
    assert all(body == "" for _, _, body in head.values())
    assert {m: (status, allow) for m, (status, allow, _) in others.items()} == dict.fromkeys(
        others, (405, "GET, HEAD")
    )
