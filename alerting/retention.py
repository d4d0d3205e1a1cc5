"""Retention: the store forgets resolved history older than the retention period, a slice at a time.

What goes, once it is older than the cutoff:

* resolved incidents (merged ones included) with their timelines, and every alert still attached to them
  that is not firing (a firing one is detached and stays: it belongs to whatever it fires into next);
* resolved alerts in no incident (muted, or resolved before they joined one), by when they were last seen;
* silences and maintenance windows that ended;
* sent notifications of the incidents that are gone, and their threads once nothing of them is queued.

Open incidents and everything in them stay, however old. Each call deletes at most ``limit`` incidents and
``limit`` loose alerts in one transaction, so a first run over a year of history holds the writer lock for
short slices rather than minutes; the caller repeats while there is more.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session, sessionmaker

from alerting.engine_lock import EngineLock
from alerting.outbox_tables import DISCARDED, SENT, NotificationThread, OutboxMessage, stored_names
from alerting.silences import Silence
from alerting.store_models import AlertRow, IncidentRow, SilenceRow, TimelineRow
from gpuwarden.clock import Clock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import AlertStatus, IncidentState

logger = logging.getLogger(__name__)

# How often the engine's tick looks for history to forget.
PRUNE_EVERY = timedelta(hours=1)
PRUNE_SLICE = 500  # incidents (and loose alerts) deleted in one transaction


@dataclass(slots=True)
class PruneResult:
    """What one pass deleted; ``alerts`` lists the fingerprints, so caches can forget them too."""

    incidents: int = 0
    alerts: tuple[str, ...] = ()
    timeline_events: int = 0
    silences: int = 0
    notifications: int = 0
    more: bool = False

    def add(self, other: PruneResult) -> None:
        """Fold another pass into this one."""
        self.incidents += other.incidents
        self.alerts += other.alerts
        self.timeline_events += other.timeline_events
        self.silences += other.silences
        self.notifications += other.notifications
        self.more = other.more


def prune_resolved(session: Session, cutoff: datetime, limit: int = 500) -> PruneResult:
    """Delete one slice of what ``cutoff`` makes old (see the module docstring); commit is the caller's."""
    result = PruneResult()
    incidents = list(
        session.scalars(
            select(IncidentRow.id)
            .where(IncidentRow.state == IncidentState.RESOLVED.value, IncidentRow.resolved_at < cutoff)
            .limit(limit)
        )
    )
    firing = AlertStatus.FIRING.value
    gone: list[str] = []
    if incidents:
        attached = (AlertRow.incident_id.in_(incidents), AlertRow.status != firing)
        gone += session.scalars(select(AlertRow.fingerprint).where(*attached))
        session.execute(delete(AlertRow).where(*attached))
        session.execute(
            update(AlertRow).where(AlertRow.incident_id.in_(incidents)).values(incident_id=None),
            execution_options={"synchronize_session": False},
        )
        result.timeline_events = _count(
            session.execute(delete(TimelineRow).where(TimelineRow.incident_id.in_(incidents)))
        )
        result.incidents = _count(session.execute(delete(IncidentRow).where(IncidentRow.id.in_(incidents))))
        result.notifications = _prune_notifications(session, incidents)
    loose = list(
        session.scalars(
            select(AlertRow.fingerprint)
            .where(AlertRow.incident_id.is_(None), AlertRow.status != firing, AlertRow.last_seen < cutoff)
            .limit(limit)
        )
    )
    if loose:
        session.execute(delete(AlertRow).where(AlertRow.fingerprint.in_(loose)))
    result.alerts = tuple(gone + loose)
    result.silences = _count(session.execute(delete(SilenceRow).where(SilenceRow.ends_at < cutoff)))
    result.more = len(incidents) == limit or len(loose) == limit
    return result


def _prune_notifications(session: Session, incidents: list[str]) -> int:
    """Sent (and discarded) messages of deleted incidents; their threads when no message of theirs waits any
    more.

    Asked notifier by notifier: the outbox's index and the threads' key begin with the notifier, and a
    condition on the incident alone used neither (SQLite read every sent message of the whole history for
    each slice, 2 s a slice of 500 incidents beside 600,000 stored messages, with the engine's lock held)."""
    done = OutboxMessage.status.in_((SENT, DISCARDED))
    sent = 0
    waiting: set[str] = set()
    for notifier in stored_names(session, OutboxMessage.notifier):
        of_gone = (OutboxMessage.notifier == notifier, OutboxMessage.incident_id.in_(incidents))
        sent += _count(session.execute(delete(OutboxMessage).where(*of_gone, done)))
        waiting.update(session.scalars(select(OutboxMessage.incident_id).where(*of_gone)))
    idle = [i for i in incidents if i not in waiting]
    if idle:
        for notifier in stored_names(session, NotificationThread.notifier):
            session.execute(
                delete(NotificationThread).where(
                    NotificationThread.notifier == notifier, NotificationThread.incident_id.in_(idle)
                )
            )
    return sent


def _count(result: object) -> int:
    return int(getattr(result, "rowcount", 0) or 0)


class StoreRetention:
    """The engine's side of retention: prune on a schedule and forget pruned alerts in memory too."""

    config: AlertingConfig
    clock: Clock
    counters: dict[str, int]
    _lock: EngineLock  # the engine's (``alerting.engine_lock``)
    _sessions: sessionmaker[Session]
    _status: dict[str, str]
    _measures: dict[str, tuple[str, ...]]
    _silences: list[Silence]
    _pruned_at: datetime | None = None

    def prune(self, now: datetime | None = None) -> PruneResult:
        """Delete resolved history older than ``retention_days`` (0 keeps everything); returns what went."""
        total = PruneResult()
        days = self.config.retention_days
        if days <= 0:
            return total
        cutoff = (now or self.clock.now()) - timedelta(days=days)
        while True:
            # One slice per transaction; ingest gets the lock between slices.
            with self._lock:
                with self._sessions() as session, session.begin():
                    part = prune_resolved(session, cutoff, PRUNE_SLICE)
                for fingerprint in part.alerts:
                    self._status.pop(fingerprint, None)
                    self._measures.pop(fingerprint, None)
                kept = [s for s in self._silences if s.ends_at >= cutoff]
                if len(kept) != len(self._silences):  # a new list is a new version: only when one went
                    self._silences = kept
            total.add(part)
            if not part.more:
                break
            self._lock.let_in()  # ingest's turn: the lock is not fair
        self.counters["incidents_pruned"] += total.incidents
        self.counters["alerts_pruned"] += len(total.alerts)
        if total.incidents or total.alerts or total.silences:
            logger.info(
                "pruned resolved history",
                extra={
                    "older_than": cutoff.isoformat(),
                    "incidents": total.incidents,
                    "alerts": len(total.alerts),
                    "timeline_events": total.timeline_events,
                    "silences": total.silences,
                    "notifications": total.notifications,
                },
            )
        return total

    def _prune_if_due(self, now: datetime) -> None:
        if self._pruned_at is not None and now - self._pruned_at < PRUNE_EVERY:
            return
        self._pruned_at = now
        self.prune(now)
