"""One finite but huge reading (no data_range on its query) leaves no detector's state past a float's range:
the adaptive thresholds' fast error overflowed float32 (1e40: inf, then inf - inf, NaN for good) and the
thermal line's moments overflowed float64 (a power of 1e160), each series' scores NaN from then on and its
faults unraised."""

from __future__ import annotations

import numpy as np

from anomaly.thermal import ThermalDetector
from anomaly.thresholds import AdaptiveThresholds
from anomaly.univariate import Series, score_many
from tests.anomaly.thermal_gpus import GPUS, Gpus


def test_one_huge_sample_leaves_the_adaptive_scores_finite_and_decaying():
    rng = np.random.default_rng(3)
    det, ids, t = AdaptiveThresholds(), np.arange(4), 1_767_225_600.0
    for k in range(200):
        det.update(ids, 60.0 + rng.normal(0, 0.5, 4), t + 30.0 * k)
    wild = 60.0 + rng.normal(0, 0.5, 4)
    wild[2] = 1e40
    det.update(ids, wild, t + 30.0 * 200)
    scores = [det.update(ids, 60.0 + rng.normal(0, 0.5, 4), t + 30.0 * k).score[2] for k in range(201, 400)]
    assert np.isfinite(scores).all()
    assert scores[-1] < scores[0]  # the aftermath decays, as any spike's


def test_one_huge_value_in_a_scored_csv_leaves_the_scores_after_it_finite():
    # `anomaly score` scores one series in plain floats (anomaly.scalar), its fast error in array("f").
    t = 1_767_225_600.0 + 300.0 * np.arange(600)
    values = 20.0 + np.random.default_rng(5).normal(0, 0.5, 600)
    values[300] = 1e40
    (scored,) = score_many([Series("one", t, values)])
    assert np.isfinite(scored.score).all()


def test_one_huge_power_reading_leaves_the_thermal_line_judging_the_gpu():
    rng = np.random.default_rng(4)
    gpus, det = Gpus(), ThermalDetector()
    busy = np.full(len(GPUS), 400.0)
    for _ in range(120):
        det.detect(gpus.step(busy, rng))
    glitch = busy.copy()
    glitch[2] = 1e160
    det.detect(gpus.step(busy, rng, reported=glitch))
    for _ in range(60):
        score = det.detect(gpus.step(busy, rng))[0].score
    assert np.isfinite(score).all() and score.max() <= 1.0
    gpus.resistance[2] = 0.065 * 1.6  # its cooler fails
    flagged = [bool(det.detect(gpus.step(busy, rng))[0].score[2] > 1.0) for _ in range(20)]
    assert any(flagged)
