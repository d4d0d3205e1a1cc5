"""A uvicorn server that a second SIGTERM (or Ctrl-C) stops at once, as uvicorn's users expect.

The first stop signal drains: no new connection, the requests in flight finish (a toy model's stream of
4,096 tokens, minutes). uvicorn stops waiting on a second SIGINT only, and by abandoning the requests to be
cancelled when its loop closes: the lifespan and each request logged a ``CancelledError`` traceback. Here
a second signal of either kind closes the connections still open, as a client that leaves closes its own:
the handlers end as they do for a gone client (a stream is cancelled, a plain answer checks between tokens),
and the server stops as after the drain, the caller's clean-up (span flush) included. Imported by the
commands that serve only: it imports uvicorn.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import threading
from collections.abc import Callable
from types import FrameType

import uvicorn

logger = logging.getLogger(__name__)


# How long after the first stop signal the requests still in flight are said to be waited for.
DRAIN_SAID_AFTER_SECONDS = 0.5


class ForcingServer(uvicorn.Server):
    """``uvicorn.Server`` whose second stop signal cuts the requests in flight instead of waiting for them."""

    stops = 0

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.hurry = threading.Event()  # set at the second signal: the app's shutdown waits no longer either
        self.first_said = False  # whether the first stop signal has been said in the log
        self.first_signal = "SIGTERM"  # its name

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """The first SIGINT or SIGTERM drains (and says so when requests are in flight); the second cuts them;
        a third (a handler that ignores its client leaving) abandons them, as uvicorn's second SIGINT does."""
        super().handle_exit(sig, frame)
        self.stops += 1
        if self.stops > 2:
            self.force_exit = True
            return
        self.force_exit = False  # uvicorn's own (second SIGINT) abandons the requests to cancellation
        if self.stops == 2:
            self.hurry.set()
        requests = len(self.server_state.tasks)  # one per request in flight (an idle connection has none)
        name = signal.Signals(sig).name
        if self.stops == 1:
            self.first_signal = name
        if not requests:
            # Said at once, as Prometheus says it: the stop may still wait (serve's journal, its outbox),
            # and a log silent about the signal until the end read as a server that had not heard it.
            if self.stops == 1:
                self._say_stopping(name)
            else:
                _say_now(logger.warning, "%s again: stopping now, without waiting for the rest", name)
            return
        if self.stops == 1:
            # Said only of requests still in flight a moment later: a probe answered just before the signal
            # (a task not yet ended) made serve say it waited for one request, a line more in every stop log.
            _on_the_loop(DRAIN_SAID_AFTER_SECONDS, self._say_draining, name)
            return
        line = f"{name} again: closing the connections of {requests} request(s) in flight and stopping now"
        _say_now(logger.warning, "%s", line)
        for connection in list(self.server_state.connections):
            # A signal handler runs between two steps of the loop's thread: the closing is left to the loop.
            transport = getattr(connection, "transport", None)
            its_loop = getattr(connection, "loop", None)
            if transport is not None and its_loop is not None:
                its_loop.call_soon_threadsafe(transport.close)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's shutdown; then, where the first stop signal found requests in flight that all ended
        before it was said (``_say_draining``, whose timer dies with the loop), the plain stop line: such a
        stop logged nothing at all, as if the signal had not been heard."""
        await super().shutdown(sockets)
        if self.stops == 1 and not self.first_said:
            self._say_stopping(self.first_signal)

    def _say_stopping(self, name: str) -> None:
        """The first stop signal said, with no request to wait for (once)."""
        if not self.first_said:
            self.first_said = True
            _say_now(logger.info, "%s: stopping; SIGTERM or Ctrl-C again stops at once", name)

    def _say_draining(self, name: str) -> None:
        """Say that the stop waits for the requests still in flight, if any (else that it stops), unless a
        second signal came."""
        requests = len(self.server_state.tasks)
        if self.stops != 1 or self.first_said:
            return
        if not requests:
            self._say_stopping(name)
            return
        self.first_said = True
        logger.warning(
            "%s: stopping once %d request(s) in flight finish; SIGTERM or Ctrl-C again stops at once",
            name,
            requests,
        )


def _say_now(call: Callable[..., object], *args: object) -> None:
    """``call(*args)`` (a log line a stop signal says) at once, from a thread of its own: not from the signal
    handler (see ``_on_the_loop``), nor on the loop, which the stop may hold (serve lets a notification being
    sent finish, 5 s at most: the second signal was said only then). Not a daemon: said before the exit."""
    threading.Thread(target=call, args=args, name="stop-signal-said").start()


def _on_the_loop(delay: float, call: Callable[..., object], *args: object) -> None:
    """``call(*args)`` on the running loop ``delay`` seconds from now, or at once where no loop runs
    (``handle_exit`` called directly). What a stop signal says is logged there, in the command's
    ``--log-format`` (written raw to stderr it was not JSON in a JSON log), and not by the signal handler:
    it runs between two steps of the main thread, which may be inside a log handler's write (a re-entrant
    write to the same buffered stream raises)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        call(*args)
        return
    loop.call_soon_threadsafe(loop.call_later, delay, call, *args)
