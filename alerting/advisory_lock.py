"""The PostgreSQL store lock: a session advisory lock on a connection of its own, held open while locked.

``InstanceLocks`` (``alerting.instance_lock``) takes it with ``try_acquire``; a standby waits for it with
``wait_acquire`` (``pg_advisory_lock`` under a ``lock_timeout``), which returns the moment the holder's
session ends. Its connection's ``application_name`` and ``backend_start`` say who holds it.
"""

from __future__ import annotations

import logging
import os
import re
import socket
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, text
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from alerting.db import DEFAULT_CONNECT_TIMEOUT, pin_server_session, server_connect_args, store_url

logger = logging.getLogger(__name__)

# pg_try_advisory_lock takes one bigint: the ASCII of "gpuwarden" cut to 8 bytes, so unrelated software
# using advisory locks on the same database is unlikely to pick it.
ADVISORY_KEY = int.from_bytes(b"gpuwarde", "big") & ((1 << 63) - 1)
# One blocking wait of a standby for the lock (``lock_timeout``); between two it checks for a stop.
ADVISORY_WAIT_SECONDS = 1.0
_LOCK_NOT_AVAILABLE = "55P03"  # PostgreSQL's SQLSTATE for a lock_timeout that ran out
# pg_locks shows a bigint key as two 32-bit halves: classid (high) and objid (low).
_KEY_PARTS = {"hi": ADVISORY_KEY >> 32, "lo": ADVISORY_KEY & 0xFFFFFFFF}
# Whether the lock connection's backend (its pid, and its start time: a PostgreSQL restarted in a container
# hands out the same pids again) still holds the lock; asked on another connection, inside its transaction.
_BACKEND_HOLDS = (
    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
    " WHERE l.locktype = 'advisory' AND l.granted AND l.pid = %(pid)s AND a.backend_start = %(started)s"
    " AND CAST(l.classid AS bigint) = %(hi)s AND CAST(l.objid AS bigint) = %(lo)s"
)


# PostgreSQL keeps NAMEDATALEN - 1 bytes of an application_name and drops the rest.
_APPLICATION_NAME_BYTES = 63


def application_name() -> str:
    """Who holds a PostgreSQL lock, in the 63 bytes PostgreSQL keeps of the lock connection's name.

    ``identity()`` did not fit: with a pod's name as the host, the start time was cut off. The pid comes
    first; a long host name loses its head, not the tail that tells replicas of one Deployment apart; the
    start time is read back from ``pg_stat_activity.backend_start`` (the lock connection's own).
    """
    head = f"gpuwarden serve, pid {os.getpid()} on "
    host = socket.gethostname().encode("ascii", "replace").decode()  # PostgreSQL shows others as "?"
    room = _APPLICATION_NAME_BYTES - len(head)
    # A host that fills the room exactly is cut too: a full 63 bytes without ".." is an earlier release's.
    return head + (host if len(host) < room else ".." + host[len(host) - room + 2 :])


# Releases before application_name() named the lock connection "gpuwarden serve, pid N on HOST, started
# ISO-TIME" and PostgreSQL kept 63 bytes of it: the start time was cut short (or the host, and all of it).
_EARLIER_NAME = re.compile(r"(gpuwarden serve, pid \d+ on [^,]*)(,.*)?", re.DOTALL)
_EARLIER_START = re.compile(r", started \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:Z|[+-]\d\d:\d\d)")


def holder_name(name: str) -> str:
    """The holder as its lock connection's ``application_name`` says it. An earlier release's name, which
    PostgreSQL cut at 63 bytes, is shown without its cut start time (never a truncated timestamp), saying
    that its start time is unknown."""
    earlier = _EARLIER_NAME.fullmatch(name)
    if earlier is None:
        return name
    kept, rest = earlier.groups()
    if rest is None:  # this release's name, or an earlier one cut inside the host name
        cut = len(name.encode()) >= _APPLICATION_NAME_BYTES and " on .." not in name
        if not cut:
            return name
        kept += "..."
    elif _EARLIER_START.fullmatch(rest):  # an earlier release on a host short enough to keep it whole
        return name
    return f"{kept} (an earlier release, whose name PostgreSQL cut: its start time is unknown)"


class AdvisoryLock:
    """A PostgreSQL session advisory lock on a connection of its own, held open while locked."""

    def __init__(self, url: str, what: str, connect_timeout: int = DEFAULT_CONNECT_TIMEOUT) -> None:
        self.what = what
        args = server_connect_args(store_url(url), connect_timeout) | {"application_name": application_name()}
        self._engine: Engine = create_engine(url, poolclass=NullPool, connect_args=args)
        pin_server_session(self._engine)  # backend_start is a timestamptz
        self._conn: Connection | None = None
        self._waiter: Connection | None = None  # a standby's session blocked in pg_advisory_lock
        self.backend: tuple[int, datetime] | None = None  # the lock connection's pid and backend_start

    def try_acquire(self) -> bool:
        """Take the lock now, or False when another session holds it (raises when the server is down)."""
        if self._conn is not None:
            return True
        conn = self._engine.connect()
        try:
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_KEY}).scalar())
            if got:
                self._keep(conn)
        except BaseException:
            conn.close()
            raise
        if not got:
            conn.close()
        return got

    def wait_acquire(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for the lock: True once taken (the moment its holder's session ends), False
        when the wait ran out. The waiting session is kept for the next wait; raises when the server is down
        (the session is then closed)."""
        if self._conn is not None:
            return True
        conn = self.open_waiter()
        try:
            # lock_timeout for this transaction only; the session lock outlives it.
            conn.execute(
                text("SELECT set_config('lock_timeout', :t, true)"), {"t": f"{int(seconds * 1000)}ms"}
            )
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": ADVISORY_KEY})
            self._keep(conn)
        except DBAPIError as exc:
            if getattr(exc.orig, "sqlstate", None) == _LOCK_NOT_AVAILABLE:
                conn.rollback()
                return False
            self.stop_waiting()
            raise
        except BaseException:
            self.stop_waiting()
            raise
        self._waiter = None
        return True

    def open_waiter(self) -> Connection:
        """The session that waits for the lock, connected now if need be (raises when the server is down)."""
        if self._waiter is None:
            self._waiter = self._engine.connect()
        return self._waiter

    def _keep(self, conn: Connection) -> None:
        """Make ``conn``, which holds the lock, the lock connection (its backend's pid and start noted)."""
        row = conn.execute(
            text("SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()")
        ).one()
        conn.commit()
        self._conn = conn
        self.backend = (int(row[0]), row[1])

    def stop_waiting(self) -> None:
        """Close the waiting session (a standby stopped while it waited)."""
        _close(self._waiter, "waiting")
        self._waiter = None

    def held_by_backend(self, cursor: Any) -> bool:
        """Whether the lock connection's backend still holds the lock, asked through ``cursor`` (a DBAPI
        cursor of another connection, inside the transaction about to commit)."""
        backend = self.backend
        if backend is None:
            return False
        cursor.execute(_BACKEND_HOLDS, {"pid": backend[0], "started": backend[1], **_KEY_PARTS})
        row = cursor.fetchone()
        return bool(row and row[0])

    def held(self) -> bool:
        """Whether the lock connection is alive and still holds the lock."""
        if self._conn is None:
            return False
        try:
            count = self._conn.execute(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted"
                    " AND pid = pg_backend_pid() AND CAST(classid AS bigint) = :hi"
                    " AND CAST(objid AS bigint) = :lo"
                ),
                _KEY_PARTS,
            ).scalar()
            self._conn.commit()
        except SQLAlchemyError:
            self._drop()
            return False
        if not count:
            self._drop()
        return bool(count)

    def holder(self) -> str:
        """The holding session's application name, start and address, from ``pg_locks``.

        Advisory locks are per database, and ``pg_locks`` shows the whole cluster's: without the database
        in the query, a refused server named the server of another gpuwarden store on the same cluster.
        """
        try:
            with self._engine.connect() as conn:
                row = conn.execute(_HOLDER, _KEY_PARTS).first()
        except SQLAlchemyError:
            return "holder unknown"
        return _holder_said(row)

    def holder_while_waiting(self) -> str:
        """``holder``, asked on the session that waits for the lock, between two waits: the holder changes
        while a standby waits (another standby took over from a killed server), and one that went on naming
        the holder it found first named a dead server. Raises, and stops waiting, when the server is down."""
        conn = self.open_waiter()
        try:
            row = conn.execute(_HOLDER, _KEY_PARTS).first()
            conn.rollback()
        except BaseException:
            self.stop_waiting()
            raise
        return _holder_said(row)

    def _drop(self) -> None:
        self.backend = None
        _close(self._conn, "lock")
        self._conn = None

    def release(self) -> None:
        """Close the lock connection, which releases the lock (and a waiting one, which stops waiting)."""
        self.stop_waiting()
        self._drop()
        self._engine.dispose()


_HOLDER = text(
    "SELECT a.application_name, a.backend_start, a.client_addr FROM pg_locks l"
    " JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory'"
    " AND l.granted AND CAST(l.classid AS bigint) = :hi"
    " AND CAST(l.objid AS bigint) = :lo"
    " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
)


def _holder_said(row: Any) -> str:
    """The holder as a refusal names it, from a row of ``_HOLDER`` (None: no session holds the lock)."""
    if row is None:
        return "holder unknown"
    name, started, addr = row
    since = f", holding it since {started.astimezone(UTC).isoformat(timespec='seconds')}" if started else ""
    return f"{holder_name(name) if name else 'a session'}{since}" + (f" from {addr}" if addr else "")


def _close(conn: Connection | None, which: str) -> None:
    """Close ``conn``, if any; one whose server is gone may fail to, which changes nothing."""
    if conn is not None:
        try:
            conn.close()
        except SQLAlchemyError:
            logger.debug("instance lock: closing a dead %s connection failed", which, exc_info=True)
