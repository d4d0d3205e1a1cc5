"""Posts to a channel are paced to Slack's documented one a second (``alerting.notifiers.pacing``): a storm
sent at Slack's pace is not refused, where sent as fast as possible it was answered 429 again and again."""

from __future__ import annotations

from pydantic import SecretStr

from alerting.notifiers.base import build_notification
from alerting.notifiers.pacing import PostPacing
from alerting.notifiers.recorder import SlackRecorder
from alerting.notifiers.slack import SlackNotifier
from alerting.subscriptions import ChangeKind
from gpuwarden.clock import FakeClock
from gpuwarden.config import SlackConfig
from tests.alerting.notifiers.incidents import change, make_incident
from tests.alerting.notifiers.slack_threads import Threads, deliver

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
