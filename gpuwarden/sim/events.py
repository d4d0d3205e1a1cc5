"""Event queues behind ``nvmlEventSetWait``: every queued event is delivered once, none is dropped."""

from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class GpuEvent:
    """One NVML event: which GPU, the nvmlEventType bit and its data (the XID code for XID events)."""

    node: str
    index: int
    event_type: int
    data: int


class EventQueue:
    """An unbounded FIFO with a blocking, timed ``get``; one per NVML event set."""

    def __init__(self) -> None:
        self._items: deque[GpuEvent] = deque()
        self._cond = threading.Condition(threading.Lock())
        self.closed = False

    def put(self, event: GpuEvent) -> None:
        """Queue an event and wake one waiter."""
        with self._cond:
            self._items.append(event)
            self._cond.notify()

    def get(self, timeout_s: float) -> GpuEvent | None:
        """The oldest event, waiting up to ``timeout_s`` real seconds; ``None`` on timeout."""
        with self._cond:
            if not self._items and timeout_s > 0:
                self._cond.wait_for(lambda: bool(self._items) or self.closed, timeout_s)
            return self._items.popleft() if self._items else None

    def close(self) -> None:
        """Wake every waiter; later ``get`` calls return what is left, then ``None``."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)
