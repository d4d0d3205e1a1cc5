"""Fencing: ``serve`` writes, acknowledges and notifies only while it knows it still holds its store lock.

A PostgreSQL store lock can go while the process lives: PostgreSQL restarts (or drops the lock's
connection) and a standby takes the lock. The active server notices at its next check, once a second. A
process that was paused (SIGSTOP, a VM freeze, a long GC) notices even later: when it resumed, it answered
200 to a POST waiting in its accept backlog, applied it and opened an incident two seconds after the new
active server had started, and only then stopped. Nothing would have kept it from posting to Slack or
resolving incidents in that window.

So each step that acts on the world asks a ``LockFence`` first. The fence answers from the last
verification while it is younger than ``bound_seconds`` of monotonic time (which runs on while a process
is stopped, so a resumed one always verifies again), otherwise it verifies synchronously. Store commits
are checked inside their own transaction as well (``InstanceLocks.fence_commits``), which closes the
window between a check and the write.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

logger = logging.getLogger(__name__)

DEFAULT_BOUND_SECONDS = 2.0


class LockState(enum.Enum):
    """What a verification of the store lock found."""

    HELD = "held"
    LOST = "lost"  # another server holds it, or this one gave it up
    UNREACHABLE = "unreachable"  # the store cannot be asked: nobody else can take the lock from it either


@dataclass(frozen=True)
class LockStatus:
    """A verification's outcome, with what it found (the holder, the store's error)."""

    state: LockState
    detail: str = ""


HELD = LockStatus(LockState.HELD)


class NotActive(Exception):
    """This ``serve`` does not (or cannot tell that it does) hold the store lock: it must not act."""

    def __init__(self, status: LockStatus) -> None:
        self.status = status
        if status.state is LockState.LOST:
            said = f"this serve lost the store lock ({status.detail}); it is stopping, use the active one"
        else:
            said = f"this serve cannot verify that it still holds the store lock ({status.detail})"
        super().__init__(said)


class LockFence:
    """The last verification of the store lock, and a fresh one when it is older than ``bound_seconds``.

    ``verify`` asks the lock itself (it may block on the store; it is called by one thread at a time).
    ``on_lost`` is called once, the first time a verification finds the lock lost (``serve`` stops).
    """

    def __init__(
        self,
        verify: Callable[[], LockStatus],
        *,
        bound_seconds: float = DEFAULT_BOUND_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
        on_lost: Callable[[LockStatus], None] | None = None,
    ) -> None:
        self._verify = verify
        self.bound_seconds = bound_seconds
        self._monotonic = monotonic
        self.on_lost = on_lost
        self._mutex = threading.Lock()
        self._status = HELD  # serve builds its fence right after taking the lock
        self._at = monotonic()
        self._lost = False

    def record(self, status: LockStatus) -> None:
        """Take a verification made elsewhere (the lock watch's, once a second)."""
        with self._mutex:
            self._set(status)

    def _set(self, status: LockStatus) -> None:
        self._status, self._at = status, self._monotonic()
        if status.state is LockState.LOST and not self._lost:
            self._lost = True
            logger.error("instance lock: lost: %s; refusing writes and stopping", status.detail)
            if self.on_lost is not None:
                self.on_lost(status)

    @property
    def lost(self) -> bool:
        """Whether a verification found the lock taken by another server (final: ``serve`` stops)."""
        return self._lost

    @property
    def fresh(self) -> bool:
        """Whether the last verification found the lock held and is recent enough to act on."""
        return self._status.state is LockState.HELD and self._monotonic() - self._at < self.bound_seconds

    def status(self) -> LockStatus:
        """The lock's status, verified now unless the last verification is recent (a loss is final)."""
        if self.fresh:
            return self._status
        with self._mutex:
            if self._lost:
                return self._status
            if self._monotonic() - self._at < self.bound_seconds:  # another thread verified meanwhile
                return self._status
            try:
                found = self._verify()
            except Exception as exc:  # noqa: BLE001 - a verification that fails says nothing: do not act
                logger.warning("instance lock: verification failed: %r", exc)
                found = LockStatus(LockState.UNREACHABLE, repr(exc))
            self._set(found)
            return found

    def require(self, *, unreachable_ok: bool = False) -> None:
        """Raise ``NotActive`` unless the lock is held (or, with ``unreachable_ok``, the store is down)."""
        status = self.status()
        if status.state is LockState.HELD:
            return
        if unreachable_ok and status.state is LockState.UNREACHABLE:
            return
        raise NotActive(status)


def unfenced() -> LockFence:
    """A fence that always finds the lock held: an in-memory store, tests, locks that cannot be lost."""
    return LockFence(lambda: HELD, bound_seconds=float("inf"))
