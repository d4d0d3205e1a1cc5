"""Ticks at which a query is not due (its ``step_seconds`` longer than ``infer_every_seconds``).

The service reads a fake Prometheus through the real ``PromQLSource``, so a query is not read at the ticks
between its steps, exactly as ``anomaly run`` reads it. Such a tick says nothing about the query's series:
their alerts must neither count it quiet (resolve, then raise again) nor as a break in a learned detector's
``pending_ticks``.
"""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from anomaly.detectors import Detector, Findings
from anomaly.promql import PromQLSource, PromQuery
from anomaly.series import View
from anomaly.service import AnomalyService
from anomaly.thermal import ThermalDetector
from gpuwarden.clock import FakeClock
from gpuwarden.config_anomaly import AnomalyConfig, AnomalyQueryConfig, AnomalyThresholdConfig
from gpuwarden.model import Alert, AlertStatus
from tests.anomaly.fakes import FakePrometheus

UP = "gpuwarden_gpu_up"
TEMP = "DCGM_FI_DEV_GPU_TEMP"
POWER = "DCGM_FI_DEV_POWER_USAGE"
UTIL = "DCGM_FI_DEV_GPU_UTIL"
SM = "DCGM_FI_PROF_SM_ACTIVE"
REMAP = "DCGM_FI_DEV_ROW_REMAP_PENDING"
STEP, EVERY = 30.0, 5.0  # the README walkthrough's settings: a query read once every six ticks
NODES = ("n1", "n2", "n3")
GPUS = [
    {"Hostname": n, "gpu": str(i), "UUID": f"GPU-{n}-{i}", "modelName": "H100"}
    for n in NODES
    for i in range(4)
]


@pytest.fixture(scope="module")
def server():
    fake = FakePrometheus()
    yield fake
    fake.close()  # waits out serve_forever's poll: once for the module, not per test


@pytest.fixture
def prometheus(server):
    server.answers.clear()
    server.errors.clear()
    return server


class Run:
    """``anomaly run`` against ``prometheus``: a tick every ``EVERY`` s, each query on a ``STEP`` grid
    unless ``steps`` gives it another; ``instances``: detectors built here rather than from the config;
    ``exprs``: a query's expression where it is not its name; ``every``: the tick, where not ``EVERY``."""

    def __init__(
        self,
        prometheus: FakePrometheus,
        queries: list[str],
        steps: dict[str, float] | None = None,
        instances: list[Detector] | None = None,
        exprs: dict[str, str] | None = None,
        every: float = EVERY,
        **cfg: object,
    ) -> None:
        self.clock = FakeClock()
        self.every = every
        step = {q: (steps or {}).get(q, STEP) for q in queries}
        expr = {q: (exprs or {}).get(q, q) for q in queries}
        config = AnomalyConfig(
            infer_every_seconds=every,
            queries=[AnomalyQueryConfig(name=q, expr=expr[q], step_seconds=step[q]) for q in queries],
            **cfg,
        )
        self.source = PromQLSource(
            prometheus.url, [PromQuery(q, expr[q], step[q]) for q in queries], self.clock
        )
        self.service = AnomalyService(config, [self.source], self.clock, instances)
        self.events: list[tuple[str, str, AlertStatus, float]] = []  # alertname, GPU or node, status, when
        self.alerts: list[Alert] = []

    def ticks(self, seconds: float) -> None:
        for _ in range(round(seconds / self.every)):
            self.clock.advance(self.every)
            result = self.service.infer()
            for alert in (*result.raised, *result.resolved):
                self.alerts.append(alert)
                labels = alert.labels
                who = labels.get("UUID") or labels.get("Hostname", "")
                self.events.append((labels["alertname"], who, alert.status, self.clock.time()))

    def close(self) -> None:
        self.source.close()

    def __enter__(self) -> Run:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def test_a_lost_gpu_read_every_sixth_tick_fires_once_and_stays_firing_until_it_is_back(prometheus):
    # XID 79 took GPU n1/1 off the bus: gpu_up reads 0 at every step. Before, the five ticks between two
    # steps counted as quiet: GpuLost resolved 20 s after it fired, fired again at the next step, and serve
    # marked the incident flapping while the GPU was still gone. Temperatures are read at every tick: what
    # counts is whether gpu_up was read, not whether the tick read anything.
    back = FakeClock().time() + 300
    prometheus.answers[UP] = lambda t: [
        (g, 0.0 if g["UUID"] == "GPU-n1-1" and t < back else 1.0) for g in GPUS
    ]
    prometheus.answers[TEMP] = lambda t: [(g, 60.0) for g in GPUS]
    with Run(prometheus, [UP, TEMP], {TEMP: EVERY}, detectors=["signatures"]) as run:
        run.ticks(300)
        assert [e[:3] for e in run.events] == [("GpuLost", "GPU-n1-1", AlertStatus.FIRING)]
        run.ticks(300)
    resolved = [e for e in run.events if e[2] is AlertStatus.RESOLVED]
    assert [e[:3] for e in run.events] == [
        ("GpuLost", "GPU-n1-1", AlertStatus.FIRING),
        ("GpuLost", "GPU-n1-1", AlertStatus.RESOLVED),
    ]
    # immediate_resolve_after (4) reads that saw it up: the steps at back, +30, +60 and +90 s.
    assert resolved[0][3] == back + 3 * STEP


def test_an_alert_whose_series_is_no_longer_answered_still_resolves(prometheus):
    # The opposite case: the query is read, and answers without the series (its GPU's exporter went away
    # for good). A read with the series absent is no outage: the alert ends.
    gone = FakeClock().time() + 300
    prometheus.answers[REMAP] = lambda t: [
        (g, 1.0 if g is GPUS[0] else 0.0) for g in GPUS if t < gone or g is not GPUS[0]
    ]
    with Run(prometheus, [REMAP], detectors=["signatures"]) as run:
        run.ticks(600)
    assert [e[:3] for e in run.events] == [
        ("GpuRowRemapPending", "GPU-n1-0", AlertStatus.FIRING),
        ("GpuRowRemapPending", "GPU-n1-0", AlertStatus.RESOLVED),
    ]
    assert run.events[1][3] == gone + 3 * STEP  # its 4th read with no series


def test_a_lasting_spike_read_every_sixth_tick_raises_a_learned_alert_after_pending_ticks_reads(prometheus):
    # Before, the ticks between two steps dropped the alert's pending count: a learned detector (three
    # agreeing reads in a row) never raised at all with step_seconds longer than infer_every_seconds.
    rng = np.random.default_rng(4)
    hot = FakeClock().time() + 60

    def temps(t: float) -> list[tuple[dict[str, str], float]]:
        vals = 60 + rng.normal(0, 0.5, len(GPUS))
        if t >= hot:
            vals[7] = 95.0
        return list(zip(GPUS, vals.tolist(), strict=True))

    prometheus.answers[TEMP] = temps
    with Run(
        prometheus,
        [TEMP],
        detectors=["adaptive"],
        adaptive_metrics=[TEMP],
        thresholds=AnomalyThresholdConfig(volatility_k=0),
    ) as run:
        assert run.service.warm_up() > 0  # an hour of history, as anomaly run reads at start
        run.ticks(600)
    pending = run.service.cfg.pending_ticks
    assert [e[:3] for e in run.events] == [("GpuwardenAnomaly", GPUS[7]["UUID"], AlertStatus.FIRING)]
    assert run.events[0][3] == hot + (pending - 1) * STEP  # its third read past the band


def test_a_node_down_read_every_sixth_tick_is_raised_after_absent_after_and_stays_open(prometheus):
    # Before, the presence detector took a tick that read none of its queries for an outage of the source
    # and moved every clock on by it: n3's absence grew 5 s per 30 s, and NodeDown, once raised, resolved
    # at the next tick (resolve_after 1) and was raised again at the next step.
    down = FakeClock().time() + 120
    prometheus.answers[TEMP] = lambda t: [(g, 60.0) for g in GPUS if t < down or g["Hostname"] != "n3"]
    with Run(prometheus, [TEMP], detectors=["presence"], absent_after_seconds=90) as run:
        run.ticks(600)
    assert [e[:3] for e in run.events] == [("NodeDown", "n3", AlertStatus.FIRING)]
    # Its last sample at down - 30; absent once more than 90 s older than a step: 120 s after it.
    assert run.events[0][3] == down - STEP + 4 * STEP


def test_a_hung_gpu_whose_sm_share_is_on_a_longer_step_is_raised_once_and_resolves_once(prometheus):
    # GpuHung reads utilisation and the SM-active share together. With utilisation read at every tick and
    # the SM share (a profiling metric) every sixth, the ticks between two SM steps found no GpuHung and,
    # utilisation being read, counted quiet: its pending count dropped five ticks in six and it never raised.
    t0 = FakeClock().time()
    hung, back = GPUS[5]["UUID"], t0 + 150
    prometheus.answers[UTIL] = lambda t: [
        (g, 100.0 if g["UUID"] == hung and t < back else 60.0) for g in GPUS
    ]
    prometheus.answers[SM] = lambda t: [(g, 0.01 if g["UUID"] == hung and t < back else 0.5) for g in GPUS]
    with Run(
        prometheus,
        [UTIL, SM],
        {UTIL: EVERY},
        detectors=["signatures"],
        thresholds=AnomalyThresholdConfig(resolve_after=4),
    ) as run:
        run.ticks(300)
    pending = run.service.cfg.pending_ticks
    assert [e[:3] for e in run.events] == [
        ("GpuHung", hung, AlertStatus.FIRING),
        ("GpuHung", hung, AlertStatus.RESOLVED),
    ]
    assert run.events[0][3] == t0 + pending * STEP  # its third read of both (SM steps at t0 + 30, 60, 90)
    assert run.events[1][3] == back + 3 * STEP  # the fourth read of both that saw it work


def test_a_hung_gpu_stays_firing_while_its_sm_share_cannot_be_read(prometheus):
    # Utilisation still read, the SM-active query failing (a DCGM profiling module that stopped): before,
    # GpuHung found nothing, its query (utilisation) read well, and it resolved with the GPU still hung.
    t0 = FakeClock().time()
    hung = GPUS[5]["UUID"]
    prometheus.answers[UTIL] = lambda t: [(g, 100.0 if g["UUID"] == hung else 60.0) for g in GPUS]
    prometheus.answers[SM] = lambda t: [(g, 0.01 if g["UUID"] == hung else 0.5) for g in GPUS]
    with Run(
        prometheus,
        [UTIL, SM],
        {UTIL: EVERY, SM: EVERY},
        detectors=["signatures"],
        thresholds=AnomalyThresholdConfig(resolve_after=4),
    ) as run:
        run.ticks(60)
        prometheus.errors[SM] = (422, "execution: profiling metrics unavailable")
        run.ticks(60)
    assert [e[:3] for e in run.events] == [("GpuHung", hung, AlertStatus.FIRING)]
    assert run.events[0][3] == t0 + run.service.cfg.pending_ticks * EVERY


def test_a_thermal_alert_is_judged_only_at_ticks_that_read_both_temperature_and_power(prometheus):
    # Temperature read at every tick, power every sixth. The thermal detector scores a GPU only with both;
    # at the ticks between two power steps it finds nothing, and must hold its alert and pending count
    # rather than count those ticks quiet (then it would never raise). A warm-up of 3 reads keeps it cheap.
    t0 = FakeClock().time()
    hot, cool = t0 + 120, t0 + 240
    hot_gpu = GPUS[9]["UUID"]
    rng = np.random.default_rng(7)

    def temps(t: float) -> list[tuple[dict[str, str], float]]:
        vals = 60 + rng.normal(0, 0.3, len(GPUS))
        if hot <= t < cool:
            vals[9] = 85.0  # at the same power: its cooling failed
        return list(zip(GPUS, vals.tolist(), strict=True))

    prometheus.answers[TEMP] = temps
    prometheus.answers[POWER] = lambda t: [(g, 300.0 + float(i)) for i, g in enumerate(GPUS)]
    with Run(
        prometheus,
        [TEMP, POWER],
        {TEMP: EVERY},
        instances=[ThermalDetector(warmup=3)],
        thresholds=AnomalyThresholdConfig(resolve_after=4),
    ) as run:
        run.ticks(390)
    pending = run.service.cfg.pending_ticks
    assert [e[:3] for e in run.events] == [
        ("GpuwardenAnomaly", hot_gpu, AlertStatus.FIRING),
        ("GpuwardenAnomaly", hot_gpu, AlertStatus.RESOLVED),
    ]
    assert run.events[0][3] == hot + (pending - 1) * STEP  # its third power step from the first hot one
    assert run.events[1][3] > cool


@pytest.mark.parametrize(
    ("not_due", "held"),
    [
        pytest.param({POWER}, True, id="one-column-not-due"),
        pytest.param({TEMP, POWER}, True, id="no-column-due"),
        pytest.param({UTIL}, False, id="the-fleet-load-not-due"),
        pytest.param({UP}, False, id="another-query-not-due"),
        pytest.param(set(), False, id="all-due"),
    ],
)
def test_a_multivariate_alert_is_held_when_any_of_its_columns_was_not_due(not_due, held):
    # The hold is decided here directly: a multivariate alert through the service needs a forest fitted on
    # more history than a cheap test reads (its calibration puts a clear outlier of 72 rows below score 1).
    # A load-adjusted fleet metric's alert waits for its load as well (its detector's side: test_fleet).
    config = AnomalyConfig(
        queries=[AnomalyQueryConfig(name=q, expr=q) for q in (TEMP, POWER, UP, UTIL)],
        detectors=["multivariate", "signatures", "fleet"],
        multivariate_queries=[TEMP, POWER],
        fleet_queries=[POWER],
        fleet_load_query=UTIL,
        fleet_load_adjusted=[POWER],
    )
    service = AnomalyService(config, [], FakeClock())
    view = View(time=0.0, not_due=frozenset(not_due))
    decide = service._not_due_alerts(view)
    assert decide("multivariate", "gpu_vector") is held
    assert decide("signatures", UP) is (UP in not_due)
    assert decide("fleet", POWER) is bool(not_due & {POWER, UTIL})


class PairDetector:
    """A detector of the user's own, not one of the built-ins: its alerts (on temperature) are judged by
    temperature and power together."""

    name = "pair"

    def fit(self, view: View) -> None:
        pass

    def detect(self, view: View) -> list[Findings]:
        return []

    def forget(self, ids: np.ndarray) -> None:
        pass

    def judged_by(self, query: str) -> tuple[str, ...]:
        return (TEMP, POWER)


@pytest.mark.parametrize(
    ("not_due", "held"),
    [
        pytest.param({POWER}, True, id="its-other-query-not-due"),
        pytest.param({TEMP}, True, id="its-own-query-not-due"),
        pytest.param({UP}, False, id="another-query-not-due"),
    ],
)
def test_a_detector_that_names_the_queries_its_alerts_are_judged_by_is_held_by_any_of_them(not_due, held):
    # Before, the service found judged_by only on four classes it listed: a new detector with judged_by
    # had its alerts judged by their own query alone, and resolved at a tick that read temperature only.
    config = AnomalyConfig(queries=[AnomalyQueryConfig(name=q, expr=q) for q in (TEMP, POWER, UP)])
    service = AnomalyService(config, [], FakeClock(), [PairDetector()])
    decide = service._not_due_alerts(View(time=0.0, not_due=frozenset(not_due)))
    assert decide("pair", TEMP) is held


def test_an_answer_on_a_coarser_step_than_asked_is_told_once_and_its_empty_steps_count_neither_way(
    prometheus, caplog
):
    # Asked on a 30 s step, answered on a 60 s one (downsampled data, or a recording rule evaluated every
    # minute): every other step of the grid is empty. Before, each empty step was read as a read matching
    # no series: the learned alert's pending count dropped at each one and it never raised, and the "matched
    # no series" warning came back every minute. Now one warning names the query and both steps.
    rng = np.random.default_rng(5)
    hot = FakeClock().time() + 60

    def temps(t: float) -> list[tuple[dict[str, str], float]]:
        if t % 60:
            return []
        vals = 60 + rng.normal(0, 0.5, len(GPUS))
        if t >= hot:
            vals[3] = 95.0
        return list(zip(GPUS, vals.tolist(), strict=True))

    prometheus.answers[TEMP] = temps
    prometheus.answers[UP] = lambda t: [(g, 1.0) for g in GPUS]  # on its step: the source is not empty
    caplog.set_level("INFO", logger="anomaly")
    with Run(
        prometheus,
        [TEMP, UP],
        detectors=["adaptive"],
        adaptive_metrics=[TEMP],
        thresholds=AnomalyThresholdConfig(volatility_k=0),
    ) as run:
        assert run.service.warm_up() > 0
        run.ticks(300)
    pending = run.service.cfg.pending_ticks
    assert [e[:3] for e in run.events] == [("GpuwardenAnomaly", GPUS[3]["UUID"], AlertStatus.FIRING)]
    assert run.events[0][3] == hot + (pending - 1) * 60  # its third answered step past the band
    told = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(told) == 1
    assert f"query {TEMP} answers on a 60s step, not the 30s asked" in told[0]
    assert run.source.coarse.seen == {TEMP: 60.0}
    registry = CollectorRegistry()
    registry.register(run.service.collector)
    labels = {"source": "prometheus", "query": TEMP}
    assert registry.get_sample_value("gpuwarden_anomaly_query_answer_step_seconds", labels) == 60.0
    assert (
        registry.get_sample_value("gpuwarden_anomaly_query_answer_step_seconds", {**labels, "query": UP})
        is None
    )


def test_a_lost_gpu_read_on_a_coarser_step_than_asked_stays_firing_between_the_answered_steps(prometheus):
    # gpu_up asked on a 30 s step and answered on a 60 s one. With immediate_resolve_after 1, before, each
    # empty step between two answered ones resolved GpuLost and the next answered step raised it again.
    back = FakeClock().time() + 240
    prometheus.answers[UP] = lambda t: [
        (g, 0.0 if g["UUID"] == "GPU-n2-0" and t < back else 1.0) for g in GPUS if t % 60 == 0
    ]
    prometheus.answers[TEMP] = lambda t: [(g, 60.0) for g in GPUS]
    with Run(prometheus, [UP, TEMP], detectors=["signatures"], immediate_resolve_after=1) as run:
        run.service.warm_up()  # as anomaly run does at start: the history shows the answers' step
        run.ticks(300)
    assert [e[:3] for e in run.events] == [
        ("GpuLost", "GPU-n2-0", AlertStatus.FIRING),
        ("GpuLost", "GPU-n2-0", AlertStatus.RESOLVED),
    ]
    assert run.events[1][3] == back  # the first answered step that saw it up


def test_a_lost_gpu_whose_host_answers_at_the_other_phase_of_a_coarser_step_stays_firing(prometheus, caplog):
    # Two hosts scraped every 60 s, 30 s apart, read at step 30 with a 30 s lookback: n1's series answer on
    # the minute, n2's and n3's on the half minute, so every step answers some series and nothing was seen
    # as coarse. Each series was absent at every other step: GpuLost (immediate_resolve_after 1) on n2
    # resolved at each minute and fired again at each half minute, 2 alerts a minute while the GPU was lost.
    back = FakeClock().time() + 240
    prometheus.answers[UP] = lambda t: [
        (g, 0.0 if g["UUID"] == "GPU-n2-0" and t < back else 1.0)
        for g in GPUS
        if (t % 60 == 0) == (g["Hostname"] == "n1")
    ]
    prometheus.answers[TEMP] = lambda t: [(g, 60.0) for g in GPUS]
    caplog.set_level("WARNING", logger="anomaly")
    with Run(prometheus, [UP, TEMP], detectors=["signatures"], immediate_resolve_after=1) as run:
        run.service.warm_up()
        run.ticks(300)
    assert [e[:3] for e in run.events] == [
        ("GpuLost", "GPU-n2-0", AlertStatus.FIRING),
        ("GpuLost", "GPU-n2-0", AlertStatus.RESOLVED),
    ]
    assert run.events[1][3] == min(t for t in np.arange(back, back + 60, STEP) if t % 60 == 30)
    assert run.source.coarse.seen == {}  # the query as a whole answers every step: none of its steps dropped
    assert run.source.coarse.series_seen == {UP: 60.0}
    told = [r.getMessage() for r in caplog.records if "answer on a 60s step" in r.getMessage()]
    assert len(told) == 1
    registry = CollectorRegistry()
    registry.register(run.service.collector)
    labels = {"source": "prometheus", "query": UP}
    assert registry.get_sample_value("gpuwarden_anomaly_query_answer_step_seconds", labels) == 60.0


def test_a_filter_answering_every_other_step_for_a_while_resolves_its_reads_after_its_last_answer(prometheus):
    # Read as a filter (`x > 0`) is: the GPU's pending row remap is answered at four steps a minute apart,
    # the steps between are legitimately empty. Before, three equal spacings made the query "answer on a
    # 60 s step": the step after the last answer was no longer read, and GpuRowRemapPending, held firing
    # through the flicker as it should, resolved a step late (N - 1 steps late for every Nth step).
    start = FakeClock().time()
    answered = {start + 60 * k for k in range(1, 5)}
    prometheus.answers[REMAP] = lambda t: [(GPUS[0], 1.0)] if t in answered else []
    prometheus.answers[TEMP] = lambda t: [(g, 60.0) for g in GPUS]  # the source is not empty
    with Run(prometheus, [REMAP, TEMP], detectors=["signatures"]) as run:
        run.ticks(600)
    resolve_after = run.service.cfg.immediate_resolve_after
    assert [e[:3] for e in run.events] == [
        ("GpuRowRemapPending", "GPU-n1-0", AlertStatus.FIRING),
        ("GpuRowRemapPending", "GPU-n1-0", AlertStatus.RESOLVED),
    ]
    assert run.events[0][3] == min(answered)
    assert run.events[1][3] == max(answered) + resolve_after * STEP  # its reads with no answer, every step
    assert run.source.coarse.seen == {}


def _filter_run(
    prometheus, start: float, blips: list[float]
) -> tuple[Run, float, list[tuple[AlertStatus, float]]]:
    """`REMAP > 0` beside TEMP (the source answers: GPU-n1-0 is read), warmed up and ticked until one
    resolve after the last blip: the run, its resolve delay and GPU-n1-0's (status, time) events."""
    prometheus.answers[TEMP] = lambda t: [(g, 60.0) for g in GPUS]
    with Run(
        prometheus, [REMAP, TEMP], exprs={REMAP: f"{REMAP} > 0"}, every=STEP, detectors=["signatures"]
    ) as run:
        after = run.service.cfg.immediate_resolve_after * STEP
        run.service.warm_up()
        run.ticks(blips[-1] - start + after + STEP)
    return run, after, [(e[2], e[3]) for e in run.events if e[1] == "GPU-n1-0"]


@pytest.mark.parametrize("always", [True, False], ids=["beside-series-passing-always", "alone"])
def test_a_filter_passed_for_a_step_every_half_hour_is_not_read_between(prometheus, always):
    # `ROW_REMAP_PENDING > 0`: GPU-n1-0's row remap pending shows for one step every 30 minutes (a flapping
    # field); GPU-n1-1's always, or none other. Three spacings of 60 steps made its step "seen": beside
    # GPU-n1-1 its last answer was read over the next 30 minutes, alone the query's steps between were not
    # read; either way GpuRowRemapPending fired at the fourth blip and stayed firing while Prometheus
    # answered nothing for it.
    start = FakeClock().time()
    blips = [start - 3570 + 1800 * k for k in range(4)]  # two in the warm-up's hour, the last a third spacing
    prometheus.answers[f"{REMAP} > 0"] = lambda t: [
        (g, 1.0) for g in GPUS[:2] if (always and g is GPUS[1]) or t in blips
    ]
    run, after, told = _filter_run(prometheus, start, blips)
    assert told == [
        (AlertStatus.FIRING, blips[2]),
        (AlertStatus.RESOLVED, blips[2] + after),
        (AlertStatus.FIRING, blips[3]),
        (AlertStatus.RESOLVED, blips[3] + after),
    ]
    assert (run.source.coarse.seen, run.source.coarse.series_seen) == ({}, {})


def test_a_filter_passing_every_quarter_hour_in_the_warm_up_is_not_read_after_it(prometheus):
    # As above, every 15 minutes: four blips in the warm-up's hour, its one read, the last just before the
    # start. Their three spacings made GPU-n1-0's step seen on 900 s there, and its last blip was read over
    # the first 20 reads: GpuRowRemapPending fired at the start with nothing in Prometheus.
    start = FakeClock().time()
    blips = [start - 2730 + 900 * k for k in range(5)]  # the fourth at start - 30, the fifth at start + 870
    prometheus.answers[f"{REMAP} > 0"] = lambda t: [(g, 1.0) for g in GPUS[:1] if t in blips]
    _, after, told = _filter_run(prometheus, start, blips)
    assert told == [
        (AlertStatus.FIRING, blips[-1]),
        (AlertStatus.RESOLVED, blips[-1] + after),
    ]


def test_a_prometheus_down_at_start_stays_down_at_the_ticks_that_ask_it_nothing(prometheus):
    # Never read, a query's window is the tick's own: the ticks between two steps ask nothing. Such a read
    # marked the source up after the warm-up had failed: /metrics and `anomaly run --ticks` said up until
    # the first tick on a step.
    prometheus.errors[TEMP] = (503, "down")
    with Run(prometheus, [TEMP], detectors=["signatures"]) as run:
        run.service.warm_up()
        registry = CollectorRegistry()
        registry.register(run.service.collector)
        for _ in range(round(STEP / EVERY)):
            run.ticks(EVERY)
            assert not run.source.health().up
            assert registry.get_sample_value("gpuwarden_anomaly_source_up", {"source": "prometheus"}) == 0


@pytest.mark.parametrize(
    ("error", "up"),
    [((400, "bad_data: parse error"), True), ((503, "unavailable"), False)],
    ids=["one-query-refused", "prometheus-failing"],
)
def test_a_query_refused_alone_on_its_step_leaves_the_source_up_while_an_outage_marks_it_down(
    prometheus, error, up
):
    # Power (step 30 s) refused by Prometheus (a typo: HTTP 400), temperature (step 120 s) read well: three
    # ticks in four that asked only power marked the whole source down, the fourth up again, and
    # gpuwarden_anomaly_source_up flapped though Prometheus answered every call. A 503 is still an outage
    # at the first tick that asks anything.
    prometheus.answers[TEMP] = lambda t: [(g, 60.0) for g in GPUS]
    with Run(prometheus, [TEMP, POWER], steps={TEMP: 120.0, POWER: STEP}) as run:
        run.service.warm_up()
        prometheus.errors[POWER] = error
        registry = CollectorRegistry()
        registry.register(run.service.collector)
        seen = set()
        for _ in range(round(120.0 / EVERY)):
            run.ticks(EVERY)
            if run.clock.time() % STEP == 0 and run.clock.time() % 120.0:  # asked power only
                seen.add(registry.get_sample_value("gpuwarden_anomaly_source_up", {"source": "prometheus"}))
        assert seen == {1.0 if up else 0.0}


def test_a_prometheus_down_is_logged_once_not_again_at_each_step_with_a_recovery_between(prometheus, caplog):
    # Step 30 s, ticks of 5 s: the five ticks between two steps ask nothing. Each such read was taken as
    # every query's recovery ("read again", though none was read), so each step logged the failure anew.
    prometheus.errors[TEMP] = (503, "down")
    with Run(prometheus, [TEMP]) as run:
        run.service.warm_up()
        with caplog.at_level("INFO", logger="anomaly.promql"):
            run.ticks(4 * STEP)
    said = [r.getMessage() for r in caplog.records if r.name == "anomaly.promql"]
    assert not [m for m in said if "read again" in m], said
    assert len([m for m in said if "queries failed" in m]) <= 1, said
