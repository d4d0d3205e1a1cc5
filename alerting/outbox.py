"""A persistent notification outbox: a Slack outage delays messages, it never drops or duplicates them.

The ``Outbox`` is an ``IncidentListener``: for every committed incident change it stores one row per notifier,
keyed by an idempotency key per incident and event (the same change enqueued twice is stored once). A
notifier that chooses what it is sent (a ``SelectiveNotifier``: a webhook's ``events`` and ``priorities``)
gets no row for a change it does not want; once a row of an incident was stored for it, it is asked with
``known=True``. A change told ``only_if_told`` (the end of an incident never announced) is stored only for
notifiers that have a row of its incident. Delivery (``dispatch_due``: order per incident, backoff, rate-limit
pauses, superseded edits, marking a row ``sending`` before the notifier runs) is
``alerting.outbox_delivery``'s, its base class; its metrics: ``alerting.outbox_metrics``.

Crash safety: a row found in ``sending`` (or one that failed before) is retried with ``retry=True``, which
tells the notifier that the far end may already have it. The Slack notifier then updates its stored message
in place (``chat.update`` on the saved ``ts``) and looks for the reply's idempotency key in the thread before
posting, so nothing is posted twice. What remains at-least-once: the chart upload (a crash between
``files_upload_v2`` and saving ``chart_posted`` uploads it again), the first post of an incident when the
configured channel is a name rather than an id, and the generic webhook (receivers dedupe by the
``Idempotency-Key`` header). One dispatcher per database is assumed, with one thread per notifier; two would
race for the same rows.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Collection, Sequence
from datetime import UTC, datetime

from sqlalchemy import Engine, case, func, literal, select, union_all, update
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from alerting.db import in_lists, locked_rows
from alerting.fencing import LockFence, unfenced
from alerting.notifiers.base import (
    EditHoldingNotifier,
    Notification,
    Notifier,
    RunbookLinker,
    SelectiveNotifier,
    ThreadState,
    build_notification,
    idempotency_key,
)
from alerting.outbox_delivery import OutboxDelivery
from alerting.outbox_orphans import Discarded, discard_messages
from alerting.outbox_plan import Backoff
from alerting.outbox_refusals import Blocked
from alerting.outbox_stats import OutboxStats
from alerting.outbox_tables import (
    FAILED,
    HELD,
    PENDING,
    SENDING,
    SENT,
    WAITING,
    NotificationThread,
    OutboxMessage,
    first_taken,
    held_at,
    in_counts_order,
    kept_counts,
    of_incident,
)
from alerting.subscriptions import ChangeKind, IncidentChange
from gpuwarden.clock import Clock

__all__ = ["PENDING", "SENDING", "Backoff", "Outbox"]  # what is imported from here (the tests: the statuses)

logger = logging.getLogger(__name__)


def _hold_seconds(notifier: Notifier) -> float:
    """How long ``notifier`` holds an ``edit_only`` change for a later one; 0 but for an
    ``EditHoldingNotifier``."""
    return notifier.edit_interval_seconds if isinstance(notifier, EditHoldingNotifier) else 0.0


class Outbox(OutboxDelivery):
    """Stores notifications on incident changes and delivers them with retries; an ``IncidentListener``."""

    def __init__(
        self,
        engine: Engine,
        notifiers: Sequence[Notifier],
        clock: Clock,
        *,
        backoff: Backoff | None = None,
        runbook: RunbookLinker | None = None,
    ) -> None:
        names = [n.name for n in notifiers]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"notifier names must be unique: {', '.join(duplicates)}")
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self._notifiers = {n.name: n for n in notifiers}
        self._clock = clock
        self._backoff = backoff or Backoff()
        self._runbook = runbook
        # Notifier name → how long it holds an ``edit_only`` change (``_edit_due``): the longest hold it sets.
        self._holds = {n.name: _hold_seconds(n) for n in notifiers if _hold_seconds(n) > 0}
        self.stats = OutboxStats()
        # Notifier name → clock time before which it is not called: it was rate limited (Retry-After), and
        # the limit is the app's, not one incident's (Slack's is per method and app).
        self._paused_until: dict[str, float] = {}
        # The pauses this process set, with the clock time it set each: one set after the time now (the wall
        # clock went back since) counts from now (``_restart_stepped_pauses``).
        self._pauses_set: dict[str, tuple[float, float]] = {}
        # Notifiers whose messages may be backing off after a transient failure (all of them at start): the
        # next delivery that succeeds makes those due at once, so a message does not wait minutes of
        # backoff grown during an outage once the destination is back.
        self._backing_off: set[str] = set(self._notifiers)
        # (notifier, incident) -> clock time before which its messages are not sent: one of the far end's
        # limits refused a call they need, not the notifier's as a whole (``OutboxDelivery._held_by_limit``).
        self._limit_holds: dict[tuple[str, str], tuple[float, float]] = {}  # -> (set at, until)
        # Notifiers whose far end refused every call until someone acts (``OutboxRefusals._blocked``).
        self._blocks: dict[str, Blocked] = {}
        self._holds_said: dict[tuple[str, str], str] = {}  # what a hold of an incident last logged
        self.fence: LockFence = unfenced()  # serve's: nothing is sent unless it still holds the store lock
        self.hurry = threading.Event()  # serve's second stop signal: no message more is sent (stays pending)
        self._sends = threading.Condition()
        self._in_flight = 0
        self._closed = False
        # Whether the store was unreachable at the last dispatch round of any notifier's loop (``run``).
        self._store_lock = threading.Lock()
        self._store_failing = False

    # --- enqueue -----------------------------------------------------------------------------------

    def __call__(self, change: IncidentChange) -> datetime | None:
        """Listener entry point: enqueue. What fails (the store dropped) is raised: the engine keeps the
        change stored and tells it again (``alerting.handoff``); the enqueue dedupes it, and says when it
        first took it (a process that crashed before storing its announcement: the page was then), also
        when a notifier configured since takes it only now."""
        asked = datetime.fromtimestamp(self._clock.time(), UTC)
        added = self.enqueue(change)
        if change.kind is not ChangeKind.OPENED or added == len(self._notifiers):
            return None
        with self._sessions() as session:  # by the (notifier, key) index: the notifiers configured now
            taken = first_taken(
                session,
                OutboxMessage.notifier.in_(list(self._notifiers)),
                OutboxMessage.idempotency_key == idempotency_key(change),
            ).get(change.incident.id)
        # The first stored by this call (the other notifiers filtered it out): taken now, as when all took it.
        if taken is None or (added and taken >= asked):
            return None
        return taken

    def _notification(self, change: IncidentChange) -> Notification:
        # Only a snapshot here: this runs on the engine's path, so nothing slow (a chart's series is read
        # by the notifier at delivery time).
        return build_notification(change, runbook=self._runbook)

    def enqueue(self, change: IncidentChange) -> int:
        """Store the change for every notifier; returns how many rows were new (0 for a repeat)."""
        key = idempotency_key(change)
        now = self._clock.time()
        added = 0
        built: tuple[Notification, str] | None = None  # the notification and its JSON, made once
        for name, notifier in self._notifiers.items():
            with self._sessions() as session:
                exists = session.scalar(
                    select(OutboxMessage.id).where(
                        OutboxMessage.notifier == name, OutboxMessage.idempotency_key == key
                    )
                )
                if exists is not None:
                    self.stats.duplicates += 1
                    continue
                if built is None:
                    notification = self._notification(change)
                    built = notification, notification.model_dump_json()
                notification, payload = built
                if isinstance(notifier, SelectiveNotifier) or change.only_if_told:
                    known = session.scalar(
                        select(OutboxMessage.id)
                        .where(
                            OutboxMessage.notifier == name, OutboxMessage.incident_id == change.incident.id
                        )
                        .limit(1)
                    )
                    if change.only_if_told and known is None:
                        continue  # the end of an incident never announced to it: nothing to close
                    if isinstance(notifier, SelectiveNotifier) and not notifier.wants(
                        notification, known=known is not None
                    ):
                        self.stats.count(self.stats.by_notifier_filtered, name)
                        continue
                session.add(
                    OutboxMessage(
                        notifier=name,
                        incident_id=change.incident.id,
                        idempotency_key=key,
                        payload=payload,
                        priority=change.incident.priority.value,
                        status=PENDING,
                        attempts=0,
                        created_at=now,
                        next_attempt_at=self._edit_due(session, notifier, change.incident.id, now)
                        if notification.edit_only
                        else now,
                    )
                )
                try:
                    session.commit()
                except IntegrityError:  # the same change enqueued concurrently: already stored
                    session.rollback()
                    self.stats.duplicates += 1
                    continue
                added += 1
        self.stats.enqueued += added
        return added

    @staticmethod
    def _edit_due(session: Session, notifier: Notifier, incident_id: str, now: float) -> float:
        """When an ``edit_only`` message is due: at once, but for an ``EditHoldingNotifier`` (a webhook, to
        which each is a POST) when the edit of the incident held for it already is due, else its interval
        from now. The next message supersedes a held one (``_drain_group``), so the latest edit goes at that
        time: at most one per interval however often they come (a recommendation flipping at every scrape).
        Held (``held_at``) means stored, pending, never tried, due later: in the store, so a restart holds it
        alike."""
        interval = _hold_seconds(notifier)
        if interval <= 0:
            return now
        held = session.scalar(
            select(func.min(OutboxMessage.next_attempt_at)).where(
                OutboxMessage.notifier == notifier.name,
                OutboxMessage.incident_id == incident_id,
                held_at(now, {notifier.name: interval}),
            )
        )
        return now + interval if held is None else float(held)

    # --- inspection and operation ------------------------------------------------------------------

    def messages(
        self, status: str | None = None, incident_id: str | None = None, limit: int | None = None
    ) -> list[OutboxMessage]:
        """Stored messages in enqueue order, optionally of one status or incident; with ``limit``, the
        newest that many."""
        with self._sessions() as session:
            query = select(OutboxMessage)
            if status is not None:
                query = query.where(OutboxMessage.status == status)
            if incident_id is not None:
                query = query.where(of_incident(session, incident_id))
            if limit is not None:
                newest = query.order_by(OutboxMessage.id.desc()).limit(limit)
                return sorted(session.scalars(newest), key=lambda m: m.id)
            return list(session.scalars(query.order_by(OutboxMessage.id)))

    def waiting_behind(self, messages: Sequence[OutboxMessage]) -> dict[int, OutboxMessage]:
        """Of ``messages``, the pending ones held back by an earlier message of their notifier and incident
        still waiting (``dispatch_due`` keeps their order), each with the first of those: the message its
        own ``next_attempt_at`` does not say when it goes, as that one has passed, or comes before that one
        is tried again (backing off, or being sent now). ``{id: first waiting message}``."""
        if not any(m.status == PENDING for m in messages):
            return {}
        first = (
            select(func.min(OutboxMessage.id))
            .where(OutboxMessage.status.in_(WAITING))
            .group_by(OutboxMessage.notifier, OutboxMessage.incident_id)
        )
        with self._sessions() as session:
            found = session.scalars(
                select(OutboxMessage).where(OutboxMessage.id.in_(first.scalar_subquery()))
            )
            heads = {(m.notifier, m.incident_id): m for m in found}
        now = self._clock.time()
        behind: dict[int, OutboxMessage] = {}
        for m in messages:
            head = heads.get((m.notifier, m.incident_id))
            if m.status != PENDING or head is None or head.id >= m.id:
                continue
            head_goes = head.next_attempt_at if head.status == PENDING else now
            if m.next_attempt_at <= max(head_goes, now):  # not held past it on purpose (an edit's hold)
                behind[m.id] = head
        return behind

    def thread(self, notifier: str, incident_id: str) -> ThreadState | None:
        """The stored conversation of an incident for a notifier."""
        with self._sessions() as session:
            row = session.get(NotificationThread, (notifier, incident_id))
            if row is None:
                return None
            return ThreadState(row.channel, row.ts, row.chart_posted, row.posted_for)

    @property
    def notifier_names(self) -> list[str]:
        """The names of its notifiers, in the order given."""
        return list(self._notifiers)

    def counts_by_notifier(self) -> dict[tuple[str, str], int]:
        """How many stored messages each notifier has in each status: ``{(notifier, status): n}``, a pending
        message held on purpose now (``held_at``) counted as ``held``, not ``pending``."""
        counts = self._kept_counts()
        for (notifier, status), count in list(counts.items()):
            if status == HELD:  # held ones are pending ones, counted apart
                counts[(notifier, PENDING)] -= count
                if counts[(notifier, PENDING)] == 0:
                    del counts[(notifier, PENDING)]
        return counts

    def _kept_counts(self) -> dict[tuple[str, str], int]:
        """``{(notifier, status): n}`` as kept in ``outbox_counts``, and ``(notifier, held): n`` of the
        pending ones held on purpose now (``held_at``)."""
        # Read from ``outbox_counts`` (migrations 0024, 0025, kept by triggers), the held ones among the few
        # pending by ``(status, id)``: a count of the ``(notifier, status)`` index read each entry of it
        # (600,000 sent messages of a long history on PostgreSQL: 86-330 ms a scrape). One statement, so one
        # snapshot: a message stored between two reads would be counted held and not pending.
        held = (
            select(OutboxMessage.notifier, literal(HELD), func.count())
            .where(held_at(self._clock.time(), self._holds))
            .group_by(OutboxMessage.notifier)
        )
        with self._sessions() as session:
            rows = session.execute(union_all(kept_counts(), held)).all()
        return {(str(notifier), str(status)): int(count) for notifier, status, count in rows}

    def counts(self, incident_id: str | None = None) -> dict[str, int]:
        """How many stored messages (of one incident, or all) are in each status."""
        return self.depths(incident_id)[0]

    def depths(self, incident_id: str | None = None) -> tuple[dict[str, int], int]:
        """``counts`` and how many of the pending are held on purpose now (``held_at``), in one read: a
        message stored between two reads would be counted held and not pending."""
        if incident_id is None:  # all of them: the kept counts, not a read of every message ever sent
            counts: dict[str, int] = {}
            held = 0
            for (_, status), count in self._kept_counts().items():
                if status == HELD:
                    held += count
                else:
                    counts[status] = counts.get(status, 0) + count
            return counts, held
        of_held = func.sum(case((held_at(self._clock.time(), self._holds), 1), else_=0))
        query = select(OutboxMessage.status, func.count(), of_held).group_by(OutboxMessage.status)
        with self._sessions() as session:
            rows = session.execute(query.where(of_incident(session, incident_id))).all()
        return {str(status): int(count) for status, count, _ in rows}, sum(int(n or 0) for _, _, n in rows)

    def requeue_failed(self, incident_id: str | None = None) -> tuple[int, int]:
        """Put failed messages (of one incident, or all) back in the queue, after fixing a token or a
        channel; they go out in their incident's order, with what was queued after them. A failed message
        that a later one of its incident has overtaken (sent, or being sent now: it goes before anything
        queued after it) stays failed: sent now, it would set the incident's message back to what it said
        then. Failed messages of a notifier no longer configured stay failed: queued, nothing would send
        them. Returns (queued again, left as overtaken)."""
        with self._sessions() as session, session.begin():
            query = select(OutboxMessage).where(
                OutboxMessage.status == FAILED, OutboxMessage.notifier.in_(list(self._notifiers))
            )
            if incident_id is not None:
                query = query.where(OutboxMessage.incident_id == incident_id)
            # Locked as read: an `outbox discard --status failed` at the same moment read them failed too,
            # and the later write won: messages said discarded were sent, or said requeued were discarded.
            rows = locked_rows(session, query.order_by(OutboxMessage.id))  # discard's order: no deadlock
            last_sent = _newest_sent(session, rows)
            queued = [r for r in rows if last_sent.get((r.notifier, r.incident_id), -1) < r.id]
            _queue_again(session, queued, self._clock.time())
        if rows:
            logger.info(
                "outbox: %d failed messages queued again, %d left (overtaken)",
                len(queued),
                len(rows) - len(queued),
            )
        return len(queued), len(rows) - len(queued)

    def discard(
        self,
        notifier: str,
        statuses: Collection[str],
        *,
        by: str,
        incident_id: str | None = None,
        dry_run: bool = False,
        ids: Collection[int] | None = None,
    ) -> Discarded:
        """Drop orphaned (or, asked, failed) messages of ``notifier`` for good, as ``by``; of one incident or
        all; with ``ids`` only those of them; with ``dry_run`` only count them (see ``discard_messages``). How
        many of each status, and which."""
        now = self._clock.time()
        return discard_messages(
            self._sessions,
            notifier,
            statuses,
            by=by,
            now=now,
            incident_id=incident_id,
            dry_run=dry_run,
            ids=ids,
        )

    def run(self, stop: threading.Event, poll_seconds: float = 1.0) -> None:
        """Dispatch until ``stop`` is set, each notifier on its own thread: a destination that is slow or
        hangs (a webhook's POST waiting out its timeout) never delays another's messages. One thread owns
        each notifier's rows, so its order per incident and its once-only delivery hold as with one."""
        workers = [
            threading.Thread(
                target=self._run_notifier, args=(name, stop, poll_seconds), name=f"outbox {name}", daemon=True
            )
            for name in self._notifiers
        ]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()

    def _run_notifier(self, name: str, stop: threading.Event, poll_seconds: float) -> None:
        """One notifier's dispatch loop; its boundary logs and counts unexpected errors.

        A store that cannot be reached is no outbox error (``/-/ready`` and ``gpuwarden_store_up`` report
        it): its first failure is logged once with the traceback (by whichever notifier's loop met it), then
        one line per round until it is back."""
        while not stop.is_set():
            try:
                self.dispatch_due(name)
            except SQLAlchemyError as exc:
                with self._store_lock:
                    first, self._store_failing = not self._store_failing, True
                if first:
                    logger.exception(
                        "outbox dispatch round failed: the store is unreachable notifier=%s", name
                    )
                else:
                    logger.warning("outbox dispatch round failed again notifier=%s: %r", name, exc)
            except Exception:
                self.stats.error()
                logger.exception("outbox dispatch round failed notifier=%s", name)
            else:
                with self._store_lock:
                    back, self._store_failing = self._store_failing, False
                if back:
                    logger.info("outbox dispatching again")
            self._clock.sleep(poll_seconds)


def _newest_sent(session: Session, rows: Sequence[OutboxMessage]) -> dict[tuple[str, str], int]:
    """The id of the newest message sent, or being sent, of each notifier and incident of ``rows``: read for
    those incidents alone (by an index of notifier and incident), not grouped over every message ever sent
    (600,000 of a long history read for a retry of one message, or of none)."""
    newest: dict[tuple[str, str], int] = {}
    notifiers = sorted({row.notifier for row in rows})
    for chunk in in_lists(sorted({row.incident_id for row in rows})):
        query = (
            select(OutboxMessage.notifier, OutboxMessage.incident_id, func.max(OutboxMessage.id))
            .where(
                OutboxMessage.notifier.in_(notifiers),
                OutboxMessage.status.in_((SENT, SENDING)),
                OutboxMessage.incident_id.in_(chunk),
            )
            .group_by(OutboxMessage.notifier, OutboxMessage.incident_id)
        )
        newest.update(((notifier, incident), top) for notifier, incident, top in session.execute(query))
    return newest


def _queue_again(session: Session, rows: Sequence[OutboxMessage], now: float) -> None:
    """Make ``rows`` pending, due ``now``, by one UPDATE (one per ``in_lists`` piece), the ids in the store's
    order of their notifiers. On PostgreSQL each UPDATE's statement trigger locks the ``outbox_counts`` rows
    it changes (migration 0024) in ``(notifier, status)`` order until commit; a statement per message, in id
    order across notifiers, locked them in whatever order the ids came, and two requeues (of two incidents)
    locking one notifier's and another's the other way round were a deadlock (one aborted)."""
    if not rows:
        return
    rank = {name: at for at, name in enumerate(in_counts_order(session, {row.notifier for row in rows}))}
    ids = [row.id for row in sorted(rows, key=lambda r: (rank[r.notifier], r.id))]
    for chunk in in_lists(ids):
        session.execute(
            update(OutboxMessage)
            .where(OutboxMessage.id.in_(chunk))
            .values(status=PENDING, next_attempt_at=now)
        )
