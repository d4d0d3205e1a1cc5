from __future__ import annotations

import math
import time

import numpy as np
import pytest
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from anomaly.promql import PromQLSource, PromQuery, filters_series
from anomaly.service import AnomalyService
from anomaly.signatures import DBE
from gpuwarden.clock import FakeClock, SystemClock
from gpuwarden.config_anomaly import AnomalyConfig, AnomalyQueryConfig
from gpuwarden.model import AlertStatus
from tests.anomaly.fakes import FakePrometheus
from tests.http_stub import LocalServer, QuietHandler
from tests.integration.servers import free_port, require_binary, running

pytestmark = pytest.mark.integration
GPU0 = {"Hostname": "n1", "gpu": "0", "UUID": "GPU-0"}


@pytest.fixture
def fake_prometheus(request):
    fake = FakePrometheus()
    request.addfinalizer(fake.close)
    return fake


class CounterTarget(LocalServer):
    """A target serving ``ramp_requests_total{pod=...}`` that counts ``per_second`` in real time; a test
    changes its rate or stops it (its scrapes then fail, as a deleted pod's)."""

    def __init__(self, pod: str, per_second: float = 10.0) -> None:
        self.pod, self.per_second, self.since, self.base = pod, per_second, time.time(), 0.0
        self.stopped = False
        target = self

        class Handler(QuietHandler):
            def do_GET(self) -> None:
                body = f'ramp_requests_total{{pod="{target.pod}"}} {target.value():.4f}\n'.encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        super().__init__(Handler)
        self.address = self.url.removeprefix("http://")

    def value(self) -> float:
        return self.base + self.per_second * (time.time() - self.since)

    def set_rate(self, per_second: float) -> None:
        self.base, self.since, self.per_second = self.value(), time.time(), per_second

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.close()


@pytest.fixture(scope="module")
def counters():
    """Two counter targets, pods a and b, at 10/s each, scraped by ``prometheus`` every 250 ms."""
    targets = [CounterTarget("a"), CounterTarget("b")]
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


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        b'"s"',
        b'{"status": "success", "data": {"resultType": "matrix", "result": "x"}}',
        b'{"status": "success", "data": {"resultType": "matrix", "result": ["x"]}}',
        b'{"status": "success", "data": {"resultType": "matrix", "result": [{"metric": ["a"]}]}}',
        b'{"status": "success", "data": {"resultType": "matrix", "result": [{"values": [["abc", "1"]]}]}}',
    ],
    ids=["list", "string", "result-string", "result-items-strings", "metric-list", "time-not-a-number"],
)
def test_a_200_of_another_shape_marks_the_source_down_instead_of_failing_the_tick(request, body):
    class Handler(QuietHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = LocalServer(Handler)  # polled every 50 ms: its close does not wait out a 0.5 s poll
    request.addfinalizer(server.close)
    clock = SystemClock()
    url = server.url
    source = PromQLSource(url, [PromQuery("q", "up", step_seconds=1.0)], clock, timeout_seconds=2.0)
    request.addfinalizer(source.close)
    assert source.read(clock.time() - 60, clock.time()) == []
    health = source.health()
    assert not health.up and health.consecutive_failures == 1


@pytest.mark.parametrize(
    ("expr", "kind"),
    [
        ("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "counter"),
        ('gpuwarden_xid_errors_total{xid="79"}', "counter"),
        ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "counter"),
        ("DCGM_FI_DEV_XID_ERRORS", "gauge"),
        ("rate(DCGM_FI_DEV_ECC_DBE_VOL_TOTAL[5m])", "gauge"),
        ("sum by (gpu) (gpuwarden_xid_errors_total)", "gauge"),
        ("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL  # double-bit ECC", "counter"),
    ],
    ids=[
        "dcgm-total",
        "total-with-matcher",
        "dcgm-counter",
        "dcgm-gauge",
        "rate",
        "aggregation",
        "commented",
    ],
)
def test_a_bare_selector_of_a_counter_is_read_as_a_counter_unless_declared(expr, kind):
    assert PromQuery("q", expr).series_kind == kind
    assert PromQuery("q", expr, kind="gauge").series_kind == "gauge"
    assert PromQuery("q", expr, kind="counter").series_kind == "counter"


def test_a_double_bit_ecc_error_read_through_prometheus_fires_its_signature(fake_prometheus):
    clock = FakeClock()
    error_at = clock.time() + 45
    fake_prometheus.answers[DBE] = lambda t: [(GPU0, 1.0 if t >= error_at else 0.0)]
    source = PromQLSource(fake_prometheus.url, [PromQuery(DBE, DBE)], clock, timeout_seconds=2.0)
    service = AnomalyService(AnomalyConfig(detectors=["signatures"]), [source], clock)
    raised = []
    for _ in range(4):
        clock.advance(30)
        raised += service.infer().raised
    assert [(a.labels["alertname"], a.labels["gpu"]) for a in raised] == [("GpuDoubleBitEcc", "0")]


def _steady(t: float) -> list[tuple[dict[str, str], float]]:
    return [(GPU0, 60.0)]


def test_a_failing_query_is_named_reported_alone_and_the_others_are_still_read(fake_prometheus):
    clock = FakeClock()
    for expr in ("temp", "util"):
        fake_prometheus.answers[expr] = _steady
    fake_prometheus.errors["rate(power[1m]"] = (400, "1:15: parse error: unclosed left parenthesis")
    queries = [PromQuery("temp", "temp"), PromQuery("typo", "rate(power[1m]"), PromQuery("util", "util")]
    source = PromQLSource(fake_prometheus.url, queries, clock, timeout_seconds=2.0)
    service = AnomalyService(AnomalyConfig(detectors=[], stale_after_seconds=120), [source], clock)
    raised = []
    for _ in range(6):
        clock.advance(30)
        raised += service.infer().raised
        assert [f.query for f in service.last_view.latest.values()] == ["temp", "util"]
    health = source.health()
    assert health.up and not health.queries["typo"].up and health.queries["util"].up
    assert "query typo" in health.queries["typo"].last_error
    assert "parse error" in health.queries["typo"].last_error
    stale = [(a.labels["alertname"], a.labels.get("query")) for a in raised]
    assert stale == [("GpuwardenSourceStale", "typo")]  # the query, not the whole source
    registry = CollectorRegistry()
    registry.register(service.collector)
    for query, up in (("temp", 1), ("typo", 0), ("util", 1)):
        labels = {"source": "prometheus", "query": query}
        assert registry.get_sample_value("gpuwarden_anomaly_query_up", labels) == up


def test_a_failing_querys_staleness_alert_waits_out_an_outage_of_its_source(fake_prometheus):
    clock = FakeClock()
    fake_prometheus.answers["temp"] = _steady
    fake_prometheus.errors["rate(power[1m]"] = (400, "1:15: parse error: unclosed left parenthesis")
    queries = [PromQuery("temp", "temp"), PromQuery("typo", "rate(power[1m]")]
    source = PromQLSource(fake_prometheus.url, queries, clock, timeout_seconds=2.0)
    service = AnomalyService(AnomalyConfig(detectors=[], stale_after_seconds=120), [source], clock)
    events = []

    def run(ticks: int) -> None:
        for _ in range(ticks):
            clock.advance(30)
            result = service.infer()
            events.extend((a.labels.get("query", ""), "firing") for a in result.raised)
            events.extend((a.labels.get("query", ""), "resolved") for a in result.resolved)

    run(6)
    assert events == [("typo", "firing")]
    fake_prometheus.errors["temp"] = (503, "prometheus is restarting")  # the whole source is down
    run(8)
    del fake_prometheus.errors["temp"]
    run(8)
    # The source's own alert came and went; the typo's stayed firing throughout: no resolve, no re-raise.
    assert [e for e in events if e[0] == "typo"] == [("typo", "firing")]
    assert ("", "firing") in events and ("", "resolved") in events


def test_a_query_that_failed_catches_up_alone_while_the_others_read_only_the_new_step(fake_prometheus):
    clock = FakeClock()
    fake_prometheus.answers["a"] = fake_prometheus.answers["b"] = _steady
    source = PromQLSource(fake_prometheus.url, [PromQuery("a", "a"), PromQuery("b", "b")], clock)
    service = AnomalyService(AnomalyConfig(detectors=[]), [source], clock)
    for tick in range(6):
        if tick == 1:
            fake_prometheus.errors["b"] = (503, "overloaded")
        if tick == 4:
            del fake_prometheus.errors["b"]
        clock.advance(30)
        service.infer()

    def points(expr: str) -> list[int]:
        reqs = [r for r in fake_prometheus.requests if r["query"] == expr]
        return [round((float(r["end"]) - float(r["start"])) / 30) + 1 for r in reqs]

    assert points("a") == [1] * 6
    assert points("b") == [1, 1, 2, 3, 4, 1]  # b alone asks again for what it missed


def test_the_alerts_of_a_failing_query_are_held_while_the_other_queries_are_read(fake_prometheus):
    clock = FakeClock()
    pending = "DCGM_FI_DEV_ROW_REMAP_PENDING"
    fake_prometheus.answers[pending] = lambda t: [(GPU0, 1.0)]
    fake_prometheus.answers["temp"] = _steady
    queries = [PromQuery(pending, pending), PromQuery("temp", "temp")]
    source = PromQLSource(fake_prometheus.url, queries, clock, timeout_seconds=2.0)
    cfg = AnomalyConfig(detectors=["signatures"], stale_after_seconds=1e6)
    service = AnomalyService(cfg, [source], clock)
    clock.advance(30)
    assert [a.labels["alertname"] for a in service.infer().raised] == ["GpuRowRemapPending"]
    fake_prometheus.errors[pending] = (422, "query timed out in expression evaluation")
    for _ in range(8):
        clock.advance(30)
        assert service.infer().resolved == []
    assert source.health().up


def test_every_exporter_gone_is_a_stale_source_and_holds_the_alerts_it_hides(fake_prometheus):
    clock = FakeClock()
    temp = "DCGM_FI_DEV_GPU_TEMP"
    gpus = [{"Hostname": f"n{i // 4}", "gpu": str(i % 4)} for i in range(8)]
    reporting = list(gpus)
    fake_prometheus.answers[temp] = lambda t: [(g, 60.0) for g in reporting]
    source = PromQLSource(fake_prometheus.url, [PromQuery(temp, temp)], clock, timeout_seconds=2.0)
    service = AnomalyService(AnomalyConfig(detectors=["presence"]), [source], clock)

    def run(ticks: int) -> list[tuple[str, str, str]]:
        events = []
        for _ in range(ticks):
            clock.advance(30)
            result = service.infer()
            events += [(a.labels["alertname"], a.status, a.labels.get("gpu", "")) for a in result.raised]
            events += [(a.labels["alertname"], a.status, a.labels.get("gpu", "")) for a in result.resolved]
        return events

    run(3)
    reporting.remove(gpus[7])
    assert run(5) == [("GpuExporterStale", AlertStatus.FIRING, "3")]
    reporting.clear()  # Prometheus answers, with nothing: every exporter is gone
    assert run(5) == [("GpuwardenSourceStale", AlertStatus.FIRING, "")]
    (stale,) = [a for a in service.firing.values() if a.alert.labels["alertname"] == "GpuwardenSourceStale"]
    assert "no series" in stale.alert.annotations["summary"]
    assert stale.alert.labels["server"] == fake_prometheus.url  # which Prometheus: its incident's title says
    registry = CollectorRegistry()
    registry.register(service.collector)
    labels = {"source": "prometheus", "query": temp}
    assert registry.get_sample_value("gpuwarden_anomaly_query_series", labels) == 0
    assert registry.get_sample_value("gpuwarden_anomaly_source_up", {"source": "prometheus"}) == 1
    reporting.extend(gpus)
    assert run(5) == [
        ("GpuExporterStale", AlertStatus.RESOLVED, "3"),
        ("GpuwardenSourceStale", AlertStatus.RESOLVED, ""),
    ]
    assert registry.get_sample_value("gpuwarden_anomaly_query_series", labels) == 8


def _requests_rate(wiped_at: float, back_at: float, drop_at: float = math.inf):
    """``rate(requests_total[5m])`` as Prometheus answers it, scraped every 15 s: 100/s with noise; no
    answer while its store is empty after a wipe; from the first two samples after it a window that is
    only partly filled, extrapolated a half-interval past its samples, so it ramps up over five minutes."""
    rng = np.random.default_rng(4)

    def at(t: float) -> list[tuple[dict[str, str], float]]:
        true = (30.0 if t >= drop_at else 100.0) + float(rng.normal(0, 1))
        if wiped_at <= t < back_at + 15:
            return []
        filled = min(300.0, t - back_at + 7.5) if t >= back_at else 300.0
        return [(GPU0, true * filled / 300.0)]

    return at


@pytest.mark.parametrize(
    ("expr", "down"),
    [
        ("rate(requests_total[5m])", 60),
        ("rate(requests_total[5m])", 15),  # guarded, the answer misses one step only: no missed scrape
        ("sum by (gpu) (rate(requests_total[5m:30s]))", 60),
    ],
    ids=["rate", "rate-quick-wipe", "subquery"],
)
def test_a_rate_query_ramping_up_after_a_prometheus_wipe_raises_nothing_but_a_real_drop_still_fires(
    fake_prometheus, expr, down
):
    clock = FakeClock()
    start = clock.time()
    wiped, back = start + 3600, start + 3600 + down
    query = PromQuery("requests_rate", expr)
    # The bare rate is sent guarded (`and requests_total`): the raw series is missing from the wiped store
    # just as the rate is, so Prometheus answers the guarded query as the fake answers.
    fake_prometheus.answers[query.sent[0]] = _requests_rate(wiped, back, drop_at=back + 1800)
    source = PromQLSource(fake_prometheus.url, [query], clock, timeout_seconds=2.0)
    cfg = AnomalyConfig(detectors=["adaptive"], adaptive_metrics=["*"])
    service = AnomalyService(cfg, [source], clock)
    raised = []
    while clock.time() < back + 1500:
        clock.advance(30)
        raised += service.infer().raised
    assert raised == []  # the five-minute ramp after the wipe was scored as a drop of the rate
    while clock.time() < back + 1800 + 300:
        clock.advance(30)
        raised += service.infer().raised
    assert [a.labels["for"] for a in raised] == ["requests_rate"]


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


@pytest.mark.parametrize(
    ("expr", "guard", "sent"),
    [
        ("rate(x[5m])", None, "rate(x[5m]) and x"),
        ("rate(x[5m])", False, "rate(x[5m])"),
        ("max by (pod) (rate(x[5m]))", None, "max by (pod) (rate(x[5m]) and x)"),
        ("sum by (pod) (rate(x[5m]))", None, "sum by (pod) (rate(x[5m]))"),
        ("sum by (pod) (rate(x[5m]))", True, "sum by (pod) (rate(x[5m]) and x)"),
        ("rate(x[5m]) and x", None, "rate(x[5m]) and x"),
        ("rate(x[5m]) * 8", None, "rate(x[5m]) * 8"),
    ],
    ids=["bare", "bare-declined", "max-by", "sum-by", "sum-by-asked", "written", "arithmetic"],
)
def test_a_range_query_is_sent_guarded_where_its_shape_and_guard_say(fake_prometheus, expr, guard, sent):
    clock = FakeClock()
    source = PromQLSource(
        fake_prometheus.url, [PromQuery("q", expr, guard=guard)], clock, timeout_seconds=2.0
    )
    source.read(clock.time() - 30, clock.time())
    assert [r["query"] for r in fake_prometheus.requests] == [sent]


@pytest.mark.parametrize(
    ("expr", "filters"),
    [
        ("up == 0", True),
        ("DCGM_FI_DEV_ROW_REMAP_PENDING > 0", True),
        ("sum by (node) (x) <= 3", True),
        ("x > bool 0", False),
        ("x >= bool 0", False),
        ("x > BOOL 0", False),  # PromQL's keywords are any case
        ('up{job!="a"}', False),
        ('x{a=~"b>c"}', False),
        ("rate(x[5m]) and x", False),
        ('label_replace(x, "a", "<", "b", "c")', False),
        ("x  # alert when > 90", False),  # a comment runs to the end of its line
        ("x # > 90\n> 0", True),
        ('x{path="a#b"} > 0', True),  # a # in a string starts no comment
        ('x{path="a#b", x=~">1"}', False),
        ("x{path='a#b'} # '>'\n", False),
        ("x # it's > 0", False),  # a quote in a comment opens no string
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_a_query_is_a_filter_where_it_compares_without_bool(expr, filters):
    # Its series answer only the steps where they pass: carried over their absence, a series passing for a
    # step every 30 minutes read as present throughout (see test_service_due).
    assert filters_series(expr) is filters
