"""``PromQLSource`` and the service against a real Prometheus: series, signatures, errors, a target gone."""

from __future__ import annotations

import time

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from anomaly.promql import PromQLSource, PromQuery
from anomaly.service import AnomalyService
from anomaly.signatures import DBE
from gpuwarden.clock import FakeClock, SystemClock
from gpuwarden.config_anomaly import AnomalyConfig, AnomalyQueryConfig
from tests.anomaly.promql_answers import GPU0
from tests.http_stub import LocalServer, QuietHandler
from tests.integration.servers import free_port, require_binary, running

pytestmark = pytest.mark.integration


class CounterTarget(LocalServer):
    """A target serving ``ramp_requests_total{pod=...}`` that counts ``per_second`` in real time; a test
    changes its rate or stops it (its scrapes then fail, as a deleted pod's).

    ``grid`` (seconds; 0: none): each scrape is answered with the counter's value at the latest multiple of
    ``grid`` and that time as the sample's timestamp, so its samples lie on a fixed grid whatever the moment
    Prometheus scrapes (a late or lost scrape leaves a point out, it never shifts one). Scraped at 250 ms
    on a loaded machine, an unstamped counter's 2 s ``rate()`` wobbled by up to 0.7/s: the sample's time is
    when the scrape began, its value when the handler ran, and a late scrape cut the extrapolation to the
    window's edge short. Prometheus writes no staleness marker for a stamped series, so a target whose
    going away is under test must stay unstamped."""

    def __init__(self, pod: str, per_second: float = 10.0, grid: float = 0.0) -> None:
        self.pod, self.grid = pod, grid
        self.rates = [(time.time(), 0.0, per_second)]  # (since, value then, per second), in time order
        self.stopped = False
        target = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                now = time.time()
                if not target.grid:
                    line = f'ramp_requests_total{{pod="{target.pod}"}} {target.value(now):.4f}\n'
                else:
                    millis = int(now * 1000) // int(target.grid * 1000) * int(target.grid * 1000)
                    value = target.value(millis / 1000)
                    line = f'ramp_requests_total{{pod="{target.pod}"}} {value:.4f} {millis}\n'
                body = line.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        super().__init__(Handler)
        self.address = self.url.removeprefix("http://")

    def value(self, at: float) -> float:
        """The counter at time ``at`` (0 before its start: a grid point can precede it)."""
        since, base, per_second = next((r for r in reversed(self.rates) if r[0] <= at), (at, 0.0, 0.0))
        return base + per_second * (at - since)

    def set_rate(self, per_second: float) -> None:
        now = time.time()
        self.rates.append((now, self.value(now), per_second))

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.close()


@pytest.fixture(scope="module")
def counters():
    """Two counter targets, pods a and b, at 10/s each, scraped by ``prometheus`` every 250 ms; b's samples
    stamped on a 250 ms grid."""
    targets = [CounterTarget("a"), CounterTarget("b", grid=0.25)]
    yield targets
    for target in targets:
        target.stop()


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory, counters):
    """A real Prometheus scraping a prometheus_client server that the test controls, every second (and the
    ``counters``, every 250 ms); yields its URL and GPU 0's DBE counter (dcgm-exporter's name, which
    carries _TOTAL)."""
    tmp = tmp_path_factory.mktemp("prom")
    registry = CollectorRegistry()
    gauge = Gauge("test_gpu_temp", "temperature", ["UUID"], registry=registry)
    gauge.labels("GPU-a").set(60)
    gauge.labels("GPU-b").set(70)
    dbe = Gauge(DBE, "double-bit errors", ["Hostname", "gpu", "UUID"], registry=registry).labels(**GPU0)
    exporter_port = free_port()
    server, thread = start_http_server(exporter_port, addr="127.0.0.1", registry=registry)
    port = free_port()
    (tmp / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        f"  - job_name: gpu\n    static_configs: [{{targets: ['127.0.0.1:{exporter_port}']}}]\n"
        "  - job_name: ramp\n    scrape_interval: 250ms\n    scrape_timeout: 200ms\n"
        f"    static_configs: [{{targets: [{', '.join(repr(c.address) for c in counters)}]}}]\n"
    )
    argv = [
        require_binary("prometheus"),
        f"--config.file={tmp / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    url = f"http://127.0.0.1:{port}"
    try:
        with running(argv, f"{url}/-/ready", tmp / "prometheus.log"):
            yield url, dbe
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def wait_for_samples(source: PromQLSource, query: PromQuery, clock: SystemClock, want: int) -> np.ndarray:
    deadline = clock.monotonic() + 60
    while clock.monotonic() < deadline:
        now = clock.time()
        frame = source.query_range(query, now - 30, now)
        if len(frame.labels) == 2 and np.isfinite(frame.values).sum(axis=1).min() >= want:
            return frame
        clock.sleep(0.5)
    raise AssertionError("prometheus never returned the scraped series")


def test_query_range_returns_the_scraped_series_aligned_on_the_step(prometheus, request):
    prometheus, _ = prometheus
    clock = SystemClock()
    query = PromQuery("temp", "test_gpu_temp", step_seconds=1.0)
    source = PromQLSource(prometheus, [query], clock)
    request.addfinalizer(source.close)
    frame = wait_for_samples(source, query, clock, want=3)
    by_uuid = {lab["UUID"]: row for lab, row in zip(frame.labels, frame.values, strict=True)}
    assert np.nanmax(by_uuid["GPU-a"]) == 60
    assert np.nanmax(by_uuid["GPU-b"]) == 70
    assert np.allclose(np.diff(frame.timestamps), 1.0)
    instant = source.query_instant(query, clock.time())
    assert sorted(instant.values[:, 0].tolist()) == [60.0, 70.0]


def test_the_service_scores_prometheus_series_and_reports_healthy(prometheus, request):
    prometheus, _ = prometheus
    clock = SystemClock()
    cfg = AnomalyConfig(
        source="prometheus",
        prometheus_url=prometheus,
        queries=[AnomalyQueryConfig(name="temp", expr="test_gpu_temp", step_seconds=1.0, adaptive=True)],
    )
    query = PromQuery("temp", "test_gpu_temp", step_seconds=1.0)
    source = PromQLSource(prometheus, [query], clock)
    request.addfinalizer(source.close)
    wait_for_samples(source, query, clock, want=2)
    service = AnomalyService(cfg, [source], clock, detectors=None)
    result = service.infer()
    adaptive = [f for f in result.findings if f.detector == "adaptive"]
    assert adaptive and adaptive[0].query == "temp"
    assert source.health().up and source.health().series == 2


def test_a_double_bit_ecc_error_scraped_by_prometheus_fires_its_signature(prometheus, request):
    url, dbe = prometheus
    clock = SystemClock()
    query = PromQuery(DBE, DBE, step_seconds=1.0)
    source = PromQLSource(url, [query], clock)
    request.addfinalizer(source.close)
    deadline = clock.monotonic() + 60
    while not np.isfinite(source.query_range(query, clock.time() - 30, clock.time()).values).sum() >= 2:
        assert clock.monotonic() < deadline, "prometheus never returned the DBE counter"
        clock.sleep(0.5)
    cfg = AnomalyConfig(detectors=["signatures"], infer_every_seconds=1.0)
    service = AnomalyService(cfg, [source], clock)
    assert service.infer().raised == []
    dbe.inc()
    raised = []
    while not raised and clock.monotonic() < deadline:
        clock.sleep(1.0)
        raised = service.infer().raised
    assert [(a.labels["alertname"], a.labels["gpu"]) for a in raised] == [("GpuDoubleBitEcc", "0")]


def test_a_bad_query_is_a_source_error_reported_in_health(request):
    clock = SystemClock()
    url = "http://reader:s3cret@127.0.0.1:1"
    source = PromQLSource(url, [PromQuery("q", "up")], clock, timeout_seconds=1.0)
    request.addfinalizer(source.close)
    assert source.read(clock.time() - 60, clock.time()) == []
    health = source.health()
    assert not health.up
    assert health.consecutive_failures == 1
    assert "ConnectError" in health.last_error
    # Which server could not be reached (a port typo shows), its password hidden.
    assert "http://reader:***@127.0.0.1:1: ConnectError" in health.last_error
    assert "s3cret" not in health.last_error


def test_prometheus_going_down_mid_run_does_not_crash_the_service(tmp_path, request):
    clock = SystemClock()
    port = free_port()
    argv = [
        require_binary("prometheus"),
        f"--config.file={tmp_path / 'p.yml'}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    (tmp_path / "p.yml").write_text("global: {scrape_interval: 1s}\nscrape_configs: []\n")
    url = f"http://127.0.0.1:{port}"
    source = PromQLSource(url, [PromQuery("up", "up", step_seconds=1.0)], clock, timeout_seconds=2.0)
    request.addfinalizer(source.close)
    service = AnomalyService(AnomalyConfig(stale_after_seconds=1.0), [source], clock)
    with running(argv, f"{url}/-/ready", tmp_path / "p.log"):
        service.infer()
        assert source.health().up
    clock.sleep(1.5)
    result = service.infer()
    assert not source.health().up
    assert [a.labels["alertname"] for a in result.raised] == ["GpuwardenSourceStale"]
    families = {m.name: m for m in service.collector.collect()}
    assert families["gpuwarden_anomaly_source_up"].samples[0].value == 0


def test_a_rate_whose_target_went_away_raises_nothing_while_a_real_drop_still_fires(
    prometheus, counters, request
):
    """Pod a is deleted (its scrapes fail) while pod b's traffic falls from 10/s to 1/s, still scraped; on
    a real Prometheus ``rate()`` of a kept answering for its range, ramping down to near 0."""
    url, _ = prometheus
    a, b = counters
    clock = SystemClock()
    reader = PromQLSource(url, [], clock)
    request.addfinalizer(reader.close)
    history = PromQuery("history", "count_over_time(ramp_requests_total[5s]) >= 18")  # 4.5 s scraped
    while len(reader.query_instant(history, clock.time()).labels) < 2:
        clock.sleep(0.25)
    # b's band is learnt from the 10 steps before the stop: wait until its rate read 10/s at each of them
    # (scrapes held up on a loaded machine leave a low point: learnt, it widened the band past the drop).
    steady = PromQuery("steady", 'rate(ramp_requests_total{pod="b"}[2s])', step_seconds=0.25)
    deadline = clock.monotonic() + 60
    while not _steady(reader.query_range(steady, clock.time() - 3, clock.time()).values, 10.0):
        assert clock.monotonic() < deadline, "b's rate never read 10/s for 3 s: scrapes too late to test"
        clock.sleep(0.25)
    stopped = clock.time()
    a.stop()
    b.set_rate(1.0)
    # a's unguarded ramp is over (rate() answers no more), b's window holds only its new rate.
    ramping = 'rate(ramp_requests_total{pod="a"}[2s]) or rate(ramp_requests_total{pod="b"}[2s]) > 1.2'
    while reader.query_instant(PromQuery("ramping", ramping), clock.time()).labels:
        clock.sleep(0.25)
    end = clock.time()
    expr = "rate(ramp_requests_total[2s])"
    fake = FakeClock(stopped - 2.5)
    cfg = AnomalyConfig(
        source="prometheus",
        prometheus_url=url,
        detectors=["adaptive"],
        infer_every_seconds=0.25,
        pending_ticks=2,
        forget_after_seconds=1.0,
        thresholds={"warmup": 4},
        queries=[
            AnomalyQueryConfig(
                name="requests",
                expr=expr,
                step_seconds=0.25,
                direction="down",
                min_deviation=1.0,
                adaptive=True,
            )
        ],
    )
    query = PromQuery("requests", expr, step_seconds=0.25)
    source = PromQLSource(url, [query], fake)
    request.addfinalizer(source.close)
    service = AnomalyService(cfg, [source], fake)
    raised = []
    while fake.time() < end:
        fake.advance(0.25)
        raised += service.infer().raised
    assert [alert.labels["pod"] for alert in raised] == ["b"]  # the drop, not the pod deleted
    assert {lab["pod"] for lab in service.last_view.latest["requests"].labels} == {"b"}
    assert len(service.index) == 1  # a's series forgotten as before: no alert that it went away


def _steady(values: np.ndarray, per_second: float) -> bool:
    """Whether one series answered at 11 or more steps, each within 0.25/s of ``per_second``."""
    return (
        values.shape[0] == 1
        and np.isfinite(values).sum() >= 11
        and bool(np.nanmax(np.abs(values - per_second)) <= 0.25)
    )
