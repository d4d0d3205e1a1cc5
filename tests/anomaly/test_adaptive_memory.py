"""The adaptive detector's state per series (issue 4: at most 1 KB): each series holds one row of one model,
a model without seasonality holds no seasonal buckets, and the bytes it says it holds count every string."""

from __future__ import annotations

import sys

import numpy as np

from anomaly.adaptive import AdaptiveDetector
from anomaly.series import CounterRates, SeriesIndex, build_view
from anomaly.sources import Frame
from anomaly.thresholds import AdaptiveThresholds, ThresholdParams
from gpuwarden.config_anomaly import AnomalyConfig

GPUS = 1500
# Two metrics with band floors of their own (two models) and three of the default settings (one more).
METRICS = ("DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_SM_CLOCK", "job_a", "job_b", "job_c")


def _fed(det: AdaptiveDetector, reads: int = 3) -> int:
    """``reads`` reads of every metric of ``GPUS`` GPUs (their labels shared by the metrics, as an exporter's
    one GPU's); the series read."""
    labels = [{"gpu": str(i % 8), "UUID": f"GPU-{i:04d}", "Hostname": f"n{i // 8}"} for i in range(GPUS)]
    index, rates, t = SeriesIndex(), CounterRates(), 1_767_225_600.0
    rng = np.random.default_rng(0)
    for _ in range(reads):
        t += 30.0
        frames = [Frame(name, labels, np.array([t]), 100.0 + rng.normal(0, 1, (GPUS, 1))) for name in METRICS]
        det.detect(build_view(frames, index, rates, t))
    return len(index)


def test_each_series_holds_one_row_of_the_one_model_that_scores_it():
    """Each model's arrays were indexed by the service's series id: a model held a row for every id up to the
    largest it scored (the default model, of the metrics read last, one for every series), grown by doubling:
    here 13,500 rows for 7,500 series; 2.5 a series on bench_anomaly's fleet, 2.4 KB where 993 bytes were
    said."""
    det = AdaptiveDetector(AnomalyConfig(adaptive_metrics=["*"]))
    series = _fed(det)
    assert len(det._models) == 3
    assert sum(m.capacity for m in det._models.values()) == series == len(METRICS) * GPUS
    row = max(m.state_bytes_per_series() for m in det._models.values())
    assert det.state_bytes() <= series * (row + 40)


def test_a_model_without_seasonality_holds_no_seasonal_buckets():
    """The service's models (``adaptive_seasonality`` off by default) held 24 + 168 buckets a series (768
    bytes of its 961) that nothing read."""
    plain = AdaptiveThresholds(ThresholdParams.from_config(seasonality=False), capacity=100)
    seasonal = AdaptiveThresholds(ThresholdParams.from_config(), capacity=100)
    assert plain.day.shape == plain.week.shape == (100, 0)
    assert seasonal.state_bytes_per_series() - plain.state_bytes_per_series() == 4 * (24 + 168)
    served = AdaptiveDetector(AnomalyConfig(adaptive_metrics=["job_a"])).model_for("job_a")
    assert served.state_bytes_per_series() < 256


def test_the_bytes_it_holds_count_each_gpus_string_once_and_it_makes_none_a_series():
    """Each series' parking key (its GPU and metric) was a string of its own, 59 bytes a series that
    ``parking_bytes`` left out; a GPU's series now share its label's string, counted once."""
    det = AdaptiveDetector(AnomalyConfig(adaptive_metrics=["*"]))
    series = _fed(det)
    held = {id(s): s for s in det._gpu if s is not None}
    assert len(held) == GPUS
    strings = sum(sys.getsizeof(s) for s in held.values())
    assert det.parking_bytes() >= sys.getsizeof(det._query) + sys.getsizeof(det._gpu) + strings
    assert det.parking_bytes() <= series * 40
