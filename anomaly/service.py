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
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

import numpy as np

from anomaly.adaptive import AdaptiveDetector
from anomaly.changepoint import LevelShiftDetector
from anomaly.dataranges import DataRanges
from anomaly.detectors import Detector, DetectorRegistry, Findings, JudgedDetector, SavedDetector
from anomaly.fleet import FleetDetector, peer_key
from anomaly.forwarder import held_seconds
from anomaly.multivariate import MultivariateDetector
from anomaly.presence import PresenceDetector
from anomaly.promql import selected_metric
from anomaly.series import (
    CounterRates,
    EvidenceBuffer,
    SeriesIndex,
    SeriesKey,
    View,
    build_view,
    key_state,
    restored_key,
    series_key,
)
from anomaly.signatures import SignatureDetector
from anomaly.snapshot import Snapshot, State, alert_state, refused, restored_alert, shaping_settings
from anomaly.sources import Frame, Source, joined
from anomaly.thermal import ThermalDetector
from anomaly.writeback import AnomalyCollector, TickStats, exported_score, output_labels
from gpuwarden.clock import Clock, rfc3339
from gpuwarden.config_anomaly import AnomalyConfig
from gpuwarden.mig import device_level, one_per_gpu
from gpuwarden.model import (
    Alert,
    AlertSource,
    AlertStatus,
    EvidencePoint,
    RecommendedAction,
    label_fingerprint,
)

logger = logging.getLogger(__name__)

DEFAULT_ALERTNAME = "GpuwardenAnomaly"
_COLLECTIVE_MIN = 3
_COLLECTIVE_SHARE = 0.5
_COLLECTIVE_SCORE = 0.5
# Detectors not fed the warm-up history: their rules are exact (GpuLost, XID) and need no learning; what
# they would find in the history is still there, and found, at the first live tick. Presence is fed: a GPU
# that stopped reporting before the restart is absent from every live tick, so only the history knows it.
# After a snapshot they are fed the history since it, from the counts it kept: an XID or a DBE counted
# while the service was stopped raises as it would have without the restart (``_replay_resuming``).
_NO_WARMUP = frozenset({"signatures"})
# Ticks of history replayed at start: four times the adaptive warm-up and its pending ticks, an hour at 30 s.
# Bounded in ticks, not only in time: at sub-second ticks an hour is tens of thousands of steps to read
# within one tick's read deadline.
HISTORY_TICKS = 120
# Series of the history looked up in a snapshot's series index to tell whether it is this fleet's, at most.
_FLEET_SAMPLE = 1000


def builtin_registry(cfg: AnomalyConfig) -> DetectorRegistry:
    """The built-in detectors, listed in one place."""
    registry = DetectorRegistry()
    registry.register("adaptive", lambda: AdaptiveDetector(cfg))
    registry.register("level_shift", lambda: LevelShiftDetector(cfg.level_shift_queries))
    registry.register(
        "multivariate",
        lambda: MultivariateDetector(
            cfg.multivariate_queries, trees=cfg.multivariate_trees, history=cfg.multivariate_history
        ),
    )
    registry.register(
        "fleet",
        lambda: FleetDetector(
            cfg.fleet_queries,
            cfg.fleet_peer_labels,
            k=cfg.fleet_k,
            min_deviation=cfg.fleet_min_deviation_by_metric,
            k_exit=cfg.fleet_k_exit,
            hold_ticks=cfg.fleet_hold_ticks,
            load_query=cfg.fleet_load_query,
            load_adjusted=cfg.fleet_load_adjusted,
        ),
    )
    registry.register("signatures", lambda: SignatureDetector(lost_memory_seconds=cfg.absent_forget_seconds))
    registry.register(
        "thermal",
        lambda: ThermalDetector(
            lag_seconds=cfg.thermal_lag_seconds,
            alpha=cfg.thermal_alpha,
            k=cfg.thermal_k,
            min_deviation=cfg.thermal_min_deviation,
            ridge_watts=cfg.thermal_ridge_watts,
            warmup=cfg.thermal_warmup,
            hold_seconds=cfg.thermal_hold_seconds,
            peer_labels=cfg.thermal_peer_labels,
            min_peers=cfg.thermal_min_peers,
            peer_tolerance=cfg.thermal_peer_tolerance,
            settle_seconds=cfg.thermal_settle_seconds,
        ),
    )
    registry.register(
        "presence",
        lambda: PresenceDetector(
            cfg.presence_queries,
            absent_after=cfg.absent_after_seconds,
            forget_after=cfg.absent_forget_seconds,
        ),
    )
    return registry


# A firing alert re-escalates when, after its score came down to at most half its peak, its value no longer
# past its band on the side it was raised on, for ``pending_ticks`` reads in a row (a recovery), it climbs to
# at least twice the lowest it came down to (a quiet read counts as 1, the band's edge) for ``pending_ticks``
# reads, and no sooner than ``resolve_after`` reads after it was raised (see ``_Firing.escalates``).
_RECOVERED_SHARE = 0.5
_ESCALATION_FACTOR = 2.0
# What a snapshot keeps of a firing alert besides the alert and its series (``_Firing.state``).
_FIRING_STATE = (
    "resolve_after",
    "query",
    "detector",
    "quiet",
    "peak",
    "trough",
    "low",
    "recovered",
    "rising",
    "reads",
)


@dataclass(slots=True)
class _Firing:
    alert: Alert
    resolve_after: int
    query: str
    detector: str
    quiet: int = 0
    peak: float = 0.0  # the highest score since it was raised (or re-raised)
    trough: float = 0.0  # the lowest score since that peak
    low: int = 0  # reads in a row at ``_RECOVERED_SHARE`` of the peak or less, off the side raised on
    recovered: bool = False  # ``low`` reached ``pending_ticks`` since the peak: the fault's effect ended
    rising: int = 0  # reads in a row at ``_ESCALATION_FACTOR`` times the trough or more, after a recovery
    reads: int = 0  # reads since it was raised (or re-raised)
    # What it is about (``_reads``): its series' key in the index, not its id, which is freed once the series
    # is forgotten and given to the next new one; where the detector gives no ids, its row's query and labels.
    series: SeriesKey | None = None

    def heard(self, score: float, side: str, pending: int) -> bool:
        """An anomalous read of an alert the warm-up recalled, not raised again yet: ``escalates``."""
        self.quiet = 0
        return self.escalates(score, side, pending)

    def escalates(self, score: float, side: str, pending: int) -> bool:
        """Whether ``score``, the alert's at a read where it is anomalous (past its band on ``side``, see
        ``_deviation``), is the ``pending``-th read in a row of a re-escalation: a new fault on its target,
        which the open alert would otherwise hide.

        A fault that began while an earlier fault's alert was still open (decaying, or held after the repair)
        raised nothing: every alert it would raise was open (seed 905's straggler 472 s after a power brake's
        repair: its SM-clock score fell from 8.6 to 1.64, then rose to 5.2). "Recovered" is relative to the
        alert's own peak, and "worse again" to the level it came down to, so a score hovering at its band's
        edge, or noisy at one level, does not re-raise. Nor does one sooner than ``resolve_after`` reads after
        its raise, what a flapping alert that resolved would have needed to be raised again: a GPU drifting
        out of its peers' band every 50 minutes stays one fleet alert in its 2-hour hold, as built.

        A recovery is the value back in its band (or past its other side), not merely less far out on the side
        the alert was raised on, and it holds as a raise must: ``pending`` reads in a row. One fault that
        comes and goes in waves is one alert: a thermal runaway's GPU, its clock halved at 100 C and cut by a
        fifth below, read SM-clock scores of 6.5 with dips to 2.6 (still below its band) for one to three
        reads; counted from the lowest dip, the climb back re-raised the alert mid-fault in ``gpuwarden
        demo``, which serve told as the alert cycling. The repaired brake's clock read back inside its band.
        """
        self.reads += 1
        if self.recovered and score >= _ESCALATION_FACTOR * self.trough and self.reads > self.resolve_after:
            self.rising += 1
            return self.rising >= pending
        self.rising = 0
        raised_on = self.alert.labels.get("deviation", "")
        self._settle(score, pending, back=not raised_on or side != raised_on)
        return False

    def state(self) -> dict[str, Any]:
        """As JSON values (``anomaly.snapshot``; ``restored`` reads them back)."""
        return {
            "alert": alert_state(self.alert),
            "series": None if self.series is None else key_state(self.series),
            **{name: getattr(self, name) for name in _FIRING_STATE},
        }

    @classmethod
    def restored(cls, state: Mapping[str, Any]) -> _Firing:
        """The firing alert ``state()`` gave ``state`` of."""
        series = None if state["series"] is None else restored_key(state["series"])
        return cls(restored_alert(state["alert"]), series=series, **{k: state[k] for k in _FIRING_STATE})

    def resume(self, recalled: _Firing) -> None:
        """Raised anew after a restart: take up the peak, trough, recovery, rise and reads since its raise
        where ``recalled``, its state from the history the warm-up replayed and the reads since, left them."""
        self.peak, self.trough, self.low = recalled.peak, recalled.trough, recalled.low
        self.recovered, self.rising, self.reads = recalled.recovered, recalled.rising, recalled.reads

    def rests(self, pending: int, *, read: bool = True) -> bool:
        """A quiet read: the score was at most 1, the band's edge; or, not ``read``, one without its series
        (its GPU gone, its node down) or that its detector could not judge (``Findings.judged``): no value
        back in its band, so no recovery, and it breaks a run of them.
        Counted as a read at 1, a runaway's alert (9-10) whose node was down for 21 reads recovered, and the
        runaway read back at 9.4 re-raised it mid-fault (seed 903).
        Whether it is the read that resolves it."""
        self.quiet += 1
        self.reads += 1
        self.rising = 0
        if read:
            self._settle(1.0, pending, back=True)
        else:
            self.low = 0
        return self.quiet >= self.resolve_after

    def _settle(self, score: float, pending: int, *, back: bool) -> None:
        """Take a read that re-escalates nothing into the peak, the trough and the recovery; ``back``: its
        value is not past its band on the side the alert was raised on."""
        if score > self.peak:
            self.peak = self.trough = score
            self.low, self.recovered = 0, False
            return
        self.trough = min(self.trough, score)
        self.low = self.low + 1 if back and score <= _RECOVERED_SHARE * self.peak else 0
        self.recovered = self.recovered or self.low >= pending


@dataclass(slots=True)
class _TakenAlerts:
    """The alerts a snapshot holds (``AnomalyService._alert_state``), as the service keeps them."""

    firing: dict[str, _Firing]
    recalled: dict[str, _Firing]
    recall_ends: dict[str, float]
    pending: dict[str, tuple[int, str, str]]

    @classmethod
    def restored(cls, meta: Mapping[str, Any]) -> _TakenAlerts:
        """The alerts ``_alert_state`` gave ``meta`` of; ``KeyError``, ``ValueError`` or ``TypeError`` for
        one that does not fit, as a snapshot of before recalled alerts were kept apart (``recalled``)."""
        recalled = {k: _Firing.restored(v) for k, v in meta["recalled"].items()}
        return cls(
            firing={k: _Firing.restored(v) for k, v in meta["firing"].items()},
            recalled=recalled,
            recall_ends={k: float(meta["recall_ends"][k]) for k in recalled},
            pending={k: (int(n), str(d), str(q)) for k, (n, d, q) in meta["pending"].items()},
        )


@dataclass(slots=True)
class TickResult:
    """What one tick changed."""

    raised: list[Alert] = field(default_factory=list)
    resolved: list[Alert] = field(default_factory=list)
    findings: list[Findings] = field(default_factory=list)

    def changes(self) -> list[Alert]:
        """The order to apply them in, the forwarder's (``anomaly.forwarder``): a re-escalated alert's old
        activity resolved before its new one is raised (``_Firing.escalates``), the raised alerts, then the
        other resolutions. A GPU's alert raised as its other alert resolves joins that alert's incident, in
        ``gpuwarden demo`` as at ``gpuwarden serve``; taken after the resolution, it opened another."""
        again = {a.fingerprint for a in self.raised}
        ended = [a for a in self.resolved if a.fingerprint in again]
        return [*ended, *self.raised, *(a for a in self.resolved if a.fingerprint not in again)]


class AnomalyService:
    """Owns the series index, the detectors, the alert state and the write-back cache."""

    def __init__(
        self,
        cfg: AnomalyConfig,
        sources: Sequence[Source],
        clock: Clock,
        detectors: Sequence[Detector] | None = None,
        on_alert: Callable[[Alert], None] | None = None,
    ) -> None:
        self.cfg = cfg
        self.sources = list(sources)
        self.clock = clock
        self.detectors = (
            list(detectors) if detectors is not None else builtin_registry(cfg).create(cfg.detectors)
        )
        self.on_alert = on_alert
        self.index = SeriesIndex()
        self.counters = CounterRates()
        self.evidence = EvidenceBuffer()
        self.collector = AnomalyCollector()
        self.data_ranges = DataRanges(cfg)
        self.firing: dict[str, _Firing] = {}
        self._pending: dict[str, tuple[int, str, str]] = {}  # key -> ticks agreed, detector, query
        self._recalled: dict[str, _Firing] = {}  # alerts the warm-up's history left firing (``warm_up``)
        self._recall_ends: dict[str, float] = {}  # when serve lets each recalled alert end (``warm_up``)
        # What the ticks a restart missed changed, told at the next (``_replay_resuming``).
        self._catch_up: list[Alert] = []
        self.collective_suppressed = 0
        self.detector_errors: dict[str, int] = {}
        self.not_available: dict[str, int] = {}  # per query, samples read as not-available values (gaps)
        self.last_view = View(time=clock.time())
        self._last_read: dict[str, float] = {}
        # Per query, the end of its last good read: a source that reads each query on from its own (PromQL)
        # reads a failed one again from there, and so does the warm-up after a snapshot (``_after``).
        self._query_read: dict[str, float] = {}
        self._held_over: list[Frame] = []  # read by the warm-up for the first tick (``warm_up``)
        self._query_source: dict[str, str] = {}
        self._exprs = {q.name: q.expr for q in cfg.queries}
        self._device_level: dict[str, bool] = {}
        # Per detector whose alerts are judged by several queries: which (by the alert's query). Found by
        # the method, not a list of classes: a detector that names its queries is never left out.
        self._judged: dict[str, Callable[[str], tuple[str, ...]]] = {
            d.name: d.judged_by for d in self.detectors if isinstance(d, JudgedDetector)
        }
        self._started = clock.time()
        self.ticks = 0
        self.last_tick_end: float | None = None  # clock.monotonic() when the last tick ended (/healthz)
        self.started_monotonic = clock.monotonic()

    def infer(self) -> TickResult:
        """One scoring tick."""
        t0 = self.clock.monotonic()
        now = self.clock.time()
        until = now - self.cfg.latency_offset_seconds  # data newer than this is not final in the source
        held, self._held_over = self._held_over, []
        frames: list[Frame] = []
        not_due: set[str] = set()
        for source in self.sources:
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
        view.forgotten = self.index.expire(until, self.cfg.forget_after_seconds)
        self.evidence.reset(view.forgotten)
        self.counters.reset(view.forgotten)  # a recycled id must not diff against the old series
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
        stats = TickStats(
            series=len(self.index),
            alerts_firing=len(self.firing),
            tick_seconds=self.clock.monotonic() - t0,
            detector_errors=dict(self.detector_errors),
            not_available=dict(self.not_available),
            fleet_uncompared={
                q: n for d in self.detectors if isinstance(d, FleetDetector) for q, n in d.uncompared.items()
            },
        )
        self.collector.update(result.findings, [s.health() for s in self.sources], stats)
        for alert in [*self._catch_up, *result.changes()]:
            if self.on_alert is not None:
                self.on_alert(alert)
        self._catch_up = []
        self.ticks += 1
        self.last_tick_end = self.clock.monotonic()
        return result

    def _per_gpu(self, frame: Frame) -> Frame:
        """The frame with one series per GPU when its metric is device-level and MIG instances repeat it
        (``gpuwarden.mig.one_per_gpu``): a hot MIG GPU is one alert and one fleet peer, not one per instance.
        The metric is the query's name, else its expression's when that is a bare selector."""
        device = self._device_level.get(frame.query)
        if device is None:
            expr = self._exprs.get(frame.query, "")
            named = selected_metric(expr) or ""
            device = self._device_level[frame.query] = device_level(frame.query) or device_level(named)
        if not device:
            return frame
        kept = one_per_gpu(frame.labels)
        if kept is None:
            return frame
        rows, labels = kept
        return frame.rows(rows, labels)

    def _count_not_available(self, view: View) -> None:
        """Add up the view's not-available samples per query; the first of a query is logged."""
        for query, count in view.not_available.items():
            if query not in self.not_available:
                logger.warning(
                    "query %s read %d samples holding an NVML/DCGM not-available value (4294967295, a DCGM"
                    " blank, ...) or an infinite one (+Inf: a division by 0, histogram_quantile past its"
                    " highest bucket): read as missing data, not scored; counted in"
                    " gpuwarden_anomaly_not_available_samples_total",
                    query,
                    count,
                    extra={"query": query},
                )
            self.not_available[query] = self.not_available.get(query, 0) + count

    def warmup_seconds(self) -> float:
        """How much history ``warm_up`` reads: ``HISTORY_TICKS`` at the coarsest query step or tick (an hour
        at 30 s), at most ``max_lookback_seconds``, what the source is asked for at most.

        Not just the adaptive warm-up and the pending ticks: a fault older than those (a GPU running hot for
        20 minutes when the service restarts) filled that whole window, so the detectors learned it as the
        GPU's normal, never raised its alert again, and serve resolved it while the fault went on. Replaying
        the longer history leaves the detectors as they would be without the restart."""
        cfg = self.cfg
        step = max([cfg.infer_every_seconds, *(q.step_seconds for q in cfg.queries)])
        return min(cfg.max_lookback_seconds, HISTORY_TICKS * step)

    def warm_up(self, held: Mapping[str, datetime] | None = None, snapshot: Snapshot | None = None) -> int:
        """At start, feed the detectors the source's recent history, one tick's worth at a time, raising no
        alert from it; then fit once. Returns the number of history ticks fed. ``held``: the alerts serve
        holds firing, by fingerprint, with their ``endsAt`` (``AlertForwarder.held``), for ``_recall``.

        Without it a restart learned from zero: the adaptive detector scored nothing for ``warmup`` ticks
        and the multivariate one for a whole ``fit_every_seconds``, though Prometheus held the history.
        The next ``infer`` reads on from where this read ended.

        With a ``snapshot`` that fits (``_take_up``), the detectors, the series index and the alerts take up
        its state and only the history after it is replayed, on the grid of its ticks, so the next ticks
        score as they would have without the restart; its firing alerts fire on and its recalled ones stay
        recalled to the end they had (``_replay_resuming``; no new recall, ``held`` unused) and the models
        are not fitted again (their next fit comes on the ``fit_every`` schedule, as it would have). One that
        does not fit is said, and the whole history replayed as without one. The whole history is read
        either way: whether the snapshot is this fleet's is told by the series it holds (``_other_fleet``).
        """
        now = self.clock.time()
        until = now - self.cfg.latency_offset_seconds
        start = until - self.warmup_seconds()
        frames = self._history(start, until)
        taken = self._take_up(snapshot, start, until, frames) if snapshot is not None else None
        since = taken[0] if taken is not None else None
        if snapshot is not None and taken is not None:
            frames = self._after(frames, start, snapshot)
        if not frames and taken is None:
            return 0
        every = self.cfg.infer_every_seconds
        anchor = start if since is None else since  # the grid of the ticks replayed
        # Steps where no series had a value (before Prometheus held any data) teach nothing: not replayed.
        stamps = [f.timestamps[f.samples.any(axis=0)] for f in frames]
        # Samples from before the snapshot (of a query that failed then, read again from its own last read)
        # are fed with the first tick after it, as the live read after it fed them: the first replayed
        # (``_replay`` feeds it all up to its end), else the first live one (``_held_over``).
        ends = sorted(
            {
                anchor + every * math.ceil((float(t) - anchor) / every)
                for ts in stamps
                for t in ts
                if t > anchor
            }
        )
        if snapshot is not None and since is not None and not ends:
            self._hold_over(frames, snapshot, start, since)
        suppressed = self.collective_suppressed
        if taken is None:
            self._replay_recalling(frames, ends, now, held)
        else:
            self._replay_resuming(frames, ends, taken[1])
        self.collective_suppressed = suppressed
        if since is None:
            self.fit()  # the multivariate model, when the history gave it rows enough, scores at once
        after = "" if since is None else f" after the state snapshot ({until - since:.0f} s before now)"
        logger.info(
            "warm-up: fed %d ticks of history (%.0f s)%s to the detectors", len(ends), until - start, after
        )
        return len(ends)

    def _hold_over(self, frames: Sequence[Frame], snapshot: Snapshot, start: float, since: float) -> None:
        """Keep what ``frames`` hold up to ``since`` (the snapshot's time: a failed query's catch-up) for the
        first live tick, where no tick after the snapshot is replayed (``_held_over``)."""
        caught_up = (_window(f, -math.inf, since) for f in frames)
        self._held_over = [f for f in caught_up if f is not None and f.labels]
        # Until a tick feeds them, a save keeps these queries read only as far as the snapshot had them.
        self._query_read.update({f.query: self._read_from(snapshot, start, f.query) for f in self._held_over})

    def _replay_recalling(
        self, frames: Sequence[Frame], ends: Sequence[float], now: float, held: Mapping[str, datetime] | None
    ) -> None:
        """Replay the history with no alert firing, then recall what it left firing (``_recall``)."""
        live = (self.firing, self._pending)
        self.firing, self._pending = {}, {}
        self._replay(frames, ends, alerts=self.cfg.reescalate_alerts)
        # What the history left firing reads on, recalled, until its alert is raised again
        # (``_Firing.resume``) or would have resolved: a restart during a recovery took the score it was
        # raised at for its peak, and the next fault's rise for a new one, so that fault re-raised nothing,
        # serve still holding the alert firing; and a recall dropped at its first quiet read lost it where the
        # value was back in its band, the recovery a re-raise needs.
        # Recalled no longer than serve holds what the old service posted last (its endsAt): re-raised after
        # that, the post led with the old alert firing then resolved, and serve's incident ended with the
        # alert resolved while the new fault went on; raised as a first alert, serve takes it as new.
        self._recall(now, held)
        self.firing, self._pending = live

    def _replay_resuming(self, frames: Sequence[Frame], ends: Sequence[float], alerts: _TakenAlerts) -> None:
        """Replay the history after a snapshot from the alerts it left firing, recalled and pending, as the
        ticks it missed would have; what they raised and resolved, and every alert firing then, is told at
        the next tick (``_catch_up``): serve takes a firing alert posted again as the one it holds, and the
        new forwarder holds it from there. Recalled instead (``_recall``), an alert raised again only after
        ``pending_ticks`` and re-escalated otherwise than without the restart (15 of 20 fuzz seeds). One
        recalled at the save reads on recalled until its end, not told: serve holds it as the old one posted
        it, as without the restart."""
        self.firing, self._pending = alerts.firing, alerts.pending
        self._recalled, self._recall_ends = alerts.recalled, alerts.recall_ends
        told = self._replay(frames, ends, alerts=True, every=True)
        posted = {id(alert) for alert in told}
        self._catch_up = [*told, *(s.alert for s in self.firing.values() if id(s.alert) not in posted)]

    def _read(self, source: Source, start: float, until: float) -> list[Frame]:
        """What ``source`` returns over ``(start, until]``, noting where it, and each query it returned, was
        read up to."""
        got = source.read(start, until)
        if source.health().up:
            self._last_read[source.name] = until
        for frame in got:
            self._query_source[frame.query] = source.name
            self._query_read[frame.query] = until
        return got

    def _history(self, start: float, until: float) -> list[Frame]:
        """What each source holds from ``start`` to ``until``."""
        frames: list[Frame] = []
        for source in self.sources:
            got = self._read(source, start, until)
            frames.extend(self._per_gpu(f) for f in got if f.labels and f.timestamps.size)
        return frames

    def _after(self, frames: Sequence[Frame], start: float, snapshot: Snapshot) -> list[Frame]:
        """What ``frames`` (the history from ``start``) hold after ``snapshot``: from where each source was
        last read before it was saved, as a read from there returns it; the whole of it where the snapshot
        never read the source (one saved while Prometheus was down holds nothing of it). A query whose own
        last good read is older (it failed at the ticks before the save) from there, as the next live read
        would have read it: its failed ticks' samples were never fed before the restart (a hole)."""
        after = (_window(f, self._read_from(snapshot, start, f.query), math.inf) for f in frames)
        return [f for f in after if f is not None and f.labels]

    def _read_from(self, snapshot: Snapshot, start: float, query: str) -> float:
        """Where ``query``'s next read after ``snapshot`` starts, within the history from ``start``."""
        read = snapshot.last_read.get(self._query_source[query], start)
        return max(start, min(read, snapshot.query_read.get(query, read)))

    def _replay(
        self, frames: Sequence[Frame], ends: Sequence[float], *, alerts: bool, every: bool = False
    ) -> list[Alert]:
        """Feed ``frames`` to the detectors (the signatures left out unless ``every``), one tick ending at
        each of ``ends``; with ``alerts``, raise and resolve alerts from their findings too: what was raised
        and resolved."""
        told: list[Alert] = []
        detectors = [d for d in self.detectors if every or d.name not in _NO_WARMUP]
        read = {f.query for f in frames}
        lower = -math.inf
        for end in ends:
            chunk = [c for c in (_window(f, lower, end) for f in frames) if c is not None]
            lower = end
            view = build_view(chunk, self.index, self.counters, end, self.data_ranges.ranges)
            view.not_due = frozenset(read.difference(c.query for c in chunk))  # a slower step's query
            self._count_not_available(view)
            view.forgotten = self.index.expire(end, self.cfg.forget_after_seconds)
            self.evidence.reset(view.forgotten)
            self.counters.reset(view.forgotten)
            for step in view.steps:
                self.evidence.push(step.ids, step.value, step.at)
            found = TickResult(findings=self._learn(view, detectors))
            if alerts:
                self._update_alerts(found, end, self._unreadable(view))
                told.extend(found.changes())
            self.last_view = view
        return told

    def snapshot(self) -> Snapshot:
        """What the service has learnt, now (copies: later ticks leave them as they are), for
        ``anomaly.snapshot.write_snapshot``. It only reads: a tick run meanwhile leaves a copy of parts before
        it and parts after, which the scheduler drops and makes again (``AnomalyScheduler.capture``)."""
        components = {
            "index": self.index.state(),
            "counters": self.counters.state(),
            "evidence": self.evidence.state(),
            "alerts": State(self._alert_state()),
        }
        for d in self.detectors:
            if isinstance(d, SavedDetector):
                components[f"detector:{d.name}"] = d.state()
        return Snapshot(
            saved_at=self.clock.time(),
            read_until=self.last_view.time,
            last_read=dict(self._last_read),
            query_read=dict(self._query_read),
            settings=shaping_settings(self.cfg),
            components=components,
        )

    def _alert_state(self) -> dict[str, Any]:
        """The firing alerts, those recalled after a restart and not raised again (``_recall``) with when
        their recall ends, and the pending ones, as JSON values (``_TakenAlerts.restored`` reads them back).
        A recalled alert saved as firing fired on after a restart from the snapshot, where the uninterrupted
        run ended its recall (fuzz seed 45)."""
        return {
            "firing": {key: state.state() for key, state in self.firing.items()},
            "recalled": {key: state.state() for key, state in self._recalled.items()},
            "recall_ends": {key: self._recall_ends[key] for key in self._recalled},
            "pending": {key: list(state) for key, state in self._pending.items()},
        }

    def restore(self, snapshot: Snapshot) -> None:
        """Take up ``snapshot``'s series index, counters, evidence and detectors (not its alerts: the warm-up
        replays from them); ``KeyError`` or ``ValueError`` when it does not fit, some components taken up."""
        parts = snapshot.components
        self.index.restore(parts["index"])
        self.counters.restore(parts["counters"])
        self.evidence.restore(parts["evidence"])
        for d in self.detectors:
            if isinstance(d, SavedDetector):
                d.restore(parts[f"detector:{d.name}"])
        self._last_read = dict(snapshot.last_read)
        self._query_read = dict(snapshot.query_read)

    def _take_up(
        self, snapshot: Snapshot, start: float, until: float, history: Sequence[Frame]
    ) -> tuple[float, _TakenAlerts] | None:
        """Restore ``snapshot`` if it fits: the time it had read up to, and its alerts; None, said in a
        warning naming its file, when it is older than the ``history`` read (from ``start``), newer than now
        (``until``: a clock set back), does not fit the detectors or is another fleet's (``_other_fleet``),
        nothing restored."""
        why = None
        if snapshot.read_until < start:
            why = (
                f"is {until - snapshot.read_until:.0f} s old, older than the {until - start:.0f} s of history"
            )
        elif snapshot.read_until > until:
            why = f"was saved {snapshot.read_until - until:.0f} s after now (the clock was set back?)"
        else:
            before = self.snapshot()
            # The history's reads: the next tick reads on from them.
            read, queries = dict(self._last_read), dict(self._query_read)
            try:
                self.restore(snapshot)
                alerts = _TakenAlerts.restored(snapshot.components["alerts"].meta)
                why = self._other_fleet(history, snapshot.read_until)
            except (KeyError, ValueError, TypeError, IndexError, AttributeError, OverflowError) as exc:
                why = f"does not fit the detectors ({type(exc).__name__}: {exc})"
            self._last_read.update(read)
            self._query_read.update(queries)
            if why is not None:
                self.restore(before)
        if why is not None:
            refused(snapshot.origin, why)
            return None
        logger.info("anomaly state restored from %s", snapshot.origin, extra={"state_file": snapshot.origin})
        return snapshot.read_until, alerts

    def _other_fleet(self, history: Sequence[Frame], saved: float) -> str | None:
        """Why the series index taken up is another fleet's; None when it holds at least half the series
        ``history`` holds from ``forget_after_seconds`` before it was ``saved`` (what it still knew then, and
        what came since), or when those it holds are at least half of its own series of then (the fleet grew
        while the service was stopped), or when the history holds none (Prometheus down: nothing to tell by).

        ``prometheus_url`` shapes nothing the detectors learn and is no setting that refuses a snapshot (a
        Prometheus moved behind a proxy, or renamed, reads the same series), so two fleets run one after the
        other in one directory took up each other's state, and the first tick posted the one's alerts to the
        other's serve. The series tell them apart: those a detector's state is of, by query and labels. At
        most ``_FLEET_SAMPLE`` of them are looked up, evenly spread: all 250,000 of 10,000 GPUs took 4 s. A
        fleet scaled up 3 times during an upgrade held a third of the hour's series: refused, its GPUs lost
        what they had learnt (a week of seasonal profile), though every series of the snapshot was read."""
        lower = saved - self.cfg.forget_after_seconds
        recent = [(f, np.flatnonzero(f.sampled(f.timestamps > lower))) for f in history]
        read = sum(rows.size for _, rows in recent)
        stride = max(1, read // _FLEET_SAMPLE)
        keys = [series_key(f.query, f.labels[i]) for f, rows in recent for i in rows[::stride].tolist()]
        known = sum(self.index.id_of(key) is not None for key in keys)
        # The snapshot's series of then, and how many of them were read since (``known`` scaled to ``read``);
        # none held (Prometheus down past forget_after_seconds before the save) tells nothing of its fleet.
        held = int(np.count_nonzero(self.index.last_seen[: len(self.index.keys)] > lower))
        if 2 * known >= len(keys) or (held and 2 * known * read >= len(keys) * held):
            return None
        return (
            f"is another fleet's: {known:,} of {len(keys):,} series the history holds since"
            f" {self.cfg.forget_after_seconds:.0f} s before its save (at most {_FLEET_SAMPLE:,} looked up)"
            f" are in it, where at least half must be, or at least half of the {held:,} it held then"
            " (anomaly.prometheus_url reads another Prometheus, or the series' labels changed)"
        )

    def _recall(self, now: float, held: Mapping[str, datetime] | None) -> None:
        """Recall what the warm-up's history left firing (``self.firing``), each alert until serve lets it
        end: its ``endsAt`` in ``held``, and none serve no longer holds; without ``held``, the hold from
        ``now``, which takes the restart for instant. After a downtime d that outlived serve's endsAt by d:
        a straggler 2 minutes past it re-raised the alert serve had ended, whose incident ended with the
        alert resolved while the fault went on."""
        if held is None:
            until = now + held_seconds(self.cfg.infer_every_seconds)
            self._recall_ends = dict.fromkeys(self.firing, until)
        else:
            ends = {k: held.get(state.alert.fingerprint) for k, state in self.firing.items()}
            self._recall_ends = {k: end.timestamp() for k, end in ends.items() if end is not None}
        self._recalled = {k: self.firing[k] for k in self._recall_ends}

    def _learn(self, view: View, detectors: Sequence[Detector]) -> list[Findings]:
        """One warm-up step: the detectors learn ``view``; their findings."""
        found: list[Findings] = []
        for detector in detectors:
            try:
                if view.forgotten.size:
                    detector.forget(view.forgotten)
                found.extend(self.data_ranges.apply(f) for f in detector.detect(view))
            except Exception:  # loop boundary, as in infer
                logger.exception("detector failed in warm-up", extra={"detector": detector.name})
                self.detector_errors[detector.name] = self.detector_errors.get(detector.name, 0) + 1
        return found

    def fit(self) -> None:
        """Refit every detector on the last view."""
        for detector in self.detectors:
            try:
                detector.fit(self.last_view)
            except Exception:  # loop boundary
                logger.exception("detector fit failed", extra={"detector": detector.name})
                self.detector_errors[detector.name] = self.detector_errors.get(detector.name, 0) + 1

    def _staleness(self, now: float) -> list[Findings]:
        """One row per source, and one per query of a source that is up but cannot read that query.

        A source that answers but has returned no series at all for ``absent_after_seconds`` (a Prometheus
        whose every exporter is gone) is stale too: the presence detector leaves such a mass loss to it.
        """
        out = []
        for source in self.sources:
            h = source.health()
            # At least 0: a read stamps its success when it ends, after ``now`` (a stale score read -0.0017).
            age = max(0.0, now - (h.last_success if h.last_success is not None else self._started))
            # The server names which Prometheus an operator must look at (the alert's title says it).
            labels = [{"source": h.name, **({"server": h.server} if h.server else {})}]
            ages, scores = [age], [age / self.cfg.stale_after_seconds]
            summaries = [f"no successful read of {h.name} for {age:.0f}s: {h.last_error}"]
            if h.empty and h.last_series is not None:
                ages[0] = max(0.0, now - h.last_series)
                scores[0] = ages[0] / self.cfg.absent_after_seconds
                summaries[0] = f"{h.name} has returned no series for {ages[0]:.0f}s: its targets are gone"
            for query, q in h.queries.items():
                failing = h.up and not q.up  # a source that is down is one alert, not one per query
                q_age = max(0.0, now - (q.last_success if q.last_success is not None else self._started))
                labels.append({**labels[0], "query": query})
                ages.append(q_age if failing else 0.0)
                scores.append(ages[-1] / self.cfg.stale_after_seconds)
                summaries.append(f"query {query} of {h.name} failed for {q_age:.0f}s: {q.last_error}")
            out.append(
                Findings(
                    detector="source",
                    query="source_staleness",
                    labels=labels,
                    score=np.array(scores),
                    value=np.array(ages),
                    action=RecommendedAction.INVESTIGATE,
                    summary=summaries,
                    alert_labels={"alertname": "GpuwardenSourceStale"},
                    immediate=True,
                )
            )
        return out

    def _drop_collective(self, f: Findings, rows: list[int]) -> list[int]:
        """Rows left after removing workload-wide changes.

        When at least half of a workload's GPUs are more than half-way out of their band on the same metric
        in the same tick, the workload changed (a job stalled or ended, a service scaled), not a GPU: its
        anomalous rows do not alert (the GPU that stalled a job is caught by its own signals). Computed
        whenever a row is anomalous: gated on several anomalous rows, a job slowed by a straggler for half an
        hour alerted on two of its waiting ranks once the others' widening bands took them under 1, while all
        four were still half-way out.
        """
        moved = np.flatnonzero(f.score > _COLLECTIVE_SCORE)
        if moved.size < _COLLECTIVE_MIN:
            return rows
        counts: dict[tuple[str, ...], int] = {}
        for i in moved.tolist():
            key = peer_key(f.labels[i], ())
            if key is not None:
                counts[key] = counts.get(key, 0) + 1
        crowded = {k for k, n in counts.items() if n >= _COLLECTIVE_MIN}
        if not crowded:
            return rows
        sizes: dict[tuple[str, ...], int] = dict.fromkeys(crowded, 0)
        for lab in f.labels:
            key = peer_key(lab, ())
            if key in sizes:
                sizes[key] += 1
        collective = {k for k in crowded if counts[k] >= _COLLECTIVE_SHARE * sizes[k]}
        kept = [i for i in rows if peer_key(f.labels[i], ()) not in collective]
        self.collective_suppressed += len(rows) - len(kept)
        return kept

    def _unreadable(self, view: View) -> Callable[[str, str, Mapping[str, str]], bool]:
        """Which alerts (by detector, query and labels) this tick has no evidence about: their query, or
        their source, failed, or their query was not due (``View.not_due``).

        Alerts of a query that cannot be read neither resolve nor count quiet ticks (a Prometheus outage
        must not resolve every alert, then raise them again); nor do those of a source that answers with no
        series at all (every exporter gone). An alert judged by several queries (``judged_by``) waits while
        any of them cannot be read: a failing SM-active query resolved GpuHung while the GPU was still hung.
        One not tied to a query read yet (presence) waits while any source is down. A pending alert keeps its
        count through such a tick.
        """
        down_sources = {s.name for s in self.sources if not s.health().up or s.health().empty}
        failing = {(s.name, q) for s in self.sources for q, h in s.health().queries.items() if not h.up}
        not_due = self._not_due_alerts(view)

        def unreadable(detector: str, query: str, labels: Mapping[str, str]) -> bool:
            if detector == "source":
                # A failing query's own staleness alert waits out its source's outage (nothing says the
                # query works again); the source's alert says the source is down meanwhile.
                return "query" in labels and labels.get("source") in down_sources
            if not_due(detector, query):
                return True
            by = self._judged.get(detector)
            for q in by(query) if by is not None else (query,):
                source = self._query_source.get(q)
                if source is None:
                    if down_sources:
                        return True
                elif source in down_sources or (source, q) in failing:
                    return True
            return False

        return unreadable

    def _not_due_alerts(self, view: View) -> Callable[[str, str], bool]:
        """Whether the tick read nothing an alert (by detector and query) is judged by, its query not due.

        Before, such a tick counted quiet: with ``step_seconds`` 30 and ``infer_every_seconds`` 5, GpuLost
        resolved 20 s after it fired while the GPU was still lost, and fired again at the next step. An alert
        judged by several queries (``judged_by``: multivariate, thermal, GpuHung, a load-adjusted fleet
        metric) is judged at a tick that read every one of them, and held at the others: GpuHung, with the
        SM-active share on a longer step than utilisation, never raised: each tick between two SM steps read
        utilisation, found no GpuHung and dropped its pending count. Presence waits when none of its queries
        was read."""
        if not view.not_due:
            return lambda detector, query: False
        not_due = view.not_due
        presence = {d.name: d.not_due(view) for d in self.detectors if isinstance(d, PresenceDetector)}

        def held(detector: str, query: str) -> bool:
            if detector in presence:
                return presence[detector]
            by = self._judged.get(detector)
            return query in not_due if by is None else not not_due.isdisjoint(by(query))

        return held

    def _update_alerts(
        self, result: TickResult, now: float, unreadable: Callable[[str, str, Mapping[str, str]], bool]
    ) -> None:
        at = self.clock.now()
        if self._recalled:
            self._recalled = {k: s for k, s in self._recalled.items() if now <= self._recall_ends[k]}
        active: set[str] = set()
        pending: dict[str, tuple[int, str, str]] = {}
        for f in result.findings:
            rows = list(f.anomalous())
            if not f.immediate and rows:
                rows = self._drop_collective(f, rows)
            for i in rows:
                labels = output_labels(f.labels[i], f.query, f.detector)
                labels.update(f.alert_labels)
                labels.setdefault("alertname", DEFAULT_ALERTNAME)
                # The series' alert is one, whichever side of its band: a value back from a spike that the
                # band followed leaves it below, and is no new alert. ``deviation`` is the side it raised on.
                key = label_fingerprint(labels)
                deviation = _deviation(f, i)
                if deviation:
                    labels.setdefault("deviation", deviation)
                window = self.evidence.window(int(f.ids[i])) if f.ids is not None else []
                alert = _make_alert(f, i, labels, at, window)
                first = key not in active
                active.add(key)
                state = self.firing.get(key)
                if state is not None:
                    state.quiet = 0
                    score = float(f.score[i])
                    if (
                        self.cfg.reescalate_alerts
                        and not f.immediate
                        and first
                        and state.escalates(score, deviation, self.cfg.pending_ticks)
                    ):
                        self._reraise(key, state, alert, score, result)
                    continue
                # An alert the warm-up's history left firing reads on as it would have without the restart.
                recalled = self._recalled.get(key)
                escalated = (
                    recalled is not None
                    and first
                    and not f.immediate
                    and recalled.heard(float(f.score[i]), deviation, self.cfg.pending_ticks)
                )
                # Learned detectors must agree for `pending_ticks` ticks in a row (Prometheus' `for:`).
                agreed = self._pending.get(key, (0, "", ""))[0] + 1
                pending[key] = (agreed, f.detector, f.query)
                if f.immediate or agreed >= self.cfg.pending_ticks:
                    pending.pop(key)
                    hold = (
                        self.cfg.immediate_resolve_after if f.immediate else self.cfg.thresholds.resolve_after
                    )
                    score = float(f.score[i])
                    self.firing[key] = state = _Firing(
                        alert,
                        f.resolve_after or hold,
                        f.query,
                        f.detector,
                        peak=score,
                        trough=score,
                        series=self._series(f, i),
                    )
                    if recalled is not None:
                        del self._recalled[key]
                        if escalated:  # as it would have been without the restart: serve holds it firing
                            self._reraise(key, recalled, alert, score, result)
                            continue
                        state.resume(recalled)
                    result.raised.append(alert)
        # A tick that read nothing of a pending alert's query neither agreed nor broke the run: before, the
        # ticks between two steps dropped every count, and a learned detector never raised at all.
        for key, (agreed, detector, query) in self._pending.items():
            if key not in active and unreadable(detector, query, {}):
                pending[key] = (agreed, detector, query)
        self._pending = pending
        read = _reads(result.findings, self.index)
        for key in [
            k for k, state in self._recalled.items() if self._rested(k, state, active, unreadable, read)
        ]:
            del self._recalled[key]  # it would have resolved without the restart; serve let it end
        for key, state in list(self.firing.items()):
            if self._rested(key, state, active, unreadable, read):
                del self.firing[key]
                result.resolved.append(_resolution(state.alert, at))

    def _series(self, f: Findings, i: int) -> SeriesKey:
        """What row ``i`` of ``f`` is about (``_Firing.series``)."""
        key = None if f.ids is None else self.index.id_key(int(f.ids[i]))
        return key if key is not None else _row_key(f, i)

    def _rested(
        self,
        key: str,
        state: _Firing,
        active: set[str],
        unreadable: Callable[[str, str, Mapping[str, str]], bool],
        read: Callable[[_Firing], bool],
    ) -> bool:
        """Whether this tick, where the alert was not found anomalous, is the quiet read that resolves it;
        a tick with no evidence about it (``_unreadable``) counts neither way, one that did not ``read`` its
        series counts towards resolving it but is no recovery (``_Firing.rests``)."""
        if key in active or unreadable(state.detector, state.query, state.alert.labels):
            return False
        return state.rests(self.cfg.pending_ticks, read=read(state))

    def _reraise(self, key: str, state: _Firing, alert: Alert, score: float, result: TickResult) -> None:
        """End the alert's activity and raise it anew (``alert``, scored ``score``): Alertmanager and
        ``gpuwarden serve`` take a firing alert posted again as the same one (nothing new reaches anyone), and
        a resolved one firing again as a new activity."""
        result.resolved.append(_resolution(state.alert, alert.starts_at or self.clock.now()))
        why = f"score {score:.3g} after it fell to {state.trough:.3g} from {state.peak:.3g}"
        again = replace(alert, annotations={**alert.annotations, "reescalated": why})
        self.firing[key] = _Firing(
            again,
            state.resolve_after,
            state.query,
            state.detector,
            peak=score,
            trough=score,
            series=state.series,
        )
        result.raised.append(again)


def _reads(findings: Sequence[Findings], index: SeriesIndex) -> Callable[[_Firing], bool]:
    """Whether a tick's ``findings`` read a firing alert's series (``_Firing.series``; any score), under the
    id it has now: a detector giving ids reports every series of its step, one not read (a gap in Prometheus'
    answer, as an hour of history holds a node's downtime) without a value; one giving none reports the rows
    it read. A row its detector could not judge (``Findings.judged``: a GPU without power or peers) is none:
    the thermal detector scored a runaway's GPU whose power read 0 W at 0 for 8 reads, a recovery, and the
    runaway judged again re-raised its alert mid-fault. Each detector's and query's reads are gathered once,
    when first asked."""
    seen: dict[tuple[str, str], tuple[set[int], set[SeriesKey]]] = {}

    def read(state: _Firing) -> bool:
        if state.series is None:
            return True
        pair = (state.detector, state.query)
        if pair not in seen:
            seen[pair] = _read_rows(f for f in findings if (f.detector, f.query) == pair)
        ids, rows = seen[pair]
        sid = index.id_of(state.series)
        return (sid is not None and sid in ids) or state.series in rows

    return read


def _read_rows(findings: Iterable[Findings]) -> tuple[set[int], set[SeriesKey]]:
    """The ids of the series ``findings`` judged (``Findings.judged_rows``); the query and labels of their
    judged rows without ids."""
    ids: set[int] = set()
    rows: set[SeriesKey] = set()
    for f in findings:
        judged = f.judged_rows()
        if f.ids is None:
            rows.update(_row_key(f, i) for i in np.flatnonzero(judged).tolist())
        else:
            ids.update(f.ids[judged].tolist())
    return ids, rows


def _row_key(f: Findings, i: int) -> SeriesKey:
    """Row ``i`` of ``f`` by its query and labels: what an alert of a detector giving no ids is about,
    recorded when it is raised (``AnomalyService._series``) and matched against each tick's rows."""
    return series_key(f.query, f.labels[i])


def _resolution(alert: Alert, at: datetime) -> Alert:
    """``alert`` resolved at ``at``."""
    return replace(alert, status=AlertStatus.RESOLVED, ends_at=at)


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


def _window(frame: Frame, lower: float, end: float) -> Frame | None:
    """``frame``'s samples after ``lower`` up to ``end`` as a live read of that window returns them: None
    without a step in it, and only the series with a sample in it (``Frame.samples``). Kept with gaps, the
    series of a node down then and back later in the replayed history were taken as seen, and the fleet
    detector restarted their smoothing, where the live ticks, which read them not at all, left both as they
    were. A sample that is NaN or infinite is one: taken for no sample, the series whose only sample in a
    tick was one was dropped from the replay, where the live read returned it as a gap row."""
    mask = (frame.timestamps > lower) & (frame.timestamps <= end)
    if not mask.any():
        return None
    rows = np.flatnonzero(frame.sampled(mask))
    labels = frame.labels if rows.size == len(frame.labels) else [frame.labels[i] for i in rows.tolist()]
    cells = np.ix_(rows, mask)
    kept = None if frame.present is None else frame.present[cells]
    partial = None if frame.partial is None else frame.partial[cells]
    return Frame(frame.query, labels, frame.timestamps[mask], frame.values[cells], frame.kind, kept, partial)


def _not_due(source: Source, got: Sequence[Frame]) -> set[str]:
    """The queries ``source`` reads each on its own step (those it reports one by one in ``health().queries``,
    as the PromQL source does) that this read returned no frame of and that did not fail: none of their steps
    fell in the window. A query read with no series has a frame, without rows: it is read, its series gone.
    A source that reports no query (the in-process one) reads everything at every read."""
    read = {f.query for f in got}
    return {q for q, h in source.health().queries.items() if h.up and q not in read}


def _deviation(f: Findings, i: int) -> str:
    """``up`` or ``down``: which side of its band (or of its peers, ``sign``) a learned detector's value
    left; "" when the detector says neither.

    Alerting reads it: a temperature that fell (a GPU idle after its reset) is no thermal fault."""
    if f.sign is not None:
        sign = float(f.sign[i])
        return "up" if sign > 0 else "down" if sign < 0 else ""
    if f.lower is None or f.upper is None:
        return ""
    value = float(f.value[i])
    if value < float(f.lower[i]):
        return "down"
    return "up" if value > float(f.upper[i]) else ""


def _make_alert(
    f: Findings, i: int, labels: dict[str, str], at: datetime, window: list[tuple[float, float]]
) -> Alert:
    annotations = {"summary": f.summary_at(i), "detector": f.detector}
    if f.onset is not None:  # the postmortem measures MTTD and MTTR from it (alerting.postmortem.alert_onset)
        annotations["onset"] = rfc3339(datetime.fromtimestamp(float(f.onset[i]), UTC))
    for name, arr in (("yhat", f.yhat), ("yhat_lower", f.lower), ("yhat_upper", f.upper)):
        if arr is not None:
            annotations[name] = f"{float(arr[i]):.6g}"
    evidence = tuple(EvidencePoint(at=datetime.fromtimestamp(t, UTC), value=v) for t, v in window)
    if not evidence:
        evidence = (EvidencePoint(at=at, value=float(f.value[i])),)
    return Alert(
        labels=labels,
        starts_at=at,
        annotations=annotations,
        source=AlertSource.ANOMALY,
        score=exported_score(float(f.score[i])),
        evidence=evidence,
        recommended_action=f.action_at(i),
    )
