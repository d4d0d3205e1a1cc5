"""A rate limit's pause is kept in the store: a restarted serve, or a standby taking over, honours it."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from alerting.notifiers.base import Notification, ThreadSaver, ThreadState
from alerting.notifiers.recorder import SlackRecorder
from alerting.notifiers.slack import SlackNotifier, make_client
from alerting.notifiers.webhook import WebhookNotifier
from alerting.outbox import Outbox
from alerting.outbox_pauses import MAX_PAUSE_SECONDS, keep_pause
from alerting.outbox_tables import NotifierPause
from gpuwarden.clock import FakeClock
from gpuwarden.errors import BackendError
from tests.alerting.notifiers.incidents import lifecycle, reassessed
from tests.alerting.store_scenarios import a_rate_limit_pause_outlives_a_restart


def test_a_restarted_outbox_calls_slack_no_sooner_than_the_retry_after_it_was_given(
    sql: Engine, recorder: SlackRecorder
) -> None:
    a_rate_limit_pause_outlives_a_restart(sql, recorder)


def test_a_pause_read_past_its_end_is_deleted_with_those_of_notifiers_no_longer_configured(
    sql: Engine, recorder: SlackRecorder
) -> None:
    # Every notifier ever rate limited kept its row for good, a webhook removed or renamed since included.
    clock = FakeClock()
    slack = SlackNotifier(make_client(recorder.token, base_url=recorder.base_url), "#c")
    with Session(sql) as session, session.begin():
        keep_pause(session, "webhook:renamed-since", clock.time() + 30, "POST answered HTTP 429")
        keep_pause(session, "slack", clock.time() + 60, "chat.postMessage failed: ratelimited")
    outbox = Outbox(sql, [slack], clock)
    clock.advance(30)
    assert outbox.dispatch_due() == 0
    assert _paused(sql) == ["slack"]  # the webhook's ended: deleted by this serve, which has no such notifier
    assert outbox.paused("slack")
    clock.advance(30)
    assert not outbox.paused("slack")
    outbox.dispatch_due()
    assert _paused(sql) == []


def _paused(sql: Engine) -> list[str]:
    with Session(sql) as session:
        return sorted(session.scalars(select(NotifierPause.notifier)))


class FarEnd:
    """A notifier whose far end refuses its first call (``refuse``): a rate limit asking ``wait`` seconds, or
    with no ``wait`` an outage; it then takes every message."""

    name = "slack"

    def __init__(self, wait: float | None = None, *, refuse: bool = True) -> None:
        self.wait = wait
        self.refuse = refuse
        self.sent: list[str] = []

    def deliver(
        self, notification: Notification, thread: ThreadState, *, retry: bool, save: ThreadSaver
    ) -> bool:
        if self.refuse:
            self.refuse = False
            if self.wait is None:
                raise BackendError("chat.postMessage: cannot reach Slack", backend="slack", retryable=True)
            raise BackendError("chat.postMessage failed: ratelimited", backend="slack", retry_after=self.wait)
        self.sent.append(notification.key)
        return True


def test_a_retry_after_of_years_pauses_the_notifier_an_hour_at_most(sql: Engine) -> None:
    # Slack's 429 said "Retry-After: 1000000000": every Slack message of every incident was held until 2058,
    # kept in the store, so a restart held them too; webhooks' pauses were already cut to an hour.
    clock = FakeClock()
    far_end = FarEnd(wait=1_000_000_000)
    outbox = Outbox(sql, [far_end], clock)
    outbox(lifecycle()[0])
    assert outbox.dispatch_due() == 0
    clock.advance(MAX_PAUSE_SECONDS - 1)
    assert outbox.dispatch_due() == 0 and outbox.paused("slack")
    clock.advance(1)
    assert Outbox(sql, [far_end], clock).dispatch_due() == 1  # a restarted serve too
    assert len(far_end.sent) == 1


def test_a_pause_kept_longer_than_the_bound_is_over(sql: Engine) -> None:
    # One an older release stored (no bound), or one set before the wall clock was set back.
    clock = FakeClock()
    with Session(sql) as session, session.begin():
        keep_pause(session, "slack", clock.time() + 1_000_000_000, "chat.postMessage failed: ratelimited")
    far_end = FarEnd(refuse=False)
    outbox = Outbox(sql, [far_end], clock)
    outbox(lifecycle()[0])
    assert not outbox.paused("slack")
    assert outbox.dispatch_due() == 1
    assert _paused(sql) == []


class SettableClock(FakeClock):
    """A wall clock that an operator (or NTP) can set back."""

    def set_back(self, seconds: float) -> None:
        with self._lock:
            self._now -= seconds


def _one_message_refused(sql: Engine, wait: float | None) -> tuple[SettableClock, FarEnd, Outbox]:
    """An outbox whose one message the far end refused, asking it to wait ``wait`` s (None: back off)."""
    clock = SettableClock()
    far_end = FarEnd(wait)
    outbox = Outbox(sql, [far_end], clock)
    outbox(lifecycle()[0])
    assert outbox.dispatch_due() == 0
    return clock, far_end, outbox


@pytest.mark.parametrize("wait", [None, 60.0], ids=["backoff", "rate-limit"])
def test_a_clock_set_back_hours_does_not_hold_messages_for_those_hours(
    sql: Engine, wait: float | None
) -> None:
    # next_attempt_at and the pause are wall-clock times: set back 2 h, a message due in 2 s (after an
    # outage) or 60 s (a rate limit) waited 2 h more.
    clock, far_end, outbox = _one_message_refused(sql, wait)
    clock.set_back(2 * 3600)
    clock.advance(MAX_PAUSE_SECONDS / 2)  # still an hour and a half before it was due by its stored time
    assert outbox.dispatch_due() == 1
    assert len(far_end.sent) == 1


@pytest.mark.parametrize("wait", [None, 60.0], ids=["backoff", "rate-limit"])
def test_a_clock_set_back_less_than_an_hour_does_not_stretch_a_retry_wait(
    sql: Engine, wait: float | None
) -> None:
    # Set back 30 min, a message backing off 2 s (an outage) or paused 60 s (a rate limit) waited 31 min:
    # only a wait ending more than an hour ahead was taken for the step. A wait counts from the step.
    clock, far_end, outbox = _one_message_refused(sql, wait)
    clock.set_back(1800)
    if wait is not None:
        assert outbox.dispatch_due() == 0 and outbox.paused("slack")  # the far end's 60 s still hold
        clock.advance(wait - 1)
        assert outbox.dispatch_due() == 0
        assert 0 < outbox.pause_left("slack") <= 1
    clock.advance(2)
    assert outbox.dispatch_due() == 1
    assert len(far_end.sent) == 1


@pytest.mark.parametrize("back", [1800.0, 2 * 3600.0], ids=["30m", "2h"])
def test_a_clock_set_back_does_not_stretch_a_webhooks_hold(
    sql: Engine, recorder: SlackRecorder, back: float
) -> None:
    # A webhook holds a ``reassessed`` update 300 s (``edit_interval_seconds``), kept as a wall-clock time:
    # set back 30 min, it was held 35 min and the next update with it; set back 2 h, it was counted held
    # (not the backlog it is) until sent. No hold is ever set further ahead than the interval.
    clock = SettableClock()
    hook = WebhookNotifier(f"{recorder.root_url}/hooks/ops", name="webhook:ops", edit_interval_seconds=300)
    outbox = Outbox(sql, [hook], clock)
    outbox(lifecycle()[0])
    assert outbox.dispatch_due() == 1
    outbox(reassessed("reset_gpu", 1))
    assert outbox.dispatch_due() == 0 and outbox.depths()[1] == 1
    clock.set_back(back)
    assert outbox.depths()[1] == 0
    assert outbox.counts_by_notifier().get(("webhook:ops", "held"), 0) == 0
    outbox(reassessed("drain_node", 2))  # not held until the first one's stored (stretched) time
    assert outbox.dispatch_due() == 1
    assert [m.status for m in outbox.messages()] == ["sent", "discarded", "sent"]
    hook.close()


def test_a_rate_limited_history_lookup_holds_its_incident_only_and_other_pages_go_on(
    sql: Engine, recorder: SlackRecorder
) -> None:
    """Slack's limits are per method: a 429 on ``conversations.history`` (the lookup a retried first post
    makes) with ``Retry-After: 60`` paused every Slack call 60 s, a new incident's page included."""
    clock = FakeClock()
    channel = recorder.channel_id("#gpu-incidents")
    slack = SlackNotifier(make_client(recorder.token, base_url=recorder.base_url), channel, clock=clock)
    outbox = Outbox(sql, [slack], clock)
    outbox(lifecycle("inc-a")[0])
    recorder.fail_next("chat.postMessage", status=503)  # inc-a's first post fails: its retry looks first
    assert outbox.dispatch_due() == 0
    clock.advance(5)
    recorder.fail_next("conversations.history", status=429, retry_after=60)
    outbox(lifecycle("inc-b")[0])
    assert outbox.dispatch_due() == 1  # inc-b's page, at once
    assert not outbox.paused("slack")
    assert _history_calls(recorder) == [429]  # not retried in the client (it held every message)
    b = outbox.thread("slack", "inc-b")
    assert b is not None and [m.ts for m in recorder.channel_messages()] == [b.ts]
    outbox(lifecycle("inc-c")[0])
    clock.advance(30)
    assert outbox.dispatch_due() == 1  # inc-c's, while inc-a waits its 60 s without calling Slack again
    assert _history_calls(recorder) == [429]
    clock.advance(31)
    assert outbox.dispatch_due() == 1  # inc-a's, once
    a = outbox.thread("slack", "inc-a")
    assert a is not None and len(recorder.channel_messages()) == 3
    assert [r.event for r in recorder.replies(str(a.ts))] == ["opened"]


def _history_calls(recorder: SlackRecorder) -> list[int]:
    return [c.status for c in recorder.calls if c.method == "conversations.history"]
