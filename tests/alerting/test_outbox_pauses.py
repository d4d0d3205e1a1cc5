"""A rate limit's pause is kept in the store: a restarted serve, or a standby taking over, honours it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from alerting.notifiers.recorder import SlackRecorder
from alerting.notifiers.slack import SlackNotifier, make_client
from alerting.outbox import Outbox
from alerting.outbox_pauses import keep_pause
from alerting.outbox_tables import NotifierPause
from gpuwarden.clock import FakeClock
from tests.alerting.notifiers.incidents import lifecycle


@pytest.fixture
def recorder() -> Iterator[SlackRecorder]:
    with SlackRecorder() as rec:
        yield rec


def test_a_restarted_outbox_calls_slack_no_sooner_than_the_retry_after_it_was_given(
    sql: Engine, recorder: SlackRecorder
) -> None:
    a_rate_limit_pause_outlives_a_restart(sql, recorder)


def a_rate_limit_pause_outlives_a_restart(sql: Engine, recorder: SlackRecorder) -> None:
    """Slack asks for 60 s; serve restarts 10 s later: no call to Slack for any incident until 60 s passed.

    The pause was kept in memory: the restarted outbox called Slack at once for the other incidents, and
    Slack answered 429 again (and may rate limit an app that keeps calling harder)."""
    clock = FakeClock()
    slack = SlackNotifier(make_client(recorder.token, base_url=recorder.base_url, rate_limit_retries=0), "#c")
    outbox = Outbox(sql, [slack], clock)
    for incident_id in ("inc-a", "inc-b", "inc-c"):
        outbox(lifecycle(incident_id)[0])
    recorder.fail_next("chat.postMessage", status=429, retry_after=60)
    assert outbox.dispatch_due() == 0
    clock.advance(10)
    restarted = Outbox(sql, [slack], clock)  # a new serve (or the standby) on the same store
    assert restarted.paused("slack")
    for _ in range(49):
        clock.advance(1)
        assert restarted.dispatch_due() == 0
    assert len(recorder.calls) == 1  # the refused one only
    clock.advance(1)
    assert restarted.dispatch_due() == 3
    assert len(recorder.channel_messages()) == 3


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
