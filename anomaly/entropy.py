"""Windowed relative entropy: a change in a series' value distribution, vectorised across series.

The technique is Wang et al.'s (2011, "Statistical techniques for online anomaly detection in data
centers"), which NAB ships as its ``relativeEntropy`` detector; this is our own causal version of it:

* After ``warmup`` samples, the range those samples showed is cut into ``bins`` equal bins, plus one bin
  below it and one above (NAB's version takes the range of the whole file, which a live detector cannot).
* Each sample, the histogram of the last ``window`` values is compared with every distribution the series
  has shown before (its "models") by relative entropy. ``2 * window * KL`` is chi-squared with
  ``bins + 1`` degrees of freedom under the hypothesis that the window comes from that model, so a model
  explains the window when the statistic is below the ``significance`` quantile.
* The nearest model that explains the window counts it; when none does, the window becomes a new model.
  The anomaly score is the statistic for the nearest model over that quantile: >1 means no distribution
  seen before explains the last ``window`` values (NAB's version with its ``c_th`` of 1).
* At the end of the warm-up every window of the warm-up is learned in order, and the quiet spell starts
  at the last one that was new, so a distribution the warm-up showed does not raise later (learning only
  the warm-up's last window raised once after the warm-up on most series, by construction).
* Like ``RangeBreakout``, only an anomalous sample after ``rearm`` quiet samples raises an alert.

This catches what the adaptive band and the range do not: a value distribution that changes inside the
known range (a series that starts to oscillate, to sit at a level it visited only briefly, to go quiet).

Not part of the default univariate detector: cross-validated over the NAB files here (settings chosen
without the files scored) it did not raise the score; ``benchmarks/nab_cv.py`` and its README section
give the figures. Defaults: ``window`` and ``bins`` are the published ones (52, 5); ``significance`` and
``rearm`` are the best of that harness's grid on all files.

State per series: the warm-up's values, the last ``window`` values, the current histogram and up to
``max_models`` models (float32), about 5 KB; it serves the CSV scorer and the NAB evaluation, not the
fleet-wide service tick. Like the other detectors, ``update`` takes each id at most once per call.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import chdtri

from anomaly.steps import NEVER, FloatArray, IntArray, SeriesArrays, StepScores, rearmed

SCORE_CAP = 1000.0
_SEEN_MAX = int(np.iinfo(np.int32).max)  # a model's count of windows saturates here (read once)


@dataclass(frozen=True, slots=True)
class EntropyParams:
    """Window and bins as published; the rest the best of ``benchmarks/nab_cv.py``'s grid on all files."""

    window: int = 52
    bins: int = 5
    significance: float = 0.001
    warmup: int = 300
    rearm: int = 1000
    max_models: int = 64

    def __post_init__(self) -> None:
        if self.window < 2 or self.bins < 1 or self.max_models < 1:
            raise ValueError("window >= 2, bins >= 1 and max_models >= 1 are required")
        if not 0.0 < self.significance < 1.0:
            raise ValueError("significance must be in (0, 1)")
        if self.warmup < self.window:
            raise ValueError("warmup must be at least one window")


class RelativeEntropy(SeriesArrays):
    """Streaming windowed relative-entropy detector over many series (ids are small non-negative ints)."""

    FIELDS = (
        ("count", 0),
        ("early", 0.0),
        ("recent", 0.0),
        ("hist", 0.0),
        ("models", 0.0),
        ("seen", 0),
        ("low", np.inf),
        ("high", -np.inf),
        ("since", NEVER),
    )

    def __init__(self, params: EntropyParams | None = None, capacity: int = 1024) -> None:
        self.params = p = params or EntropyParams()
        self._levels = p.bins + 2
        self._threshold = float(chdtri(self._levels - 1, p.significance))  # chi2.isf, without scipy.stats
        self.early = np.zeros((0, p.warmup))
        self.recent = np.zeros((0, p.window))
        self.hist = np.zeros((0, self._levels))
        self.models = np.zeros((0, p.max_models, self._levels), np.float32)
        self.seen = np.zeros((0, p.max_models), np.int32)
        self.low = np.zeros(0)
        self.high = np.zeros(0)
        self.count = np.zeros(0, np.int64)
        self.since = np.zeros(0, np.int64)
        self._grow(capacity)

    def _level(self, ids: IntArray, values: FloatArray) -> IntArray:
        """Bin index per value: 0 below the warm-up's range, 1..bins inside it, bins + 1 above."""
        low, high = self.low[ids], self.high[ids]
        span = np.maximum(high - low, np.maximum(np.abs(low), 1.0) * 1e-12)
        inside = np.clip(np.floor((values - low) / span * self.params.bins), 0, self.params.bins - 1) + 1
        level = np.where(values < low, 0, np.where(values > high, self.params.bins + 1, inside))
        return level.astype(np.int64)

    def update(self, ids: IntArray, values: FloatArray) -> StepScores:
        """One sample per id: score >1 when no distribution seen before explains the window.

        NaN samples are skipped (score 0, no state change)."""
        score, raised, rows, series, x = self._begin(ids, values)
        if not rows.size:
            return StepScores(ids=ids, score=score, raised=raised)
        p = self.params
        n = self.count[series]
        slot = n % p.window
        leaving = self.recent[series, slot]
        self.recent[series, slot] = x
        self.count[series] = n + 1

        warming = n < p.warmup
        if warming.any():
            w = series[warming]
            self.early[w, n[warming]] = x[warming]
            self.low[w] = np.minimum(self.low[w], x[warming])
            self.high[w] = np.maximum(self.high[w], x[warming])
        ready = n + 1 == p.warmup
        if ready.any():
            self._learn_warmup(series[ready])
        live = n >= p.warmup
        if live.any():
            s = series[live]
            at = np.arange(s.size)
            self.hist[s, self._level(s, leaving[live])] -= 1.0
            self.hist[s, self._level(s, x[live])] += 1.0
            surprise = self._compare(s, at)
            anomalous = surprise > 1.0
            since = self.since[s]
            raised[rows[live]], self.since[s] = rearmed(anomalous, since, p.rearm)
            score[rows[live]] = np.minimum(surprise, SCORE_CAP)
        return StepScores(ids=ids, score=score, raised=raised)

    def _learn_warmup(self, series: IntArray) -> None:
        """Learn every window of the warm-up in order; the quiet spell starts after the last new one."""
        p = self.params
        k = series.size
        levels = self._level(np.repeat(series, p.warmup), self.early[series].ravel()).reshape(k, p.warmup)
        running = np.zeros((k, p.warmup + 1, self._levels))
        running[:, 1:, :] = np.cumsum(levels[:, :, None] == np.arange(self._levels), axis=1)
        at = np.arange(k)
        last_new = np.full(k, -1, np.int64)
        for end in range(p.window, p.warmup + 1):
            self.hist[series] = running[:, end] - running[:, end - p.window]
            if end == p.window:
                self.models[series, 0] = self._distribution(self.hist[series])
                self.seen[series, 0] = 1
                continue
            new = self._compare(series, at) > 1.0
            last_new = np.where(new, end - 1, last_new)
        self.since[series] = np.where(last_new >= 0, p.warmup - 1 - last_new, NEVER)

    def _distribution(self, hist: FloatArray) -> FloatArray:
        """Histogram -> probabilities, with half a count per bin so no bin is ever zero."""
        return (hist + 0.5) / (self.params.window + 0.5 * self._levels)

    def _compare(self, series: IntArray, at: IntArray) -> FloatArray:
        """Match each window to its models, learn from it, and return its statistic over the threshold
        for the nearest model (>1: no model explained it, and it became a new one)."""
        p = self.params
        current = self._distribution(self.hist[series])
        models = self.models[series].astype(np.float64)
        seen = self.seen[series]
        with np.errstate(divide="ignore", invalid="ignore"):
            kl = (current[:, None, :] * np.log(current[:, None, :] / models)).sum(axis=2)
        statistic = 2.0 * p.window * np.where(seen > 0, kl, np.inf)
        nearest = statistic.argmin(axis=1)
        closest = statistic[at, nearest]
        explained = closest < self._threshold
        # Saturate before adding: ``+= 1`` in int32 wraps to -2**31, which reads as an empty slot.
        counted = series[explained], nearest[explained]
        self.seen[counted] = np.minimum(self.seen[counted], _SEEN_MAX - 1) + 1
        fresh = ~explained
        if fresh.any():
            # A new model takes an empty slot, or else the one that explained the fewest windows.
            target = np.where(seen[fresh] == 0, -1, seen[fresh]).argmin(axis=1)
            self.models[series[fresh], target] = current[fresh]
            self.seen[series[fresh], target] = 1
        surprise: FloatArray = closest / self._threshold
        return surprise
