"""Burst silence: a series whose excursions recur at a steady pace has stopped having them.

A disk that is written in bursts every few hours, a batch job's load every half day: the adaptive part sees
each burst as an excursion (and the recurrence mute may silence the routine ones), but nothing sees the
bursts *stop*, which is often the fault (the job died, the writer hangs). ``BurstSilence`` takes the onsets
of the adaptive part's excursions, before the recurrence mute, and per series:

* keeps the gaps (in samples) between the last ``bursts`` onsets;
* calls the pace regular when every one of those ``bursts - 1`` gaps lies within ``spread`` times their
  median, either way;
* raises once when, at a regular pace, no onset came for ``factor`` x the median gap (and at least
  ``floor`` samples); the next onset re-arms it.

Not part of the default detector: ``benchmarks/nab_package.py`` cross-validates it, OR-ed with the default,
as one part of a package (``score_many(silence=SilenceParams())``). Causal: a sample's answer depends only
on it and the samples before it. State per series: ``bursts - 1`` gaps and four numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from anomaly.steps import BoolArray, IntArray, SeriesArrays, StepScores

_NONE = -1


@dataclass(frozen=True, slots=True)
class SilenceParams:
    """``bursts``, ``spread`` and ``floor`` were fixed on the NAB tune split (2 to 4 alerts there over
    ``factor`` 2 to 4, none in a window); ``factor`` is the declared grid's axis in
    ``benchmarks/nab_package.py``."""

    factor: float = 3.0
    bursts: int = 5
    spread: float = 2.0
    floor: int = 12

    def __post_init__(self) -> None:
        if self.factor <= 1.0:
            raise ValueError("factor must be > 1 (a silence longer than the usual gap)")
        if self.bursts < 3:
            raise ValueError("bursts must be >= 3 (at least two gaps to call a pace regular)")
        if self.spread < 1.0 or self.floor < 1:
            raise ValueError("spread >= 1 and floor >= 1 are required")


class BurstSilence(SeriesArrays):
    """Streaming burst-silence detector over many series (ids are small non-negative ints)."""

    FIELDS = (
        ("count", 0),
        ("last", _NONE),
        ("gaps", 0),
        ("known", 0),
        ("typical", 0.0),
        ("regular", False),
        ("fired", False),
    )

    def __init__(self, params: SilenceParams | None = None, capacity: int = 1024) -> None:
        self.params = p = params or SilenceParams()
        self._keep = p.bursts - 1
        self.count = np.zeros(0, np.int64)
        self.last = np.zeros(0, np.int64)
        self.gaps = np.zeros((0, self._keep), np.int64)
        self.known = np.zeros(0, np.int64)
        self.typical = np.zeros(0)
        self.regular = np.zeros(0, np.bool_)
        self.fired = np.zeros(0, np.bool_)
        self._grow(capacity)

    def update(self, ids: IntArray, onsets: BoolArray) -> StepScores:
        """One sample per id and whether an excursion began at it: score = the silence over the silence
        that raises (``factor`` x the typical gap, at least ``floor``); it raises once per silence, at a
        regular pace only."""
        if ids.size:
            self._grow(int(ids.max()) + 1)
        p = self.params
        now = self.count[ids]
        burst = ids[onsets]
        if burst.size:
            self._record(burst, self.count[burst])
        started = self.last[ids] != _NONE
        quiet = np.where(started, now - self.last[ids], 0)
        typical = self.typical[ids]
        needed = np.maximum(p.factor * typical, p.floor)
        score = np.where(self.regular[ids], quiet / needed, 0.0)
        due = self.regular[ids] & ~self.fired[ids] & ~onsets & (quiet >= needed)
        self.fired[ids[due]] = True
        self.count[ids] = now + 1
        return StepScores(ids=ids, score=score, raised=due)

    def _record(self, burst: IntArray, at: IntArray) -> None:
        """An onset on each of ``burst`` at sample ``at``: the gap since the last joins the kept ones."""
        had = self.last[burst] != _NONE
        rows = burst[had]
        if rows.size:
            gaps = self.gaps[rows]
            gaps[:, :-1] = gaps[:, 1:]
            gaps[:, -1] = at[had] - self.last[rows]
            self.gaps[rows] = gaps
            self.known[rows] = np.minimum(self.known[rows] + 1, self._keep)
            full = self.known[rows] >= self._keep
            median = np.median(gaps, axis=1)
            spread = self.params.spread
            steady = (gaps.max(axis=1) <= spread * median) & (gaps.min(axis=1) * spread >= median)
            self.typical[rows] = median
            self.regular[rows] = full & steady
        self.last[burst] = at
        self.fired[burst] = False
