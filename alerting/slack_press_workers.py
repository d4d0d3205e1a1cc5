"""The threads Slack button presses run on, and what becomes of the presses still there when serve stops.

A ``ThreadPoolExecutor`` that is never shut down carried out the presses still queued at the stop after the
store was closed, and the interpreter's exit waited for every one of them (a stress run took well over 20 s
to stop). Here the stop (``run``, one of serve's background tasks) cancels the queued presses, each presser
told to press again, and waits for those running no longer than ``STOP_WAIT_SECONDS``: the threads are
daemons, so the exit does not wait for one that is still running then (its store commit is refused once
the lock is given back, and it tells its presser that it failed).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

STOP_WAIT_SECONDS = 3.0  # the presses running at the stop: the lifespan waits 5 s for each background task


class PressWorkers:
    """At most ``count`` presses at once, the others queued in order; ``close`` at serve's stop."""

    def __init__(self, count: int, name: str = "slack-press") -> None:
        self._count = count
        self._name = name
        self._cond = threading.Condition()
        self._queue: deque[tuple[Future[object], Callable[[], object], Callable[[], None]]] = deque()
        self._threads: list[threading.Thread] = []
        self._running = 0
        self._closed = False

    def submit(self, work: Callable[[], T], on_cancelled: Callable[[], None]) -> Future[T]:
        """Run ``work`` on a worker; ``on_cancelled`` is called instead when serve stops before it started
        (the future is then cancelled)."""
        future: Future[T] = Future()
        with self._cond:
            if self._closed:
                future.cancel()
                return future
            self._queue.append((future, work, on_cancelled))  # type: ignore[arg-type]
            if len(self._threads) < self._count and len(self._queue) > self._idle():
                thread = threading.Thread(
                    target=self._work, name=f"{self._name}_{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
            self._cond.notify()
        return future

    def _idle(self) -> int:
        return len(self._threads) - self._running

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closed:
                    self._cond.wait()
                if not self._queue:
                    return
                future, work, _ = self._queue.popleft()
                if not future.set_running_or_notify_cancel():
                    continue
                self._running += 1
            try:
                result = work()
            except Exception as exc:  # noqa: BLE001 - the future carries it to the request's answer
                future.set_exception(exc)
            else:
                future.set_result(result)
            finally:
                with self._cond:
                    self._running -= 1
                    self._cond.notify_all()

    def close(self, wait_seconds: float | None = None) -> tuple[int, int]:
        """Cancel the queued presses (each ``on_cancelled`` told, within the wait too) and wait for the
        running ones at most ``wait_seconds`` (``STOP_WAIT_SECONDS``); how many were cancelled, how many
        still run."""
        deadline = time.monotonic() + (STOP_WAIT_SECONDS if wait_seconds is None else wait_seconds)
        with self._cond:
            self._closed = True
            queued = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        cancelled = [tell for future, _, tell in queued if future.cancel()]
        tellers = [
            threading.Thread(target=tell, name=f"{self._name}-stopped", daemon=True) for tell in cancelled
        ]
        for teller in tellers:
            teller.start()
        with self._cond:
            while self._running and self._cond.wait(max(deadline - time.monotonic(), 0)):
                pass
            running = self._running
        for teller in tellers:
            teller.join(max(deadline - time.monotonic(), 0))
        if cancelled or running:
            logger.warning(
                "slack presses at the stop: %d queued cancelled (their pressers told to press again),"
                " %d still running not waited for",
                len(cancelled),
                running,
            )
        return len(cancelled), running

    def run(self, stop: threading.Event) -> None:
        """A background task of serve: ``close`` once ``stop`` is set."""
        stop.wait()
        self.close()
