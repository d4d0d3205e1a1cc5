"""The anomaly service's warm-up at a restart, from the source's recent history: the first live tick already
scores, the history raises no alert by itself, an older fault still fires and a node down since before the
restart is found at once."""

from __future__ import annotations

import logging
import math

import httpx
import numpy as np

from anomaly.service import AnomalyService
from gpuwarden.clock import FakeClock
from gpuwarden.config_anomaly import AnomalyConfig
from tests.anomaly.promql_answers import matrix
from tests.anomaly.promql_answers import source as promql_source
from tests.anomaly.service_ticks import GPUS, TEMP, HistorySource, tick

POWER = "DCGM_FI_DEV_POWER_USAGE"


def _history_service(spike_from=math.inf, on_alert=None):
    rng = np.random.default_rng(1)
    base = {q: 100 + 10 * k for k, q in enumerate(AnomalyConfig().multivariate_queries)}

    def series(query):
        def at(t):
            vals = base[query] + rng.normal(0, 1, len(GPUS))
            if query == TEMP and t >= spike_from:
                vals[2] = base[query] + 60
            return vals

        return at

    clock = FakeClock()
    source = HistorySource({q: series(q) for q in base})
    cfg = AnomalyConfig(adaptive_metrics=["*"], detectors=["adaptive", "multivariate"])
    return clock, source, AnomalyService(cfg, [source], clock, on_alert=on_alert)


def test_warm_up_reads_recent_history_so_the_first_live_tick_after_a_restart_already_scores():
    clock, source, service = _history_service(spike_from=FakeClock().time() + 30)
    fed = service.warm_up()
    cfg = service.cfg
    ((start, end),) = source.reads
    assert end == clock.time() and end - start == cfg.max_lookback_seconds
    assert fed >= cfg.thresholds.warmup  # one view per tick of history, on the 30 s grid
    multivariate = next(d for d in service.detectors if d.name == "multivariate")
    assert multivariate.fitted  # fitted at start: 8 GPUs x 120 ticks of history
    result = tick(clock, service)
    assert source.reads[-1] == (end, clock.time())  # reads on from where the warm-up ended
    adaptive = next(f for f in result.findings if f.detector == "adaptive" and f.query == TEMP)
    row = next(i for i, lab in enumerate(adaptive.labels) if lab["UUID"] == "GPU-2")
    assert adaptive.score[row] > 1 and adaptive.score.max() == adaptive.score[row]
    mv = next(f for f in result.findings if f.detector == "multivariate")
    assert mv.score.max() > 0


def test_warm_up_raises_no_alert_from_an_anomaly_in_the_history():
    got = []
    _, _, service = _history_service(spike_from=FakeClock().time() - 300, on_alert=got.append)
    assert service.warm_up() > 0
    assert got == [] and service.firing == {}


def test_an_anomaly_older_than_the_adaptive_warm_up_still_fires_after_a_restart():
    # GPU-2 has run hot for 20 minutes when `anomaly run` restarts: longer than the adaptive warm-up (30
    # ticks) plus the pending ticks. A warm-up that read only that much history learned the fault as the
    # GPU's normal, so the alert was never raised again and serve resolved it while the GPU stayed hot.
    raised = []
    clock, _, service = _history_service(spike_from=FakeClock().time() - 1200, on_alert=raised.append)
    assert service.warm_up() > 0
    assert raised == []
    for _ in range(service.cfg.pending_ticks):
        tick(clock, service)
    hot = [a.labels for a in raised if a.labels.get("for") == TEMP and a.labels.get("model") == "adaptive"]
    assert [lab["UUID"] for lab in hot] == ["GPU-2"]


def test_a_node_that_stopped_reporting_shortly_before_a_restart_is_reported_down_after_it():
    clock = FakeClock()
    stopped = clock.time() - 300  # n2's exporter went quiet 5 minutes before `anomaly run` (re)started
    n2 = [{"gpu": str(i), "UUID": f"GPU-n2-{i}", "Hostname": "n2"} for i in range(4)]

    def temp(t):
        return [60.0] * len(GPUS) + [60.0 if t <= stopped else math.nan] * len(n2)

    raised = []
    source = HistorySource({TEMP: temp}, labels=GPUS + n2)
    cfg = AnomalyConfig(detectors=["presence"])
    service = AnomalyService(cfg, [source], clock, on_alert=raised.append)
    assert service.warm_up() > 0
    assert raised == []  # what the history shows raises nothing by itself...
    tick(clock, service)
    down = [a.labels for a in raised if a.labels["alertname"] == "NodeDown"]
    assert [lab["Hostname"] for lab in down] == ["n2"]  # ...but the node still down is found at once


def _first_ticks_raised(values, labels=GPUS) -> list[list[tuple[str, str]]]:
    """What a started service with the signatures alone raises in its warm-up and each of its first two
    ticks: (UUID, xid) of each alert."""
    clock = FakeClock()
    raised: list[tuple[str, str]] = []
    service = AnomalyService(
        AnomalyConfig(detectors=["signatures"]),
        [HistorySource(values, labels=labels)],
        clock,
        on_alert=lambda a: raised.append((a.labels["UUID"], a.labels.get("xid", ""))),
    )
    assert service.warm_up() > 0
    out = [raised[:]]
    for _ in range(2):
        del raised[:]
        tick(clock, service)
        out.append(sorted(raised))
    return out


def test_an_xid_in_the_first_tick_after_a_start_raises_and_one_the_history_holds_does_not():
    # The last-XID gauge (dcgm-exporter's, the example config's). The signatures detector was not fed the
    # warm-up, so its first live read was its first: GPU-5's XID 79 ten seconds after `anomaly run` started
    # was history, never raised (GpuLost alone told of the GPU). GPU-0's XID 13 came long before the start.
    start = FakeClock().time()
    before, after = np.zeros(len(GPUS)), np.zeros(len(GPUS))
    before[0] = after[0] = 13
    after[5] = 79
    gauge = {"DCGM_FI_DEV_XID_ERRORS": lambda t: after if t > start else before}
    assert _first_ticks_raised(gauge) == [[], [("GPU-5", "79")], []]


def test_an_xid_counted_in_the_first_tick_after_a_start_raises_and_one_counted_before_it_does_not():
    start = FakeClock().time()
    labels = [{**lab, "xid": "48"} for lab in GPUS]
    counts = {  # GPU-1's XID 48 counted once before the start, again after it; GPU-2's once, long ago
        "gpuwarden_gpu_up": lambda t: np.ones(len(GPUS)),
        "gpuwarden_xid_errors_total": lambda t: np.array(
            [np.nan, 2.0 if t > start else 1.0, 1.0, *[np.nan] * (len(GPUS) - 3)]
        ),
    }
    assert _first_ticks_raised(counts, labels) == [[], [("GPU-1", "48")], []]


def _warm_up_line(caplog, held_from: float) -> str:
    """The warm-up's log line of a service whose source holds samples only from ``held_from`` (a Prometheus
    started then: every step before it empty)."""
    clock = FakeClock()
    source = HistorySource({TEMP: lambda t: np.full(len(GPUS), 60.0 if t >= held_from else math.nan)})
    service = AnomalyService(AnomalyConfig(adaptive_metrics=[TEMP], detectors=["adaptive"]), [source], clock)
    with caplog.at_level(logging.INFO, logger="anomaly.service"):
        service.warm_up()
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("warm-up:")]
    return line


def test_the_warm_up_line_says_how_much_history_the_source_held_not_how_much_was_asked_for(caplog):
    # A Prometheus started a minute before `anomaly run` holds a minute of data: the line said
    # "fed 3 ticks of history (3600 s)", an hour of history the detectors never had.
    line = _warm_up_line(caplog, held_from=FakeClock().time() - 60)
    assert line == (
        "warm-up: fed 3 ticks of history (samples found over the last 60 s of the 3600 s read: history was"
        " short) to the detectors"
    )


def test_the_warm_up_line_says_the_span_read_where_the_history_reaches_back_to_its_start(caplog):
    line = _warm_up_line(caplog, held_from=-math.inf)
    assert line == "warm-up: fed 120 ticks of history (3600 s) to the detectors"


def test_the_warm_up_line_says_no_samples_were_found_where_the_source_held_none(caplog):
    line = _warm_up_line(caplog, held_from=math.inf)
    assert line == "warm-up: fed 0 ticks of history (no samples found in the 3600 s read) to the detectors"


def test_the_warm_up_line_says_one_tick_of_history_not_one_ticks(caplog):
    line = _warm_up_line(caplog, held_from=FakeClock().time() - 20)
    assert line == (
        "warm-up: fed 1 tick of history (samples found over the last 0 s of the 3600 s read: history was"
        " short) to the detectors"
    )


def _warm_up_line_on_prometheus(caplog, down: set[str]) -> str:
    """The warm-up's log line of a service reading TEMP and POWER from a Prometheus that refuses the
    connection for the queries in ``down`` (it is down while the service starts) and answers the others."""
    clock = FakeClock()

    def answer(query: str):
        def handle(request: httpx.Request) -> httpx.Response:
            if query in down:
                raise httpx.ConnectError("[Errno 111] Connection refused", request=request)
            return matrix(request)

        return handle

    prometheus = promql_source({q: answer(q) for q in (TEMP, POWER)}, clock)
    cfg = AnomalyConfig(adaptive_metrics=[TEMP, POWER], detectors=["adaptive"])
    service = AnomalyService(cfg, [prometheus], clock)
    with caplog.at_level(logging.INFO, logger="anomaly.service"):
        service.warm_up()
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("warm-up:")]
    return line


def test_the_warm_up_line_says_the_history_read_failed_not_that_prometheus_held_no_samples(caplog):
    # Prometheus down as `anomaly run` starts: the line said "no samples found in the 3600 s read", as of a
    # Prometheus without data; the read is deferred, read again at the next tick (``anomaly.warmupretry``).
    line = _warm_up_line_on_prometheus(caplog, down={TEMP, POWER})
    assert line == (
        f"warm-up: the history read failed for 2 of 2 queries ({TEMP}, {POWER}): deferred, read again in"
        " 30 s; nothing is scored until it is read"
    )


def test_the_warm_up_line_names_the_queries_whose_history_read_failed_beside_what_it_fed(caplog):
    line = _warm_up_line_on_prometheus(caplog, down={POWER})
    assert line == (
        "warm-up: fed 120 ticks of history (3600 s; the history read failed for 1 of 2 queries"
        f" ({POWER}): their history read with their first good read, as after an outage) to the detectors"
    )


class _SlowHistory(HistorySource):
    """Prometheus taking 5 s to answer each read: the clock moves on meanwhile, as a wall clock does."""

    def __init__(self, values, clock):
        super().__init__(values)
        self.clock = clock

    def read(self, start, end):
        frames = super().read(start, end)
        self.clock.advance(5.0)
        return frames


def test_a_warm_up_whose_history_read_took_seconds_scores_no_tick_of_those_seconds():
    # The check for a deferred chain's catch-up (fix/fuzzdown2) compared the history's end with the time the
    # warm-up ended: every start read and scored one more tick of the seconds its history read took.
    clock = FakeClock()
    rng = np.random.default_rng(1)
    source = _SlowHistory({TEMP: lambda t: 60 + rng.normal(0, 0.5, len(GPUS))}, clock)
    service = AnomalyService(AnomalyConfig(adaptive_metrics=["*"], detectors=["adaptive"]), [source], clock)
    started = clock.time()
    assert service.warm_up() > 0
    assert source.reads == [(started - service.cfg.max_lookback_seconds, started)]
    tick(clock, service)
    assert source.reads[-1][0] == started  # the first tick reads on from where the history ended
