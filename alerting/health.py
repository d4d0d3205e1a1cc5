"""Whether ``serve`` can do its work: the store took its last transaction, the startup replay caught up.

A store outage does not stop ``serve``: writes are still acknowledged into the accept journal and the
applier retries. So liveness (``/healthz``) stays 200 and the outage shows where an operator looks for it:
readiness (``/-/ready`` answers 503) and ``/metrics`` (``gpuwarden_store_up 0``, the ingest lag growing).

A stuck or dead applier is different: ``serve`` keeps acknowledging alerts that no incident will ever show,
and only a restart helps. The applier's loop beats a ``Heartbeat``; liveness fails when it has not beaten
for its deadline or when the loop ended with an exception. While it waits for the engine's lock, whatever
holds the lock beats it as it makes progress (``Heartbeat.waiting_for``, ``alerting.engine_lock``): a long
tick is no stuck applier; a holder stuck itself is, and liveness says what holds the lock.
"""

from __future__ import annotations

import errno
import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from alerting.db import connection_names, store_failure
from alerting.engine_lock import EngineLock
from alerting.store_file import StoreFile
from alerting.store_names import shown_reason
from gpuwarden.clock import rfc3339

if TYPE_CHECKING:
    from alerting.applier import JournalApplier

logger = logging.getLogger(__name__)


def store_unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the store cannot be reached or used at all, rather than
    that one statement was wrong: a refused or dropped connection, a server shutting down, a pool timeout,
    a locked or unreadable SQLite file."""
    seen: BaseException | None = exc
    for _ in range(10):  # a cause chain is short; a cycle must not hang a request
        if seen is None:
            return False
        if isinstance(seen, OperationalError | InterfaceError | DisconnectionError | PoolTimeout):
            return True
        if isinstance(seen, DBAPIError) and seen.connection_invalidated:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


# SQLite's primary result codes for a store file that cannot be written: SQLITE_READONLY, SQLITE_IOERR,
# SQLITE_FULL ("database or disk is full"), SQLITE_CANTOPEN.
_SQLITE_FILE_FAULTS = frozenset({8, 10, 13, 14})
_PG_FILE_FAULTS = ("53", "58")  # PostgreSQL's classes "insufficient resources" (disk_full) and "system error"
_OS_FILE_FAULTS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EIO})


def store_file_fault(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the store cannot write its files (a full disk, a file made
    read-only, an I/O error): never the fault of what was being written, so nothing may be quarantined
    for it (a smaller write, such as the applied offset, can still commit and made such a store look like
    one that refuses a single alert)."""
    seen: BaseException | None = exc
    for _ in range(10):  # a cause chain is short; a cycle must not hang the applier
        if seen is None:
            return False
        code = getattr(seen, "sqlite_errorcode", None)
        if isinstance(code, int) and code & 0xFF in _SQLITE_FILE_FAULTS:  # extended codes: primary & 0xff
            return True
        sqlstate = getattr(seen, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(_PG_FILE_FAULTS):
            return True
        if isinstance(seen, OSError) and seen.errno in _OS_FILE_FAULTS:
            return True
        orig = seen.orig if isinstance(seen, DBAPIError) else None  # the driver's error
        seen = orig or seen.__cause__ or seen.__context__
    return False


def cannot_write_reason(exc: BaseException) -> str:
    """Why the store cannot write its files, as readiness says it (host and user names hidden), or "" when
    ``exc`` says nothing of its files (``store_file_fault``)."""
    return shown_reason(store_failure(exc), connection_names(exc)) if store_file_fault(exc) else ""


_UNREACHABLE = "is unreachable"
_CANNOT_WRITE = "cannot write its files"


class ServiceHealth:
    """Readiness of one ``serve``: whether the store answered the last transaction that reached it (the
    applier's, a tick's, a read's) and whether the journal backlog found at start has been applied."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.store_up = True  # serve opened and migrated the store just before
        self.store_error: str | None = None
        # What is wrong with the store, said after "the store" and before the reason.
        self.store_trouble = _UNREACHABLE
        self._store_names: tuple[str, ...] = ()  # the failed connection's user, database, host (hidden)
        self.replayed = threading.Event()  # set by the applier once the startup backlog is applied
        self.ticks = 0  # engine ticks completed since this serve started
        self.last_tick_at: datetime | None = None
        self.store_file: StoreFile | None = None  # a SQLite store's file, checked at every engine tick

    def store_ok(self) -> None:
        """A transaction committed (or a query answered): the store is up."""
        if self.store_up:
            return
        with self._lock:
            self.store_up, self.store_error = True, None
        logger.info("store: reachable again")

    def store_failed(self, exc: BaseException) -> bool:
        """Record a failed transaction; True (the store is marked down) when the store could not be reached,
        False for any other failure (a bad record, a bug), which says nothing about the store."""
        if not store_unreachable(exc):
            return False
        reason = store_failure(exc)
        with self._lock:
            was_up = self.store_up
            self.store_up, self.store_error = False, reason
            self._store_names = connection_names(exc)
            # A full disk or a read-only file: the store answers but cannot write; "unreachable" sent
            # operators to look at a network or a server that were fine.
            self.store_trouble = _CANNOT_WRITE if store_file_fault(exc) else _UNREACHABLE
        if was_up:
            said = "unreachable" if self.store_trouble == _UNREACHABLE else self.store_trouble
            logger.error("store: %s: %s; not ready until a transaction succeeds", said, reason)
        return True

    def ticked(self, at: datetime) -> None:
        """An engine tick completed at ``at``."""
        with self._lock:
            self.ticks += 1
            self.last_tick_at = at

    def tick_status(self) -> dict[str, object]:
        """The engine ticks completed since this serve started and when the last one ended (RFC 3339, null
        before the first), for ``GET /api/v1/ingest/status``: a client that read ``ticks`` as N knows that a
        tick begun after its read has ended once it reads N + 2."""
        with self._lock:
            at = self.last_tick_at
            return {"ticks": self.ticks, "last_tick_at": rfc3339(at) if at is not None else None}

    def not_ready(self, lag_bytes: int = 0) -> str | None:
        """Why serve is not ready, or None when it is."""
        if self.store_file is not None and self.store_file.problem is not None:  # the log names the file
            return f"{self.store_file.problem} (serve's log names it)"
        if not self.store_up:  # anyone may read it: the error's host and user names are in serve's log only
            return (
                f"the store {self.store_trouble}: {shown_reason(self.store_error or '', self._store_names)}"
            )
        if not self.replayed.is_set():
            return f"replaying the accept journal ({lag_bytes} bytes not applied yet)"
        return None


class Heartbeat:
    """When a background loop last showed it runs, and whether it ended with an exception."""

    def __init__(
        self, name: str, deadline_seconds: float, setting: str, now: Callable[[], float] = time.monotonic
    ) -> None:
        """``name`` and ``setting`` (the config field of the deadline) go into the reason liveness gives."""
        self.name = name
        self.deadline_seconds = deadline_seconds
        self.setting = setting
        self._now = now
        self.last: float | None = None  # None until the loop starts: nothing to judge yet
        self.beats = 0
        self.error: str | None = None
        self._waits: tuple[EngineLock, int] | None = None  # the lock the loop waits for, and its thread

    @property
    def interval(self) -> float:
        """The longest a loop should wait between beats: a quarter of the deadline."""
        return self.deadline_seconds / 4

    def beat(self) -> None:
        """The loop is alive and between steps."""
        self.last = self._now()
        self.beats += 1

    @contextmanager
    def waiting_for(self, lock: EngineLock) -> Iterator[None]:
        """While the loop (the calling thread) waits for the engine's ``lock``, and works under it, the
        progress of another thread holding it beats this heartbeat: a long tick that works is no stall of
        the loop waiting behind it; a holder that shows none leaves it unbeaten (``alerting.engine_lock``)."""
        self._waits = (lock, threading.get_ident())
        try:
            with lock.waiting(self.beat):
                yield
        finally:
            self._waits = None

    def ended(self, exc: BaseException) -> None:
        """The loop ended with ``exc``: liveness fails from now on."""
        self.error = repr(exc)

    def age(self) -> float | None:
        """Seconds since the last beat (None before the first)."""
        return None if self.last is None else max(0.0, self._now() - self.last)

    def problem(self) -> str | None:
        """Why the loop is not alive (for ``/-/healthy``), or None."""
        if self.error is not None:
            return f"{self.name} stopped: {self.error}"
        age = self.age()
        if age is not None and age > self.deadline_seconds:
            waits = self._waits
            holder = waits[0].held_against(waits[1]) if waits is not None else None
            behind = (
                f" waiting for the engine, held by {holder} that shows no progress either" if holder else ""
            )
            return (
                f"{self.name} has not made progress for {age:.1f} s (the deadline, {self.setting}, is"
                f" {self.deadline_seconds:g} s): it is stuck{behind}"
            )
        return None


class HealthCollector(Collector):
    """``gpuwarden_store_up`` and the accept journal's lag, failures and quarantine, on ``/metrics``."""

    def __init__(self, health: ServiceHealth, applier: JournalApplier | None = None) -> None:
        self.health = health
        self.applier = applier

    def describe(self) -> Iterator[Metric]:
        """The families, without reading anything."""
        return self.collect()

    def collect(self) -> Iterator[Metric]:
        """Fresh families from the health state and the applier's counters (no store query)."""
        yield GaugeMetricFamily(
            "gpuwarden_store_up",
            "1 if the store took the last transaction that reached it, 0 if it could not be reached.",
            value=1 if self.health.store_up else 0,
        )
        applier = self.applier
        if applier is None:
            return
        yield GaugeMetricFamily(
            "gpuwarden_ingest_lag_bytes",
            "Accept-journal bytes acknowledged but not yet stored and correlated.",
            value=applier.lag_bytes,
        )
        yield GaugeMetricFamily(
            "gpuwarden_ingest_replaying",
            "1 while the journal backlog found at start is being applied (serve is not ready).",
            value=0 if self.health.replayed.is_set() else 1,
        )
        yield GaugeMetricFamily(
            "gpuwarden_ingest_applier_heartbeat_age_seconds",
            "Seconds since the journal applier's loop last showed progress, or, while it waits for the"
            " engine, what holds the engine did (liveness fails past alerting.applier_stall_seconds); 0"
            " before it started.",
            value=applier.heartbeat.age() or 0.0,
        )
        yield GaugeMetricFamily(
            "gpuwarden_ingest_applier_up",
            "0 once the journal applier is stuck or its thread died (liveness and readiness answer 503).",
            value=0 if applier.heartbeat.problem() is not None else 1,
        )
        yield CounterMetricFamily(
            "gpuwarden_ingest_apply_failures",
            "Attempts to apply journal records that failed (retried; the records stay in the journal).",
            value=applier.failures,
        )
        yield CounterMetricFamily(
            "gpuwarden_ingest_records_quarantined",
            "Journal records the store kept refusing, moved to the journal's quarantine/ folder.",
            value=applier.quarantined,
        )
        yield CounterMetricFamily(
            "gpuwarden_ingest_alerts_quarantined",
            "Alerts the store refused one at a time, moved to the journal's quarantine/ folder (the other"
            " alerts of their record were applied).",
            value=applier.alerts_quarantined,
        )
