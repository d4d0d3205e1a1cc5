"""Filter queries whose answers come back on a period: told once per query.

A filter (``job:x:20m > 0``, a comparison without ``bool``) over a recording rule evaluated every 20
minutes, read with a lookback shorter than that, answers for the lookback after each evaluation and then
nothing: its series appear and disappear every 20 minutes, and their alerts fire and resolve with them.
``anomaly.coarsesteps`` does not take such a query as coarse (a filter answers only where it passes, and no
step over 20 asked steps is seen for one), so nothing said why. Here the returns of a filter query (an
answer after at least one empty step) are followed: ``CONFIRM`` intervals in a row of the same number of
asked steps, covering at least ``MIN_STEPS`` of them, are a period, and one warning names the query, the
period and what to change. A target failing now and then comes back at uneven times and is not told.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from anomaly.spacingrule import confirms, spacing_run
from anomaly.thresholds import FloatArray

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class _Returns:
    last: float | None = None  # the query's last return (an answer after an empty step)
    spacing: float = 0.0  # seconds between the last two returns
    times: int = 0  # spacings of that many seconds in a row


class FilterPeriods:
    """Per filter query, its returns' spacing, run and whether it was told."""

    def __init__(self, source: str) -> None:
        """The evidence asked of a period is ``anomaly.spacingrule``'s, as of a coarser step."""
        self.source = source
        self._returns: dict[str, _Returns] = {}
        self.told: dict[str, float] = {}
        """Per query told of, the period in seconds its answers came back on."""

    def follow(self, query: str, stamps: FloatArray, step: float) -> None:
        """``stamps``: the query's answered steps in order, its last answered step before them first."""
        if query in self.told or stamps.size < 2:
            return
        back = stamps[1:][np.diff(stamps) > 1.5 * step]
        returns = self._returns.setdefault(query, _Returns())
        for t in back.tolist():
            if returns.last is not None:
                steps = round((t - returns.last) / step)  # 2 or more: a return follows an empty step
                returns.spacing, returns.times = spacing_run(steps, step, returns.spacing, returns.times)
                if confirms(returns.times, steps, 0.0, returns.spacing):  # 0.0: no period told yet
                    self._tell(query, returns.spacing, step)
                    return
            returns.last = t

    def _tell(self, query: str, period: float, step: float) -> None:
        self.told[query] = period
        del self._returns[query]
        logger.warning(
            "promql: query %s is a filter (a comparison without bool) whose series come back every %gs"
            " after an absence: its alerts fire at each return and resolve in each absence. If it reads a"
            " rule evaluated every %gs or samples further apart than the lookback, look back at least %gs"
            " (last_over_time(...[%gs]) of the selector, or --query.lookback-delta), or compare with `bool`"
            " and keep every step; a condition that truly recurs so needs nothing (read at step %gs)",
            query,
            period,
            period,
            period,
            period,
            step,
            extra={"source": self.source, "query": query},
        )
