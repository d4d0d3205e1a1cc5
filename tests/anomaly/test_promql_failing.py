"""A source or a query failing (answers of another shape, failed queries, exporters gone), ticks going on."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry

from anomaly.promql import PromQLSource, PromQuery
from anomaly.service import AnomalyService
from anomaly.signatures import DBE
from gpuwarden.clock import FakeClock, SystemClock
from gpuwarden.config_anomaly import AnomalyConfig
from gpuwarden.model import AlertStatus
from tests.anomaly.promql_answers import GPU0
from tests.http_stub import LocalServer, QuietHandler


@pytest.mark.parametrize(
    "body",
    [
        b"[]",
        b'"s"',
        b'{"status": "success", "data": {"resultType": "matrix", "result": "x"}}',
        b'{"status": "success", "data": {"resultType": "matrix", "result": ["x"]}}',
        b'{"status": "success", "data": {"resultType": "matrix", "result": [{"metric": ["a"]}]}}',
        b'{"status": "success", "data": {"resultType": "matrix", "result": [{"values": [["abc", "1"]]}]}}',
        # No result at all: read as an answer of no series, every series gone, the query up.
        b'{"status": "success", "data": {"resultType": "matrix"}}',
    ],
    ids=[
        "list",
        "string",
        "result-string",
        "result-items-strings",
        "metric-list",
        "time-not-a-number",
        "no-result",
    ],
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
