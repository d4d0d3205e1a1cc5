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

from gpuwarden.clock import FakeClock
from gpuwarden.config_anomaly import AnomalyThresholdConfig
from gpuwarden.model import AlertStatus
from tests.anomaly.due_runs import EVERY, GPUS, POWER, REMAP, SM, STEP, TEMP, UP, UTIL, Run


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
