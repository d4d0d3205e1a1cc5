"""The ``level_shift`` detector: two-sided CUSUM per series for latency and step-time queries.

A level shift is a small move that lasts: each sample's standardised residual against a slow baseline is
accumulated (minus a drift allowance) until the sum passes ``h``. After a detection the series is learnt
afresh from the sample that passed, its warm-up included, so the shift is reported once and the new normal is
the mean of the samples after it, not that one sample of it.

The band it writes back is the decision itself: with baseline ``m``, scale ``s`` and the sums ``S+``/``S-``
carried from the samples before, the next sample ``x`` passes ``h`` exactly when
``x > m + s (h + drift - S+)`` or ``x < m - s (h + drift - S-)``. So ``yhat_lower``/``yhat_upper`` are those
two edges: wide after a quiet spell (``h + drift`` scales), and closing in on the side where small moves
have been accumulating, which is how a lasting small shift leaves a band no single sample of it would.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from anomaly.detectors import Findings
from anomaly.series import View
from anomaly.steps import SeriesArrays, unlearned
from anomaly.thresholds import FloatArray, IntArray
from gpuwarden.model import RecommendedAction

# The count a series restarts at after a detected shift: the sample that crossed is the new level's first,
# and the next samples are averaged into its mean and scale (unwinsorised, unscored: a warm-up) as a new
# series' are. Restarted at that one sample with the old count, the baseline moved from it at ``alpha``,
# winsorised: where it was a high sample of the new level (N(100, 2) up 10: 113.4), the level itself read as a
# shift back 10-15 samples later; where it was a spike (a 4 among Poisson(0.2) counts), the next sample, 0,
# read as one, the mean restarted at 0, the winsorised scale shrank towards 0 about it, and every later 1 and
# the 0 after it were shifts: three in a row raised an alert, 28 a series in 14 days at a 5-minute step.
_RESTART = 1


class LevelShiftDetector(SeriesArrays):
    """Vectorised CUSUM; state in arrays indexed by series id."""

    name = "level_shift"
    FIELDS = (("mean", 0.0), ("dev", 0.0), ("pos", 0.0), ("neg", 0.0), ("count", 0))

    def __init__(
        self,
        query_patterns: Sequence[str] = ("step_time", "latency", "duration"),
        *,
        alpha: float = 0.01,
        drift: float = 1.0,
        h: float = 12.0,
        warmup: int = 30,
    ) -> None:
        self.patterns = tuple(query_patterns)
        self.alpha, self.drift, self.h, self.warmup = alpha, drift, h, warmup
        self.mean = np.zeros(0)
        self.dev = np.zeros(0)
        self.pos = np.zeros(0)
        self.neg = np.zeros(0)
        self.count = np.zeros(0, np.int64)

    def matches(self, query: str) -> bool:
        """Whether this detector scores ``query``."""
        return any(p in query for p in self.patterns)

    def update(self, ids: IntArray, x: FloatArray) -> FloatArray:
        """Feed one sample per id (finite only); return scores (>1: a shift was found at this sample)."""
        return self.judge(ids, x)[0]

    def judge(self, ids: IntArray, x: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
        """Feed one sample per id (finite only); return the scores, the baseline each sample was judged
        against, and the band's lower and upper edges (NaN during the warm-up): score >1 exactly outside."""
        if ids.size:
            self._grow(int(ids.max()) + 1)
        n = self.count[ids]
        fresh = n == 0
        mean = np.where(fresh, x, self.mean[ids])
        dev = self.dev[ids]
        scale = np.maximum(dev, 1e-9 * (1.0 + np.abs(mean)))
        z = (x - mean) / scale
        pos = np.maximum(0.0, self.pos[ids] + z - self.drift)
        neg = np.maximum(0.0, self.neg[ids] - z - self.drift)
        warm = n >= self.warmup
        reach = np.where(warm, scale, np.nan)  # see the module docstring
        upper = mean + reach * (self.h + self.drift - self.pos[ids])
        lower = mean - reach * (self.h + self.drift - self.neg[ids])
        pos = np.where(warm, pos, 0.0)
        neg = np.where(warm, neg, 0.0)
        score = np.maximum(pos, neg) / self.h
        shifted = score > 1.0
        # Learn: winsorised baseline; on a detected shift, learn the new level afresh from the sample that
        # crossed on (``_RESTART``).
        a = np.maximum(self.alpha, 1.0 / (n + 1.0))
        cap = np.where(warm, 3.0 * scale, np.inf)
        r = np.clip(x - mean, -cap, cap)
        self.mean[ids] = np.where(shifted, x, mean + a * r)
        self.dev[ids] = dev + a * (np.abs(r) - dev)
        self.pos[ids] = np.where(shifted, 0.0, pos)
        self.neg[ids] = np.where(shifted, 0.0, neg)
        self.count[ids] = np.where(shifted, _RESTART, n + 1)
        return score, mean, lower, upper

    def fit(self, view: View) -> None:
        """Online: nothing to refit."""

    def forget(self, ids: np.ndarray) -> None:
        """Drop the state of vanished series."""
        self.reset(ids[ids < self.mean.size])

    def detect(self, view: View) -> list[Findings]:
        """Scores of each matching query in the tick: per series the highest of the tick's samples (a shift
        anywhere in the tick counts), with the value and band that sample was judged by."""
        best: dict[str, _Judged] = {}
        for step in view.steps:
            if not self.matches(step.query):
                continue
            if step.ids.size:  # NaN rows are not updated but are still read back below
                self._grow(int(step.ids.max()) + 1)
            rows = np.flatnonzero(np.isfinite(step.value))
            judged = _Judged.empty(
                step.value, np.where(self.count[step.ids] > 0, self.mean[step.ids], np.nan)
            )
            with unlearned([getattr(self, name) for name, _ in self.FIELDS], step.outside_ids):
                judged.score[rows], judged.yhat[rows], judged.lower[rows], judged.upper[rows] = self.judge(
                    step.ids[rows], step.value[rows]
                )
            best[step.query] = judged.newest_or_higher(best.get(step.query))
        out = []
        for query, judged in best.items():
            step = view.latest[query]
            out.append(
                Findings(
                    detector=self.name,
                    query=query,
                    labels=step.labels,
                    ids=step.ids,
                    score=judged.score,
                    value=judged.value,
                    yhat=judged.yhat,
                    lower=judged.lower,
                    upper=judged.upper,
                    action=RecommendedAction.INVESTIGATE,
                    summary=f"{query} shifted to a new level",
                )
            )
        return out


@dataclass(frozen=True, slots=True)
class _Judged:
    """One step's samples as the detector judged them, aligned with the step's rows."""

    score: FloatArray
    value: FloatArray
    yhat: FloatArray
    lower: FloatArray
    upper: FloatArray

    @classmethod
    def empty(cls, value: FloatArray, yhat: FloatArray) -> _Judged:
        """Nothing judged yet: score 0, no band, the baseline where one was learned."""
        nan = np.full(value.size, np.nan)
        return cls(np.zeros(value.size), value, yhat, nan, nan.copy())

    def newest_or_higher(self, before: _Judged | None) -> _Judged:
        """Per row, this step's judgement, or ``before``'s where it scored higher (same rows only)."""
        if before is None or before.score.size != self.score.size:
            return self
        keep = before.score > self.score
        if not keep.any():
            return self
        pick = [np.where(keep, b, a) for a, b in zip(_fields(self), _fields(before), strict=True)]
        return _Judged(*pick)


def _fields(judged: _Judged) -> tuple[FloatArray, ...]:
    return (judged.score, judged.value, judged.yhat, judged.lower, judged.upper)
