"""The warm-up's history read deferred while no query of it could be read (Prometheus down as ``anomaly run``
starts): read again at the ticks after, each wait twice the last (``retry_delay``), until it reads once. It
reads the history as of the start, as the warm-up would have then; the ticks since are read at the tick it
reads, as after an outage (``HistoryReplayer._retried_warm_up``).

Before, a warm-up whose read failed was never read again: when Prometheus came back the detectors learnt from
its live reads alone, from nothing, the adaptive bands scoring nothing for their warm-up and a fault under
way learnt as the GPU's normal, though Prometheus held the hour. Until the history is read nothing is fed to
the detectors (a live read fed first would be learnt before the history it follows), so nothing is raised
that the warm-up would have kept from being raised; ``GpuwardenSourceStale`` is, as for any source down.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

# The longest wait between two reads of a deferred warm-up's history: an outage of hours is read again every
# 5 minutes, not every tick, and a Prometheus back is read at most this long after (the ticks since the start
# are caught up then, up to ``max_lookback_seconds``: nothing is lost, the first alerts come that much later).
WARM_UP_RETRY_MAX_SECONDS = 300.0


def retry_delay(failures: int, every: float) -> float:
    """The wait after the ``failures``-th failed read of the warm-up's history: a tick, then twice as long
    after each failure, at most ``WARM_UP_RETRY_MAX_SECONDS`` (a tick, where ticks are longer)."""
    return min(every * 2.0 ** (failures - 1), max(every, WARM_UP_RETRY_MAX_SECONDS))


@dataclass(frozen=True, slots=True)
class DeferredWarmUp:
    """A warm-up whose history read failed for every query: when it first failed (``since``), how many reads
    failed, when the next is due, and what serve held at start (``held``: ``HistoryReplayer.warm_up``)."""

    held: Mapping[str, datetime] | None
    since: float
    failures: int
    due: float

    def failed_again(self, now: float, every: float) -> DeferredWarmUp:
        """This one after another failed read at ``now``."""
        failures = self.failures + 1
        return DeferredWarmUp(self.held, self.since, failures, now + retry_delay(failures, every))


def deferred(
    now: float, every: float, held: Mapping[str, datetime] | None, since: float | None = None
) -> DeferredWarmUp:
    """The warm-up whose first read failed at ``now``, its history read as of ``since`` (None: ``now``; a
    restart's from a snapshot saved while deferred: the chain's first start)."""
    return DeferredWarmUp(held, now if since is None else since, 1, now + retry_delay(1, every))
