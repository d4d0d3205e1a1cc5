"""One tick's findings as ``anomaly.collective`` reads them: per workload its rows, per row its series id,
score, side, value, band and distance from the band's middle, each worked out once."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from anomaly.detectors import Findings
from anomaly.fleet import workload_of
from anomaly.thresholds import BoolArray, FloatArray, IntArray

Workload = tuple[str, ...]


def sides_of(f: Findings) -> FloatArray:
    """Per row, the side of its expected value its value is on (1 above, -1 below, 0 unknown): ``sign``
    where the detector gives it, else the value against ``yhat``. Not the band's edge: a rank out by its
    volatility alone is back inside its band, on the side its job went."""
    if f.sign is not None:
        side = np.sign(np.asarray(f.sign, np.float64))
    elif f.yhat is not None:
        side = np.sign(np.asarray(f.value, np.float64) - np.asarray(f.yhat, np.float64))
    else:
        side = np.zeros(len(f.labels))
    return np.nan_to_num(side)


def past_band(f: Findings) -> BoolArray:
    """Per row, whether its value is past its band's edge: a rank out by its own value, not by the volatility
    its job's move left. A detector giving no band scores the value itself: past 1."""
    if f.lower is None or f.upper is None:
        past: BoolArray = np.nan_to_num(np.asarray(f.score, np.float64)) > 1.0
        return past
    value = np.asarray(f.value, np.float64)
    out: BoolArray = (value < np.asarray(f.lower, np.float64)) | (value > np.asarray(f.upper, np.float64))
    return out


def half_width(f: Findings) -> FloatArray:
    """Per row, half its band's width; NaN where the detector gives no band."""
    if f.lower is None or f.upper is None:
        return np.full(len(f.labels), np.nan)
    half: FloatArray = (np.asarray(f.upper, np.float64) - np.asarray(f.lower, np.float64)) / 2
    return half


def off_band(f: Findings, half: FloatArray) -> FloatArray:
    """Per row, how far its value is from its band's middle, in half-widths of the band (``half``, as
    ``half_width`` gives it): 0.5 is half-way out, 1 its edge; NaN where the detector gives no band."""
    if f.lower is None or f.upper is None:
        return np.full(len(f.labels), np.nan)
    middle = (np.asarray(f.lower, np.float64) + np.asarray(f.upper, np.float64)) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        off: FloatArray = np.abs(np.asarray(f.value, np.float64) - middle) / half
    return off


def median_of_others(values: FloatArray, among: BoolArray) -> FloatArray:
    """Per row, the median of ``values`` at the rows ``among`` but its own; NaN where there is none."""
    ranked = np.sort(values[among])
    n = ranked.size
    median = np.full(values.size, np.nan)
    if not n:
        return median
    # A row among them is left out: the rank of its value in ``ranked`` is skipped.
    skip = np.where(among, np.searchsorted(ranked, values), n)
    m = n - among.astype(np.int64)
    some = m > 0
    lo, hi = (m - 1) // 2, m // 2
    at_lo = ranked[np.minimum(lo + (lo >= skip), n - 1)]
    at_hi = ranked[np.minimum(hi + (hi >= skip), n - 1)]
    median[some] = ((at_lo + at_hi) / 2)[some]
    return median


def workload_groups(labels: Sequence[Mapping[str, str]]) -> tuple[dict[Workload, int], IntArray]:
    """The workloads among ``labels`` (``peer_key`` without peer labels: ``workload_of``), each numbered in
    the order it is first met, and per row its workload's number (-1 for a row of none)."""
    found: dict[str, int] = {}
    # A comprehension, not a loop appending: 250,000 rows a tick (``bench_anomaly.py --open-moves``).
    group = [-1 if (w := workload_of(lab)) is None else found.setdefault(w, len(found)) for lab in labels]
    return {(w,): at for w, at in found.items()}, np.array(group, np.int64)


def medians_of_others(values: FloatArray, among: BoolArray, group: IntArray, groups: int) -> FloatArray:
    """Per row, the median of ``values`` at the rows ``among`` in its ``group`` (per row, 0 to ``groups`` - 1)
    but its own; NaN where there is none: ``median_of_others`` of every group at once."""
    median = np.full(values.size, np.nan)
    at = np.flatnonzero(among)
    if not at.size:
        return median
    at = at[np.lexsort((values[at], group[at]))]  # by group, then value (NaN last, as ``np.sort``)
    ranked, ranked_group = values[at], group[at]
    n = np.bincount(ranked_group, minlength=groups)
    start = np.cumsum(n) - n
    count, base = n[group], start[group]
    # A row among them is left out: its own place in its group's ranked values is skipped (that of any value
    # equal to it, as ``median_of_others`` skips, leaves the same others).
    skip = count.copy()
    skip[at] = np.arange(at.size) - start[ranked_group]
    m = count - among.astype(np.int64)
    some = m > 0
    lo, hi = (m - 1) // 2, m // 2
    last = at.size - 1
    at_lo = ranked[np.clip(base + np.minimum(lo + (lo >= skip), count - 1), 0, last)]
    at_hi = ranked[np.clip(base + np.minimum(hi + (hi >= skip), count - 1), 0, last)]
    median[some] = ((at_lo + at_hi) / 2)[some]
    return median


class Tick:
    """What ``anomaly.collective.CollectiveMoves.update`` reads of one tick's findings, each worked out once:
    per workload its rows, per row its series id, score, whether it was judged, whether its value is past its
    band, and how far from its band's middle."""

    def __init__(self, f: Findings, ids: IntArray) -> None:
        self.ids = ids
        # Found once: looked up per move, a fleet-wide slowdown (625 jobs of 16 GPUs held on 25 queries) took
        # 34 s a tick (``bench_anomaly.py --open-moves``). Per row its workload's number (``group``, -1 for
        # none), and the rows in the order of their workloads' numbers, workload g's from ``_start[g]``.
        self.index, self.group = workload_groups(f.labels)
        self._order = np.argsort(self.group, kind="stable")
        self._start = np.searchsorted(self.group[self._order], np.arange(len(self.index) + 1))
        # Series ids in order, to find the row of an id (``rows_of_ids``), and whether any repeats.
        self._by_id = np.argsort(ids, kind="stable")
        self._sorted_ids = ids[self._by_id]
        self.unique = not bool(np.any(self._sorted_ids[1:] == self._sorted_ids[:-1]))
        self.scores = np.asarray(f.score, np.float64)
        self.judged = f.judged_rows()
        self.past = past_band(f)
        self.half = half_width(f)
        self.off = off_band(f, self.half)
        self.sides = sides_of(f)
        self.values = np.asarray(f.value, np.float64)
        self._out: dict[float, FloatArray] = {}
        self._past: dict[float, BoolArray] = {}

    def rows(self, workload: Workload) -> IntArray:
        """The rows of ``workload`` (none when it is not in the tick)."""
        if (at := self.index.get(workload)) is None:
            return np.zeros(0, np.int64)
        rows: IntArray = self._order[self._start[at] : self._start[at + 1]]
        return rows

    def rows_of_ids(self, ids: IntArray) -> IntArray:
        """Per series of ``ids``, its row (-1 where the tick has none); for a tick of ``unique`` ids."""
        at = np.minimum(np.searchsorted(self._sorted_ids, ids), max(self._sorted_ids.size - 1, 0))
        if not self._sorted_ids.size:
            return np.full(ids.size, -1, np.int64)
        rows: IntArray = np.where(self._sorted_ids[at] == ids, self._by_id[at], -1)
        return rows

    def scored_past(self, score: float) -> BoolArray:
        """Per row, whether it scores past ``score`` (a NaN score never does); worked out once per ``score``:
        asked of every move at each tick (``bench_anomaly.py --open-moves``)."""
        if (past := self._past.get(score)) is None:
            past = self._past[score] = np.nan_to_num(self.scores) > score
        return past

    def out_past(self, score: float) -> FloatArray:
        """Per row, its side where it scores past ``score``, else 0; worked out once per ``score``."""
        if (out := self._out.get(score)) is None:
            out = self._out[score] = np.where(self.scored_past(score), self.sides, 0.0)
        return out
