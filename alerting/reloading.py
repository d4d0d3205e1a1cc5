"""Reloading: the engine's in-memory view of the store, rebuilt from it at start and after a failed
transaction.

The engine keeps in memory what it must not query at every alert: the open incidents with their members,
root, workloads and lost GPUs (``OpenIncidents``), the status of each firing alert (and of each other alert
this process has met since: ``_fingerprinted``), the firing alerts' starts,
what impact reads of them and which are muted, the inhibitor's firing alerts, the silences, and which open
incidents are announced or still held. ``EngineReloading`` (mixed into ``IncidentEngine``) reads all of it
back from the store; a failed transaction rebuilds it, or marks it stale when the store cannot be read
either, and it is rebuilt before its next use (``_fresh``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from alerting.batch import OpenIncident
from alerting.db import in_lists
from alerting.engine_lock import EngineLock
from alerting.incident_index import OpenIncidents
from alerting.inhibition import Inhibitor
from alerting.inventory import Inventory
from alerting.joining import earlier_members
from alerting.measures import measures
from alerting.member import Member
from alerting.merging import took_earlier
from alerting.pending import FingerprintCache, StoredAlert
from alerting.recurrence import LatestResolved
from alerting.reminders import was_announced
from alerting.silences import Silence
from alerting.silencing import stored_silences
from alerting.store_models import AlertRow, IncidentRow, TimelineRow, UntoldChangeRow
from alerting.subscriptions import ChangeKind
from gpuwarden.clock import Clock
from gpuwarden.jsonload import collector_paused
from gpuwarden.model import AlertStatus, IncidentState, Priority

# The engine's logger: the lines of a rebuild are read as the engine's, as before the split.
logger = logging.getLogger("alerting.engine")


class EngineReloading:
    """Rebuilds the engine's in-memory view from the store; the first base of ``IncidentEngine``, whose
    other parts set and keep the state below (its methods override the mixins' placeholders of
    ``_fresh`` and ``_rebuild_after_failure``)."""

    clock: Clock
    inventory: Inventory | None
    _lock: EngineLock  # the engine's (``alerting.engine_lock``)
    _sessions: sessionmaker[Session]
    _open: OpenIncidents
    _latest_resolved: LatestResolved  # ``alerting.recurrence``
    _inhibitor: Inhibitor
    _silences: list[Silence]
    _hold: timedelta  # ``alerting.announce_delay_seconds``
    _announced: set[str]
    _unannounced: dict[str, datetime]
    _reannounce: set[str]
    _reassessed: bool
    _status: dict[str, str]
    _fingerprints: FingerprintCache  # ``alerting.pending``'s
    _muted: dict[str, tuple[dict[str, str], str | None]]
    _measures: dict[str, tuple[str, ...]]
    _starts: dict[str, datetime]
    _untold: bool
    _stale: bool
    _member: Callable[[StoredAlert], Member]  # ``alerting.joining``'s
    _place_root: Callable[[OpenIncident], None]  # ``alerting.grouping``'s
    _set_assessed_workloads: Callable[[OpenIncident, IncidentRow | None], None]  # the same
    _reset_reminder_checks: Callable[[Iterable[tuple[str, datetime]]], None]  # ``alerting.reminding``'s
    _track_silenced: Callable[[Session, Iterable[str]], None]  # ``alerting.muting``'s

    def _reload(self) -> None:
        """Rebuild the in-memory view from the store (at start, and after a failed transaction), with the
        cyclic garbage collector paused: the rebuild makes a few objects per stored alert and open incident
        and no cycles to free, and the collections its allocations set off walked all of them (about a
        third of a start on 24,000 open incidents, benchmarks/bench_engine_rebuild.py)."""
        with collector_paused():
            self._reload_view()

    def _reload_view(self) -> None:
        """``_reload``'s work."""
        self._latest_resolved.forget()  # a failed transaction's answer may have seen what it rolled back
        with self._lock, self._sessions() as session:
            # Announced already, or still held: not held again. At start both are empty.
            known = self._announced | set(self._unannounced)
            self._open.clear()
            self._inhibitor = Inhibitor(self._inhibitor.rules)
            rows = _in_opening_order(
                session,
                session.scalars(
                    select(IncidentRow).where(
                        IncidentRow.state != IncidentState.RESOLVED.value, IncidentRow.merged_into.is_(None)
                    )
                ).all(),
            )
            reopening_untold = _reopening_untold(session)
            for row in rows:
                # At start, a crash may have come between opening and announcing: announce again (listeners
                # such as the outbox dedupe by the event's idempotency key). After a failed transaction,
                # the incidents this process already knew were announced or are still held: not again.
                if row.id in known or row.id in reopening_untold:
                    # Its reopening waits untold (the outbox was unreachable): neither announced nor held,
                    # as a process that tried to tell it holds it, so telling what waits decides, as there
                    # (``IncidentAnnouncing._tell``: an opening never announced is announced first).
                    pass
                elif row.reopen_count or was_announced(row.opened_at, row.announced_at):
                    # Its reopening was told at once (a reopening is never held; one a crash left untold is
                    # told from the store): announced, whatever became of its first opening. Or the store
                    # says its opening was (migration 0019): not offered to the listeners again.
                    self._announced.add(row.id)
                else:
                    self._unannounced[row.id] = row.opened_at
                    if self.clock.now() - row.opened_at >= self._hold:
                        self._reannounce.add(row.id)
                inc = OpenIncident(
                    row.id, (), Priority(row.priority), IncidentState(row.state), row.last_alert_at
                )
                inc.resume(row.reassessment, row.reopen_count)  # what refreshes left pending of it
                self._open[row.id] = inc
            self._reset_reminder_checks((row.id, row.opened_at) for row in rows)
            self._announced &= set(self._open)  # merged or resolved meanwhile: forgotten
            self._reannounce &= set(self._unannounced)
            self._reassessed = False  # what the store holds was not assessed with this inventory
            # The firing alerts' statuses only: a long history's resolved ones (300,000 beside 100,000
            # resolved incidents: 1.2 s and 60 MB at start) are read when an alert of theirs comes again.
            self._status = {}
            self._muted.clear()
            self._measures.clear()
            self._starts.clear()
            for alert in session.scalars(select(AlertRow).where(AlertRow.status == AlertStatus.FIRING.value)):
                self._status[alert.fingerprint] = alert.status
                self._inhibitor.update(alert.fingerprint, alert.labels, True)
                self._starts[alert.fingerprint] = alert.starts_at
                key = measures(alert.recommended_action, alert.annotations)
                if key is not None:
                    self._measures[alert.fingerprint] = key
                if alert.muted_by is not None:
                    self._muted[alert.fingerprint] = (alert.labels, alert.incident_id)
            if self._open:
                for alert in session.scalars(
                    select(AlertRow).where(AlertRow.incident_id.in_(list(self._open)))
                ):
                    assert alert.incident_id is not None
                    self._open[alert.incident_id].members[alert.fingerprint] = self._member(alert)
            took = took_earlier(session, [row.id for row in rows])
            for row in rows:
                inc = self._open[row.id]
                inc.earlier = earlier_members(session, row, inc.members, took)
                if inc.members:
                    self._place_root(inc)
                    self._set_assessed_workloads(inc, row)
            now = self.clock.now()
            configured = [s for s in self._silences if s.configured]
            self._silences = configured + stored_silences(session, now)
            self._track_silenced(session, self._open)

    def _fingerprinted(self, session: Session, label_sets: Sequence[Mapping[str, str]]) -> list[str]:
        """The fingerprints of ``label_sets``, with the stored status of each the status cache does not hold
        yet read into it (in the ingest's transaction, under the engine's lock): an alert resolved before
        this process started, which it does not load. Every firing alert is in the cache; one the store does
        not hold is new."""
        fingerprints = self._fingerprints.fingerprint_all(label_sets)
        unknown = list({fp for fp in fingerprints if fp not in self._status})
        for chunk in in_lists(unknown):
            query = select(AlertRow.fingerprint, AlertRow.status).where(AlertRow.fingerprint.in_(chunk))
            self._status.update((fp, status) for fp, status in session.execute(query))
        return fingerprints

    def _rebuild_after_failure(self) -> None:
        """After a failed transaction: the in-memory view back to what the store holds; when the store
        cannot be read either (a PostgreSQL restart), marked stale and rebuilt before its next use. The
        commit may have gone through though its answer was lost: the changes it stored are told next."""
        self._untold = True
        try:
            self._reload()
        except Exception:  # noqa: BLE001 - the store is down: rebuilt at the next transaction or tick
            self._stale = True
            logger.warning("cannot rebuild the open incidents from the store; retrying before the next use")
        else:
            self._stale = False

    def _fresh(self) -> None:
        """Rebuild the in-memory view if a failure left it stale (raises while the store is still down)."""
        if self._stale:
            self._reload()
            self._stale = False
            logger.info("open incidents rebuilt from the store after a failure")


def _in_opening_order(session: Session, rows: Sequence[IncidentRow]) -> list[IncidentRow]:
    """Open incidents in the order they last opened or reopened, as live holds them (``OpenIncidents``: the
    tick resolves them, and tells their ends, in that order): by the sequence number of their latest
    ``opened`` or ``reopened`` event, which one transaction writes in the order it (re)opens them."""
    opened: dict[str, int] = {}
    for chunk in in_lists([row.id for row in rows]):
        query = (
            select(TimelineRow.incident_id, func.max(TimelineRow.seq))
            .where(TimelineRow.incident_id.in_(chunk), TimelineRow.kind.in_(("opened", "reopened")))
            .group_by(TimelineRow.incident_id)
        )
        opened.update((incident_id, seq) for incident_id, seq in session.execute(query))
    return sorted(rows, key=lambda row: opened.get(row.id, -1))


def _reopening_untold(session: Session) -> set[str]:
    """The incidents with a reopening stored untold (``alerting.handoff``): few, and only after an outbox
    outage."""
    query = select(UntoldChangeRow.incident_id).where(UntoldChangeRow.change == ChangeKind.REOPENED.value)
    return set(session.scalars(query.distinct()))
