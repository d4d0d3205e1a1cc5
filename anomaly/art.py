"""Adaptive-resonance novelty: a window of recent values that resonates with no learned category.

A fuzzy ART network (Carpenter, Grossberg and Rosen, 1991) learns the shapes a series' recent windows take,
and a window unlike every shape it has learned is novel; the idea behind ARTime's NAB detector, written here
from the published concept only (no code was read):

* each value is scaled into ``[0, 1]`` by the range the series has shown *before* it (a new extreme is
  clipped to the edge); the feature vector is the last ``window`` scaled values, averaged over ``blocks``
  equal blocks, complement coded ``I = [f, 1 - f]`` so that ``|I| = blocks`` whatever the values;
* each series has its own categories ``w``; a window's overlap with one is ``|I ^ w|`` (``^`` the
  element-wise minimum), its *match* ``|I ^ w| / |I|`` and its *choice* ``|I ^ w| / (alpha + |w|)``. Of
  the categories whose match reaches ``vigilance`` the one with the largest choice resonates and learns,
  ``w <- beta (I ^ w) + (1 - beta) w``; when none does, ``I`` becomes a new category (fast commit, at
  most ``capacity`` per series);
* dual vigilance: a window is *novel* when even its best match over all categories is below the lower
  ``vigilance - margin``; a window that only makes a new category close to a known one is not (``margin``
  0 makes every new category novel). The score is ``(1 - best) / (1 - (vigilance - margin))``, >1 exactly
  when novel.

It learns from a series' first full window on; like ``ContextNovelty``, a novel window after ``rearm``
samples with nothing novel raises an alert (the re-arm is also the mask after an onset), and nothing raises
during the first ``warmup`` samples. A series that keeps meeting new shapes stays muted.

Not part of the default detector: ``benchmarks/nab_art.py`` cross-validates a grid of it OR-ed with the
default over the 41 NAB files here, and it lowers the default's 71.95 to 71.63 (a category left out) and
71.44 (five folds); alone it scores 1.3 to 33.6 (benchmarks/README.md gives the figures).

Causal: a sample's score depends only on it and the samples before it. NaN and infinite samples are skipped
(score 0, no state change), as everywhere in ``anomaly.univariate``. State per series: the range, the last
``window`` values, the quiet-spell count and at most ``capacity`` categories of ``2 * blocks`` floats.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from anomaly.replay import replay_alerts, replay_raised
from anomaly.steps import (
    NEVER,
    BoolArray,
    FloatArray,
    IntArray,
    SeriesArrays,
    StepScores,
    rearmed,
)


@dataclass(frozen=True, slots=True)
class ArtParams:
    """``window``, ``vigilance``, ``margin`` and ``rearm``: the best of ``benchmarks/nab_art.py``'s declared
    grid on all files (OR-ed with the default; cross-validated it lowers the score); ``alpha`` (small, as
    usual for fuzzy ART), ``beta`` (slow recoding), ``blocks``, ``warmup`` and ``capacity`` were fixed before
    any run."""

    window: int = 32
    blocks: int = 8
    vigilance: float = 0.9
    margin: float = 0.02
    alpha: float = 0.001
    beta: float = 0.1
    warmup: int = 300
    rearm: int = 300
    capacity: int = 1000

    def __post_init__(self) -> None:
        if self.blocks < 1 or self.window < 2 or self.window % self.blocks:
            raise ValueError("window must be at least 2 and a multiple of blocks (blocks >= 1)")
        if not 0.0 < self.vigilance <= 1.0 or not 0.0 <= self.margin < self.vigilance:
            raise ValueError("vigilance must be in (0, 1] and margin in [0, vigilance)")
        if self.floor >= 1.0:  # the score divides by 1 - floor: NaN and infinite scores
            raise ValueError("vigilance - margin must be below 1: give a margin above 0 with vigilance 1")
        if not 0.0 < self.alpha < math.inf or not 0.0 < self.beta <= 1.0 or self.capacity < 1:
            raise ValueError("alpha > 0 (finite), beta in (0, 1] and capacity >= 1 are required")

    @property
    def floor(self) -> float:
        """The lower (novelty) vigilance: a best match below it is novel."""
        return self.vigilance - self.margin


class Categories:
    """One series' fuzzy ART categories (complement-coded weights, one row each)."""

    def __init__(self, params: ArtParams) -> None:
        self.params = params
        self.weights = np.zeros((8, 2 * params.blocks))
        self.used = 0

    def resonate(self, pattern: FloatArray) -> float:
        """Present one complement-coded pattern: learn it (the resonating category, or a new one) and return
        its best match over the categories known before it (0 when there were none)."""
        p = self.params
        w = self.weights[: self.used]
        overlap = np.minimum(pattern, w).sum(axis=1)
        match = overlap / p.blocks  # |I| = blocks for every complement-coded pattern
        best = float(match.max()) if self.used else 0.0
        if best >= p.vigilance:
            choice = np.where(match >= p.vigilance, overlap / (p.alpha + w.sum(axis=1)), -1.0)
            j = int(np.argmax(choice))
            w[j] = p.beta * np.minimum(pattern, w[j]) + (1.0 - p.beta) * w[j]
        elif self.used < p.capacity:
            if self.used == len(self.weights):
                self.weights = np.concatenate([self.weights, np.zeros_like(self.weights)])
            self.weights[self.used] = pattern
            self.used += 1
        return best


class ArtNovelty(SeriesArrays):
    """Streaming fuzzy ART window novelty over many series (ids are small non-negative ints)."""

    FIELDS = (("count", 0), ("low", np.inf), ("high", -np.inf), ("since", NEVER), ("recent", np.nan))

    def __init__(self, params: ArtParams | None = None, capacity: int = 1024) -> None:
        self.params = p = params or ArtParams()
        self.count = np.zeros(0, np.int64)
        self.low = np.zeros(0)
        self.high = np.zeros(0)
        self.since = np.zeros(0, np.int64)
        self.recent = np.zeros((0, p.window))
        self._categories: dict[int, Categories] = {}
        self._grow(capacity)

    def reset(self, ids: IntArray) -> None:
        """Forget series."""
        super().reset(ids)
        for series in ids.tolist():
            self._categories.pop(int(series), None)

    def update(self, ids: IntArray, values: FloatArray) -> StepScores:
        """One sample per id: score >1 when its window is novel (``raised``: whether it raises now).

        NaN samples are skipped (score 0, no state change)."""
        score, raised, rows, s, x = self._begin(ids, values)
        if not rows.size:
            return StepScores(ids=ids, score=score, raised=raised)
        learnt = self._learn(s, x)
        raised[rows], score[rows] = learnt.judge(self.params, self.since)
        return StepScores(ids=ids, score=score, raised=raised)

    def _learn(self, s: IntArray, x: FloatArray) -> Learnt:
        """Take the finite samples ``x`` of the series ``s``: their windows resonate (categories learnt), the
        range and count move on. What ``margin``, ``rearm`` and ``warmup`` judge of them is ``Learnt``'s."""
        p = self.params
        n = self.count[s].copy()
        self.recent[s, :-1] = self.recent[s, 1:]
        self.recent[s, -1] = x
        full = n + 1 >= p.window
        best = np.ones(s.size)
        ready = np.flatnonzero(full)
        for k, pattern in zip(ready.tolist(), self._patterns(s[ready]), strict=True):
            series = int(s[k])
            known = self._categories.get(series)
            if known is None:
                known = self._categories[series] = Categories(p)
            best[k] = known.resonate(pattern)
        self.low[s] = np.minimum(self.low[s], x)
        self.high[s] = np.maximum(self.high[s], x)
        self.count[s] = n + 1
        return Learnt(s, n, full, best)

    def _patterns(self, ids: IntArray) -> FloatArray:
        """The complement-coded block means of each series' last ``window`` values, scaled by its range so
        far (in halves, so that a range wider than the largest float still scales); one row per id."""
        low, high = self.low[ids, None] / 2.0, self.high[ids, None] / 2.0
        recent = self.recent[ids] / 2.0
        span = high - low
        with np.errstate(divide="ignore", invalid="ignore"):
            within = np.clip((recent - low) / span, 0.0, 1.0)
        # one value so far (no span): below it 0, at or above it 1
        scaled = np.where(span > 0.0, within, np.where(recent < low, 0.0, 1.0))
        means = scaled.reshape(ids.size, self.params.blocks, self.params.window // self.params.blocks).mean(
            axis=2
        )
        patterns: FloatArray = np.concatenate([means, 1.0 - means], axis=1)
        return patterns


@dataclass(frozen=True, slots=True)
class Learnt:
    """One step's learning for the series ``s``: their sample counts before it (``n``), whether their
    windows were full and their best matches."""

    s: IntArray
    n: IntArray
    full: BoolArray
    best: FloatArray

    def judge(self, p: ArtParams, since: IntArray) -> tuple[BoolArray, FloatArray]:
        """Which raise under ``p`` (its ``margin``, ``rearm`` and ``warmup``; ``since`` moved on) and their
        scores."""
        anomalous = self.full & (self.best < p.floor)
        fires, since[self.s] = rearmed(anomalous, since[self.s], p.rearm)
        live = self.n >= p.warmup
        return fires & live, np.where(live & self.full, (1.0 - self.best) / (1.0 - p.floor), 0.0)


def raise_many(values: list[FloatArray], params: ArtParams | None = None) -> list[BoolArray]:
    """Alerts per series when each series' ``i``-th sample arrives at step ``i`` (as ``score_many`` does)."""
    return replay_alerts(ArtNovelty(params, capacity=max(len(values), 1)).update, values)


Learning = tuple[int, int, float, float, float, int]


def learning(p: ArtParams) -> Learning:
    """What of ``p`` the categories and best matches depend on: settings alike in it learn alike."""
    return (p.window, p.blocks, p.vigilance, p.alpha, p.beta, p.capacity)


def raise_grid(values: list[FloatArray], grid: list[ArtParams]) -> list[list[BoolArray]]:
    """``raise_many(values, params)`` for each ``params`` of ``grid``, alike, with the learning shared:
    settings that differ only in ``margin``, ``rearm`` and ``warmup`` learn the same categories and best
    matches, so each group of them is stepped once and only judged apart."""
    groups: dict[Learning, list[int]] = {}
    for k, p in enumerate(grid):
        groups.setdefault(learning(p), []).append(k)
    found: list[list[BoolArray]] = [[] for _ in grid]
    for members in groups.values():
        for k, alerts in zip(members, _raise_group(values, [grid[k] for k in members]), strict=True):
            found[k] = alerts
    return found


def _raise_group(values: list[FloatArray], heads: list[ArtParams]) -> list[list[BoolArray]]:
    """``raise_grid`` for settings that learn alike: one detector learns, each setting judges."""
    detector = ArtNovelty(heads[0], capacity=max(len(values), 1))
    since = [np.full(max(len(values), 1), NEVER, np.int64) for _ in heads]

    def judged(ids: IntArray, step: FloatArray) -> list[BoolArray]:
        raised = [np.zeros(ids.size, np.bool_) for _ in heads]
        _, _, rows, s, x = detector._begin(ids, step)
        if rows.size:
            learnt = detector._learn(s, x)
            for head, params in enumerate(heads):
                raised[head][rows] = learnt.judge(params, since[head])[0]
        return raised

    return replay_raised(judged, values, len(heads))
