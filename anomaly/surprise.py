"""Prediction-error surprise with a Numenta-style anomaly likelihood, vectorised across series.

A detector that looks at how well a series can be predicted rather than at where its values lie:

* A one-step predictor (an EWMA of the values, weight ``predict``; 1, the last value, was best on the NAB
  tune split against 0.2 and 0.5) gives each sample an error; the error
  over its own slow average size (an EWMA of absolute errors, weight ``1 / scale``) becomes a raw score in
  ``[0, 1)`` by ``1 - exp(-|error| / size)``, so no single error can dominate what follows.
* The anomaly likelihood is the one Ahmad et al. describe for HTM ("Unsupervised real-time anomaly
  detection for streaming data", Neurocomputing 2017): the mean of the last ``short`` raw scores is compared
  with the mean and standard deviation that short mean has had over the long run (here exponentially
  weighted with weight ``1 / long``, so the state stays a few numbers per series), and the Gaussian tail
  probability of the short mean now is the surprise. It is anomalous when the tail is below ``tail`` (the
  paper's epsilon): a run of errors larger than the series usually makes, which one large error is not.
* Like ``RangeBreakout``, only an anomalous sample after ``rearm`` quiet samples raises an alert, and
  nothing raises during the first ``warmup`` samples.

It aims at what the value-based parts miss: a series whose pattern breaks while its values stay inside
the band and the range (a noisy series that goes smooth or ragged, a periodic one that loses its rhythm).

Not part of the default detector: ``benchmarks/nab_cv.py --candidate surprise`` cross-validates it OR-ed
with the default over the NAB files here; the README's NAB section gives the figures. Everything is causal:
a sample's score depends only on the samples before it and itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import ndtri

from anomaly.replay import replay_alerts
from anomaly.steps import (
    NEVER,
    BoolArray,
    FloatArray,
    IntArray,
    SeriesArrays,
    StepScores,
    rearmed,
)

SCORE_CAP = 1000.0


@dataclass(frozen=True, slots=True)
class SurpriseParams:
    """``short`` as Ahmad et al. publish it (10; their ``tail`` is 1e-5); ``tail`` and ``rearm`` the best of
    ``benchmarks/nab_cv.py --candidate surprise``'s grid on all files; the rest fixed on the tune split."""

    predict: float = 1.0
    scale: int = 500
    short: int = 10
    long: int = 1000
    tail: float = 1e-3
    warmup: int = 300
    rearm: int = 1000

    def __post_init__(self) -> None:
        if not 0.0 < self.predict <= 1.0:
            raise ValueError("predict must be in (0, 1]")
        if self.scale < 1 or self.short < 1 or self.long < self.short:
            raise ValueError("scale >= 1, short >= 1 and long >= short are required")
        if not 0.0 < self.tail < 0.5:
            raise ValueError("tail must be in (0, 0.5)")
        if self.warmup < self.short:
            raise ValueError("warmup must be at least short")


class PredictionSurprise(SeriesArrays):
    """Streaming prediction-error likelihood detector over many series (ids are small non-negative ints)."""

    FIELDS = (
        ("count", 0),
        ("level", 0.0),
        ("size", 0.0),
        ("mean", 0.0),
        ("var", 0.0),
        ("recent", 0.0),
        ("since", NEVER),
    )

    def __init__(self, params: SurpriseParams | None = None, capacity: int = 1024) -> None:
        self.params = p = params or SurpriseParams()
        self._z = float(ndtri(1.0 - p.tail))
        self.level = np.zeros(0)
        self.size = np.zeros(0)
        self.mean = np.zeros(0)
        self.var = np.zeros(0)
        self.recent = np.zeros((0, p.short))
        self.count = np.zeros(0, np.int64)
        self.since = np.zeros(0, np.int64)
        self._grow(capacity)

    def update(self, ids: IntArray, values: FloatArray) -> StepScores:
        """One sample per id: score >1 when the recent errors are less likely than ``tail``.

        NaN samples are skipped (score 0, no state change)."""
        score, raised, rows, s, x = self._begin(ids, values)
        if not rows.size:
            return StepScores(ids=ids, score=score, raised=raised)
        p = self.params
        n = self.count[s]
        first = n == 0
        level = np.where(first, x, self.level[s])
        error = np.abs(x - level)
        # The error's usual size: a plain average until ``scale`` samples, exponentially weighted after.
        weight = 1.0 / np.minimum(n + 1, p.scale)
        size = np.where(first, 0.0, self.size[s] + weight * (error - self.size[s]))
        floor = np.maximum(np.abs(level), 1.0) * 1e-9
        raw = np.where(size > floor, 1.0 - np.exp(-error / np.maximum(size, floor)), 0.0)
        # The short mean's long-run mean and variance, before this sample joins them.
        mean, var = self.mean[s], self.var[s]
        slot = n % p.short
        self.recent[s, slot] = raw
        short = self.recent[s].sum(axis=1) / np.minimum(n + 1, p.short)
        spread = np.sqrt(np.maximum(var, 1e-12))
        surprise = np.maximum(short - mean, 0.0) / (self._z * spread)
        live = n >= p.warmup
        anomalous = live & (surprise > 1.0)
        since = self.since[s]
        raised[rows], self.since[s] = rearmed(anomalous, since, p.rearm)
        score[rows] = np.where(live, np.minimum(surprise, SCORE_CAP), 0.0)
        learn = 1.0 / np.minimum(n + 1, p.long)
        delta = short - mean
        self.mean[s] = mean + learn * delta
        self.var[s] = (1.0 - learn) * (var + learn * delta * delta)
        self.level[s] = level + p.predict * (x - level)
        self.size[s] = size
        self.count[s] = n + 1
        return StepScores(ids=ids, score=score, raised=raised)


def raise_many(values: list[FloatArray], params: SurpriseParams | None = None) -> list[BoolArray]:
    """Alerts per series when each series' ``i``-th sample arrives at step ``i`` (as ``score_many`` does)."""
    return replay_alerts(PredictionSurprise(params, capacity=max(len(values), 1)).update, values)
