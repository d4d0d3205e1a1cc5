"""Posts to a channel are paced to Slack's documented one a second (``alerting.notifiers.pacing``): a storm
sent at Slack's pace is not refused, where sent as fast as possible it was answered 429 again and again. A
429 of another method holds that method alone, and is not slept in the client."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from alerting.notifiers.base import build_notification
from alerting.notifiers.pacing import PostPacing
from alerting.notifiers.recorder import SlackRecorder
from alerting.notifiers.slack import SlackNotifier
from alerting.subscriptions import ChangeKind
from gpuwarden.clock import FakeClock
from gpuwarden.config import SlackConfig
from gpuwarden.errors import BackendError
from tests.alerting.notifiers.incidents import change, make_incident
from tests.alerting.notifiers.slack_threads import Threads, deliver, notifier_for

CHANNEL = "C0PACED0001"


def test_a_storm_told_by_serves_notifier_keeps_to_slacks_pace_and_is_never_answered_429() -> None:
    """Eight incidents at once, as serve builds the notifier: 16 posts to one channel. Unpaced, the fourth
    post was refused (Slack allows a short burst, then one a second) and each after it too."""
    clock = FakeClock()  # Slack's and the notifier's: the pace waits move it, as the seconds would pass
    with SlackRecorder(clock=clock, rate_limits=True, channels=[CHANNEL]) as recorder:
        config = SlackConfig(
            bot_token=SecretStr(recorder.token), base_url=recorder.base_url, channel=CHANNEL, charts=False
        )
        notifier = SlackNotifier.from_config(config, clock=clock)
        start = clock.monotonic()
        for i in range(8):
            incident = make_incident(f"inc-{i}", title=f"node n{i} lost a GPU")
            deliver(notifier, Threads(), build_notification(change(incident, ChangeKind.OPENED, 0, "opened")))
        assert recorder.limits is not None and recorder.limits.refused == {}
        assert len(recorder.calls_to("chat.postMessage")) == 16
        assert clock.monotonic() - start >= 16 - 3 - 1  # one a second once the burst of 3 is spent


def test_posts_to_another_channel_do_not_wait_for_this_ones_pace() -> None:
    clock = FakeClock()
    pacing = PostPacing(clock, rate=1.0, burst=1.0)
    assert pacing.wait("C1") == 0.0
    assert pacing.wait("C1") == 1.0
    assert pacing.wait("C2") == 0.0  # not behind C1's
    clock.advance(0.25)
    assert pacing.wait("C1") == 0.75


def test_no_pace_is_kept_when_pacing_is_off() -> None:
    clock = FakeClock()
    pacing = PostPacing(clock, rate=0.0)
    assert [pacing.wait("C1") for _ in range(5)] == [0.0] * 5
    assert clock.monotonic() == FakeClock().monotonic()


def test_a_lookup_answered_429_holds_that_method_alone_and_is_not_slept_in_the_client(
    recorder: SlackRecorder,
) -> None:
    """A retried first post looks for itself in the channel history; Slack refused that lookup (its Tier 3
    limit, not the posts'): the client slept the Retry-After, holding every incident's posts meanwhile."""
    clock = FakeClock()
    notifier = notifier_for(recorder, channel=recorder.channel_id("#gpu-incidents"), clock=clock)
    retried = build_notification(change(make_incident("inc-a"), ChangeKind.OPENED, 0, "opened"))
    recorder.fail_next("conversations.history", status=429, retry_after=2)
    with pytest.raises(BackendError) as caught:
        deliver(notifier, Threads(), retried, retry=True)
    assert (caught.value.limit, caught.value.retry_after) == ("conversations.history", 2)
    new = build_notification(change(make_incident("inc-b"), ChangeKind.OPENED, 0, "opened"))
    deliver(notifier, Threads(), new)  # posts go on
    with pytest.raises(BackendError) as again:  # the lookup is not called again within its Retry-After
        deliver(notifier, Threads(), retried, retry=True)
    assert again.value.limit == "conversations.history" and again.value.retryable
    clock.advance(2)
    deliver(notifier, Threads(), retried, retry=True)
    assert [c.status for c in recorder.calls if c.method == "conversations.history"][:2] == [429, 200]
    assert len(recorder.channel_messages()) == 2
