"""Whole-call deadlines for notifier calls whose HTTP client bounds each read, not the call.

slack-sdk's sync ``WebClient`` (urllib) and httpx apply their timeout to each read: a far end, or a proxy in
front of it, trickling its answer a byte at a time under that timeout held the notifier's thread as long as
it went on. A ``DeadlineCaller`` runs each call on a thread of its own and waits for it until its deadline;
a call still running then is abandoned (``CallAbandoned``) and runs on, unwaited, to its own end.

An abandoned call may still reach the far end. So calls go one at a time: the next call first waits for an
abandoned one to end (within its own deadline, else it is not made), and a retry that looks for what the
abandoned call did (Slack's history lookup) sees it, and a later message never overtakes it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar, cast

logger = logging.getLogger(__name__)

T = TypeVar("T")

_running = threading.local()


def time_left() -> float | None:
    """Seconds left before the deadline of the call running on this thread; None outside such a call."""
    deadline: float | None = getattr(_running, "deadline", None)
    return None if deadline is None else deadline - time.monotonic()


class CallAbandoned(TimeoutError):
    """A call was given up at its deadline; it may have reached the far end, and may still do so."""


class DeadlineCaller:
    """Makes calls one at a time, each returning or raising within ``seconds`` (a real-time bound, as the
    sockets' timeouts are)."""

    def __init__(self, seconds: float, *, name: str, setting: str = "") -> None:
        """``name``: the notifier, for logs and thread names; ``setting``: where ``seconds`` is set, said in
        the error (the outbox lists it)."""
        self.seconds = seconds
        self._name = name
        self._said = f"{seconds:g} s ({setting})" if setting else f"{seconds:g} s"
        self._lock = threading.Lock()
        self._abandoned: tuple[str, threading.Event] | None = None  # a call still running past its deadline

    def call(self, what: str, call: Callable[[], T]) -> T:
        """``call()``'s result or exception; ``CallAbandoned`` when it has none by the deadline, or when an
        earlier call abandoned at its own is still running then (this one is not made)."""
        with self._lock:  # one notifier thread calls; the lock keeps the one-at-a-time rule if two ever do
            deadline = time.monotonic() + self.seconds
            if self._abandoned is not None:
                earlier, ended = self._abandoned
                if not ended.wait(self.seconds):
                    raise CallAbandoned(
                        f"not made: the earlier {earlier}, abandoned at its deadline, still ran {self._said}"
                        " later (it may still reach the far end)"
                    )
                self._abandoned = None
            outcome: list[tuple[bool, object]] = []
            ended = threading.Event()
            worker = threading.Thread(
                target=self._run, args=(what, call, deadline, outcome, ended), name=f"{self._name} call"
            )
            worker.daemon = True  # an abandoned call must not hold the process at exit
            worker.start()
            if not ended.wait(max(0.0, deadline - time.monotonic())):
                self._abandoned = (what, ended)
                logger.warning("call abandoned at its deadline notifier=%s call=%s", self._name, what)
                raise CallAbandoned(
                    f"no whole answer within {self._said}; abandoned, it may still reach the far end"
                )
        ok, value = outcome.pop()
        if ok:
            return cast(T, value)
        assert isinstance(value, BaseException)
        try:
            raise value
        finally:
            del value  # the exception's traceback holds this frame: no cycle keeping its socket alive

    def _run(
        self,
        what: str,
        call: Callable[[], object],
        deadline: float,
        outcome: list[tuple[bool, object]],
        ended: threading.Event,
    ) -> None:
        _running.deadline = deadline
        result: tuple[bool, object]
        try:
            result = (True, call())
        except BaseException as exc:  # noqa: BLE001 - handed to the caller, which raises it
            result = (False, exc)
        late = time.monotonic() > deadline
        said = "answered" if result[0] else f"error {result[1]!r}"
        outcome.append(result)
        del result  # as in the caller: the exception's traceback holds this frame
        ended.set()
        if late:
            logger.info("abandoned call ended notifier=%s call=%s outcome=%s", self._name, what, said)
