from __future__ import annotations

import math

import numpy as np
import pytest

from anomaly.changepoint import LevelShiftDetector
from anomaly.series import Step, View
from anomaly.service import AnomalyService
from anomaly.sources import CollectorSource
from gpuwarden.clock import FakeClock
from gpuwarden.config_anomaly import AnomalyConfig
from tests.anomaly.fakes import TableCollector


def scores(values: np.ndarray) -> np.ndarray:
    det = LevelShiftDetector()
    return np.array([det.update(np.array([0]), np.array([v]))[0] for v in values])


def _runs(hits: np.ndarray) -> list[np.ndarray]:
    """The runs of consecutive sample numbers in ``hits``."""
    return [r for r in np.split(hits, np.flatnonzero(np.diff(hits) != 1) + 1) if r.size]


def test_a_lasting_small_latency_step_reads_above_one_from_its_detection_while_its_level_is_learnt():
    """Before, it read above 1 at its detection only, and ``anomaly run`` raised no alert: a learned
    detector's alert needs ``pending_ticks`` (3) reads in a row above 1."""
    rng = np.random.default_rng(0)
    values = 100 + rng.normal(0, 2, 400)
    values[200:] += 6  # about three noise widths: too small for a spike detector
    s = scores(values)
    assert (s[:200] <= 1).all()
    hits = np.flatnonzero(s > 1)
    assert 200 <= hits[0] < 230 and hits[-1] < hits[0] + LevelShiftDetector().warmup
    assert max(r.size for r in _runs(hits)) >= 3


def test_noise_alone_never_reaches_the_threshold():
    rng = np.random.default_rng(1)
    assert (scores(50 + rng.normal(0, 5, 2000)) <= 1).all()


def test_only_latency_and_step_time_queries_are_scored_by_default():
    det = LevelShiftDetector()
    assert det.matches("training_step_time_seconds")
    assert det.matches("http_request_latency_p99")
    assert not det.matches("DCGM_FI_DEV_GPU_TEMP")


def _latency_view(at: float, values: list[float]) -> View:
    ids = np.arange(len(values))
    raw = np.array(values)
    step = Step("p99_latency", at, ids, [{"model": str(i)} for i in ids], raw, raw, raw * np.nan, "gauge")
    return View(time=at, steps=[step], latest={"p99_latency": step})


def test_series_that_are_nan_before_their_first_value_are_scored_zero_not_a_detector_failure():
    det = LevelShiftDetector()
    (f,) = det.detect(_latency_view(0.0, [math.nan, math.nan]))  # idle: histogram_quantile gives NaN
    assert f.score.tolist() == [0.0, 0.0]
    (f,) = det.detect(_latency_view(30.0, [1.0, math.nan]))
    assert f.score.tolist() == [0.0, 0.0]
    assert f.yhat is not None and f.yhat[0] == 1.0 and math.isnan(f.yhat[1])  # nothing learned: no band


def _views_of_a_shift(seed: int, per_tick: int = 1) -> list[View]:
    """Two latency series (one shifts up at sample 200, one down at 300), ``per_tick`` samples a tick."""
    rng = np.random.default_rng(seed)
    a = 100 + rng.normal(0, 2, 480)
    b = 50 + rng.normal(0, 1, 480)
    a[200:] += 6
    b[300:] -= 4
    ids = np.arange(2)
    views = []
    for start in range(0, 480, per_tick):
        steps = []
        for j in range(start, start + per_tick):
            raw = np.array([a[j], b[j]])
            labels = [{"model": "a"}, {"model": "b"}]
            steps.append(Step("p99_latency", float(j), ids, labels, raw, raw, raw * np.nan, "gauge"))
        views.append(View(time=steps[-1].at, steps=steps, latest={"p99_latency": steps[-1]}))
    return views


def test_level_shift_writes_a_band_and_scores_above_one_exactly_when_the_value_is_outside_it():
    det = LevelShiftDetector()
    banded = hits = 0
    for view in _views_of_a_shift(seed=2):
        (f,) = det.detect(view)
        assert f.lower is not None and f.upper is not None and f.yhat is not None
        known = np.isfinite(f.lower)
        outside = (f.value < f.lower) | (f.value > f.upper)
        assert ((f.score > 1.0) == (outside & known)).all()
        assert (f.lower[known] < f.yhat[known]).all() and (f.yhat[known] < f.upper[known]).all()
        banded += int(known.sum())
        hits += int((f.score > 1.0).sum())
    assert hits >= 2  # both shifts were found, so both sides of the equivalence were checked
    # A band from the end of the warm-up on: while the new level after each shift is learnt (its warm-up), the
    # band about the level before it (these shifts last), but for the 3 samples after each crossing one.
    assert banded == 2 * (480 - det.warmup) - 2 * 3


def test_with_several_samples_a_tick_the_band_is_that_of_the_sample_whose_score_is_reported():
    det = LevelShiftDetector()
    hits = 0
    for view in _views_of_a_shift(seed=2, per_tick=4):
        (f,) = det.detect(view)
        assert f.lower is not None and f.upper is not None
        outside = (f.value < f.lower) | (f.value > f.upper)
        assert ((f.score > 1.0) == outside).all()
        hits += int((f.score > 1.0).sum())
    assert hits >= 2


@pytest.mark.parametrize("seed", range(10))
def test_a_spike_is_found_once_not_again_as_a_shift_back_nor_held_as_a_shift(seed: int):
    """One sample 20 noise widths up: before, the baseline restarted at that sample and the next one, back at
    the level, read as a shift down. The samples after it are back at the level: no two reads in a row above
    1, so no alert."""
    values = 100 + np.random.default_rng(seed).normal(0, 2, 1000)
    values[300] += 40
    hits = np.flatnonzero(scores(values) > 1)
    assert hits[0] == 300 and (hits < 300 + LevelShiftDetector().warmup).all()
    assert max(r.size for r in _runs(hits)) == 1


@pytest.mark.parametrize("seed", range(10))
def test_after_a_shift_the_new_level_is_learnt_from_the_samples_after_it(seed: int):
    """A step of five noise widths is found once, then read in shift: before, the baseline restarted at the
    one sample that crossed (113.4 where the new level is 110: seeds 2, 4, 5 and 8), and the level read as a
    shift back. It reads above 1 while the new level is learnt (its warm-up), not after."""
    values = 100 + np.random.default_rng(seed).normal(0, 2, 4032)
    values[2000:] += 10
    hits = np.flatnonzero(scores(values) > 1)
    assert 2000 <= hits[0] < 2010 and hits[-1] < hits[0] + LevelShiftDetector().warmup


def test_anomaly_run_raises_no_level_shift_on_spikes_among_zeros():
    """A latency that is mostly 0 (Poisson with mean 0.05: a queue's wait, idle) for 1,000 reads on 8 GPUs:
    nothing happens. Before, a spike passed the threshold, the baseline restarted at it, the 0 after it read
    as a shift back, the baseline restarted at 0 and its winsorised scale shrank about it, so that every
    later spike and the 0 after it were shifts: three in a row raised an alert (18 here)."""
    clock = FakeClock(1_767_571_200.0)
    collector = TableCollector()
    cfg = AnomalyConfig(detectors=["level_shift"], infer_every_seconds=300.0)
    service = AnomalyService(cfg, [CollectorSource([collector], clock)], clock)
    values = np.random.default_rng(7).poisson(0.05, (1000, 8)).astype(float)
    labels = [{"UUID": f"GPU-{g}", "Hostname": "n1", "gpu": str(g)} for g in range(8)]
    raised = []
    for row in values.tolist():
        collector.set("queue_wait_latency_seconds", list(zip(labels, row, strict=True)))
        clock.advance(300.0)
        raised += service.infer().raised
    assert raised == []


def _latency_service(clock: FakeClock, collector: TableCollector) -> AnomalyService:
    cfg = AnomalyConfig(detectors=["level_shift"], infer_every_seconds=30.0)
    return AnomalyService(cfg, [CollectorSource([collector], clock)], clock)


def _run_latency(values: np.ndarray) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """``values`` (reads by GPUs) through ``anomaly run``'s level-shift detector, one tick a 30 s read: the
    read and GPU of each alert raised, and of each resolved."""
    clock = FakeClock(1_767_571_200.0)
    collector = TableCollector()
    service = _latency_service(clock, collector)
    labels = [{"UUID": f"GPU-{g}", "Hostname": "n1", "gpu": str(g)} for g in range(values.shape[1])]
    raised, resolved = [], []
    for i, row in enumerate(values.tolist()):
        collector.set("inference_latency_seconds", list(zip(labels, row, strict=True)))
        clock.advance(30.0)
        result = service.infer()
        raised += [(i, a.labels["UUID"]) for a in result.raised]
        resolved += [(i, a.labels["UUID"]) for a in result.resolved]
    return raised, resolved


def test_anomaly_run_raises_a_lasting_latency_step_once_and_resolves_it_once_the_new_level_is_learnt():
    """Ten GPUs whose latency N(100, 2) steps up by 6 (three noise widths) after 2 hours at 30 s: before, ten
    detections and no alert (the score was above 1 at the detection only, and an alert needs 3 reads in a
    row). Each raises one alert within a few reads of its detection, resolved once the new level is learnt."""
    values = 100 + np.random.default_rng(3).normal(0, 2, (480, 10))
    values[240:] += 6
    raised, resolved = _run_latency(values)
    assert sorted(g for _, g in raised) == [f"GPU-{g}" for g in range(10)]
    assert all(240 <= i < 240 + 30 for i, _ in raised)
    assert sorted(g for _, g in resolved) == sorted(g for _, g in raised)


def test_anomaly_run_raises_nothing_for_a_latency_spike():
    """One read 10 noise widths up on ten GPUs, back at once: the shift found at it ends at the next read."""
    values = 100 + np.random.default_rng(4).normal(0, 2, (480, 10))
    values[240] += 20
    values[360] += 40
    assert _run_latency(values) == ([], [])


def test_runs_of_small_counts_on_a_series_mostly_0_are_no_shift_that_raises():
    """Poisson(0.2) counts (a queue's wait, idle), 2 days at 30 s on 100 series: a 2 or 3 is found as a shift,
    and a run of 1s after it is past any band a scale learnt of mostly 0s gives. Judged from the first sample
    after the shift, 5 of those runs read above 1 three times in a row (an alert); none do."""
    det = LevelShiftDetector()
    values = np.stack([np.random.default_rng(s).poisson(0.2, 5760) for s in range(100)], axis=1)
    ids = np.arange(100)
    run = np.zeros(100, np.int64)
    for row in values.astype(float):
        run = np.where(det.update(ids, row) > 1.0, run + 1, 0)
        assert (run < 3).all()


def test_a_series_in_shift_goes_on_in_shift_after_its_state_is_taken_up():
    """What a snapshot keeps (``state``) holds the level before the shift: taken up mid-shift, the detector
    reads the samples after as the one that kept running does, its alert's reads above 1 included."""
    values = 100 + np.random.default_rng(5).normal(0, 2, 300)
    values[200:] += 6
    ids = np.array([0])
    running = LevelShiftDetector()
    s = np.array([running.update(ids, np.array([v]))[0] for v in values[:210]])
    assert (s[200:] > 1).any()  # found: the series is in shift now
    taken = LevelShiftDetector()
    taken.restore(running.state())
    after = [
        (running.update(ids, np.array([v]))[0], taken.update(ids, np.array([v]))[0]) for v in values[210:]
    ]
    assert all(a == b for a, b in after) and max(a for a, _ in after) > 1
