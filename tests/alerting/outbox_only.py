"""A notifier for tests that check what the outbox stores, never what is delivered."""

from __future__ import annotations

from alerting.notifiers.base import Notification, ThreadSaver, ThreadState


class Quiet:
    """A notifier never asked to deliver here: only what the outbox stores is checked."""

    name = "quiet"

    def deliver(
        self, notification: Notification, thread: ThreadState, *, retry: bool, save: ThreadSaver
    ) -> None:
        raise AssertionError("not dispatched in these tests")
