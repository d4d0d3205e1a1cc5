"""A rate limit's pause is kept in the store: a restarted serve, or a standby taking over, honours it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from alerting.notifiers.recorder import SlackRecorder
from alerting.notifiers.slack import SlackNotifier, make_client
from alerting.outbox import Outbox
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
