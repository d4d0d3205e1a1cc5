"""The warm-up at start: the source's recent history replayed to the detectors, one tick at a time, from a
snapshot that fits (``anomaly.takeup``) or from scratch, and what it leaves firing recalled."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from datetime import datetime

import numpy as np

from anomaly.alertupdate import AlertUpdater
from anomaly.detectors import Detector, Findings
from anomaly.firing import TickResult, _TakenAlerts
from anomaly.forwarder import alert_identity, held_seconds
from anomaly.read_said import listed
from anomaly.series import View, build_view
from anomaly.snapshot import Snapshot
from anomaly.sources import Frame, ResumableSource
from anomaly.takeup import SnapshotKeeper
from anomaly.warmupretry import DeferredWarmUp, deferred
from gpuwarden.model import Alert

# The service's name: its log lines read as they did before it was split into modules (``anomaly run``
# logs the logger's name; an operator filters on it).
logger = logging.getLogger("anomaly.service")

# Detectors whose findings in the warm-up history are dropped: their rules are exact (GpuLost, XID) and
# what a level rule finds there is still there, and found, at the first live tick. They are fed it all the
# same, for the values a change is read against: unfed, an XID in the first tick after start was the last-XID
# gauge's first read, history, never raised (and a counter's or a DBE's the same); fed, what changed after
# the history is new at the first live tick, what the history held is not. Presence is fed and heard: a GPU
# that stopped reporting before the restart is absent from every live tick, so only the history knows it.
# After a snapshot they are heard too, from the counts it kept: an XID or a DBE counted while the service
# was stopped raises as it would have without the restart (``_replay_resuming``).
_NOT_HEARD_IN_WARMUP = frozenset({"signatures"})
# Ticks of history replayed at start: four times the adaptive warm-up and its pending ticks, an hour at 30 s.
# Bounded in ticks, not only in time: at sub-second ticks an hour is tens of thousands of steps to read
# within one tick's read deadline.
HISTORY_TICKS = 120
# Ticks replayed before those, where ``max_lookback_seconds`` allows, for the adaptive bands to settle: a
# band's error scale weighs each sample 1/n for its first 1/scale_alpha samples (200), so a fault begun within
# the hour, read from the hour alone, widened a band that had learnt from fewer, its alert resolving mid-fault
# (a start 26 minutes into one: 11 minutes before it ended, 24 earlier than without the restart). At most
# this many, whatever scale_alpha says.
MAX_SETTLING_TICKS = 3 * HISTORY_TICKS


class HistoryReplayer(AlertUpdater, SnapshotKeeper):
    """Feeds the detectors the history at start (``warm_up``); alerts raised from it only after a snapshot."""

    def warmup_seconds(self) -> float:
        """How much history ``warm_up`` reads: ``HISTORY_TICKS`` at the coarsest query step or tick (an hour
        at 30 s) after the ticks the adaptive bands settle in (``MAX_SETTLING_TICKS``), at most
        ``max_lookback_seconds``, what the source is asked for at most (an hour by default: the hour alone at
        30 s).

        Not just the adaptive warm-up and the pending ticks: a fault older than those (a GPU running hot for
        20 minutes when the service restarts) filled that whole window, so the detectors learned it as the
        GPU's normal, never raised its alert again, and serve resolved it while the fault went on. Replaying
        the longer history leaves the detectors as they would be without the restart, where it holds the
        settling ticks before the fault; the hour alone leaves a fault begun in it less far out of a younger
        band, which learns it faster."""
        cfg = self.cfg
        settling = min(math.ceil(1.0 / cfg.thresholds.scale_alpha), MAX_SETTLING_TICKS)
        return min(cfg.max_lookback_seconds, (HISTORY_TICKS + settling) * self._coarsest_step())

    def _coarsest_step(self) -> float:
        """The coarsest query step or tick: the spacing of the history's samples at most."""
        cfg = self.cfg
        return max([cfg.infer_every_seconds, *(q.step_seconds for q in cfg.queries)])

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
        recalled to the end they had (``_replay_resuming``; no new recall, ``held`` unused), what the
        warm-up's read found stale raises ``GpuwardenSourceStale`` (``_stale_at_warm_up``), and the models
        are not fitted again (their next fit comes on the ``fit_every`` schedule, as it would have). One that
        does not fit is said, and the whole history replayed as without one. The whole history is read
        either way: whether the snapshot is this fleet's is told by the series it holds (``_other_fleet``).

        Without a snapshot taken up (or with one saved while deferred, which learnt nothing:
        ``_learnt_from``), a history read that failed for every query (Prometheus down at start) is deferred
        (``anomaly.warmupretry``): read again at the ticks after (``_retried_warm_up``) until it reads,
        nothing fed to the detectors before it. Read once at the first tick Prometheus answered, not at all,
        it left them learning from live reads alone.
        """
        now = self.clock.time()
        taken = self._learnt_from(snapshot)
        # Saved while deferred: the chain's deferral goes on, its history read as of the first start (as far
        # as ``max_lookback_seconds`` reaches) and the ticks since caught up. Read as of this start, what came
        # between (a fault, an XID) was learnt as history, never raised, where the process that ran on
        # raised it (the restart fuzz's ``--down-at-start``).
        since = now
        if snapshot is not None and taken is None:
            since = min(now, max(self._chain_started, now - self.cfg.max_lookback_seconds))
        fed = self._warm_up(since, held, taken)
        if fed is None:
            self._defer_warm_up(now, deferred(now, self.cfg.infer_every_seconds, held, since))
            return 0
        return fed

    def _retried_warm_up(self, now: float) -> bool:
        """Read a deferred warm-up's history again where it is due at the tick at ``now``: whether this tick
        reads its sources. Not while the warm-up waits, or where its read failed again: nothing is fed
        before the history.

        The history is read as of the start (at most ``max_lookback_seconds`` before ``now``), what the
        warm-up would have read then, and this tick's read goes on from there, catching the ticks since up
        as after an outage: read up to the tick before instead, they were history too, and an XID or a fault
        begun after the start, while the warm-up waited (up to 5 minutes after Prometheus was back), was
        learnt as history, never raised."""
        retry = self.warm_up_retry
        if retry is None:
            return True
        if now < retry.due:
            return False
        every = self.cfg.infer_every_seconds
        fed = self._warm_up(max(retry.since, now - self.cfg.max_lookback_seconds), retry.held, None)
        if fed is None:
            self._defer_warm_up(now, retry.failed_again(now, every))
            return False
        self.warm_up_retry = None
        logger.info(
            "warm-up: the history read at its attempt %d, %.0f s after the first failed; the ticks since"
            " are read now, as after an outage",
            retry.failures + 1,
            now - retry.since,
        )
        return True

    def _defer_warm_up(self, now: float, retry: DeferredWarmUp) -> None:
        """Wait for ``retry``'s next read of the history, said."""
        self.warm_up_retry = retry
        unread, asked = self._unread_history()
        logger.warning(
            "warm-up: the history read failed for %d of %d queries (%s)%s: deferred, read again in %.0f s;"
            " nothing is scored until it is read",
            len(unread),
            asked,
            listed(unread),
            "" if retry.failures == 1 else f" {retry.failures} times in {now - retry.since:.0f} s",
            retry.due - now,
        )

    def _warm_up(
        self, now: float, held: Mapping[str, datetime] | None, snapshot: Snapshot | None
    ) -> int | None:
        """``warm_up`` as of ``now``; None, nothing fed, where no snapshot was taken up and the history read
        failed for every query (deferred)."""
        until = now - self.cfg.latency_offset_seconds
        # Read up to ``until``, whether or not a tick is replayed and wherever the last replayed one ends: a
        # save's ``read_until`` (not now, nor the end of a tick on a snapshot's grid, past ``until``).
        self.read_until = until
        start = until - self.warmup_seconds()
        # What the sources learnt (a coarser answer step) is taken up before the history is read (its steps
        # up to the save are not counted twice), and let go of where the snapshot is refused.
        learnt = snapshot is not None and start <= snapshot.read_until <= until
        if learnt:
            self.restore_sources(snapshot)
        frames = self._history(start, until)
        unread, asked = self._unread_history()
        taken = self._take_up(snapshot, start, until, frames) if snapshot is not None else None
        found = _found(frames, start, until, self._coarsest_step())
        if taken is None and unread and len(unread) == asked and not frames:
            if learnt:
                self.restore_sources(None)
            return None
        if unread:
            then = "read at the first live tick from where the snapshot left them"
            if taken is None:
                self._read_history_later(start)
                then = "their history read with their first good read, as after an outage"
            said = f"the history read failed for {len(unread)} of {asked} queries ({listed(unread)}): {then}"
            found = said if len(unread) == asked else f"{found}; {said}"
        if learnt and taken is None:
            self.restore_sources(None)
        since = taken[0] if taken is not None else None
        if snapshot is not None and taken is not None:
            self._resume(snapshot, start)
            # Each query's steps after the snapshot, none for one ``_after`` leaves out (no step there).
            answered = {
                q: ts[ts > self._read_from(snapshot, start, q)] for q, ts in _answered(frames).items()
            }
            self._judge_series(frames, start, snapshot)
            frames = self._after(frames, start, snapshot)
        if not frames and taken is None:
            logger.info("warm-up: fed no history to the detectors (%s)", found)
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
            self._replay_resuming(frames, ends, taken[1], now, answered)
        self.collective_suppressed = suppressed
        if since is None:
            self.fit()  # the multivariate model, when the history gave it rows enough, scores at once
        after = "" if since is None else f" after the state snapshot ({until - since:.0f} s before now)"
        fed = len(ends)
        logger.info(
            "warm-up: fed %d tick%s of history (%s)%s to the detectors",
            fed,
            "" if fed == 1 else "s",
            found,
            after,
        )
        return len(ends)

    def _resume(self, snapshot: Snapshot, start: float) -> None:
        """Tell each source that reads each query on from its own last good read where ``snapshot`` read
        the queries this warm-up could not (``ResumableSource``): the first tick catches them up from there,
        as a live tick after a failed read does. A restart while Prometheus failed a query read it at the
        first tick from the warm-up's end only: its samples since the save were never fed, and its models
        scored otherwise than the process it replaced (the restart fuzz's ``--failed-warm-ups``)."""
        for source in self.sources:
            if isinstance(source, ResumableSource):
                default = max(start, snapshot.last_read.get(source.name, start))
                read = {q: max(start, min(default, t)) for q, t in snapshot.query_read.items()}
                source.resume(read, default)

    def _read_history_later(self, start: float) -> None:
        """Tell each source that reads each query on from its own last good read to read those the warm-up
        could not read from ``start``, the history's: their first good read catches it up, as a read after
        an outage does (``ResumableSource``). Read from the tick's window alone, a query failing as the
        service started (the others read) never had its history read: its detectors learnt from nothing
        once it read well, its adaptive bands scoring nothing for their warm-up."""
        for source in self.sources:
            if isinstance(source, ResumableSource):
                source.resume({}, start)

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
        """Replay the history with no alert firing, then recall what it left firing (``_recall``), with
        re-escalation on or off: the recall is what tells an alert still firing from one that resolved.
        Replayed without the alert state (re-escalation off, before), a rise whose first reads after the
        restart were a fall was raised as a first alert on the fall's side: a second alert at serve beside
        the rise it held, where without the restart the rise fires on whichever side its reads are."""
        live = (self.firing, self._pending)
        self.firing, self._pending = {}, {}
        self._replay(frames, ends, alerts=True)
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

    def _replay_resuming(
        self,
        frames: Sequence[Frame],
        ends: Sequence[float],
        alerts: _TakenAlerts,
        now: float,
        answered: Mapping[str, np.ndarray],
    ) -> None:
        """Replay the history after a snapshot from the alerts it left firing, recalled and pending, as the
        ticks it missed would have; what they raised and resolved (``_catch_up``), and every other alert
        firing then (``_resend``: ``anomaly run``'s tick line says "re-sent", not "raised"), is told at the
        next tick: serve takes a firing alert posted again as the one it holds, and the new forwarder holds
        it from there. Recalled instead (``_recall``), an alert raised again only after
        ``pending_ticks`` and re-escalated otherwise than without the restart (15 of 20 fuzz seeds). One
        recalled at the save reads on recalled until its end, not told: serve holds it as the old one posted
        it, as without the restart."""
        self.firing, self._pending = alerts.firing, alerts.pending
        self.collective = alerts.collective
        self._recalled, self._recall_ends = alerts.recalled, alerts.recall_ends
        told = self._replay(frames, ends, alerts=True, every=True, answered=answered)
        told.extend(self._stale_at_warm_up(now))
        posted = {id(alert) for alert in told}
        self._catch_up = told
        self._resend = [s.alert for s in self.firing.values() if id(s.alert) not in posted]

    def _stale_at_warm_up(self, now: float) -> list[Alert]:
        """Raise ``GpuwardenSourceStale`` for what the warm-up's read could not read, aged from the snapshot's
        last good read past ``stale_after_seconds``; what was raised. The warm-up's read is the restarted
        process' first read, as a tick's: a query failing from the ticks the restart missed through that
        read, read well again at the first tick, was held firing by the uninterrupted run from its first
        failed tick and never raised after the restart (restart fuzz ``--failed-warm-ups``, 12 of 20 seeds).
        Nothing else counts a tick here: every other alert, firing or pending, is left as it is."""
        found = TickResult(findings=self._staleness(now))
        self._update_alerts(found, now, lambda detector, query, labels: True)
        return list(found.changes())

    def _history(self, start: float, until: float) -> list[Frame]:
        """What each source holds from ``start`` to ``until``."""
        frames: list[Frame] = []
        for source in self.sources:
            got = self._read(source, start, until)
            frames.extend(self._per_gpu(f) for f in got if f.labels and f.timestamps.size)
        return frames

    def _unread_history(self) -> tuple[list[str], int]:
        """The queries whose history read failed (Prometheus down at start), and how many were read, for the
        warm-up's line: it said `no samples found in the 3600 s read` there, as of a Prometheus holding no
        data, where the read got no answer, whose history is not read again."""
        failed: list[str] = []
        asked = 0
        for source in self.sources:
            health = source.health()
            asked += len(health.queries) or 1
            down = [name for name, query in health.queries.items() if not query.up]
            failed += down or ([] if health.up or health.queries else [source.name])
        return failed, asked

    def _after(self, frames: Sequence[Frame], start: float, snapshot: Snapshot) -> list[Frame]:
        """What ``frames`` (the history from ``start``) hold after ``snapshot``: from where each source was
        last read before it was saved, as a read from there returns it; the whole of it where the snapshot
        never read the source (one saved while Prometheus was down holds nothing of it). A query whose own
        last good read is older (it failed at the ticks before the save) from there, as the next live read
        would have read it: its failed ticks' samples were never fed before the restart (a hole)."""
        after = (_window(f, self._read_from(snapshot, start, f.query), math.inf) for f in frames)
        return [f for f in after if f is not None and f.labels]

    def _judge_series(self, frames: Sequence[Frame], start: float, snapshot: Snapshot) -> None:
        """Judge whether each source is empty (``quiet_after``) on what ``frames`` (the history from
        ``start``) hold after ``snapshot``, as the ticks the restart missed would have read them, not on the
        hour before it: which sources returned series there, and which had a query asked no step there."""
        after = [(f.query, _window(f, self._read_from(snapshot, start, f.query), math.inf)) for f in frames]
        series = {self._query_source[q] for q, f in after if f is not None and f.labels}
        unasked = {self._query_source[q] for q, f in after if f is None}
        found: dict[str, int | None] = {}
        for query, f in after:
            if f is None:
                found.setdefault(query, None)
            else:
                found[query] = (found.get(query) or 0) + len(f.labels)
        self.quiet_after(series, unasked, found)

    def _read_from(self, snapshot: Snapshot, start: float, query: str) -> float:
        """Where ``query``'s next read after ``snapshot`` starts, within the history from ``start``."""
        read = snapshot.last_read.get(self._query_source[query], start)
        return max(start, min(read, snapshot.query_read.get(query, read)))

    def _replay(
        self,
        frames: Sequence[Frame],
        ends: Sequence[float],
        *,
        alerts: bool,
        every: bool = False,
        answered: Mapping[str, np.ndarray] | None = None,
    ) -> list[Alert]:
        """Feed ``frames`` to the detectors (the signatures' findings dropped unless ``every``), one tick
        ending at each of ``ends``; with ``alerts``, raise and resolve alerts from their findings too: what
        was raised and resolved. ``answered``: each query's steps in ``frames``, and none of those the
        warm-up read with no step in them (``frames``' when None); one with no step in a tick was not due
        there (``View.not_due``). Taken from the history after a snapshot alone, a query answered on a coarser
        step with no answer after it was left out, and so due at every tick replayed: the fleet detector
        judged its load-adjusted metric with no load, where the uninterrupted service waited for the next
        tick that read both (restart fuzz, coarse answers: seeds 332, 335, 442)."""
        told: list[Alert] = []
        detectors = [d for d in self.detectors if every or d.name not in _NOT_HEARD_IN_WARMUP]
        unheard = [d for d in self.detectors if d not in detectors]
        steps = _answered(frames) if answered is None else answered
        unread = self._unread()  # the warm-up's read failed them: their ticks here hold nothing of them
        lower = -math.inf
        for end in ends:
            chunk = [c for c in (_window(f, lower, end) for f in frames) if c is not None]
            view = build_view(chunk, self.index, self.counters, end, self.data_ranges.ranges)
            # A slower step's query, or a coarser answer's: no step of it in the tick, as a live read finds.
            view.not_due = frozenset(q for q, ts in steps.items() if not ((ts > lower) & (ts <= end)).any())
            lower = end
            self._count_not_available(view)
            self._expire(view, end, unread)
            for step in view.steps:
                self.evidence.push(step.ids, step.value, step.at)
            found = TickResult(findings=self._learn(view, detectors))
            self._learn(view, unheard)
            if alerts:
                # At the time of the tick that read up to ``end`` (its clock, ``latency_offset_seconds``
                # ahead of its read), as a live tick passes its own: a recall ends at a time serve holds it
                # until, and a replayed tick passing its read's end held one ended at its tick.
                self._update_alerts(found, end + self.cfg.latency_offset_seconds, self._unreadable(view))
                told.extend(found.changes())
            self.last_view = view
        return told

    def _recall(self, now: float, held: Mapping[str, datetime] | None) -> None:
        """Recall what the warm-up's history left firing (``self.firing``), each alert until serve lets it
        end: its ``endsAt`` in ``held``, and none serve no longer holds; without ``held``, the hold from
        ``now``, which takes the restart for instant. After a downtime d that outlived serve's endsAt by d:
        a straggler 2 minutes past it re-raised the alert serve had ended, whose incident ended with the
        alert resolved while the fault went on. Matched by identity (``alert_identity``): an alert posted
        under a release's labels is the same one under the next's, which added ``deviation``."""
        if held is None:
            until = now + held_seconds(self.cfg.infer_every_seconds)
            self._recall_ends = dict.fromkeys(self.firing, until)
        else:
            ends = {k: held.get(alert_identity(state.alert.labels)) for k, state in self.firing.items()}
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


def _found(frames: Sequence[Frame], start: float, until: float, step: float) -> str:
    """How much of the history read from ``start`` to ``until`` had samples, for the warm-up's line: the span
    read where its samples reach back to its start, else the span from its first sample. Said as the span read
    alone, a Prometheus holding seconds of data was logged as an hour of history fed."""
    asked = until - start
    found = [f.timestamps[f.samples.any(axis=0)] for f in frames]
    first = min((float(ts.min()) for ts in found if ts.size), default=None)
    if first is None:
        return f"no samples found in the {asked:.0f} s read"
    if first <= start + step:  # the first step of a read may fall up to a step after its start
        return f"{asked:.0f} s"
    return f"samples found over the last {until - first:.0f} s of the {asked:.0f} s read: history was short"


def _answered(frames: Sequence[Frame]) -> dict[str, np.ndarray]:
    """Each query's steps in ``frames``."""
    parts: dict[str, list[np.ndarray]] = {}
    for frame in frames:
        parts.setdefault(frame.query, []).append(frame.timestamps)
    return {query: np.concatenate(ts) for query, ts in parts.items()}


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
