"""SlackNotifier retrying a delivery: the parent message or reply that reached Slack before a crash, found in
a busy channel or a long thread; and the notifier built from the config."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from alerting.notifiers import slack_lookups
from alerting.notifiers.base import ThreadState, build_notification
from alerting.notifiers.recorder import SlackRecorder
from alerting.notifiers.slack import SlackNotifier, make_client
from gpuwarden.clock import FakeClock
from gpuwarden.config import SlackConfig, load_config
from gpuwarden.errors import BackendError, ConfigError
from tests.alerting.notifiers.incidents import lifecycle
from tests.alerting.notifiers.slack_threads import Threads, deliver, notifier_for


@pytest.mark.parametrize(
    "configured", ["#gpu-incidents", "C0123456789"], ids=["id-of-a-name", "id-configured"]
)
def test_retry_adopts_a_parent_message_that_reached_slack_before_a_crash(
    recorder: SlackRecorder, configured: str
) -> None:
    # slack.channel as the README recommends it (an id, C0123456789) is that channel in the stand-in too:
    # it was taken for a name, given C00000001, and the history of C0123456789 was channel_not_found.
    channel_id = recorder.channel_id(configured) if configured.startswith("#") else configured
    notifier = notifier_for(recorder, channel=channel_id)
    opened = build_notification(lifecycle()[0])
    lost = Threads()
    deliver(notifier, lost, opened)  # reached Slack, but pretend the saved ts was lost

    fresh = Threads()
    deliver(notifier, fresh, opened, retry=True)

    [parent] = recorder.channel_messages()
    assert fresh.state.ts == parent.ts
    assert len(recorder.replies(parent.ts)) == 1, "the reply with the same key was found, not posted again"
    assert parent.edits == 0, "its metadata says it was posted for this notification: it shows it already"


def test_a_delivery_retried_after_its_reply_failed_does_not_edit_the_message_it_posted(
    recorder: SlackRecorder,
) -> None:
    # The incident's message posted, its reply refused (a 5xx): the retry edited the message with what it
    # had just been posted with, one chat.update more per incident in an outage that broke off a storm.
    notifier, threads = notifier_for(recorder), Threads()
    opened = build_notification(lifecycle()[0])

    def saved_then_outage(state: ThreadState) -> None:
        threads.save(state)
        recorder.fail_next("chat.postMessage", status=503, error="service_unavailable")

    with pytest.raises(BackendError):
        notifier.deliver(opened, threads.state, retry=False, save=saved_then_outage)
    deliver(notifier, threads, opened, retry=True)

    [parent] = recorder.channel_messages()
    assert [r.event for r in recorder.replies(parent.ts)] == ["opened"]
    assert parent.edits == 0 and recorder.calls_to("chat.update") == []


def test_retry_finds_its_parent_message_under_a_busy_channels_newer_messages(recorder: SlackRecorder) -> None:
    # The lookup read the newest 200 messages only: after a crash or a lost answer, in a channel where more
    # than that were posted meanwhile (other bots, other incidents after an outage), it posted again.
    notifier = notifier_for(recorder, channel="C0123456789")
    opened = build_notification(lifecycle()[0])
    deliver(notifier, Threads(), opened)  # reached Slack; its answer was lost
    chatter = make_client(recorder.token, base_url=recorder.base_url)
    for i in range(250):
        chatter.chat_postMessage(channel="C0123456789", text=f"another bot's message {i}")

    fresh = Threads()
    deliver(notifier, fresh, opened, retry=True)

    parents = [m for m in recorder.channel_messages() if m.metadata]
    assert len(parents) == 1 and fresh.state.ts == parents[0].ts
    history = [c for c in recorder.calls if c.method == "conversations.history"]
    # Only what came after the event is read (from 5 minutes before it, for a clock that runs ahead).
    assert all(float(c.params["oldest"]) >= opened.event_at.timestamp() - 300 for c in history)


def test_retry_finds_its_parent_message_posted_at_the_event_under_thousands_posted_since() -> None:
    # Read newest first from now, 25 pages of 200: a channel where other bots posted 5,200 messages in the
    # hour and a half after the message (serve down meanwhile) had it out of reach, and it was posted again.
    opened = build_notification(lifecycle()[0])
    clock = FakeClock(opened.event_at.timestamp() + 2)  # Slack's, and this machine's
    with SlackRecorder(clock=clock) as recorder:
        notifier = notifier_for(recorder, channel="C0123456789", clock=clock)
        deliver(notifier, Threads(), opened)  # reached Slack; its answer was lost
        for _ in range(5200):
            clock.advance(1.0)
            recorder.post_as_others("C0123456789", 1)

        fresh = Threads()
        deliver(notifier, fresh, opened, retry=True)

        parents = [m for m in recorder.channel_messages() if m.metadata]
        assert len(parents) == 1 and fresh.state.ts == parents[0].ts
        assert len([c for c in recorder.calls if c.method == "conversations.history"]) <= 3


def test_retry_posts_a_reply_that_did_not_reach_slack(recorder: SlackRecorder) -> None:
    notifier, threads = notifier_for(recorder), Threads()
    changes = lifecycle()
    deliver(notifier, threads, build_notification(changes[0]))
    deliver(notifier, threads, build_notification(changes[1]), retry=True)
    [parent] = recorder.channel_messages()
    assert len(recorder.replies(parent.ts)) == 2


def test_a_retried_reply_is_posted_when_the_thread_cannot_be_read(
    recorder: SlackRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    # An app without channels:history (the README asked only for chat:write) gets missing_scope from
    # conversations.replies: the retried reply failed for good, and `outbox retry` failed it again, forever.
    notifier, threads = notifier_for(recorder), Threads()
    changes = lifecycle()
    deliver(notifier, threads, build_notification(changes[0]))
    recorder.fail_next("conversations.replies", status=200, error="missing_scope")
    deliver(notifier, threads, build_notification(changes[1]), retry=True)
    [parent] = recorder.channel_messages()
    assert len(recorder.replies(parent.ts)) == 2
    assert "channels:history" in caplog.text  # what to grant the app to make retries exact again


def test_from_config_needs_a_token_and_defaults_to_the_real_api() -> None:
    with pytest.raises(ConfigError, match=r"slack\.bot_token"):
        SlackNotifier.from_config(SlackConfig())
    notifier = SlackNotifier.from_config(SlackConfig(bot_token=SecretStr("xoxb-real")))
    assert notifier._client.base_url == "https://slack.com/api/"
    assert notifier._client.token == "xoxb-real"
    assert any(isinstance(h, RateLimitErrorRetryHandler) for h in notifier._client.retry_handlers)


def test_token_comes_from_the_yaml_env_reference(tmp_path: Path, recorder: SlackRecorder) -> None:
    config_file = tmp_path / "gpuwarden.yaml"
    config_file.write_text(
        f"slack:\n  bot_token: {{env: SLACK_BOT_TOKEN}}\n  channel: '#ops'\n  base_url: {recorder.base_url}\n"
    )
    config = load_config(config_file, environ={"SLACK_BOT_TOKEN": recorder.token})
    assert "xoxb" not in repr(config.slack)
    notifier = SlackNotifier.from_config(config.slack)
    deliver(notifier, Threads(), build_notification(lifecycle()[0]))
    assert len(recorder.channel_messages("#ops")) == 1
    assert {c.token for c in recorder.calls} == {recorder.token}


def test_retry_reads_every_page_of_a_long_thread(
    recorder: SlackRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(slack_lookups, "REPLIES_PAGE", 2)
    notifier, threads = notifier_for(recorder), Threads()
    changes = lifecycle()
    for c in changes:
        deliver(notifier, threads, build_notification(c))
    deliver(notifier, threads, build_notification(changes[-1]), retry=True)

    [parent] = recorder.channel_messages()
    assert len(recorder.replies(parent.ts)) == 5, "the resolution on the third page was found"
    reads = [c for c in recorder.calls if c.method == "conversations.replies"]
    assert len(reads) == 3


def test_a_retried_reply_reads_only_the_thread_since_its_event_not_a_war_room_before_it() -> None:
    # Every page of the thread was read: 1,200 replies people wrote in the incident's thread hours before
    # (a war room) cost 7 calls at each retried reply, holding every other incident's messages meanwhile.
    changes = lifecycle()
    opened, escalated = (build_notification(c) for c in changes[:2])
    clock = FakeClock(opened.event_at.timestamp())
    with SlackRecorder(clock=clock) as recorder:
        notifier, threads = notifier_for(recorder, channel="C0123456789", clock=clock), Threads()
        deliver(notifier, threads, opened)
        assert threads.state.ts is not None
        recorder.post_as_others("C0123456789", 1200, thread_ts=threads.state.ts)
        clock.advance(escalated.event_at.timestamp() + 7200 - clock.time())  # two hours after the event
        late = escalated.model_copy(update={"event_at": clock.now()})
        deliver(notifier, threads, late)  # reached Slack; its answer was lost
        deliver(notifier, threads, late, retry=True)

        mine = [r for r in recorder.replies(threads.state.ts) if r.metadata]
        assert [r.event for r in mine] == ["opened", "priority_changed"]
        assert len([c for c in recorder.calls if c.method == "conversations.replies"]) == 1


def test_a_lookup_refused_for_its_channel_names_that_channel(
    recorder: SlackRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    # The app may post to a public channel it is not in (chat:write.public) but not read it: the retry's
    # lookup is refused not_in_channel, and the log said to invite the app to slack.channel, where it was.
    client = make_client(recorder.token, base_url=recorder.base_url, rate_limit_retries=0)
    notifier = SlackNotifier(client, "C0DEFAULT00", channels_by_priority={"P0": "C0ONCALL00"})
    recorder.fail_next("conversations.history", status=200, error="not_in_channel")
    deliver(notifier, Threads(), build_notification(lifecycle()[0]), retry=True)
    assert "the app is not in channel C0ONCALL00" in caplog.text
    assert "not in slack.channel" not in caplog.text
