"""Operators acting on the outbox at the same moment as each other or as a delivery (PostgreSQL:
``tests/integration``)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import Engine

from alerting.notifiers.base import Notification, ThreadSaver, ThreadState
from alerting.outbox import Outbox
from alerting.outbox_tables import FAILED, SENT
from tests.alerting.notifiers.incidents import lifecycle
from tests.alerting.outbox_destinations import CLOCK, Destination
from tests.alerting.outbox_races import assert_each_message_went_one_way, one_inside_the_other


@pytest.mark.parametrize("first", ["retry", "discard"])
def test_a_retry_and_a_discard_at_the_same_moment_never_both_take_a_failed_message(
    sql: Engine, first: str
) -> None:
    # Both read the failed messages before either wrote: the retry answered "requeued 5" and the discard
    # "discarded 5" for the same five, and the later write won: discarded ones ("never sent") were sent.
    requeued, discarded, counts = one_inside_the_other(sql, first)
    assert_each_message_went_one_way(first, requeued, discarded, counts)


class RetriedWhileSending(Destination):
    """A destination during whose delivery of a message ``outbox retry`` runs (``during``, once)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.during: Callable[[], tuple[int, int]] | None = None
        self.answers: list[tuple[int, int]] = []

    def deliver(
        self, notification: Notification, thread: ThreadState, *, retry: bool, save: ThreadSaver
    ) -> None:
        if self.mode == "up" and self.during is not None:
            during, self.during = self.during, None
            self.answers.append(during())
        super().deliver(notification, thread, retry=retry, save=save)


def test_a_failed_message_is_not_queued_behind_a_later_one_of_its_incident_being_sent(sql: Engine) -> None:
    # Requeued while the later message was in flight, the failed one went after it: the receiver was told
    # the incident opened after it heard it was escalated, and Slack's message was set back to the opening.
    hook = RetriedWhileSending("webhook:ops")
    outbox = Outbox(sql, [hook], CLOCK)
    opened, escalated, *_ = lifecycle()
    hook.mode = "refused"
    outbox(opened)
    outbox.dispatch_due()
    hook.mode = "up"  # the receiver was fixed; someone runs `outbox retry` as the next message goes
    hook.during = outbox.requeue_failed
    outbox(escalated)
    outbox.dispatch_due()
    outbox.dispatch_due()
    assert hook.answers == [(0, 1)], "overtaken by the message being sent"
    assert hook.delivered == [("priority_changed", False)]
    assert outbox.counts() == {SENT: 1, FAILED: 1}
