"""Multi-scale level breakout: a smoothed level beyond every level the series has held, vectorised.

``RangeBreakout`` compares each raw value with the range of raw values; on a noisy series that range is wide
(every spike widened it), so a shift of the series' level inside it goes unseen, and the adaptive band
follows a slow drift. This part watches the series' level at a few time scales instead:

* for each scale ``w`` in ``scales`` an EWMA of the values with weight ``1 / w`` (the level over about the
  last ``w`` samples);
* after ``settle * w`` samples each level's range starts to be tracked, and it never forgets, like
  ``RangeBreakout``'s; the range is judged from twice that on (never before ``warmup`` samples), so it has
  been learned for a while first (judging from the moment it started raised once on every series);
* a level more than ``margin`` x its range's width beyond that range is a breakout at that scale; any scale's
  breakout after ``rearm`` quiet samples raises an alert, and the range takes the new level in.

Not part of the default detector: ``benchmarks/nab_cv.py --candidate levels`` cross-validates it OR-ed with
the default over the NAB files here; the README's NAB section gives the figures. Causal: a sample's score
depends only on it and the samples before it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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
class LevelParams:
    """The best of ``benchmarks/nab_cv.py --candidate levels``'s grid on all files: one scale of about an
    hour at NAB's usual 5-minute step (the grid also held four hours, and one, four and sixteen together);
    ``settle`` and ``warmup`` were fixed on the tune split."""

    scales: tuple[int, ...] = (12,)
    margin: float = 0.05
    settle: int = 3
    warmup: int = 300
    rearm: int = 1000

    def __post_init__(self) -> None:
        if not self.scales or min(self.scales) < 1:
            raise ValueError("scales must be one or more positive sample counts")
        if self.margin < 0.0 or self.settle < 1:
            raise ValueError("margin >= 0 and settle >= 1 are required")


class LevelBreakout(SeriesArrays):
    """Streaming multi-scale level-breakout detector over many series (ids are small non-negative ints)."""

    FIELDS = (("level", 0.0), ("low", np.inf), ("high", -np.inf), ("count", 0), ("since", NEVER))

    def __init__(self, params: LevelParams | None = None, capacity: int = 1024) -> None:
        self.params = p = params or LevelParams()
        self._weight = 1.0 / np.asarray(p.scales, dtype=np.float64)
        self._start = np.asarray(p.scales, dtype=np.int64) * p.settle
        self._judge = np.maximum(2 * self._start, p.warmup)
        k = len(p.scales)
        self.level = np.zeros((0, k))
        self.low = np.zeros((0, k))
        self.high = np.zeros((0, k))
        self.count = np.zeros(0, np.int64)
        self.since = np.zeros(0, np.int64)
        self._grow(capacity)

    def update(self, ids: IntArray, values: FloatArray) -> StepScores:
        """One sample per id: score >1 when a level left its range plus margin.

        NaN samples are skipped (score 0, no state change)."""
        score, raised, rows, s, x = self._begin(ids, values)
        if not rows.size:
            return StepScores(ids=ids, score=score, raised=raised)
        p = self.params
        n = self.count[s]
        # The first sample starts every level; a plain mean until ``w`` samples, exponentially weighted after.
        weight = np.maximum(self._weight[None, :], 1.0 / (n[:, None] + 1.0))
        level = self.level[s] + weight * (x[:, None] - self.level[s])
        tracked = n[:, None] >= self._start[None, :]
        low, high = self.low[s], self.high[s]
        known = (n[:, None] >= self._judge[None, :]) & np.isfinite(low)
        with np.errstate(invalid="ignore"):
            span = np.where(known, high - low, 0.0)
            centre = np.where(known, 0.5 * (high + low), level)
            half = (0.5 + p.margin) * span
            floor = np.maximum(np.abs(centre), 1.0) * 1e-9
            distance = np.where(known, np.abs(level - centre), 0.0)
        ratio = distance / np.maximum(half, floor)
        out = known & (ratio > 1.0)
        anomalous = np.asarray(out.any(axis=1))
        since = self.since[s]
        raised[rows], self.since[s] = rearmed(anomalous, since, p.rearm)
        score[rows] = np.minimum(np.where(known, ratio, 0.0).max(axis=1), SCORE_CAP)
        self.low[s] = np.where(tracked, np.minimum(low, level), low)
        self.high[s] = np.where(tracked, np.maximum(high, level), high)
        self.level[s] = level
        self.count[s] = n + 1
        return StepScores(ids=ids, score=score, raised=raised)


def raise_many(values: list[FloatArray], params: LevelParams | None = None) -> list[BoolArray]:
    """Alerts per series when each series' ``i``-th sample arrives at step ``i`` (as ``score_many`` does)."""
    return replay_alerts(LevelBreakout(params, capacity=max(len(values), 1)).update, values)
