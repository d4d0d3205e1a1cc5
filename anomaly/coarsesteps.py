"""Queries whose answers come on a coarser step than the one asked.

Thanos or Mimir serving downsampled blocks, a recording rule evaluated every 60 s read at ``step_seconds``
30 with a short lookback, VictoriaMetrics' own step: the answer has a point at one step in two (or five), and
the grid's other steps are empty. Read as they were, those empty steps were gaps in every series (or a read
that matched no series at all): alerts counted them quiet, a learned detector's ``pending_ticks`` never
filled, a range query's points each looked like a new run (``anomaly.rangeedges`` blanked them all), and the
"matched no series" warning came and went at every tick.

Per query, the spacing of the answered steps (a step with a point of any series) is followed across reads;
spacings in a row of the same whole number N (2 or more) of asked steps make the step seen once there are
at least three of them and they cover at least ``MIN_STEPS`` asked steps (ten spacings of two steps, four
of five). A filter (``x > 0``, ``up == 0``) legitimately answers only some steps, and one answering exactly
every other step three times in a row was taken as coarse: the step after its last answer was then not
read, so its alert resolved a step late, and a later answer between two of the grid's steps did not end
it. Evidence is counted in asked steps, not spacings: the warm-up's hour of history (120 steps) still
shows a coarse answer at start, and a filter has to keep to one grid for ten minutes at step 30 s.

From then the steps between two answered ones are dropped from the frame: not read (``View.not_due``),
neither quiet nor a gap. An expected step that comes empty is kept, so series that end still end. One
warning names the query, the step asked and the step seen. An answer off that coarser grid (a spacing of
one step, or of any number of steps that is not a multiple of N) ends it, with a line in the log: data on a
coarser grid answers nowhere between its points, a filter does.

Series at different phases of a coarser step (two targets scraped every 60 s, 30 s apart, read at step 30
with a 30 s lookback) leave no step of the query empty: each series is absent from every other step, which
read as a lost series at each (``GpuLost`` resolved and fired again every minute). So each series' spacing
is followed as well, by the same rule (``series_seen``: the query's series that answer on a coarser step,
warned once per query), and its last answer is read again over its empty steps until its next answer is
due, as Prometheus' own lookback would: a series that ends is gone at the step it was next due. A series new
to the query (a relabel) is read so on the shortest step seen of its series until its own is seen. A series is
kept for its next answer up to twice its spacing, at most ``LONGEST``; one answered once is let go of after
20 steps, its labels' hash kept until ``LONGEST`` after that answer: a rule evaluated every 20 minutes, or
hourly downsampled data, is seen from its fourth answer. A filter query's series (``up == 0``) are kept 20
steps only, as before, and no step longer than 20 asked steps is seen for the query: one passing for a step
every 30 minutes is read as absent between. This runs on
one frame's series at once; while every series answers every step (the usual case) a read costs one
comparison of its label sets with the last read's.
"""

from __future__ import annotations

import logging
from collections.abc import Collection

import numpy as np

from anomaly.filterperiods import FilterPeriods
from anomaly.seriessteps import LONGEST, ONCE_MOST, RECENT, SeriesSteps
from anomaly.sources import Frame
from anomaly.spacingrule import MIN_STEPS, confirms, off_grid, spacing_run

# What other modules, the benchmarks and the tests import from here, wherever it is defined.
__all__ = ["LONGEST", "MIN_STEPS", "ONCE_MOST", "RECENT", "CoarseSteps", "SeriesSteps"]

logger = logging.getLogger(__name__)


class CoarseSteps:
    """Per query: its last answered step, the run of equal coarser spacings, and the step seen."""

    def __init__(self, source: str, filters: Collection[str] = ()) -> None:
        """``filters``: the queries whose series answer only where they pass a comparison (``up == 0``):
        each is kept 20 steps after its last answer, not up to ``LONGEST``, and no step longer than 20 asked
        steps is seen for them, so a series passing now and then on a regular grid (a target down every 30
        minutes) is read as absent between its answers."""
        self.source = source
        self.filters = frozenset(filters)
        self._last: dict[str, float] = {}  # query -> the newest step with a point of any series
        self._run: dict[str, tuple[float, int]] = {}  # query -> (spacing in seconds, times in a row)
        self.seen: dict[str, float] = {}
        """Per query, the step its answers come on where coarser than asked (warned once)."""
        self._series: dict[str, SeriesSteps] = {}
        self.series_seen: dict[str, float] = {}
        """Per query, the longest step any of its series answers on where coarser than asked."""
        self.periods = FilterPeriods(source)

    def keep(self, frame: Frame, step: float) -> Frame:
        """``frame`` (a query's grid, ``step`` apart) without the steps its coarser answers leave empty, and
        each series coarser than asked read at its last answer over the empty steps before its next."""
        frame = self._keep_steps(frame, step)
        if not frame.timestamps.size:
            return frame
        series = self._series.get(frame.query)
        if series is None:
            reach = 0.0 if frame.query in self.filters else LONGEST
            series = self._series[frame.query] = SeriesSteps(self.source, frame.query, reach)
        frame = series.carry(frame, step, told=frame.query in self.seen)
        if series.longest:
            self.series_seen[frame.query] = series.longest
        else:
            self.series_seen.pop(frame.query, None)
        return frame

    def learnt_queries(self) -> list[tuple[str, float | None, float, int, float]]:
        """Per query it learnt anything of, by name: its last answered step (None: none), its run of equal
        spacings (seconds, times in a row) and the step seen (0: none), for the snapshot
        (``anomaly.coarsestate``)."""
        names = sorted({*self._last, *self._run, *self.seen})
        return [(q, self._last.get(q), *self._run.get(q, (0.0, 0)), self.seen.get(q, 0.0)) for q in names]

    def take_up_query(self, query: str, last: float | None, spacing: float, times: int, seen: float) -> None:
        """Hold what a process before this one learnt of ``query`` (a row of ``learnt_queries``); before
        anything is read."""
        if last is not None:
            self._last[query] = last
        self._run[query] = (spacing, times)
        if seen:
            self.seen[query] = seen

    def series_steps(self) -> list[tuple[str, SeriesSteps]]:
        """Each query's series and their steps, by query (``anomaly.coarsestate``)."""
        return sorted(self._series.items())

    def take_up_series(self, steps: SeriesSteps) -> None:
        """Hold ``steps`` (``SeriesSteps.restored``) for its query; before anything is read."""
        self._series[steps.query] = steps
        if steps.longest:
            self.series_seen[steps.query] = steps.longest

    def answer_step(self, query: str) -> float | None:
        """The step the query, or the slowest of its series, answers on where coarser than asked."""
        return self.seen.get(query) or self.series_seen.get(query)

    def _keep_steps(self, frame: Frame, step: float) -> Frame:
        ts = frame.timestamps
        has = np.isfinite(frame.values).any(axis=0) if frame.labels else np.zeros(ts.size, np.bool_)
        answered = ts[has]
        before = self.seen.get(frame.query, 0.0)
        changes = self._follow(frame.query, answered, step)
        last = self._last.get(frame.query)
        # After a first read, the step seen at each empty step is the one its answers before it left, as a
        # read of each step alone finds it. Taken as the one the whole read ends with, a read of many steps
        # (a restart's warm-up over a snapshot, a catch-up) in which the step came to be believed dropped
        # the empty steps before that, which the process reading each on its own had read as gaps (restart
        # fuzz, coarse answers: seeds 744, 778). A first read (a new process' history, no state taken up)
        # is the whole of what it knows: the step it ends with holds for all of it.
        if last is None:
            seen = np.full(ts.size, self.seen.get(frame.query, 0.0))
        else:
            seen = np.full(ts.size, before)
            for at, now in changes:
                seen[ts > at] = now
        if answered.size:
            self._last[frame.query] = max(float(answered[-1]), -np.inf if last is None else last)
        if not seen.any() or has.all() or (last is None and not answered.size):
            return frame
        # The first read (the warm-up's history): its first answer sets the phase.
        first = float(answered[0]) - seen if last is None else last
        # Empty steps before the next expected answer are the coarser grid's in-between, not gaps; the
        # answered steps fix the phase as they come.
        expected = np.maximum.accumulate(np.where(has, ts, -np.inf))
        expected = np.maximum(expected, first) + seen - step / 2
        keep = has | (ts >= expected) | (seen == 0)
        if keep.all():
            return frame
        present = None if frame.present is None else frame.present[:, keep]
        return Frame(frame.query, frame.labels, ts[keep], frame.values[:, keep], frame.kind, present)

    def step(self, query: str, asked: float) -> float:
        """The step the query's points come on: the one seen where coarser, else ``asked``."""
        return self.seen.get(query, asked)

    def _follow(self, query: str, answered: np.ndarray, step: float) -> list[tuple[float, float]]:
        """Count the spacings of ``query``'s ``answered`` steps after its last answer followed; where the step
        seen changed, at which answer and to what (0: none)."""
        changes: list[tuple[float, float]] = []
        last = self._last.get(query)
        # Answers up to the last one followed were counted (a warm-up's hour read again over a snapshot's).
        stamps = answered if last is None else np.concatenate(([last], answered[answered > last]))
        if query in self.filters and query not in self.seen:  # a coarser step seen was told already
            self.periods.follow(query, stamps, step)
        for end, gap in zip(stamps[1:].tolist(), np.diff(stamps).tolist(), strict=True):
            steps = round(gap / step)
            seen = self.seen.get(query, 0.0)
            if seen and off_grid(np.array([steps], np.float64), np.array([seen]), step)[0]:
                del self.seen[query]
                logger.info(
                    "promql: query %s answers off the %gs step seen, %gs after its last answer: read on its"
                    " %gs step again",
                    query,
                    seen,
                    steps * step,
                    step,
                    extra={"source": self.source, "query": query},
                )
            spacing, times = self._run[query] = spacing_run(steps, step, *self._run.get(query, (0.0, 0)))
            # A filter passed for a step every 30 minutes was "seen" on a 30-minute step, its steps between
            # not read: its alert, judged at its answers only, never resolved.
            longer = query in self.filters and spacing > MIN_STEPS * step
            if confirms(times, steps, self.seen.get(query, 0.0), spacing) and not longer:
                self.seen[query] = spacing
                logger.warning(
                    "promql: query %s answers on a %gs step, not the %gs asked (samples further apart than"
                    " the lookback: downsampled data, a rule evaluated less often, a short"
                    " --query.lookback-delta): the steps between are not read, neither gaps nor quiet; look"
                    " back at least %gs (last_over_time(...[%gs]) of a selector, or --query.lookback-delta),"
                    " not a longer step_seconds, which can miss every sample",
                    query,
                    spacing,
                    step,
                    spacing,
                    spacing,
                    extra={"source": self.source, "query": query},
                )
            after = self.seen.get(query, 0.0)
            if after != seen:
                changes.append((float(end), after))
        return changes
