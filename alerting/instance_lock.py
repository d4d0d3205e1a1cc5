"""One active ``gpuwarden serve`` per store and per accept journal.

The engine keeps its picture of open incidents and alert states in memory, and the journal directory has
one writer. Two servers on one store open duplicate incidents and post duplicate Slack messages; two on one
SQLite file also share its journal and lose alerts (each keeps its own offsets into the same segment: with
three alerts posted to each, one server stored two of its three, the other one of its three). A Kubernetes
rolling update, or a second ``serve`` started by hand beside the systemd one, does exactly that.

So ``serve`` takes, before it opens anything, an exclusive lock on

* the journal directory: ``flock`` on ``<dir>/lock``;
* the store: for SQLite ``flock`` on ``<db>.lock`` beside the file; for PostgreSQL a session advisory lock
  (``pg_try_advisory_lock``) on a connection held open for the life of the process.

The operating system or PostgreSQL releases them when the process ends, SIGKILL included, so a restart
never waits for a stale lock. The lock files say who holds them (pid, host, start time), so do the lock
connection's ``application_name`` and ``backend_start``, and a refused start names that holder.
PostgreSQL drops the advisory lock with its connection; ``check`` takes it again, or reports that another
server has it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import ArgumentError, SQLAlchemyError
from sqlalchemy.pool import NullPool

from alerting.db import DEFAULT_CONNECT_TIMEOUT, server_connect_args, store_url
from alerting.fencing import HELD, LockState, LockStatus, NotActive

logger = logging.getLogger(__name__)

# pg_try_advisory_lock takes one bigint: the ASCII of "gpuwarden" cut to 8 bytes, so unrelated software
# using advisory locks on the same database is unlikely to pick it.
ADVISORY_KEY = int.from_bytes(b"gpuwarde", "big") & ((1 << 63) - 1)
# How often a standby tries to take the locks: see ``InstanceLocks.acquire``.
ADVISORY_POLL_SECONDS = 5.0
FILE_POLL_SECONDS = 0.25
# pg_locks shows a bigint key as two 32-bit halves: classid (high) and objid (low).
_KEY_PARTS = {"hi": ADVISORY_KEY >> 32, "lo": ADVISORY_KEY & 0xFFFFFFFF}
# Whether the lock connection's backend (its pid, and its start time: a PostgreSQL restarted in a container
# hands out the same pids again) still holds the lock; asked on another connection, inside its transaction.
_BACKEND_HOLDS = (
    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
    " WHERE l.locktype = 'advisory' AND l.granted AND l.pid = %(pid)s AND a.backend_start = %(started)s"
    " AND CAST(l.classid AS bigint) = %(hi)s AND CAST(l.objid AS bigint) = %(lo)s"
)


class InstanceBusy(Exception):
    """Another ``gpuwarden serve`` holds the store or the journal directory."""

    def __init__(self, what: str, holder: str) -> None:
        self.what = what
        self.holder = holder
        super().__init__(f"{what} is in use by another gpuwarden serve ({holder})")


class LockFileError(Exception):
    """A lock file that cannot be created or opened (its directory is missing, not a directory, read-only)."""

    def __init__(self, what: str, cause: OSError) -> None:
        self.what = what
        self.cause = cause
        self.reason = cause.strerror or str(cause)
        super().__init__(f"{what}: {self.reason}")


def identity() -> str:
    """Who this process is, as lock holders are described: pid, host and start time."""
    started = datetime.now(UTC).isoformat(timespec="seconds")
    return f"pid {os.getpid()} on {socket.gethostname()}, started {started}"


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
    return head + (host if len(host) <= room else ".." + host[len(host) - room + 2 :])


class Lock(Protocol):
    """One exclusive lock: taken without waiting, described for an error, released once."""

    what: str

    def try_acquire(self) -> bool:
        """Take the lock now, or False when another process holds it."""

    def holder(self) -> str:
        """Who holds it, as far as can be told."""

    def release(self) -> None:
        """Give it back (idempotent)."""


class FileLock:
    """``flock`` on a file; the file's text says who holds it."""

    def __init__(self, path: Path, what: str, me: str, *, make_directory: bool = False) -> None:
        self.path = path
        self.what = what
        self.me = me
        self.make_directory = make_directory
        self._fd: int | None = None

    def try_acquire(self) -> bool:
        """Take the lock now (creating the file), or False when another process holds it.

        Raises ``LockFileError`` when the file cannot be created (its directory is missing, say).
        """
        if self._fd is not None:
            return True
        try:
            if self.make_directory:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise LockFileError(self.what, exc) from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        os.ftruncate(fd, 0)
        os.write(fd, f"{self.me}\n".encode())
        self._fd = fd
        return True

    def holder(self) -> str:
        """What the holder wrote in the lock file."""
        try:
            return self.path.read_text().strip() or "holder unknown"
        except OSError:
            return "holder unknown"

    def release(self) -> None:
        """Unlock and close; the file stays (removing it would race with a process about to lock it)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


class AdvisoryLock:
    """A PostgreSQL session advisory lock on a connection of its own, held open while locked."""

    def __init__(self, url: str, what: str, connect_timeout: int = DEFAULT_CONNECT_TIMEOUT) -> None:
        self.what = what
        args = server_connect_args(store_url(url), connect_timeout) | {"application_name": application_name()}
        self._engine: Engine = create_engine(url, poolclass=NullPool, connect_args=args)
        self._conn: Connection | None = None
        self.backend: tuple[int, datetime] | None = None  # the lock connection's pid and backend_start

    def try_acquire(self) -> bool:
        """Take the lock now, or False when another session holds it (raises when the server is down)."""
        if self._conn is not None:
            return True
        conn = self._engine.connect()
        try:
            got = bool(conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_KEY}).scalar())
            row = conn.execute(
                text("SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()")
            ).one()
            conn.commit()
        except BaseException:
            conn.close()
            raise
        if not got:
            conn.close()
            return False
        self._conn = conn
        self.backend = (int(row[0]), row[1])
        return True

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
                row = conn.execute(
                    text(
                        "SELECT a.application_name, a.backend_start, a.client_addr FROM pg_locks l"
                        " JOIN pg_stat_activity a ON a.pid = l.pid WHERE l.locktype = 'advisory'"
                        " AND l.granted AND CAST(l.classid AS bigint) = :hi"
                        " AND CAST(l.objid AS bigint) = :lo"
                        " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                    ),
                    _KEY_PARTS,
                ).first()
        except SQLAlchemyError:
            return "holder unknown"
        if row is None:
            return "holder unknown"
        name, started, addr = row
        since = (
            f", holding it since {started.astimezone(UTC).isoformat(timespec='seconds')}" if started else ""
        )
        return f"{name or 'a session'}{since}" + (f" from {addr}" if addr else "")

    def _drop(self) -> None:
        self.backend = None
        if self._conn is not None:
            try:
                self._conn.close()
            except SQLAlchemyError:
                logger.debug("instance lock: closing a dead lock connection failed", exc_info=True)
            self._conn = None

    def release(self) -> None:
        """Close the lock connection, which releases the lock."""
        self._drop()
        self._engine.dispose()


def store_lock(db: str, me: str, connect_timeout: int = DEFAULT_CONNECT_TIMEOUT) -> Lock | None:
    """The lock for a store URL or SQLite path (None for an in-memory SQLite store: nothing is shared);
    a PostgreSQL lock connection gives up connecting after ``connect_timeout`` seconds.

    Raises ``ArgumentError`` for a database gpuwarden does not support, before anything is created.
    """
    url = store_url(db)
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            return None
        # Beside the file a symlink points to: each name of one store got its own lock, so two servers ran.
        return FileLock(Path(f"{os.path.realpath(url.database)}.lock"), f"store {url.database}", me)
    if url.get_backend_name() == "postgresql":
        shown = url.render_as_string(hide_password=True)
        return AdvisoryLock(url.render_as_string(hide_password=False), f"store {shown}", connect_timeout)
    raise ArgumentError(f"{url.get_backend_name()} is not supported")


class InstanceLocks:
    """The store lock and the journal directory lock of one ``serve``, taken together."""

    def __init__(self, locks: list[Lock]) -> None:
        self.locks = locks
        self._held: list[Lock] = []
        self._mutex = threading.Lock()  # the lock connection is used by the watch and by fence checks
        self.lost: InstanceBusy | None = None  # who took a lock this server held, once ``status`` saw it

    @classmethod
    def for_server(
        cls, db: str, journal: Path, connect_timeout: int = DEFAULT_CONNECT_TIMEOUT
    ) -> InstanceLocks:
        """The locks ``serve`` needs for store ``db`` and journal directory ``journal``."""
        me = identity()
        locks: list[Lock] = [
            FileLock(journal / "lock", f"journal directory {journal}", me, make_directory=True)
        ]
        store = store_lock(db, me, connect_timeout)
        if store is not None:
            locks.insert(0, store)
        return cls(locks)

    def try_acquire(self) -> None:
        """Take every lock or none; raises ``InstanceBusy`` naming the first one held elsewhere.

        The store's lock comes first: a store that cannot be opened (``OSError``, ``SQLAlchemyError``)
        fails before anything is created for it.
        """
        for lock in self.locks:
            if lock in self._held:
                continue
            try:
                taken = lock.try_acquire()
            except BaseException:
                self.release()
                raise
            if not taken:
                holder = lock.holder()
                self.release()
                raise InstanceBusy(lock.what, holder)
            self._held.append(lock)

    def acquire(
        self,
        *,
        wait: bool,
        sleep: Callable[[float], None],
        poll_seconds: float | None = None,
        on_wait: Callable[[Exception], None] | None = None,
    ) -> None:
        """Take the locks; with ``wait`` (a standby) poll until the active server is gone, telling
        ``on_wait`` what each attempt found (who holds a lock, or why the store cannot be asked).

        A standby also waits out a PostgreSQL it cannot reach; without ``wait`` that error is raised. On a
        PostgreSQL store it polls every 5 s while the active server checks its lock every second, so after a
        PostgreSQL restart (every session, and every advisory lock, gone) the active server takes its lock
        back first. File locks cannot be lost while their holder lives, and one is free the moment the
        holder dies: they are polled every quarter second (a failed ``flock`` is one system call), so a
        SQLite standby does not idle for up to 5 s after the active server died.
        """
        if poll_seconds is None:
            poll_seconds = ADVISORY_POLL_SECONDS if self.can_be_lost else FILE_POLL_SECONDS
        announced = ""
        while True:
            try:
                self.try_acquire()
                if announced:
                    logger.info("instance lock: taken; this server is now active")
                return
            except (InstanceBusy, SQLAlchemyError) as exc:
                if not wait:
                    raise
                if on_wait is not None:
                    on_wait(exc)
                said = str(exc).splitlines()[0]
                if said != announced:
                    logger.info("instance lock: standby, waiting: %s", said)
                    announced = said
            sleep(poll_seconds)

    @property
    def can_be_lost(self) -> bool:
        """Whether a lock can go while the process lives (a PostgreSQL one, with its connection): only then
        is ``check`` worth calling."""
        return any(isinstance(lock, AdvisoryLock) for lock in self.locks)

    def check(self) -> InstanceBusy | None:
        """Re-take a PostgreSQL lock lost with its connection; what holds it elsewhere, if so.

        A store that cannot be reached is not a loss: no other server can take the lock from it either.
        """
        return self.lost if self.status().state is LockState.LOST else None

    def status(self) -> LockStatus:
        """Verify the locks now: held (a PostgreSQL lock lost with its connection is taken again if it is
        free), lost (the detail names the holder) or unreachable (the store cannot be asked)."""
        with self._mutex:
            for lock in self.locks:
                if not isinstance(lock, AdvisoryLock) or lock.held():
                    continue
                try:
                    if lock.try_acquire():
                        logger.warning(
                            "instance lock: the store lock was lost with its connection; taken again"
                        )
                        continue
                except SQLAlchemyError as exc:
                    logger.warning(
                        "instance lock: the store is unreachable; will take the lock again when back"
                    )
                    return LockStatus(LockState.UNREACHABLE, str(exc).splitlines()[0])
                self.lost = InstanceBusy(lock.what, lock.holder())
                return LockStatus(LockState.LOST, str(self.lost))
            return HELD

    def fence_commits(self, engine: Engine) -> None:
        """Check, inside every transaction of ``engine`` just before its COMMIT, that the PostgreSQL lock's
        backend still holds the lock; if not, the COMMIT is not sent (``NotActive``: rolled back)."""
        advisory = [lock for lock in self.locks if isinstance(lock, AdvisoryLock)]
        if not advisory:
            return

        def before_commit(conn: Connection) -> None:
            cursor = conn.connection.cursor()
            try:
                for lock in advisory:
                    if not lock.held_by_backend(cursor):
                        detail = f"{lock.what}: its lock connection no longer holds the lock"
                        raise NotActive(LockStatus(LockState.LOST, detail))
            finally:
                cursor.close()

        event.listen(engine, "commit", before_commit)

    def release(self) -> None:
        """Release every lock held (idempotent)."""
        with self._mutex:
            for lock in reversed(self._held):
                lock.release()
            self._held = []
