"""The incident engine: dedup → mute → flap → correlate → prioritise → store → tell listeners.

One writer: every change runs under a lock in one transaction, and listeners are called only after the
commit. An in-memory view of open incidents (rebuilt from the store at start) keeps correlation cheap.
This module ingests: dedup, flapping and the transaction; ``alerting.joining`` puts alerts that changed into
incidents (correlation), ``alerting.grouping`` recomputes and merges the incidents a transaction touched,
``alerting.lifecycle`` serves what people do with incidents, ``alerting.announcing`` tells listeners,
``alerting.reassessment`` follows inventory changes, ``alerting.reloading`` rebuilds the in-memory view
from the store, ``alerting.batch`` holds the state.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from prometheus_client.registry import Collector
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session, sessionmaker

from alerting.announcing import IncidentAnnouncing
from alerting.batch import Batch, IngestResult, Ticket
from alerting.db import in_lists
from alerting.engine_lock import EngineLock
from alerting.flapping import FlapPolicy, flap_state
from alerting.handoff import record_on_commit
from alerting.incident_index import OpenIncidents
from alerting.ingest_session import IngestSession
from alerting.inhibition import Inhibitor
from alerting.inventory import Inventory
from alerting.joining import IncidentJoining
from alerting.lifecycle import IncidentLifecycle
from alerting.measures import measures
from alerting.member import recommended_by
from alerting.muting import MuteTracking
from alerting.pending import (
    FingerprintCache,
    PendingAlert,
    Repeat,
    StoredAlert,
    insert_pending,
    update_repeats,
)
from alerting.reassessment import InventoryReassessment
from alerting.recurrence import LatestResolved
from alerting.reloading import EngineReloading
from alerting.reminding import ParkedCheck, SteadyReminding
from alerting.retention import StoreRetention
from alerting.silences import Silence, configured_mutes
from alerting.spans import earlier_start, event_order, merged_ends, replays_resolved
from alerting.store import IncidentStore, alert_from_row
from alerting.store_models import AlertRow
from alerting.subscriptions import IncidentListener
from gpuwarden.clock import Clock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert, AlertStatus


class IncidentEngine(
    EngineReloading,  # first: its _fresh and _rebuild_after_failure are the ones the mixins call
    IncidentAnnouncing,
    InventoryReassessment,
    IncidentJoining,
    IncidentLifecycle,
    StoreRetention,
    SteadyReminding,
    MuteTracking,
):
    """Turns alerts into incidents; implements ``IncidentActions`` for Slack and the API."""

    def __init__(
        self,
        engine: Engine,
        clock: Clock,
        config: AlertingConfig | None = None,
        inventory: Inventory | None = None,
    ) -> None:
        self.config = config or AlertingConfig()
        self.clock = clock
        self.inventory = inventory
        self.inventory_source = ""  # where it comes from (file, sim, slurm, kubernetes); set by the caller
        # The inventory and when it was read, replaced together (readers take both from one tuple).
        self.inventory_state: tuple[Inventory | None, datetime | None] = (
            inventory,
            clock.now() if inventory is not None else None,
        )
        # Per refreshed source (Slurm, Kubernetes): when it was last read and when a read last failed.
        self.inventory_sources: dict[str, dict[str, datetime | None]] = {}
        # Prometheus collectors of the parts wired around the engine (the outbox), served on /metrics.
        self.extra_metrics: list[Collector] = []
        self.store = IncidentStore(engine)
        self._sessions = sessionmaker(engine, class_=IngestSession, expire_on_commit=False)
        # Each transaction stores its changes, deleted once told (``alerting.handoff``).
        record_on_commit(self._sessions, lambda: bool(self._listeners), self.config.fold_repeats_seconds)
        self._untold = self._telling_failed = False
        # Held by every change of the view (``alerting.engine_lock``): a loop waiting for it (the journal
        # applier) is beaten by its holder's progress.
        self._lock = EngineLock()
        self._queue_lock = threading.Lock()
        self._queue: list[Ticket] = []
        self._listeners: list[IncidentListener] = []
        self._flap = FlapPolicy(
            self.config.flap_window_seconds,
            self.config.flap_start_transitions,
            self.config.flap_stop_transitions,
        )
        self._window = timedelta(seconds=self.config.correlation_window_seconds)
        self._quiet = timedelta(seconds=self.config.quiet_period_seconds)
        self._reopen_within = timedelta(seconds=self.config.reopen_window_seconds)
        self._latest_resolved = LatestResolved()  # the store's, remembered: see ``alerting.recurrence``
        self._ticked: datetime | None = None  # the clock at the last tick
        self._cycling_within = self.config.cycling_reopens_seconds
        self._remind_after = self.config.remind_after_seconds
        self._remind_checks: dict[str, float] = {}  # see ``alerting.reminding``
        self._remind_seen: datetime | None = None
        self._read_ahead: dict[str, tuple[datetime, datetime]] = {}
        self._remind_heap: list[tuple[float, str]] = []
        self._parked: dict[str, ParkedCheck] = {}
        self._parked_with: tuple[list[Silence], object, object, int] | None = None
        rules, windows = configured_mutes(self.config)
        self._inhibitor = Inhibitor(rules)
        self._silences: list[Silence] = windows
        self._open = OpenIncidents()  # indexed: correlation asks only where a yes can be
        # Status of each firing alert and each met since start (``_fingerprinted``): a repeat, no query.
        self._status: dict[str, str] = {}
        # Firing alerts a silence, maintenance window or inhibition mutes (labels, incident): the tick
        # releases them when what muted them ends. ``_recheck`` sends a repeat through the slow path.
        self._muted: dict[str, tuple[dict[str, str], str | None]] = {}
        self._recheck: set[str] = set()
        # What impact reads from a firing alert's annotations (``measures``), for the alerts that carry
        # any: a repeat that changes them takes the slow path, so its incident is assessed again.
        self._measures: dict[str, tuple[str, ...]] = {}
        # Each firing alert's startsAt: a repeat that starts earlier (the other of an HA Prometheus pair)
        # takes the slow path, which moves it and its member's onset (``spans.earlier_start``).
        self._starts: dict[str, datetime] = {}
        self._silenced_incidents: set[str] = set()
        self._catch_up_since: dict[str, datetime] = {}
        self._ending_told: dict[str, datetime] = {}
        self._fingerprints = FingerprintCache()
        self._hold = timedelta(seconds=self.config.announce_delay_seconds)
        self._unannounced: dict[str, datetime] = {}
        self._announced: set[str] = set()  # open incidents this process has announced
        # Held at start to be announced again (deduped by the outbox) though their delay had passed: a
        # previous process announced them, so their changes meanwhile go out, not into the announcement.
        self._reannounce: set[str] = set()
        self._reassessed = False  # the open incidents were assessed with the current inventory
        self.counters: dict[str, int] = {
            "alerts_received": 0,
            "alerts_muted": 0,
            "incidents_opened": 0,
            "incidents_resolved": 0,
            "listener_errors": 0,
            "incidents_pruned": 0,
            "alerts_pruned": 0,
            "inventory_refresh_failures": 0,
            "inventory_relists": 0,
        }
        # The in-memory view could not be rebuilt after a failed transaction (the store was down too): it
        # is rebuilt before anything uses it again (``_fresh``), not used half cleared.
        self._stale = False
        self._reload()

    # --- ingest ---------------------------------------------------------------------------------

    def ingest(self, alerts: Sequence[Alert]) -> IngestResult:
        """Store and process alerts; returns after they are committed.

        Group commit: calls that arrive while another is being written wait, and the next writer takes
        all of them in one transaction, so concurrent requests share one fsync and one recompute.
        """
        ticket = Ticket(list(alerts))
        with self._queue_lock:
            self._queue.append(ticket)
        with self._lock:
            if not ticket.done:
                with self._queue_lock:
                    tickets, self._queue = self._queue, []
                self._write(tickets)
        if ticket.error is not None:
            raise ticket.error
        return ticket.result

    def apply_accepted(
        self,
        batches: Sequence[tuple[datetime, Sequence[Alert]]],
        in_transaction: Callable[[Session], None],
        progress: Callable[[], object] | None = None,
    ) -> IngestResult:
        """Apply batches accepted earlier (the journal), each at its own accept time, in ONE transaction.

        ``in_transaction`` runs inside it (the journal commits its applied offset there), so the alerts
        and the offset are stored together or not at all; ``progress`` is called for each alert and incident
        it works through. Raises what the transaction raised.
        """
        tickets = [Ticket(list(alerts), at=at) for at, alerts in batches]
        with self._lock:
            if progress is not None:
                progress()  # it waited for the lock (a tick's progress beat it meanwhile): it goes on
            self._write(tickets, in_transaction, progress)
        total = IngestResult()
        for ticket in tickets:
            if ticket.error is not None:
                raise ticket.error
            total.accepted += ticket.result.accepted
            total.muted += ticket.result.muted
            total.opened.extend(ticket.result.opened)
        return total

    def _write(
        self,
        tickets: list[Ticket],
        in_transaction: Callable[[Session], None] | None = None,
        progress: Callable[[], object] | None = None,
    ) -> None:
        now = self.clock.now()
        times = [t.at for t in tickets if t.at is not None]
        if times:
            now = max(times)
        status_after: dict[str, str] = {}
        muted_after: dict[str, tuple[dict[str, str], str | None] | None] = {}
        try:
            self._fresh()
            with self._sessions() as session, session.begin(), session.no_autoflush:
                beat = self._lock.progress if progress is None else _both(self._lock.progress, progress)
                batch = Batch(session, now, progress=beat)
                batch.silences_at = max(now, self.clock.now())
                slow: list[tuple[Alert, str, AlertStatus, IngestResult, datetime]] = []
                slow_fps: set[str] = set()
                repeats: list[Repeat] = []
                fps = iter(self._fingerprinted(session, [a.labels for t in tickets for a in t.alerts]))
                recheck = self._recheck
                for ticket in tickets:
                    at = ticket.at or now
                    for alert, fp in event_order([(a, next(fps)) for a in ticket.alerts], at):
                        status = _status_of(alert, at)
                        ticket.result.accepted += 1
                        if (
                            fp not in slow_fps
                            and fp not in recheck
                            and self._status.get(fp) == status.value
                            and (
                                status is not AlertStatus.FIRING
                                or (
                                    self._measures.get(fp)
                                    == measures(alert.recommended_action.value, alert.annotations)
                                    and (
                                        alert.starts_at is None
                                        or alert.starts_at >= self._starts.get(fp, alert.starts_at)
                                    )
                                )
                            )
                        ):
                            # Fast path: a repeat with nothing changed (Prometheus re-posts firing alerts).
                            repeats.append(
                                Repeat(
                                    fp,
                                    alert.ends_at,
                                    dict(alert.annotations),
                                    alert.score,
                                    alert.generator_url,
                                    alert.timeout,
                                )
                            )
                        else:
                            slow_fps.add(fp)
                            slow.append((alert, fp, status, ticket.result, at))
                update_repeats(session, repeats, now)
                if slow:
                    # Only alerts the store already holds are read; the status cache knows which.
                    known = [fp for fp in slow_fps if fp in self._status]
                    for chunk in in_lists(known):
                        query = select(AlertRow).where(AlertRow.fingerprint.in_(chunk))
                        batch.rows.update((r.fingerprint, r) for r in session.scalars(query))
                    for alert, fp, status, result, at in slow:
                        batch.progress()
                        batch.now = at
                        self._ingest_one(batch, alert, fp, status, result)
                    batch.now, batch.posted = now, slow_fps
                    self._finish(batch)
                    insert_pending(session, batch.new)
                    status_after = {fp: row.status for fp, row in batch.rows.items()}
                    muted_after = {
                        fp: (row.labels, row.incident_id)
                        if row.status == AlertStatus.FIRING.value and row.muted_by
                        else None
                        for fp, row in batch.rows.items()
                    }
                if in_transaction is not None:
                    in_transaction(session)
        except Exception as exc:  # noqa: BLE001 - re-raised in every waiting caller
            self._rebuild_after_failure()
            for ticket in tickets:
                ticket.error, ticket.done = exc, True
            return
        batch.progress()  # committed (thousands of rows flushed)
        self._remember(status_after, muted_after)
        for ticket in tickets:
            ticket.done = True
            self.counters["alerts_received"] += len(ticket.alerts)
            self.counters["alerts_muted"] += ticket.result.muted
        self._notify(batch.changes)

    def _remember(
        self, status: dict[str, str], muted: dict[str, tuple[dict[str, str], str | None] | None]
    ) -> None:
        """After a commit: the status cache, which firing alerts are muted, nothing left to recheck."""
        self._status.update(status)
        for fp, entry in muted.items():
            if entry is None:
                self._muted.pop(fp, None)
            else:
                self._muted[fp] = entry
        self._recheck.clear()

    def _ingest_one(
        self, batch: Batch, alert: Alert, fp: str, status: AlertStatus, result: IngestResult
    ) -> None:
        now = batch.now
        starts_at = alert.starts_at or now
        row = batch.rows.get(fp)
        if row is None:
            row = PendingAlert(
                fingerprint=fp,
                labels=dict(alert.labels),
                annotations=dict(alert.annotations),
                status=status.value,
                starts_at=starts_at,
                ends_at=alert.ends_at,
                source=alert.source.value,
                generator_url=alert.generator_url,
                score=alert.score,
                recommended_action=alert.recommended_action.value,
                first_seen=now,
                last_seen=now,
                ends_by_timeout=alert.timeout,
            )
            batch.new.append(row)
            batch.rows[fp] = row
            previous: str | None = None
        else:
            previous = row.status
            refires = previous != status.value and status is AlertStatus.FIRING
            if refires and replays_resolved(alert, row.ends_at):
                return  # an HA peer's late firing notification of what its peer resolved (``alerting.spans``)
            if refires:
                # What its incident saw of it, should a new incident take it (see ``_reopen``).
                batch.spans[fp] = (row.starts_at, row.ends_at, dict(row.annotations), row.recommended_action)
            row.annotations = dict(alert.annotations)
            row.generator_url = alert.generator_url  # the latest post's, as Alertmanager keeps it
            row.recommended_action = alert.recommended_action.value
            if previous == status.value:  # as Alertmanager merges an overlapping post (``alerting.spans``)
                timed_out = row.ends_by_timeout and status is AlertStatus.FIRING
                row.ends_at = merged_ends(row.starts_at, row.ends_at, alert.ends_at, timed_out)
            else:
                row.ends_at = alert.ends_at
            row.ends_by_timeout = alert.timeout  # Alertmanager's merge keeps the newer post's ``Timeout``
            row.last_seen = now
            row.receive_count += 1
            row.status = status.value
            if alert.score is not None:
                row.score = alert.score
            if refires:  # a new activity: its own start (a reopening's onset), not the resolved one's
                row.starts_at = starts_at
            elif previous == AlertStatus.FIRING.value and (
                earlier := earlier_start(row.starts_at, alert.starts_at, alert.ends_at)
            ):
                row.starts_at = earlier
                self._moved_onset(batch, row)
        self._remember_post(fp, row.starts_at, status)
        changed = previous is not None and previous != status.value
        if changed or previous is None:
            self._inhibitor.update(fp, row.labels, status is AlertStatus.FIRING)
        was_flapping = row.flapping
        if changed:
            row.transitions, row.flapping = flap_state(
                self._flap, list(row.transitions), now.timestamp(), True, row.flapping
            )
        key = measures(row.recommended_action, row.annotations) if status is AlertStatus.FIRING else None
        remeasured = previous is not None and key != self._measures.get(fp)
        if key is None:  # kept for firing alerts only: a resolved one's next post takes the slow path anyway
            self._measures.pop(fp, None)
        else:
            self._measures[fp] = key
        if previous is not None and not changed and fp not in self._recheck:
            if remeasured:
                self._remeasure(batch, row)
            return  # a repeat: dedup, only last_seen and endsAt moved (and what it measures)
        self._apply(batch, row, status, was_flapping, result)

    def _remember_post(self, fp: str, starts_at: datetime, status: AlertStatus) -> None:
        """What the fast path reads of an alert just posted: its startsAt while it fires."""
        if status is AlertStatus.FIRING:
            self._starts[fp] = starts_at
        else:
            self._starts.pop(fp, None)

    def _moved_onset(self, batch: Batch, row: StoredAlert) -> None:
        """An alert's startsAt moved earlier (another replica saw it first): its member's onset with it, as
        a restarted engine would read it from the store, and its incident assessed again as it would be
        then (at its first inventory refresh): the alert may now have started before the others and
        explain them (the root cause, and where new alerts join it), and the first onset moves (the
        postmortem's MTTD and MTTR read it)."""
        inc = self._open.get(row.incident_id) if row.incident_id else None
        member = inc.members.get(row.fingerprint) if inc is not None else None
        if inc is not None and member is not None:
            member.onset = row.starts_at
            batch.touched.add(inc.id)

    def _remeasure(self, batch: Batch, row: StoredAlert) -> None:
        """A repeat whose error ratio, burn rate or recommended action changed: its incident is assessed
        again (impact and priority follow what the alert now says)."""
        inc = self._open.get(row.incident_id) if row.incident_id else None
        old = inc.members.get(row.fingerprint) if inc is not None else None
        if inc is None or old is None:
            return
        member = self._member(row)
        member.firing, member.flapping, member.onset = old.firing, old.flapping, old.onset
        member.settles_at = old.settles_at
        if member.recommended_action != old.recommended_action and inc.id not in batch.remeasured:
            # What the incident recommended before the batch's first such change: told if it moved.
            batch.remeasured[inc.id] = recommended_by(inc.members.values())
        inc.members[row.fingerprint] = member
        batch.touched.add(inc.id)

    # --- time-driven work -----------------------------------------------------------------------

    def tick(self) -> None:
        """Resolve alerts whose endsAt passed and incidents quiet for the quiet period; catch up on incidents
        whose silence ended; remind of incidents firing steadily (``alerting.reminding``).

        Its progress (each alert and incident its transactions work through, each step) beats the journal
        applier when it waits for the engine meanwhile (``alerting.engine_lock``): 12,000 alerts timing out
        together made ticks of 73 and 87 s, which liveness would have blamed on the applier."""
        step = self._lock.progress
        with self._lock.held_by("an engine tick"):
            self._fresh()
            now = self.clock.now()
            if self._ticked is None or now < self._ticked:  # started, or the wall clock was set back since
                self._latest_resolved.count_from_now(self._sessions, now)
            self._ticked = now
            with self._sessions() as session:
                stale = session.scalars(
                    select(AlertRow).where(
                        AlertRow.status == AlertStatus.FIRING.value, AlertRow.ends_at <= now
                    )
                ).all()
                expired = [alert_from_row(r, AlertStatus.RESOLVED) for r in stale]
            step()
            if expired:
                self.ingest(expired)
            self._release_unmuted(now)
            step()
            due: list[str] = []
            try:
                batch = self._resolve_quiet(now, due)
            except Exception:
                # The COMMIT may have gone through, its answer lost: the open incidents as the store has them.
                self._rebuild_after_failure()
                raise
            step()
            self._closed(due)
            step()
            self._notify(batch.changes)
            step()
            self._announce_due(now)
            step()
            # After the announcements: a change of an incident still held folds into its announcement.
            self._end_incident_silences(now)
            step()
            self._tell_silences_ending(now)
            step()
            self._remind_steady(now)  # after the silences' ends: an escalation caught up on is a page
        self._prune_if_due(now)

    @property
    def lock(self) -> EngineLock:
        """The lock every change of the engine's view holds (``alerting.engine_lock``)."""
        return self._lock


def _both(first: Callable[[], object], second: Callable[[], object]) -> Callable[[], None]:
    """A progress callback that calls both."""

    def both() -> None:
        first()
        second()

    return both


def _status_of(alert: Alert, now: datetime) -> AlertStatus:
    """Resolved when the alert says so or its endsAt has passed (Alertmanager's rule), else firing."""
    if alert.status is AlertStatus.RESOLVED or (alert.ends_at is not None and alert.ends_at <= now):
        return AlertStatus.RESOLVED
    return AlertStatus.FIRING
