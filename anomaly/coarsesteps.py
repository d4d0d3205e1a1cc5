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
"""

from __future__ import annotations

import logging

import numpy as np

from anomaly.sources import Frame

logger = logging.getLogger(__name__)

CONFIRM = 3  # spacings in a row of the same coarser step before it is believed: one outage is one spacing
MIN_STEPS = 20  # asked steps those spacings cover at least: a filter's answers are on a grid by chance


class CoarseSteps:
    """Per query: its last answered step, the run of equal coarser spacings, and the step seen."""

    def __init__(self, source: str) -> None:
        self.source = source
        self._last: dict[str, float] = {}  # query -> the newest step with a point of any series
        self._run: dict[str, tuple[float, int]] = {}  # query -> (spacing in seconds, times in a row)
        self.seen: dict[str, float] = {}
        """Per query, the step its answers come on where coarser than asked (warned once)."""

    def keep(self, frame: Frame, step: float) -> Frame:
        """``frame`` (a query's grid, ``step`` apart) without the steps its coarser answers leave empty."""
        ts = frame.timestamps
        has = np.isfinite(frame.values).any(axis=0) if frame.labels else np.zeros(ts.size, np.bool_)
        answered = ts[has]
        self._follow(frame.query, answered, step)
        seen = self.seen.get(frame.query)
        last = self._last.get(frame.query)
        if answered.size:
            self._last[frame.query] = float(answered[-1])
        if seen is None or has.all() or (last is None and not answered.size):
            return frame
        if last is None:  # the first read (the warm-up's history): its first answer sets the phase
            last = float(answered[0]) - seen
        # Empty steps before the next expected answer are the coarser grid's in-between, not gaps; the
        # answered steps fix the phase as they come.
        expected = np.maximum.accumulate(np.where(has, ts, -np.inf))
        expected = np.maximum(expected, last) + seen - step / 2
        keep = has | (ts >= expected)
        if keep.all():
            return frame
        return Frame(frame.query, frame.labels, ts[keep], frame.values[:, keep], frame.kind)

    def step(self, query: str, asked: float) -> float:
        """The step the query's points come on: the one seen where coarser, else ``asked``."""
        return self.seen.get(query, asked)

    def _follow(self, query: str, answered: np.ndarray, step: float) -> None:
        last = self._last.get(query)
        stamps = answered if last is None else np.concatenate(([last], answered))
        for gap in np.diff(stamps).tolist():
            steps = round(gap / step)
            seen = self.seen.get(query)
            if seen is not None and steps % round(seen / step):  # an answer off the coarser grid
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
            if steps <= 1:
                self._run.pop(query, None)
                continue
            spacing = steps * step
            before, times = self._run.get(query, (0.0, 0))
            times = times + 1 if before == spacing else 1
            self._run[query] = (spacing, times)
            if times >= CONFIRM and times * steps >= MIN_STEPS and self.seen.get(query) != spacing:
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
