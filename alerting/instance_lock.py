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
server has it. A PostgreSQL standby waits for the lock in ``pg_advisory_lock`` on a session of its own, so
it holds the lock the moment the active server's session ends (a standby that polled every 5 s idled up to
5 s of every handover); after PostgreSQL could not be reached it waits until the store has answered for
``ADVISORY_POLL_SECONDS`` before it asks again, so that a restarted PostgreSQL goes back to the active server
(which asks every second), not to the standby.
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
from typing import Protocol

from sqlalchemy import Connection, Engine, event
from sqlalchemy.exc import ArgumentError, SQLAlchemyError

from alerting.advisory_lock import ADVISORY_WAIT_SECONDS, AdvisoryLock
from alerting.db import DEFAULT_CONNECT_TIMEOUT, store_url
from alerting.fencing import HELD, LockState, LockStatus, NotActive
from alerting.journal import PRIVATE_DIR

logger = logging.getLogger(__name__)

# How long a PostgreSQL standby waits after the store could not be reached, and how long the store must then
# answer before the standby asks for the lock again: see ``InstanceLocks.acquire``.
ADVISORY_POLL_SECONDS = 5.0
FILE_POLL_SECONDS = 0.25


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
        self._made: list[Path] = []  # what the lock made for itself: directories (outermost first), the file

    def try_acquire(self) -> bool:
        """Take the lock now (creating the file), or False when another process holds it.

        Raises ``LockFileError`` when the file cannot be created (its directory is missing, say).
        """
        if self._fd is not None:
            return True
        tries = 0
        while True:
            tries += 1
            try:
                fd = self._open()
            except OSError as exc:
                if isinstance(exc, FileNotFoundError) and self.make_directory and tries < 3:
                    continue  # a start that gave up removed the directory just made here (``discard``)
                raise LockFileError(self.what, exc) from exc
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return False
            if _names(self.path, fd):
                break
            # A start that gave up removed the file (``discard``) after it was opened here: the lock taken is
            # on a file no other process can open. Lock the one the path names now.
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{self.me}\n".encode())
        self._fd = fd
        return True

    def _open(self) -> int:
        """The lock file, opened (made if missing, with the directory when ``make_directory``); what was
        made is noted for ``discard``."""
        self._made = []
        if self.make_directory:
            missing = [d for d in (self.path.parent, *self.path.parent.parents) if not d.exists()]
            # The owner's alone, as the journal makes its directory: this lock is taken first, and a
            # directory it made with the umask (0755) stayed so.
            self.path.parent.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
            self._made = missing[::-1]
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            return os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        self._made.append(self.path)
        return fd

    def holder(self) -> str:
        """What the holder wrote in the lock file."""
        try:
            return self.path.read_text().strip() or "holder unknown"
        except OSError:
            return "holder unknown"

    def release(self) -> None:
        """Unlock and close; the file stays (a process may have opened it to lock it next)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def discard(self) -> None:
        """Release, removing the file and the directories this lock made: a start refused once it held the
        lock (its port taken) leaves no file behind. The file is removed while locked, and a process that
        opened it before locks the file its path names after (``try_acquire``), so no two hold the lock."""
        if self._fd is None:
            return
        made, self._made = self._made, []
        if self.path in made:
            self.path.unlink(missing_ok=True)
        self.release()
        for directory in reversed([p for p in made if p != self.path]):
            try:
                directory.rmdir()
            except OSError:  # another start put its lock file there meanwhile: it stays
                break


def _names(path: Path, fd: int) -> bool:
    """Whether ``path`` still names the open file ``fd``."""
    try:
        named = path.stat()
    except FileNotFoundError:
        return False
    opened = os.fstat(fd)
    return (named.st_dev, named.st_ino) == (opened.st_dev, opened.st_ino)


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
        """Take the locks; with ``wait`` (a standby) wait until the active server is gone, telling
        ``on_wait`` what each attempt found (who holds a lock, or why the store cannot be asked).

        A standby also waits out a PostgreSQL it cannot reach; without ``wait`` that error is raised. A
        PostgreSQL lock held elsewhere is waited for in ``pg_advisory_lock``: taken the moment the holder's
        session ends, with no poll to wait out. Once the store could not be reached, the standby asks again
        only after it has answered for ``poll_seconds`` (5 s) on the session that will wait: the active
        server checks its lock every second, so after a PostgreSQL restart (every session, and every
        advisory lock, gone) it takes its lock back first. File locks cannot be lost while their holder
        lives, and one is free the moment the holder dies: they are polled every quarter second (a failed
        ``flock`` is one system call).
        """
        announced = [""]

        def tell(exc: Exception) -> None:
            if on_wait is not None:
                on_wait(exc)
            said = str(exc).splitlines()[0]
            if said != announced[0]:
                # A store that cannot be asked is a warning: a wrong password or database name keeps every
                # replica waiting (none is active), and an info line among the start-up ones went unseen.
                level = logging.INFO if isinstance(exc, InstanceBusy) else logging.WARNING
                logger.log(level, "instance lock: standby, waiting: %s", said)
                announced[0] = said

        unreachable = False
        while True:
            if not unreachable:
                try:
                    self.try_acquire()
                    if announced[0]:
                        logger.info("instance lock: taken; this server is now active")
                    return
                except (InstanceBusy, SQLAlchemyError) as exc:
                    if not wait:
                        raise
                    tell(exc)
                    unreachable = isinstance(exc, SQLAlchemyError)
                    busy = exc
            unreachable = self._wait_turn(busy, unreachable, sleep, poll_seconds, tell)

    def _wait_turn(
        self,
        busy: Exception,
        unreachable: bool,
        sleep: Callable[[float], None],
        poll_seconds: float | None,
        tell: Callable[[Exception], None],
    ) -> bool:
        """Wait for the next attempt at the locks after ``busy``; whether the store is out of reach. A
        PostgreSQL lock is taken here when its wait ends (the attempt then takes the rest)."""
        advisory = next((lock for lock in self.locks if isinstance(lock, AdvisoryLock)), None)
        if advisory is None or not (unreachable or getattr(busy, "what", None) == advisory.what):
            sleep(FILE_POLL_SECONDS if poll_seconds is None else poll_seconds)  # a file lock is held
            return False
        try:
            if unreachable:
                grace = ADVISORY_POLL_SECONDS if poll_seconds is None else poll_seconds
                sleep(grace)
                advisory.open_waiter()  # the session that will wait: raises while the store is down
                sleep(grace)  # the store answers: the active server's turn to take its lock back
            said = "" if unreachable else str(busy)  # what was told last: the store's error, if unreachable
            while not advisory.wait_acquire(ADVISORY_WAIT_SECONDS):
                sleep(0)  # a stop asked meanwhile ends the wait
                # Another standby may have taken over meanwhile: name the holder of now, not a dead one.
                now = InstanceBusy(advisory.what, advisory.holder_while_waiting())
                if str(now) != said:
                    said = str(now)
                    tell(now)
        except SQLAlchemyError as exc:
            tell(exc)
            return True
        except BaseException:
            advisory.stop_waiting()
            raise
        return False

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
                    if (
                        lock.backend is None
                    ):  # its connection went (a PostgreSQL restart): not taken again yet
                        detail = f"{lock.what}: its lock connection is being opened again"
                        raise NotActive(LockStatus(LockState.UNREACHABLE, detail))
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

    def discard(self) -> None:
        """Release every lock held, removing the lock files and directories taking them made: for a start
        that gave up before it opened the store (``FileLock.discard``)."""
        with self._mutex:
            for lock in reversed(self._held):
                if isinstance(lock, FileLock):
                    lock.discard()
                else:
                    lock.release()
            self._held = []
