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

After a detection the series is in shift (``base``, ``reach``) while the new level is learnt (its warm-up):
from its ``_CONFIRM``-th sample after the one that crossed, a sample reads above 1 where both it and the mean
of the samples since the shift are past ``base + reach`` (``reach``: ``edge`` times the scale before the
shift, or half the crossing sample's distance from ``base`` where that is more, signed by the shift's side;
``_BACK`` times as far on the other side reads above 1 too), and the shift goes on while that mean stays past
``_HOLD`` of ``reach``. So a lasting shift reads above 1 for the ``pending_ticks`` reads in a row a learned
detector's alert needs (Prometheus' ``for:``), and its alert resolves as the others do once the new level is
learnt: a latency step is news once, then the new normal. A spike's next samples are back at the old level,
and a run of small counts on a series mostly 0 (a queue's wait) ends within a few samples: no alert. Before,
the score was above 1 at the detection only, and a shift raised no alert at all (ten GPUs stepped up three
noise widths: ten detections, no alert).
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
# In shift, how far past the level before it (in its scale, the mean absolute deviation: 0.8 noise widths for
# a normal noise) a sample and the mean of the samples since must be to read above 1: a sample of a step of
# three noise widths is past it with chance 84 %. At 2.0 more steps of 1.5 noise widths raised (49 of 500
# against 3), but so did plain Poisson(0.2) counts (2 false alerts in 200 series-days, none at 2.5)
# (``benchmarks/level_shift_alerts.py``, ``benchmarks/noise_false_alerts.py``).
EDGE = 2.5
# The share of the crossing sample's distance from the level before the shift that the shift's band is at
# least: a spike's next samples are back at the old level, far inside it. Without it, of 2,000 one-sample
# spikes, 2 of 10 noise widths raised and 3 of 20 (their next samples past ``edge`` by chance); with it none.
_SHARE = 0.5
# The samples after the crossing one that read 1 at most (and have no band): a run of 1s on a series of
# Poisson(0.2) counts after a 2 or 3 is past any band a scale learnt of mostly 0s gives, and lasts a few
# samples. Read from the first sample on, 5 such runs in 200 series-days raised; from the 4th, none, and a
# step of three noise widths is raised 4 reads later (11 after the step, median).
_CONFIRM = 4
# The share of the band the mean of the samples since the shift must stay past for the shift to go on: at 1,
# the first sample after it, low, often ended a step of three noise widths (1 in 9 never raised).
_HOLD = 0.5
# In shift, how much farther a sample must be on the other side of the level before it to read above 1: a
# sample back at the old level is no more of the shift, but one far past it is a move of its own.
_BACK = 3.0


class LevelShiftDetector(SeriesArrays):
    """Vectorised CUSUM; state in arrays indexed by series id."""

    name = "level_shift"
    FIELDS = (
        ("mean", 0.0),
        ("dev", 0.0),
        ("pos", 0.0),
        ("neg", 0.0),
        ("count", 0),
        ("base", 0.0),
        ("reach", 0.0),
    )

    def __init__(
        self,
        query_patterns: Sequence[str] = ("step_time", "latency", "duration"),
        *,
        alpha: float = 0.01,
        drift: float = 1.0,
        h: float = 12.0,
        warmup: int = 30,
        edge: float = EDGE,
    ) -> None:
        self.patterns = tuple(query_patterns)
        self.alpha, self.drift, self.h, self.warmup, self.edge = alpha, drift, h, warmup, edge
        self.mean = np.zeros(0)
        self.dev = np.zeros(0)
        self.pos = np.zeros(0)
        self.neg = np.zeros(0)
        self.count = np.zeros(0, np.int64)
        self.base = np.zeros(0)  # in shift: the level before it
        self.reach = np.zeros(0)  # in shift: ``edge`` times the scale before it, signed by its side; else 0

    def matches(self, query: str) -> bool:
        """Whether this detector scores ``query``."""
        return any(p in query for p in self.patterns)

    def update(self, ids: IntArray, x: FloatArray) -> FloatArray:
        """Feed one sample per id (finite only); return scores (>1: a shift found here or on)."""
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
        learnt = mean + a * r
        # In shift (see the module docstring): judged against the level before it, both the sample and the
        # mean of the samples since the shift (``learnt``: the new level's warm-up, an exact mean) past the
        # band; on while that mean is past its ``_HOLD`` and the new level is in its warm-up.
        base, span = self.base[ids], self.reach[ids]
        held = span != 0.0
        side = np.where(held, span, 1.0)
        away, level = (x - base) / side, (learnt - base) / side
        young = held & (n < _CONFIRM)  # ``n``: the samples since the shift, the crossing one included
        score = np.where(held, np.maximum(np.minimum(away, level), -away / _BACK), score)
        score = np.where(young, 0.0, score)
        # The sample that brings the mean past the band: ``learnt`` is ``mean + (x - mean) / (n + 1)``.
        alone, joint = base + span, mean + (n + 1.0) * (base + span - mean)
        edge = np.where(span > 0, np.maximum(alone, joint), np.minimum(alone, joint))
        lower = np.where(held, np.where(span > 0, base - _BACK * span, edge), lower)
        upper = np.where(held, np.where(span > 0, edge, base - _BACK * span), upper)
        lower = np.where(young, np.nan, lower)
        upper = np.where(young, np.nan, upper)
        self.mean[ids] = np.where(shifted, x, learnt)
        self.dev[ids] = dev + a * (np.abs(r) - dev)
        self.pos[ids] = np.where(shifted, 0.0, pos)
        self.neg[ids] = np.where(shifted, 0.0, neg)
        self.count[ids] = np.where(shifted, _RESTART, n + 1)
        going = held & (level > _HOLD) & (n + 1 < self.warmup)
        self.base[ids] = np.where(shifted, mean, np.where(going, base, 0.0))
        up = np.where(pos >= neg, 1.0, -1.0)
        gap = np.maximum(self.edge * scale, _SHARE * np.abs(x - mean))
        self.reach[ids] = np.where(shifted, up * gap, np.where(going, span, 0.0))
        return score, np.where(held, base, mean), lower, upper

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
