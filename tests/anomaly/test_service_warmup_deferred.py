"""The warm-up's history read deferred while Prometheus is down at start (``anomaly.warmupretry``): read
again, each wait twice the last, once it answers; nothing fed or raised from live reads before it."""

from __future__ import annotations

import logging
import math

import httpx
import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from anomaly.health import report
from anomaly.service import AnomalyService
from anomaly.snapshot import load_state, save_snapshot
from anomaly.warmupretry import WARM_UP_RETRY_MAX_SECONDS, retry_delay
from gpuwarden.cli.anomaly_ticks import TickLog
from gpuwarden.clock import FakeClock
from gpuwarden.config_anomaly import AnomalyConfig, AnomalyQueryConfig
from tests.anomaly.promql_answers import source as promql_source
from tests.anomaly.service_ticks import TEMP

POWER = "DCGM_FI_DEV_POWER_USAGE"
XID = "DCGM_FI_DEV_XID_ERRORS"
HOT = 2  # the GPU running hot from the moment Prometheus is back


class _Prometheus:
    """Eight GPUs' temperatures and powers at every step; down (connections refused) while ``down``, or
    for the queries in ``failing``."""

    def __init__(self, clock: FakeClock, queries: tuple[str, ...] = (TEMP, POWER)) -> None:
        self.down = True
        self.xid_from = math.inf  # GPU-2's last XID is 79 from then (``XID``), 0 before
        self.failing: set[str] = set()
        self.hot_from = math.inf
        self.hot_query, self.hot = TEMP, 30.0
        self.asked: list[tuple[str, float, float]] = []  # (query, start, end) of each request answered
        self._rng = np.random.default_rng(3)
        self.steady = False  # noise of each GPU and time alone (two stand-ins agree), the GPUs of one job
        self.source = promql_source({q: self._answer(q) for q in queries}, clock)

    def _answer(self, query: str):
        def handle(request: httpx.Request) -> httpx.Response:
            if self.down or query in self.failing:
                raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
            start, end, step = (float(request.url.params[k]) for k in ("start", "end", "step"))
            self.asked.append((query, start, end))
            first = math.ceil(start / step) * step
            stamps = np.arange(first, end + step / 2, step).tolist()
            result = []
            for g in range(8):
                if query == XID:
                    xid = [[t, "79" if g == HOT and t >= self.xid_from else "0"] for t in stamps]
                    result.append(
                        {"metric": {"Hostname": "n1", "gpu": str(g), "UUID": f"GPU-{g}"}, "values": xid}
                    )
                    continue
                hot = self.hot if g == HOT and query == self.hot_query else 0.0
                values = [
                    [t, str(60 + self._noise(g, t) + (hot if t >= self.hot_from else 0))] for t in stamps
                ]
                metric = {"Hostname": "n1", "gpu": str(g), "UUID": f"GPU-{g}"}
                if self.steady:  # ranks of one job: the fleet detector compares them
                    metric["slurm_job"] = "7"
                result.append({"metric": metric, "values": values})
            body = {"status": "success", "data": {"resultType": "matrix", "result": result}}
            return httpx.Response(200, json=body)

        return handle

    def _noise(self, gpu: int, t: float) -> float:
        return 0.5 * math.sin(0.37 * t + 1.3 * gpu) if self.steady else float(self._rng.normal(0, 0.5))


def _started_while_down(cfg: AnomalyConfig | None = None):
    clock = FakeClock()
    prometheus = _Prometheus(clock, tuple(q.name for q in cfg.queries) if cfg else (TEMP, POWER))
    raised = []
    cfg = cfg or AnomalyConfig(adaptive_metrics=[TEMP, POWER], detectors=["adaptive"])
    service = AnomalyService(cfg, [prometheus.source], clock, on_alert=raised.append)
    assert service.warm_up() == 0
    return clock, prometheus, service, raised


def _temp_score(result, uuid: str, query: str = TEMP) -> float:
    (found,) = [f for f in result.findings if f.detector == "adaptive" and f.query == query]
    (row,) = [i for i, labels in enumerate(found.labels) if labels["UUID"] == uuid]
    return float(found.score[row])


def test_a_warm_up_failed_with_prometheus_down_reads_the_history_when_prometheus_is_back():
    # Prometheus down as `anomaly run` starts, back 2 minutes later, GPU-2 hot from then on. The history was
    # never read: the detectors learnt from live reads alone, the adaptive band scoring nothing for its
    # warm-up (30 ticks), so the hot GPU went unseen for a quarter of an hour.
    clock, prometheus, service, _ = _started_while_down()
    for _ in range(4):
        clock.advance(30)
        service.infer()
    prometheus.down = False
    prometheus.hot_from = clock.time() + 1
    warmed = None
    for k in range(math.ceil(WARM_UP_RETRY_MAX_SECONDS / 30) + 1):
        clock.advance(30)
        result = service.infer()
        if service.warm_up_retry is None:
            warmed = k
            break
    assert warmed is not None, "the deferred warm-up was never read again"
    history = [end - start for query, start, end in prometheus.asked if query == TEMP]
    assert max(history) >= service.warmup_seconds() - 30  # the hour, up to the tick before this one
    assert _temp_score(result, f"GPU-{HOT}") > 1  # scored at once, as after a warm-up at start


def test_nothing_is_read_or_raised_from_live_reads_while_the_deferred_warm_up_waits():
    clock, prometheus, service, raised = _started_while_down()
    clock.advance(30)
    service.infer()  # the first retry, failed: the next one waits 60 s
    prometheus.down = False
    clock.advance(30)
    result = service.infer()
    assert prometheus.asked == []  # not read: learnt first, a live read would come before its history
    assert not [f for f in result.findings if f.detector == "adaptive"]
    assert {a.labels["alertname"] for a in raised} <= {"GpuwardenSourceStale"}


def test_an_xid_after_the_start_while_the_deferred_warm_up_waits_is_raised_not_learnt_as_history():
    # Read up to the tick before the one it was read at, the deferred history held what came after the start
    # while it waited (Prometheus back, its next read not due): an XID then was history, never raised.
    queries = [AnomalyQueryConfig(name=q, expr=q) for q in (TEMP, XID)]
    clock, prometheus, service, raised = _started_while_down(AnomalyConfig(queries=queries))
    clock.advance(30)
    service.infer()  # the first retry, failed: the next one waits 60 s
    prometheus.down = False
    prometheus.xid_from = clock.time() + 10
    for _ in range(2):  # a tick that waits, then the retry's
        clock.advance(30)
        service.infer()
    assert service.warm_up_retry is None
    assert [(a.labels["alertname"], a.labels["UUID"]) for a in raised] == [("GpuXidError", f"GPU-{HOT}")]


def test_the_deferred_warm_up_is_shown_in_metrics_and_health_until_it_is_read():
    clock, prometheus, service, _ = _started_while_down()
    registry = CollectorRegistry()
    registry.register(service.collector.status)
    clock.advance(30)
    service.infer()
    assert registry.get_sample_value("gpuwarden_anomaly_warmup_deferred") == 1
    assert registry.get_sample_value("gpuwarden_anomaly_warmup_read_failures") == 2
    (deferred,) = [r for r in report(service)["reasons"] if r.startswith("warm_up_deferred:")]
    assert deferred == (
        "warm_up_deferred: the history read failed 2 times in 30 s; read again in 60 s, nothing scored until"
        " then"
    )
    prometheus.down = False
    clock.advance(60)
    service.infer()
    assert registry.get_sample_value("gpuwarden_anomaly_warmup_deferred") == 0
    assert registry.get_sample_value("gpuwarden_anomaly_warmup_read_failures") is None
    assert report(service)["status"] == "ok"


def test_a_query_whose_history_read_failed_alone_reads_its_history_at_its_first_good_read():
    # One query failing as `anomaly run` starts, the other read: its history was never read, its adaptive
    # band learning from its live reads alone once it read well, GPU-2 running hot then unseen.
    clock = FakeClock()
    prometheus = _Prometheus(clock)
    prometheus.down, prometheus.failing = False, {POWER}
    prometheus.hot_query, prometheus.hot = POWER, 300.0
    cfg = AnomalyConfig(adaptive_metrics=[TEMP, POWER], detectors=["adaptive"])
    service = AnomalyService(cfg, [prometheus.source], clock)
    assert service.warm_up() > 0 and service.warm_up_retry is None  # TEMP's history fed: not deferred
    start = clock.time() - service.warmup_seconds()
    for _ in range(3):
        clock.advance(30)
        service.infer()
    prometheus.failing = set()
    prometheus.hot_from = clock.time() + 1
    clock.advance(30)
    result = service.infer()
    # Its history: from the warm-up's start, as far back as a read is asked (``max_lookback_seconds``), its
    # first step the first after it.
    ((first, end),) = [(s, e) for q, s, e in prometheus.asked if q == POWER]
    assert first == max(start, end - cfg.max_lookback_seconds) + 30
    assert _temp_score(result, f"GPU-{HOT}", POWER) > 1


@pytest.mark.parametrize(
    ("failures", "every", "wait"),
    [(1, 30, 30), (2, 30, 60), (4, 30, 240), (5, 30, 300), (40, 30, 300), (3, 600, 600)],
    ids=["first", "doubled", "thrice-doubled", "capped", "long-outage", "ticks-past-the-cap"],
)
def test_the_wait_before_the_history_is_read_again_doubles_up_to_five_minutes(failures, every, wait):
    assert retry_delay(failures, every) == wait


def test_a_tick_that_waits_for_the_deferred_warm_up_says_so_not_that_no_query_was_due(caplog):
    # `anomaly run`'s tick line said "queries read 0, failed 0 (none due: a query's step_seconds)".
    clock, prometheus, service, _ = _started_while_down()
    tick_log = TickLog([prometheus.source], None, lambda alert: None)
    tick_log.warm_up_deferred = lambda: service.warm_up_retry is not None
    tick_log.after()  # the warm-up's failed read, as `anomaly run` logs it with its first tick
    lines = []
    with caplog.at_level(logging.INFO, logger="gpuwarden.cli.anomaly_cmd"):
        for _ in range(2):  # the first retry, failed; then a tick that waits for the next
            clock.advance(30)
            service.infer()
            tick_log.after()
            lines.append(next(r.getMessage() for r in caplog.records if r.getMessage().startswith("tick:")))
            caplog.clear()
    assert lines == [
        f"tick: queries read 0, failed 2 ({TEMP}, {POWER}); alerts raised 0, resolved 0",
        "tick: queries read 0, failed 0 (the warm-up's history read deferred: nothing is read until it is"
        " read again); alerts raised 0, resolved 0",
    ]


def _restarted(
    service: AnomalyService, prometheus: _Prometheus, clock: FakeClock, tmp_path
) -> AnomalyService:
    """``service`` stopped (its state saved, as SIGTERM saves it) and ``anomaly run`` started again on its
    state file a minute later."""
    path = tmp_path / "anomaly.state.npz"
    assert save_snapshot(path, service.snapshot())
    clock.advance(60)
    snapshot, _ = load_state(path, service.cfg)
    again = AnomalyService(service.cfg, [prometheus.source], clock)
    again.warm_up(None, snapshot)
    return again


def test_a_restart_while_the_warm_up_is_deferred_defers_it_again_where_prometheus_is_still_down(tmp_path):
    # The snapshot saved while deferred held nothing learnt: taken up, the restart read the ticks since it as
    # after an outage and never the history before it, the defect the deferral fixed, back through a restart.
    clock, prometheus, service, _ = _started_while_down()
    clock.advance(30)
    service.infer()
    again = _restarted(service, prometheus, clock, tmp_path)
    # Deferred again, as a fresh start is, and shown so (it said `source_down` alone, the ticks reading on).
    assert again.warm_up_retry is not None
    assert any(r.startswith("warm_up_deferred:") for r in report(again)["reasons"]), report(again)
    assert again._chain_started == service._started  # GpuwardenSourceStale aged from the first start
    prometheus.down = False
    prometheus.hot_from = clock.time() + 1
    for _ in range(math.ceil(WARM_UP_RETRY_MAX_SECONDS / 30) + 1):
        clock.advance(30)
        result = again.infer()
        if again.warm_up_retry is None:
            break
    assert again.warm_up_retry is None
    history = [end - start for query, start, end in prometheus.asked if query == TEMP]
    assert max(history) >= again.warmup_seconds() - 30  # the hour before the start, read
    assert _temp_score(result, f"GPU-{HOT}") > 1


def test_a_restart_while_the_warm_up_is_deferred_reads_the_history_where_prometheus_is_back(tmp_path):
    clock, prometheus, service, _ = _started_while_down()
    clock.advance(30)
    service.infer()
    prometheus.down = False
    again = _restarted(service, prometheus, clock, tmp_path)
    assert again.warm_up_retry is None
    (start, end), (since, now) = [(s, e) for q, s, e in prometheus.asked if q == TEMP]
    assert end - start >= again.warmup_seconds() - 30  # the whole hour, not the 90 s since the first start
    assert (end, now) == (service._started, clock.time())  # as of the first start; the ticks since, read
    assert since <= end + 30  # its first step the history's next
    prometheus.hot_from = clock.time() + 1
    clock.advance(30)
    assert _temp_score(again.infer(), f"GPU-{HOT}") > 1  # scored at once, as after a fresh start


def test_a_restart_while_deferred_raises_what_came_after_the_first_start_not_learns_it(tmp_path):
    # Warmed up as of its own start, the restart read what came after the first one as history: an XID while
    # the first process waited was learnt, never raised, where the process that ran on raised it at the tick
    # it read Prometheus (restart fuzz `--snapshot --promql --down-at-start 20`: 14 of seeds 2700-2739).
    queries = [AnomalyQueryConfig(name=q, expr=q) for q in (TEMP, XID)]
    clock, prometheus, service, _ = _started_while_down(AnomalyConfig(queries=queries))
    clock.advance(30)
    service.infer()
    prometheus.xid_from = clock.time() + 10
    clock.advance(30)
    service.infer()
    prometheus.down = False
    path = tmp_path / "anomaly.state.npz"
    assert save_snapshot(path, service.snapshot())
    clock.advance(60)
    snapshot, _ = load_state(path, service.cfg)
    raised = []
    again = AnomalyService(service.cfg, [prometheus.source], clock, on_alert=raised.append)
    again.warm_up(None, snapshot)
    assert again.warm_up_retry is None
    (end, now) = [e for q, _, e in prometheus.asked if q == TEMP]
    assert (end, now) == (service._started, clock.time())  # the hour before the first start; the ticks since
    clock.advance(30)
    again.infer()
    assert [(a.labels["alertname"], a.labels["UUID"]) for a in raised] == [("GpuXidError", f"GPU-{HOT}")]


def test_a_restart_deferred_again_reads_the_history_as_of_the_first_start(tmp_path):
    queries = [AnomalyQueryConfig(name=q, expr=q) for q in (TEMP, XID)]
    clock, prometheus, service, _ = _started_while_down(AnomalyConfig(queries=queries))
    clock.advance(30)
    service.infer()
    prometheus.xid_from = clock.time() + 10
    raised = []
    path = tmp_path / "anomaly.state.npz"
    assert save_snapshot(path, service.snapshot())
    clock.advance(60)
    snapshot, _ = load_state(path, service.cfg)
    again = AnomalyService(service.cfg, [prometheus.source], clock, on_alert=raised.append)
    again.warm_up(None, snapshot)
    assert again.warm_up_retry is not None and again.warm_up_retry.since == service._started
    prometheus.down = False
    for _ in range(math.ceil(WARM_UP_RETRY_MAX_SECONDS / 30) + 1):
        clock.advance(30)
        again.infer()
        if again.warm_up_retry is None:
            break
    assert again.warm_up_retry is None
    assert [(a.labels["alertname"], a.labels["UUID"]) for a in raised] == [("GpuXidError", f"GPU-{HOT}")]


def _firing(service: AnomalyService) -> set[str]:
    return {s.alert.labels["alertname"] for s in service.firing.values()}


def test_a_restart_while_deferred_keeps_the_staleness_alert_firing_as_the_process_that_ran_on(tmp_path):
    # The snapshot saved while deferred was dropped whole, its alerts with it: restarted as Prometheus came
    # back, `GpuwardenSourceStale` resolved at once, where the process that ran on kept it firing for its
    # quiet reads (restart fuzz `--snapshot --promql --down-at-start 20`, seeds 2708 and 2731).
    clock = FakeClock()
    cfg = AnomalyConfig(adaptive_metrics=[TEMP, POWER], detectors=["adaptive"])
    straight_prometheus, prometheus = _Prometheus(clock), _Prometheus(clock)
    straight = AnomalyService(cfg, [straight_prometheus.source], clock)
    service = AnomalyService(cfg, [prometheus.source], clock)
    assert straight.warm_up() == 0 and service.warm_up() == 0
    for _ in range(6):  # failed reads at 30 and 90 s: the next one is due at 210 s
        clock.advance(30)
        straight.infer()
        service.infer()
    assert _firing(straight) == _firing(service) == {"GpuwardenSourceStale"}
    path = tmp_path / "anomaly.state.npz"
    assert save_snapshot(path, service.snapshot())
    snapshot, _ = load_state(path, cfg)
    told = []
    again = AnomalyService(cfg, [prometheus.source], clock, on_alert=told.append, on_resend=told.append)
    again.warm_up(None, snapshot)  # still down: deferred, its first read at the next tick
    assert again.warm_up_retry is not None
    assert _firing(again) == {"GpuwardenSourceStale"}
    straight_prometheus.down = prometheus.down = False
    ticks = []
    for _ in range(6):
        clock.advance(30)
        straight.infer()
        again.infer()
        ticks.append((_firing(straight), _firing(again)))
    assert again.warm_up_retry is None and straight.warm_up_retry is None  # both read at the same tick
    assert all(a == b for a, b in ticks), ticks
    assert ticks[0][1] == {"GpuwardenSourceStale"} and ticks[-1][1] == set(), ticks  # fired on, then resolved
    # Posted again at the first tick (the new process' forwarder holds it), then its resolution.
    assert [(a.labels["alertname"], a.status.value) for a in told] == [
        ("GpuwardenSourceStale", "firing"),
        ("GpuwardenSourceStale", "resolved"),
    ]


def test_a_restart_while_deferred_as_prometheus_comes_back_reads_the_ticks_since_as_the_process_that_ran_on():
    # The ticks since the first start were read with the restart's first tick's own, in one read, where the
    # process that ran on read them at the tick its deferred read succeeded, then that tick alone: the fleet
    # detector (which smooths tick by tick) scored otherwise, and the alerts differed (restart fuzz
    # `--snapshot --promql --down-at-start 20`: seeds 2722, 2763, 2764, 2773).
    clock = FakeClock()
    cfg = AnomalyConfig(adaptive_metrics=[TEMP, POWER], detectors=["adaptive", "fleet"])
    straight_prometheus, prometheus = _Prometheus(clock), _Prometheus(clock)
    for p in (straight_prometheus, prometheus):
        p.steady, p.hot_from = True, clock.time() + 100  # GPU-2 hot from before Prometheus is back
    straight = AnomalyService(cfg, [straight_prometheus.source], clock)
    service = AnomalyService(cfg, [prometheus.source], clock)
    assert straight.warm_up() == 0 and service.warm_up() == 0
    for _ in range(6):  # failed reads at 30 and 90 s: the next one is due at 210 s
        clock.advance(30)
        straight.infer()
        service.infer()
    snapshot = service.snapshot()  # saved while deferred, as SIGTERM saves it
    straight_prometheus.down = prometheus.down = False
    clock.advance(30)
    straight.infer()  # its deferred read, at 210 s: the history, then the ticks since
    again = AnomalyService(cfg, [prometheus.source], clock)
    again.warm_up(None, snapshot)  # restarted at that tick's time, which it replaces
    assert again.warm_up_retry is None
    for _ in range(4):
        clock.advance(30)
        scores = [
            {
                (f.detector, f.query, f.labels[i]["UUID"]): float(f.score[i])
                for f in r.findings
                if f.detector != "source"
                for i in range(len(f.labels))
            }
            for r in (straight.infer(), again.infer())
        ]
        assert scores[0] and scores[1] == pytest.approx(scores[0], rel=1e-9, abs=1e-12)
    assert any(d == "fleet" for d, _, _ in scores[0])
