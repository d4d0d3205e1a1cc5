"""Run a uvicorn server so that SIGTERM stops it as gracefully as SIGINT, and the caller still cleans up.

uvicorn catches SIGINT and SIGTERM, shuts down, restores the handlers it found and then raises the
signal again ("the expected behaviour"). For SIGTERM that is the default action, which kills the process
before the caller's ``finally`` runs: buffered spans are never flushed, locks and files never closed. And
Kubernetes sends SIGTERM on every pod stop.

A process that runs servers in turn (``serve --standby``: the standby's server, then, once it holds the
store lock, the active one) keeps one ``StopRequest`` caught across all of them: a signal that comes
between two servers (as the standby takes the lock, while the active server is built) is remembered, not
lost and not fatal, and the caller stops cleanly instead of becoming the active server.
"""

from __future__ import annotations

import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import uvicorn

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopAsked(Exception):
    """A stop signal came while waiting (``StopRequest.sleep``)."""


class StopSignal(BaseException):
    """SIGINT or SIGTERM came during ``raising_on_stop``'s block. Not an ``Exception``, as KeyboardInterrupt
    is not: the work interrupted may catch every ``Exception`` (a source read takes any as a failed read)
    and would go on, the signal lost."""


class StopRequest:
    """Whether SIGINT or SIGTERM came while ``caught()``; the servers run meanwhile are asked to stop."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._event = threading.Event()
        self._servers: list[uvicorn.Server] = []

    @property
    def asked(self) -> bool:
        """A stop signal came."""
        return self._event.is_set()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.signum = signum
        self._event.set()
        for server in self._servers:
            server.should_exit = True

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds``; raise ``StopAsked`` at once when a stop signal came (a standby's lock wait)."""
        if self._event.wait(seconds):
            raise StopAsked

    @contextmanager
    def stopping(self, server: uvicorn.Server) -> Iterator[None]:
        """Within the block, a stop signal (or one that already came) asks ``server`` to stop."""
        self._servers.append(server)
        if self.asked:
            server.should_exit = True
        try:
            yield
        finally:
            self._servers.remove(server)

    @contextmanager
    def caught(self) -> Iterator[StopRequest]:
        """Record stop signals instead of their default action (death) until the block ends; nothing in a
        thread other than the main one, which alone receives signals."""
        with _on_stop(self._handle):
            yield self


@contextmanager
def _on_stop(handler: Callable[[int, FrameType | None], None]) -> Iterator[None]:
    """``handler`` for SIGINT and SIGTERM within the block, the handlers found restored after it; in a thread
    other than the main one, which alone receives signals (and alone may set handlers), nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in _STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, before in previous.items():
            # The CLI's handler while a command loads stands only until the command's own: what it replaced
            # comes back (``gpuwarden.cli.loading``).
            signal.signal(sig, getattr(before, "replaced", {}).get(sig, before))


@contextmanager
def raising_on_stop() -> Iterator[None]:
    """Within the block, SIGINT or SIGTERM raises ``StopSignal`` in the main thread, at once (a lock or socket
    wait is interrupted): a long piece of work with nothing to save (``anomaly run``'s warm-up) ends at a stop
    and its caller cleans up, instead of SIGTERM's default action killing the process with no line said
    (exit 143). Outside the main thread, which alone receives signals, the block runs as it is."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise StopSignal(signal.Signals(signum).name)

    with _on_stop(stop):
        yield


def join_within(threads: Sequence[threading.Thread], seconds: float, hurry: threading.Event | None) -> None:
    """Wait for each of ``threads`` at most ``seconds``, and no longer once ``hurry`` is set (a second stop
    signal): the threads are daemons, left to end with the process."""
    for thread in threads:
        deadline = time.monotonic() + seconds
        while thread.is_alive() and time.monotonic() < deadline and not (hurry and hurry.is_set()):
            thread.join(min(0.05, max(deadline - time.monotonic(), 0)))


def run_until_stopped(
    server: uvicorn.Server, sockets: Sequence[socket.socket], stop: StopRequest | None = None
) -> None:
    """Run ``server`` until SIGINT or SIGTERM, and return once it has shut down gracefully.

    The handlers installed here are the ones uvicorn restores: the re-raised signal only asks a stopped
    server to stop, so ``run`` returns, the caller cleans up and the process exits 0 (a stop that was
    asked for is not a failure; exit 143 would make every pod stop look like a crash). A signal that
    comes before uvicorn took over (or, with ``stop``, any time since ``stop`` was caught) makes the server
    stop as soon as it has started; one that comes during the caller's clean-up, after this returned, has
    its default effect again unless the caller still holds ``stop`` caught.
    """
    from gpuwarden.tls_handshake import handshake_deadline  # noqa: PLC0415 - only where a server runs

    stop = stop or StopRequest()
    handshake_deadline(server)
    with stop.caught(), stop.stopping(server):
        server.run(sockets=list(sockets))
