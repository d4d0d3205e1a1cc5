"""The journal's applier: reads accepted records in order and applies them through the incident engine.

The offset it has applied is committed in the same store transaction as the alerts it applied (see
``alerting.journal``), so after a crash replay starts exactly where the store stopped.

A record that the store keeps refusing (a poison alert: say a label value PostgreSQL cannot hold) must
not hold back every later one, nor the good alerts posted with it. After ``poison_after`` failures at one
offset the applier applies the failing batch one record at a time; a single record that fails
``poison_after`` times while the store still takes a plain write is applied one alert per transaction, and
only the alerts that fail alone are moved to ``quarantine/`` beside the segments (see
``alerting.quarantine``: the alert as posted, the record's accept time and the error, as JSON); then the
applied offset moves past the record. A crash during that replays the whole record: the alerts applied
already come again as repeats, which change nothing (Prometheus re-posts firing alerts all the time). A
store that takes no write at all (down, locked), or cannot write its files (a full disk, a file made
read-only, an I/O error; even where a small write such as the offset still commits), quarantines nothing:
the applier retries until it is back. Quarantined alerts and records are counted in the ingest status and
logged with the fingerprint.
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, select, update
from sqlalchemy.orm import Session

from alerting.engine import IncidentEngine
from alerting.fencing import LockFence, unfenced
from alerting.health import Heartbeat, ServiceHealth, store_file_fault
from alerting.journal import AcceptJournal, JournalRecord
from alerting.quarantine import keep_alert, keep_record
from alerting.store_models import JournalOffsetRow
from alerting.store_names import public_failure
from gpuwarden.clock import rfc3339
from gpuwarden.errors import InputError
from gpuwarden.model import Alert

logger = logging.getLogger(__name__)
_OFFSETS = cast(Table, JournalOffsetRow.__table__)


class JournalApplier:
    """Applies journal records through the engine, committing the applied offset with them."""

    def __init__(
        self,
        journal: AcceptJournal,
        engine: IncidentEngine,
        *,
        batch_bytes: int = 4 << 20,
        retry_seconds: float = 1.0,
        burst_gap_seconds: float = 0.01,
        max_lag_bytes: int = 32 << 20,
        poison_after: int = 3,
        health: ServiceHealth | None = None,
        fence: LockFence | None = None,
        stall_seconds: float = 300.0,
    ) -> None:
        """``burst_gap_seconds``/``max_lag_bytes``: while batches keep arriving less than the gap apart,
        applying waits (acknowledging comes first, as Alertmanager dispatches after its POSTs), unless the
        lag passed ``max_lag_bytes``, a read is waiting for its writes or the startup backlog is replaying.

        ``health`` learns whether each transaction reached the store, and when the backlog the journal
        held at start (``replay_end``) is applied. ``fence``: nothing is applied unless this server still
        holds the store lock (a store that cannot be asked fails the transaction anyway).

        ``stall_seconds``: ``heartbeat`` (liveness) fails when the loop has not beaten this long; it beats
        between batches, while idle, while waiting to retry, for each alert and incident a transaction works
        through, and, while it waits for the engine's lock, as its holder (a tick) makes progress."""
        self.journal = journal
        self.engine = engine
        self.batch_bytes = batch_bytes
        self.retry_seconds = retry_seconds
        self.burst_gap_seconds = burst_gap_seconds
        self.max_lag_bytes = max_lag_bytes
        self._readers = 0
        self.applied = journal.first
        self.alerts_applied = 0
        self.failures = 0
        self.last_error: str | None = None  # why applying fails now; None once a batch applied since
        self.last_error_at: datetime | None = None  # when applying last failed (kept after it recovered)
        self.poison_after = poison_after
        self.quarantined = 0  # records (one this version no longer parses)
        self.alerts_quarantined = 0  # alerts the store refused alone
        self._failing_at = -1  # offset of the last failure, and how many times in a row it failed there
        self._failures_here = 0
        self._isolate_until = -1  # below this offset, records are applied one at a time
        # A transaction failed: its COMMIT may have gone through though its answer was lost. The offset the
        # store holds is read again before applying anything (see ``_skip_committed``).
        self._in_doubt = False
        self._wake = threading.Event()
        self._cond = threading.Condition()
        self.health = health or ServiceHealth()
        self.fence = fence or unfenced()
        self.replay_end = journal.end
        self.heartbeat = Heartbeat("the journal applier", stall_seconds, "alerting.applier_stall_seconds")
        self._caught_up()

    def _caught_up(self) -> None:
        """Tell ``health`` once everything acknowledged before this serve started is applied."""
        if self.health.replayed.is_set() or self.applied < self.replay_end:
            return
        if self.replay_end > self.journal.first:
            logger.info("journal: replay caught up at offset %d", self.applied)
        self.health.replayed.set()

    def notify(self) -> None:
        """New records were appended."""
        self._wake.set()

    def apply_available(self) -> int:
        """Apply one batch of pending records; returns how many alerts it applied (0: caught up).

        Raises what applying raised, unless that quarantined a poison record (see the module docstring), and
        ``NotActive`` before reading anything when this server no longer holds the store lock.
        """
        self.fence.require(unreachable_ok=True)
        if self._in_doubt:
            self._skip_committed()
        records = self.journal.read(self.applied, self.batch_bytes)
        if not records:
            return 0
        if self.applied < self._isolate_until:
            records = records[:1]
        try:
            applied = self._apply(records)
        except Exception as exc:
            self._in_doubt = True
            if self._failed(records, exc):
                return 1
            raise
        self._failing_at, self._failures_here = -1, 0
        return applied

    def _skip_committed(self) -> None:
        """After a failed transaction: move past what the store committed anyway (a COMMIT whose answer was
        lost), so no record is applied twice. Raises while the store cannot be read."""
        with self.engine.store.engine.connect() as conn:
            stored = conn.scalar(
                select(_OFFSETS.c.applied_offset).where(_OFFSETS.c.journal_id == self.journal.journal_id)
            )
        self._in_doubt = False
        if stored is None or stored <= self.applied:
            return
        logger.warning(
            "journal: the store committed up to offset %d though applying from %d failed; skipping it",
            stored,
            self.applied,
        )
        with self._cond:
            self.applied = stored
            self._cond.notify_all()
        self._moved_past_failure(stored)

    def _moved_past_failure(self, offset: int) -> None:
        """The applied offset moved to ``offset`` past records that failed (committed anyway, or applied
        alone): the streak of failures there is over, replay may have caught up, the journal drops what
        lies before it."""
        self._failing_at, self._failures_here = -1, 0
        self.last_error = None
        self._caught_up()
        self.journal.discard_applied(offset)

    def _failed(self, records: list[JournalRecord], exc: Exception) -> bool:
        """Count a failure at the applied offset; isolate or quarantine; True when it quarantined."""
        if self._failing_at != self.applied:
            self._failing_at, self._failures_here = self.applied, 0
        self._failures_here += 1
        if self._failures_here < self.poison_after:
            return False
        if len(records) > 1:
            logger.warning(
                "journal: a batch at offset %d failed %d times (%r); applying it one record at a time",
                self.applied,
                self._failures_here,
                exc,
            )
            self._isolate_until, self._failures_here = records[-1].end, 0
            return False
        if store_file_fault(exc) or not self._store_takes_writes():
            return False
        self._apply_alone(records[0], exc)
        return True

    def _store_takes_writes(self) -> bool:
        """Whether a plain write (the applied offset, unchanged) commits: the store is up, the record bad."""
        try:
            self._commit_offset(self.applied)
        except Exception as exc:  # noqa: BLE001 - any failure here: not the record's fault, keep retrying
            logger.warning("journal: the store takes no write either; retrying, nothing quarantined: %r", exc)
            return False
        self.health.store_ok()
        return True

    def _commit_offset(self, offset: int) -> None:
        with self.engine.store.engine.begin() as conn:
            conn.execute(
                update(_OFFSETS)
                .where(_OFFSETS.c.journal_id == self.journal.journal_id)
                .values(applied_offset=offset)
            )

    def _apply_alone(self, record: JournalRecord, exc: Exception) -> None:
        """Apply the record's alerts one per transaction, quarantine those the store refuses alone, then
        commit the offset past the record. Raises (nothing quarantined) once the store takes no write."""
        start = self.applied
        logger.warning(
            "journal: record at offset %d failed %d times while the store takes writes (%r); applying its"
            " alerts one at a time",
            start,
            self._failures_here,
            exc,
        )
        at = datetime.fromtimestamp(record.accepted_at, UTC)
        alerts = record.alerts(timedelta(seconds=self.engine.config.resolve_timeout_seconds))
        refused: list[tuple[Alert, Exception]] = []
        for alert in alerts:
            self.heartbeat.beat()  # a record of thousands of alerts, one transaction each, takes a while
            try:
                with self.heartbeat.waiting_for(self.engine.lock):
                    self.engine.apply_accepted([(at, [alert])], lambda _session: None, self.heartbeat.beat)
            # The store refused this alert, or is down or cannot write its files: checked next.
            except Exception as alert_exc:
                if store_file_fault(alert_exc) or not self._store_takes_writes():
                    raise
                refused.append((alert, alert_exc))
        for alert, why in refused:
            path = keep_alert(self.journal.directory, record, alert, why, start)
            logger.error(
                "journal: alert %s of the record at offset %d is refused by the store; quarantined: %s: %r",
                alert.fingerprint,
                start,
                path,
                why,
            )
        self._commit_offset(record.end)
        with self._cond:
            self.applied = record.end
            self.alerts_applied += len(alerts) - len(refused)
            self.alerts_quarantined += len(refused)
            self._cond.notify_all()
        self._moved_past_failure(record.end)

    def _apply(self, records: list[JournalRecord]) -> int:
        batches: list[tuple[datetime, list[Alert]]] = []
        timeout = timedelta(seconds=self.engine.config.resolve_timeout_seconds)
        start, kept = self.applied, 0
        for record in records:
            try:
                alerts = record.alerts(timeout)
            except InputError as exc:
                # Validated before append, by the version that wrote it: one this version refuses (a NUL,
                # which PostgreSQL cannot store) is kept in quarantine, not lost, and wedges nothing.
                path = keep_record(self.journal.directory, record, exc, start)
                logger.error(
                    "journal: record at offset %d no longer parses; quarantined: %s: %s", start, path, exc
                )
                kept += 1  # counted once the offset past it commits (a failed batch is tried again)
                start = record.end
                continue
            start = record.end
            batches.append((datetime.fromtimestamp(record.accepted_at, UTC), alerts))
        end = records[-1].end
        journal_id = self.journal.journal_id

        def commit_offset(session: Session) -> None:
            session.connection().execute(
                update(_OFFSETS).where(_OFFSETS.c.journal_id == journal_id).values(applied_offset=end)
            )

        # It beats as the transaction works through the alerts: one record may hold 100,000 of them; and while
        # it waits for the engine, what holds it beats it as it works (a tick of 12,000 alerts timing out).
        with self.heartbeat.waiting_for(self.engine.lock):
            self.engine.apply_accepted(batches, commit_offset, self.heartbeat.beat)
        self.health.store_ok()
        self.last_error = None
        applied = sum(len(a) for _, a in batches)
        with self._cond:
            self.applied = end
            self.alerts_applied += applied
            self.quarantined += kept
            self._cond.notify_all()
        self._caught_up()
        self.journal.discard_applied(end)
        return max(applied, 1)

    def run(self, stop: threading.Event) -> None:
        """Background loop: apply whenever records are pending; retry after a failure (the first failure of
        a streak is logged with its traceback, the next ones one line each, until a batch applies).

        An exception that escapes the loop (a bug in the retry path itself) ends the thread: the heartbeat
        records it, so liveness fails and the orchestrator restarts serve instead of it acknowledging alerts
        that are never applied."""
        try:
            self._loop(stop)
        except BaseException as exc:  # thread boundary: recorded and logged; raising would only print it
            self.heartbeat.ended(exc)
            logger.critical("journal: the applier stopped; serve is not live any more", exc_info=True)

    def _loop(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self.heartbeat.beat()
            try:
                lag = self.lag_bytes
                if lag > 0:
                    busy = time.monotonic() - self.journal.last_append < self.burst_gap_seconds
                    replaying = not self.health.replayed.is_set()  # catch up first: serve is not ready
                    if busy and lag < self.max_lag_bytes and not self._readers and not replaying:
                        stop.wait(self.burst_gap_seconds)
                        continue
                    self.apply_available()
                    continue
            except Exception as exc:  # loop boundary: records stay in the journal, retried later
                self.failures += 1
                if self.last_error is None:
                    logger.exception("journal: applying from offset %d failed; will retry", self.applied)
                else:
                    logger.warning("journal: applying from offset %d failed again: %r", self.applied, exc)
                # Read without a token: the class and the first line, names hidden; the log has it all.
                self.last_error, self.last_error_at = public_failure(exc), self.engine.clock.now()
                self.health.store_failed(exc)
                self._pause(stop, self.retry_seconds)
                continue
            self._wake.wait(0.05)
            self._wake.clear()

    def _pause(self, stop: threading.Event, seconds: float) -> None:
        """Wait ``seconds`` (or until ``stop``), beating the heartbeat meanwhile: a retry wait longer than
        the liveness deadline is no stall."""
        end = time.monotonic() + seconds
        while not stop.is_set():
            left = end - time.monotonic()
            if left <= 0:
                return
            stop.wait(min(left, self.heartbeat.interval))
            self.heartbeat.beat()

    def wait_applied(self, offset: int, timeout: float) -> bool:
        """Block until everything up to ``offset`` is applied, at most ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._readers += 1
            try:
                while self.applied < offset:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return False
                    self._cond.wait(left)
            finally:
                self._readers -= 1
        return True

    @property
    def lag_bytes(self) -> int:
        """Journal bytes acknowledged but not applied yet."""
        return max(0, self.journal.end - self.applied)

    def status(self) -> dict[str, Any]:
        """Offsets and counters for ``GET /api/v1/ingest/status``."""
        return {
            "journal_id": self.journal.journal_id,
            "accepted_offset": self.journal.end,
            "applied_offset": self.applied,
            "lag_bytes": self.lag_bytes,
            "alerts_accepted": self.journal.alerts_appended,
            "alerts_applied": self.alerts_applied,
            "apply_failures": self.failures,
            "last_error": self.last_error,
            "last_error_at": rfc3339(self.last_error_at) if self.last_error_at is not None else None,
            "records_quarantined": self.quarantined,
            "alerts_quarantined": self.alerts_quarantined,
            "store_up": self.health.store_up,
            "replaying": not self.health.replayed.is_set(),
            "quarantine_dir": str(self.journal.directory / "quarantine"),
            "applier_heartbeat_age_seconds": self.heartbeat.age(),
            "applier_problem": self.heartbeat.problem(),
        }
