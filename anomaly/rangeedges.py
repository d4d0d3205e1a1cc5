"""Points of a range-vector query that Prometheus computed over a window not yet filled with samples.

``rate(x[5m])`` of a series that has just appeared, or come back after a gap in the query's answer (its
target was down longer than the range, a Prometheus restarted on an empty store), is computed from the few
samples inside the window and extrapolated only a little past them: for the first five minutes it reads
low, ramping up to the true rate. Scored, that ramp raised a false alert on every series of a rate query
after each such gap (a wiped Prometheus: one per series). Those points are blanked (NaN: neither scored
nor learned) until the window has filled. A bare selector has no range and is left as it is. What was
answered there is kept aside (``Frame.partial``) for a rule that asks only whether the series answered: a
GPU back after a gap answers ``gpuwarden_gpu_up`` at once, and ``GpuLost`` held it lost for the range.

A guarded query (``rate(x[5m]) and x``, ``gpuwarden.range_guard``) has no point while its target misses a
scrape (Prometheus marks the series stale until the next good one), while its window still holds the
samples before: one missing point of a series, at a step where the query answered other series, is taken
as that, not as a new run, or each failed scrape that fell on a step would blank the series for the range.
Two or more missing points, or one at a step where the whole answer was empty (a Prometheus restarted,
perhaps on an empty store, whose window then ramps up), are a gap as for any query.

The runs are kept in the state snapshot (``state``, ``saved``): a restart whose warm-up read of a query
failed read it first at its catch-up, which took each series there as running before it, and scored the
ramp after an outage that the process it replaced had blanked (restart fuzz, seed 308). A query the warm-up
read is not given them: its read of the hour before rebuilt them as that process had.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import numpy as np

from anomaly.needs import GPU_UP
from anomaly.sources import Frame
from gpuwarden.durations import UNIT_PATTERN, UNIT_SECONDS

_RANGE = re.compile(rf"\[\s*((?:\d+(?:{UNIT_PATTERN}))+)\s*(?::[^\]]*)?\]")
_PART = re.compile(rf"(\d+)({UNIT_PATTERN})")
_GAP_STEPS = 1.5  # a step with no point in the answer: the series was absent for a whole range
_GUARDED_GAP_STEPS = 2.5  # guarded: two steps with no point (one is a missed scrape)

SeriesKey = tuple[tuple[str, str], ...]
# Per query: each series' (run start, last point), and the recent steps where any series had a point.
Runs = dict[str, tuple[dict[SeriesKey, tuple[float, float]], set[float]]]


def range_seconds(expr: str) -> float:
    """The longest range (``[5m]``, a subquery's ``[1h:1m]``) in ``expr``; 0 when it has none."""
    longest = 0.0
    for match in _RANGE.finditer(expr):
        longest = max(longest, sum(int(n) * UNIT_SECONDS[u] for n, u in _PART.findall(match.group(1))))
    return longest


class RangeEdges:
    """Per query and series: the last point read and when its current run of points began."""

    def __init__(self, forget_after: float) -> None:
        self.forget_after = forget_after
        self._runs: dict[str, dict[SeriesKey, tuple[float, float]]] = {}  # (run start, last point)
        self._answered: dict[str, set[float]] = {}  # per query, recent steps with a point of any series

    def state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        """The runs, as copies (``saved`` reads them back). Meta: each label set once (``edge_labels``: a
        GPU's series of every range query share one), and a row ``[query, series, steps answered]`` per
        query (``edges``); arrays, per run in the rows' order: its label set's place, start and last point.
        Each series' labels written per query held 40 MB for 10,000 GPUs' 25 range queries."""
        places: dict[SeriesKey, int] = {}
        rows: list[list[Any]] = []
        series: list[int] = []
        starts: list[float] = []
        lasts: list[float] = []
        for query, runs in list(self._runs.items()):
            held = list(runs.items())
            rows.append([query, len(held), sorted(self._answered.get(query, ()))])
            series.extend(places.setdefault(key, len(places)) for key, _ in held)
            starts.extend(start for _, (start, _) in held)
            lasts.extend(last for _, (_, last) in held)
        meta = {"edge_labels": [[list(pair) for pair in key] for key in places], "edges": rows}
        arrays = {
            "edge_series": np.array(series, np.int64),
            "edge_start": np.array(starts, np.float64),
            "edge_last": np.array(lasts, np.float64),
        }
        return meta, arrays

    @staticmethod
    def saved(meta: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Runs:
        """The runs ``state`` gave; ``ValueError``, ``KeyError``, ``TypeError`` or ``IndexError`` where they
        do not fit."""
        keys = [tuple((str(k), str(v)) for k, v in pairs) for pairs in meta["edge_labels"]]
        kept = [np.asarray(arrays[name]) for name in ("edge_series", "edge_start", "edge_last")]
        if any(a.shape != kept[0].shape for a in kept) or kept[0].ndim != 1:
            raise ValueError(
                f"range edges: {', '.join(str(a.shape) for a in kept)} series, starts, last points"
            )
        series, starts, lasts = (a.tolist() for a in kept)
        if series and not 0 <= min(series) <= max(series) < len(keys):
            raise IndexError(f"range edges: a run's label set beyond the {len(keys)} kept")
        counts = [int(count) for _, count, _ in meta["edges"]]
        if sum(counts) != len(series):
            raise ValueError(f"range edges: {sum(counts)} runs in the queries' rows, {len(series)} kept")
        runs: Runs = {}
        first = 0
        for (query, _, answered), count in zip(meta["edges"], counts, strict=True):
            held = range(first, first + count)
            runs[str(query)] = (
                {keys[series[k]]: (starts[k], lasts[k]) for k in held},
                {float(a) for a in answered},
            )
            first += count
        return runs

    def take_up(self, saved: Runs) -> None:
        """Take up ``saved`` (what ``saved()`` read back) for each query not read yet: its first read goes on
        from them, not from a series present at its first step taken as running before it."""
        for query, (runs, answered) in saved.items():
            if query not in self._runs:
                self._runs[query] = dict(runs)
                self._answered[query] = set(answered)

    def mask(self, frame: Frame, window: float, step: float, *, guarded: bool = False) -> Frame:
        """``frame`` (points ``step`` apart) with those less than ``window`` plus a step into a series' run
        set to NaN.

        At a query's first read a series present from the first step is taken as running before it.
        ``guarded``: one step with no point, where other series had one, does not end a run (see the
        module's docstring)."""
        ts = frame.timestamps
        if window <= 0 or ts.size == 0:
            return frame
        first_read = frame.query not in self._runs
        runs = self._runs.setdefault(frame.query, {})
        values = frame.values.copy()
        # A point is a sample whatever its value: a ratio's NaN (0/0, an idle GPU) or +Inf (x/0) was computed
        # over a full window, and read as no point it began a new run, blanked for the range after it.
        samples = frame.samples
        answered = self._answered.setdefault(frame.query, set())
        answered.update(ts[samples.any(axis=0)].tolist())
        for row, labels in enumerate(frame.labels):
            key = tuple(sorted(labels.items()))
            start, last = runs.get(
                key, (-math.inf, float(ts[0]) - step) if first_read else (math.nan, math.nan)
            )
            for col in np.flatnonzero(samples[row]).tolist():
                t = float(ts[col])
                if not t - last <= _GAP_STEPS * step and not (
                    guarded
                    and t - last <= _GUARDED_GAP_STEPS * step
                    and any(abs(a - last - step) < step / 2 for a in answered)
                ):  # a new series, or one back after a gap (NaN: new), not a guarded one's missed scrape
                    start = t
                if t - start < window + step:
                    values[row, col] = math.nan
                last = t
            if math.isfinite(last):
                runs[key] = (start, last)
        horizon = float(ts[-1]) - self.forget_after
        for key in [k for k, (_, last) in runs.items() if last < horizon]:
            del runs[key]
        recent = float(ts[-1]) - _GUARDED_GAP_STEPS * step
        answered.difference_update([a for a in answered if a < recent])
        # A blanked point is still a sample (``Frame.present``): its series is read as a gap row there.
        blanked = np.isnan(values) & ~np.isnan(frame.values)
        any_blanked = bool(blanked.any())  # a pass over every point of the read: once
        present = frame.present if frame.present is not None or not any_blanked else frame.samples
        # What was answered there, kept for GpuLost alone (its only reader): a copy of every range query's
        # values would double a warm-up's memory for them (250,000 series x 120 steps: 240 MB a query).
        kept = frame.query == GPU_UP and any_blanked
        partial = np.where(blanked, frame.values, math.nan) if kept else frame.partial
        return Frame(frame.query, frame.labels, ts, values, frame.kind, present, partial)
