"""Answers on a coarser step than asked, and filters passed now and then, where a query is not due."""

from __future__ import annotations

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from gpuwarden.clock import FakeClock
from gpuwarden.config_anomaly import AnomalyThresholdConfig
from gpuwarden.model import AlertStatus
from tests.anomaly.due_runs import GPUS, REMAP, STEP, TEMP, UP, Run


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
