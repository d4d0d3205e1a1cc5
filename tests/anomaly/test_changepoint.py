from __future__ import annotations

import math

import numpy as np

from anomaly.changepoint import LevelShiftDetector
from anomaly.series import Step, View


def scores(values: np.ndarray) -> np.ndarray:
    det = LevelShiftDetector()
    return np.array([det.update(np.array([0]), np.array([v]))[0] for v in values])


def test_a_lasting_small_step_in_latency_is_found_once():
    rng = np.random.default_rng(0)
    values = 100 + rng.normal(0, 2, 400)
    values[200:] += 6  # about three noise widths: too small for a spike detector
    s = scores(values)
    assert (s[:200] <= 1).all()
    hits = np.flatnonzero(s > 1)
    assert len(hits) == 1 and 200 <= hits[0] < 230


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
