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


class HoldingQuiet(Quiet):
    """``Quiet``, holding ``reassessed`` updates as a webhook does (``edit_interval_seconds``, its default):
    what the outbox stores of a hold (when each held update goes) is checked too."""

    name = "quiet-holding"
    edit_interval_seconds = 300.0
