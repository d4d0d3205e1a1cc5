"""The scoring loop: read the source, run the detectors, raise and resolve alerts, cache the write-back.

``infer`` is one tick (the ``infer_every`` job); ``fit`` refits models that are not online (``fit_every``).
Both are loop boundaries: a failing detector is logged and counted and the others still run; a failing
source yields an unhealthy ``SourceHealth`` and, after ``stale_after_seconds``, a staleness alert, and the
alerts about what it could not read stay as they are until it can be read again. So do the alerts of a
query that was not due at a tick (its ``step_seconds`` longer than ``infer_every_seconds``): the pending
and quiet ticks that raise and resolve an alert are reads of what it is about, not ticks of the loop.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime

from anomaly.alertupdate import DEFAULT_ALERTNAME
from anomaly.firing import TickResult, _Firing
from anomaly.fleet import FleetDetector
from anomaly.registry import builtin_registry
from anomaly.series import build_view
from anomaly.snapshot import Snapshot
from anomaly.sources import Frame, Source, joined
from anomaly.warmup import HISTORY_TICKS, HistoryReplayer
from anomaly.writeback import TickStats

# What other modules, the benchmarks and the tests import from here, wherever it is defined.
__all__ = [
    "DEFAULT_ALERTNAME",
    "HISTORY_TICKS",
    "AnomalyService",
    "TickResult",
    "_Firing",
    "builtin_registry",
]

logger = logging.getLogger(__name__)


class AnomalyService(HistoryReplayer):
    """Owns the series index, the detectors, the alert state and the write-back cache.

    Its parts are its bases, one module each: the state and reads (``anomaly.servicecore``), the alert update
    (``anomaly.alertupdate``), the snapshot (``anomaly.takeup``) and the warm-up (``anomaly.warmup``); here
    is the tick."""

    def warm_up(self, held: Mapping[str, datetime] | None = None, snapshot: Snapshot | None = None) -> int:
        """``HistoryReplayer.warm_up``; where it read a deferred chain's history as of the chain's first start
        (a restart from a snapshot saved while deferred, Prometheus answering again), the ticks since are read
        now, in one read, as the tick of the process that ran on did at which its deferred read succeeded;
        what that read raises and resolves is told at the next tick (``_catch_up``).

        Left to the first tick, they were read with that tick's own in one read: a restart starting as
        Prometheus came back (at the time of the tick whose read it would have been, which no process ran)
        scored the fleet and thermal detectors otherwise from its first tick, and held other alerts, than the
        process that ran on (restart fuzz ``--snapshot --promql --down-at-start 20``: seeds 2722, 2763, 2764,
        2773). Where Prometheus came back earlier, while no process ran, the ticks between are still read in
        one read, where that process read them tick by tick: nothing tells when it came back."""
        fed = super().warm_up(held, snapshot)
        now = self.clock.time()
        if self.warm_up_retry is None and self.read_until < now - self.cfg.latency_offset_seconds:
            changed = self._scored(now, read=True).changes()
            told = {alert.fingerprint for alert in changed}
            self._catch_up.extend(changed)
            self._resend = [alert for alert in self._resend if alert.fingerprint not in told]
        return fed

    def infer(self) -> TickResult:
        """One scoring tick."""
        t0 = self.clock.monotonic()
        now = self.clock.time()
        # Nothing read while a deferred warm-up's history is unread: its live reads would be learnt first.
        result = self._scored(now, read=self._retried_warm_up(now))
        stats = TickStats(
            series=len(self.index),
            alerts_firing=len(self.firing),
            tick_seconds=self.clock.monotonic() - t0,
            detector_errors=dict(self.detector_errors),
            not_available=dict(self.not_available),
            fleet_uncompared={
                q: n for d in self.detectors if isinstance(d, FleetDetector) for q, n in d.uncompared.items()
            },
            warm_up_deferred=None if self.warm_up_retry is None else self.warm_up_retry.failures,
        )
        self.collector.update(result.findings, self.health(), stats)
        resend = self.on_resend or self.on_alert
        for alert, tell in [
            *((a, self.on_alert) for a in self._catch_up),
            *((a, resend) for a in self._resend),
            *((a, self.on_alert) for a in result.changes()),
        ]:
            if tell is not None:
                tell(alert)
        self._catch_up, self._resend = [], []
        self.ticks += 1
        self.last_tick_end = self.clock.monotonic()
        return result

    def _scored(self, now: float, *, read: bool) -> TickResult:
        """A tick at ``now``: the sources read on from their last reads (not where ``read`` is False), the
        detectors run, the staleness judged and the alerts raised and resolved; not told."""
        until = now - self.cfg.latency_offset_seconds  # data newer than this is not final in the source
        held, self._held_over = self._held_over, []
        frames: list[Frame] = []
        not_due: set[str] = set()
        for source in self.sources if read else ():
            start = max(
                self._last_read.get(source.name, until - self.cfg.infer_every_seconds),
                until - self.cfg.max_lookback_seconds,
            )
            got = self._read(source, start, until)
            frames.extend(self._per_gpu(f) for f in got)
            not_due |= _not_due(source, got)
        view = build_view(
            _with_held_over(held, frames), self.index, self.counters, until, self.data_ranges.ranges
        )
        view.not_due = frozenset(not_due)
        self._count_not_available(view)
        self._expire(view, until, self._unread())
        for step in view.steps:
            self.evidence.push(step.ids, step.value, step.at)
        result = TickResult()
        for detector in self.detectors:
            try:
                if view.forgotten.size:
                    detector.forget(view.forgotten)
                result.findings.extend(self.data_ranges.apply(f) for f in detector.detect(view))
            except Exception:  # loop boundary: one detector must not stop the others
                logger.exception("detector failed", extra={"detector": detector.name})
                self.detector_errors[detector.name] = self.detector_errors.get(detector.name, 0) + 1
        result.findings.extend(self._staleness(now))
        self._update_alerts(result, now, self._unreadable(view))
        self.last_view = view
        self.read_until = until
        return result


def _with_held_over(held: Sequence[Frame], read: Sequence[Frame]) -> list[Frame]:
    """A tick's ``read`` with the samples the warm-up ``held`` over for it (``_hold_over``): a query's held
    frame joined to its read, in the read's place, as one read from its own last read returns it (two frames
    of one query: a series in only one of them read as a gap in the other half, none in a whole read)."""
    if not held:
        return list(read)
    waiting: dict[str, list[Frame]] = {}
    for frame in held:
        waiting.setdefault(frame.query, []).append(frame)
    frames = [joined([*waiting.pop(f.query), f]) if f.query in waiting else f for f in read]
    return [*(f for parts in waiting.values() for f in parts), *frames]


def _not_due(source: Source, got: Sequence[Frame]) -> set[str]:
    """The queries ``source`` reads each on its own step (those it reports one by one in ``health().queries``,
    as the PromQL source does) that this read returned no frame of and that did not fail: none of their steps
    fell in the window. A query read with no series has a frame, without rows: it is read, its series gone.
    A source that reports no query (the in-process one) reads everything at every read."""
    read = {f.query for f in got}
    return {q for q, h in source.health().queries.items() if h.up and q not in read}
