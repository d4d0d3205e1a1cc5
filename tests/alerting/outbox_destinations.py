"""A destination that fails as scripted, messages queued for it, and the clock they are due by."""

from __future__ import annotations

from sqlalchemy import Engine

from alerting.notifiers.base import Notification, ThreadSaver, ThreadState
from alerting.outbox import Outbox
from gpuwarden.clock import FakeClock
from gpuwarden.errors import BackendError
from tests.alerting.notifiers.incidents import lifecycle


class Destination:
    """A notifier that records what it delivered (key, retry) and can be down or refuse for good."""

    def __init__(self, name: str, *, mode: str = "up") -> None:
        self.name = name
        self.mode = mode
        self.delivered: list[tuple[str, bool]] = []

    def deliver(
        self, notification: Notification, thread: ThreadState, *, retry: bool, save: ThreadSaver
    ) -> None:
        if self.mode != "up":
            raise BackendError(self.mode, backend=self.name, retryable=self.mode == "down")
        self.delivered.append((notification.change.value, retry))


CLOCK = FakeClock()  # never advanced: a message backing off is due again only when queued again


NOW = CLOCK.time()


def queued_for(sql: Engine, *notifiers: Destination) -> None:
    """Store an incident's lifecycle for ``notifiers`` and try each once."""
    outbox = Outbox(sql, list(notifiers), CLOCK)
    for c in lifecycle():
        outbox(c)
    outbox.dispatch_due()
