"""Run a uvicorn server so that SIGTERM stops it as gracefully as SIGINT, and the caller still cleans up.

uvicorn catches SIGINT and SIGTERM, shuts down, restores the handlers it found and then raises the
signal again ("the expected behaviour"). For SIGTERM that is the default action, which kills the process
before the caller's ``finally`` runs: buffered spans are never flushed, locks and files never closed. And
Kubernetes sends SIGTERM on every pod stop.
"""

from __future__ import annotations

import signal
import socket
import threading
from collections.abc import Sequence
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import uvicorn

_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def run_until_stopped(server: uvicorn.Server, sockets: Sequence[socket.socket]) -> None:
    """Run ``server`` until SIGINT or SIGTERM, and return once it has shut down gracefully.

    The handlers installed here are the ones uvicorn restores: the re-raised signal only asks a stopped
    server to stop, so ``run`` returns, the caller cleans up and the process exits 0 (a stop that was
    asked for is not a failure; exit 143 would make every pod stop look like a crash). A signal that
    comes before uvicorn took over makes the server stop as soon as it has started; one that comes
    during the caller's clean-up, after this returned, has its default effect again.
    """
    if threading.current_thread() is not threading.main_thread():  # signals go to the main thread only
        server.run(sockets=list(sockets))
        return

    def stop(signum: int, frame: FrameType | None) -> None:
        server.should_exit = True

    previous = {sig: signal.signal(sig, stop) for sig in _STOP_SIGNALS}
    try:
        server.run(sockets=list(sockets))
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
