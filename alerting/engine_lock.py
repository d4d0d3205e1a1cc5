"""The incident engine's lock, which tells a loop waiting for it when its holder makes progress.

Everything that changes the engine's view of incidents holds one re-entrant lock: the journal applier's
transactions, the tick, what people do through the API and Slack, inventory refreshes. The applier beats a
heartbeat that liveness reads (``alerting.health.Heartbeat``), and while it waited for the lock it did not
beat: 12,000 alerts timing out together made ticks of 73 and 87 s, and the applier's heartbeat aged 51 s
behind them; a tick longer than ``alerting.applier_stall_seconds`` would have made ``/healthz`` answer 503
blaming the applier, and Kubernetes restart serve, possibly in a loop (each start's first tick as long).

So a loop that waits for the lock registers its beat (``waiting``), and the lock calls it whenever the thread
holding the lock shows progress: when it takes the lock (the one before let go), for each alert and incident a
transaction works through under it (``Batch.progress``), each commit, and each step of the tick. A holder that
works keeps the waiting applier alive however long it holds the lock; one that shows no progress (a
transaction waiting for a PostgreSQL row lock, which nothing bounds, a bug that loops) leaves it unbeaten, and
past the deadline liveness fails as before, naming what holds the lock (``held_by``: the tick names itself).
The holder's own progress never beats its own thread's registration: an applier that holds the lock beats
through its transaction (its ``progress``), as before.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

ANOTHER = "another engine operation"  # a holder that did not name itself (an API action, a refresh)
LET_IN_SECONDS = 5.0  # ``let_in``'s bound: a waiting thread that does not come is not waited for longer


class EngineLock:
    """A re-entrant lock (``threading.RLock``'s ``with``) that remembers which thread holds it and what for,
    and beats the loops waiting for it whenever the holder shows progress."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._owner: int | None = None  # the thread holding it
        self._depth = 0  # its holder's re-entries
        self._holder: str | None = None  # what holds it, as it named itself (``held_by``)
        self._waiting: tuple[tuple[int, Callable[[], object]], ...] = ()  # (thread, beat), replaced whole
        self._guard = threading.Lock()  # for changes of ``_waiting``
        self._turns = threading.Condition(threading.Lock())  # for ``_queued`` and ``_taken``: ``let_in``
        self._queued = 0  # threads blocked taking it
        self._taken = 0  # takings by a thread that was blocked (``_queued``) so far

    def __enter__(self) -> EngineLock:
        # The turns are counted only where a thread had to wait: ``let_in`` asks whether a waiting one took
        # it, and an uncontended taking (every ingest, API action, tick) pays for no second lock.
        if not self._lock.acquire(False):  # positional: the keyword costs on this hot path
            self._queue_for_it()
        self._depth += 1
        if self._depth == 1:
            self._owner, self._holder = threading.get_ident(), None
            self._moved()  # taken: what held it before let go, which is progress to whoever waits
        return self

    def _queue_for_it(self) -> None:
        """Block until the lock is this thread's, counted in ``_queued`` meanwhile; then tell ``let_in``."""
        with self._turns:
            self._queued += 1
        taken = False
        try:
            taken = self._lock.acquire()
        finally:
            with self._turns:
                self._queued -= 1
                if taken:
                    self._taken += 1
                self._turns.notify_all()

    def __exit__(self, *_exc: object) -> None:
        self._depth -= 1
        if self._depth == 0:
            self._owner, self._holder = None, None
        self._lock.release()

    @contextmanager
    def held_by(self, what: str) -> Iterator[None]:
        """Hold the lock, named ``what`` while this is its outermost hold (``an engine tick``)."""
        with self:
            if self._depth == 1:
                self._holder = what
            yield

    def progress(self) -> None:
        """The holder made progress (called by the thread holding the lock; from any other, nothing)."""
        if threading.get_ident() == self._owner:
            self._moved()

    def _moved(self) -> None:
        owner = self._owner
        for thread, beat in self._waiting:
            if thread != owner:
                beat()

    @contextmanager
    def waiting(self, beat: Callable[[], object]) -> Iterator[None]:
        """While the calling thread waits for the lock (and holds it, then), the holder's progress calls
        ``beat``; its own progress does not."""
        entry = (threading.get_ident(), beat)
        with self._guard:
            self._waiting = (*self._waiting, entry)
        try:
            yield
        finally:
            with self._guard:
                self._waiting = tuple(e for e in self._waiting if e is not entry)

    def let_in(self, timeout: float = LET_IN_SECONDS) -> None:
        """Called between two holds of a loop (retention's slices): when threads wait for the lock, wait
        until one of them took it (at most ``timeout`` seconds). An ``RLock`` is not fair: the thread that
        lets go takes it again before a waiting one wakes up, so ingest waited for most of a first prune's
        slices (7.6 s, slices of 0.5-0.8 s) rather than one. Nothing when the caller holds it still."""
        if self._owner == threading.get_ident():
            return
        with self._turns:
            if self._queued:
                taken = self._taken
                self._turns.wait_for(lambda: self._taken != taken or not self._queued, timeout)

    def held_against(self, thread: int) -> str | None:
        """What holds the lock when a thread other than ``thread`` does (``held_by``'s name, else
        ``ANOTHER``), or None."""
        owner, holder = self._owner, self._holder
        if owner is None or owner == thread:
            return None
        return holder or ANOTHER
