"""Time for all logic: a real clock, a manual fake clock for tests and an accelerated clock for demos.

Logic never calls ``time.sleep`` or ``datetime.now`` directly; it asks a ``Clock``.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Protocol


def rfc3339(at: datetime) -> str:
    """An aware time as the APIs write it: RFC 3339 in UTC with a ``Z`` (one in another zone converted, never
    written with its offset)."""
    utc = at if at.tzinfo is None else at.astimezone(UTC)
    return utc.isoformat().replace("+00:00", "Z")


def shown(at: datetime) -> str:
    """A time in text people read (Slack, the CLI, the postmortem, the API's messages): RFC 3339 in UTC to the
    second, ``2026-12-02T16:00:05Z``, one format with its zone everywhere; fields programs read (the API's,
    the webhook's) keep ``rfc3339`` or ISO with the fraction. A naive time is taken as UTC."""
    utc = at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)
    return rfc3339(utc.replace(microsecond=0))


def shown_text(text: str) -> str:
    """``shown`` of a time an API wrote (``2026-12-02T16:00:05.123456Z``); text that is no time, as it is."""
    try:
        return shown(datetime.fromisoformat(text))
    except (TypeError, ValueError):
        return text


class Clock(Protocol):
    """Where logic gets the time and waits."""

    def time(self) -> float:
        """Seconds since the Unix epoch."""
        ...

    def now(self) -> datetime:
        """The current time as an aware UTC datetime."""
        ...

    def monotonic(self) -> float:
        """A monotonic reading in seconds, for measuring durations."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of this clock's time."""
        ...


class SystemClock:
    """Wall-clock time."""

    def time(self) -> float:
        """Seconds since the Unix epoch."""
        return time.time()

    def now(self) -> datetime:
        """The current UTC time."""
        return datetime.now(UTC)

    def monotonic(self) -> float:
        """``time.monotonic()``."""
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        """Block for ``seconds``."""
        if seconds > 0:
            time.sleep(seconds)


class FakeClock:
    """A clock that only moves when told to; ``sleep`` advances it instantly. Thread-safe."""

    def __init__(self, start: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self._now = float(start)
        self._lock = threading.Lock()

    def time(self) -> float:
        """The fake epoch seconds."""
        # No lock: reading one attribute is atomic, and the simulator reads the clock at every NVML call
        # (1.2 million reads in the demo, where taking the lock made each read ten times as dear).
        # ``advance`` keeps the lock, so two threads advancing never lose a step.
        return self._now

    def now(self) -> datetime:
        """The fake time as UTC datetime."""
        return datetime.fromtimestamp(self.time(), UTC)

    def monotonic(self) -> float:
        """Same as ``time()``: the fake clock never goes backwards."""
        return self.time()

    def sleep(self, seconds: float) -> None:
        """Advance by ``seconds`` without blocking."""
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        """Move the clock forward."""
        if seconds < 0:
            raise ValueError("a clock cannot go backwards")
        with self._lock:
            self._now += seconds


class AcceleratedClock:
    """Real time sped up by ``factor`` from a chosen start: a demo can live an hour in a minute."""

    def __init__(self, factor: float, start: float | None = None) -> None:
        if factor <= 0:
            raise ValueError("factor must be positive")
        self.factor = factor
        self._real_origin = time.monotonic()
        self._origin = time.time() if start is None else start

    def time(self) -> float:
        """Accelerated epoch seconds."""
        return self._origin + (time.monotonic() - self._real_origin) * self.factor

    def now(self) -> datetime:
        """Accelerated time as UTC datetime."""
        return datetime.fromtimestamp(self.time(), UTC)

    def monotonic(self) -> float:
        """Accelerated monotonic seconds."""
        return self.time()

    def sleep(self, seconds: float) -> None:
        """Block for ``seconds / factor`` of real time."""
        if seconds > 0:
            time.sleep(seconds / self.factor)
