"""SlackNotifier against the local Slack API recorder: real slack-sdk calls over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from alerting.notifiers import slack as slack_module
from alerting.notifiers.base import ChartSeries, Notification, ThreadState, build_notification
from alerting.notifiers.blocks import (
    ACTION_ACKNOWLEDGE,
    ACTION_APPROVE,
    ACTION_SILENCE_1H,
    PRIORITY_COLOURS,
    RESOLVED_COLOUR,
    minimal_message,
)
from alerting.notifiers.recorder import SlackRecorder
from alerting.notifiers.slack import SlackNotifier, make_client
from alerting.subscriptions import ChangeKind
from gpuwarden.config import SlackConfig, load_config
from gpuwarden.errors import BackendError, ConfigError
from gpuwarden.model import Priority
from tests.alerting.notifiers.incidents import (
    change,
    gpu_temperature,
    hostile_notification,
    huge_notification,
    lifecycle,
    make_incident,
)
from tests.http_stub import FixedAnswer, LocalServer, QuietHandler


@pytest.fixture
def recorder() -> Iterator[SlackRecorder]:
    with SlackRecorder() as rec:
        yield rec


def notifier_for(
    recorder: SlackRecorder,
    *,
    channel: str = "#gpu-incidents",
    retries: int = 3,
    deadline: float = 30.0,
    **options: bool,
) -> SlackNotifier:
    client = make_client(recorder.token, base_url=recorder.base_url, rate_limit_retries=retries)
    return SlackNotifier(client, channel, call_deadline_seconds=deadline, **options)


class Threads:
    """Keeps thread state like the outbox does, and remembers every save."""

    def __init__(self) -> None:
        self.state = ThreadState()
        self.saves: list[ThreadState] = []

    def save(self, state: ThreadState) -> None:
        self.state = state
        self.saves.append(state)


def deliver(notifier: SlackNotifier, threads: Threads, n: Notification, *, retry: bool = False) -> None:
    notifier.deliver(n, threads.state, retry=retry, save=threads.save)


def test_first_notification_posts_one_block_kit_message_with_priority_colour_and_buttons(
    recorder: SlackRecorder,
) -> None:
    threads = Threads()
    deliver(notifier_for(recorder), threads, build_notification(lifecycle()[0]))

    [parent] = recorder.channel_messages("#gpu-incidents")
    [attachment] = parent.attachments
    assert attachment["color"] == PRIORITY_COLOURS["P0"]
    header = attachment["blocks"][0]
    assert header["type"] == "header"
    assert header["text"]["text"].startswith(":rotating_light: P0 rack r07 lost power")
    body = str(attachment["blocks"])
    assert "training job llm-70b stopped" in body
    assert "rack down on `rack/r07`" in body
    assert "`training_job/research/llm-70b`" in body
    assert "Runbook" not in body  # no slack.runbook_base_url, no runbook to point at
    buttons = next(b for b in attachment["blocks"] if b["type"] == "actions")["elements"]
    assert [b["action_id"] for b in buttons] == [ACTION_ACKNOWLEDGE, ACTION_APPROVE, ACTION_SILENCE_1H]
    assert {b["value"] for b in buttons} == {"inc-r07"}
    assert threads.state == ThreadState(parent.channel, parent.ts)
    [reply] = recorder.replies(parent.ts)
    assert "opened with 412 alerts" in reply.text


def test_later_changes_update_the_message_in_place_and_reply_in_its_thread(recorder: SlackRecorder) -> None:
    notifier, threads = notifier_for(recorder), Threads()
    for c in lifecycle():
        deliver(notifier, threads, build_notification(c))

    [parent] = recorder.channel_messages()
    assert len(recorder.calls_to("chat.update")) == 4
    assert parent.edits == 4
    [attachment] = parent.attachments
    assert attachment["color"] == RESOLVED_COLOUR
    assert attachment["blocks"][0]["text"]["text"].startswith(":white_check_mark: P1")
    assert all(b["type"] != "actions" for b in attachment["blocks"])
    assert "drain_node node/n0701: succeeded (drained)" in str(attachment["blocks"])
    replies = recorder.replies(parent.ts)
    assert [r.text for r in replies] == [  # each says what happened once
        "opened with 412 alerts",
        "priority changed: P0 -&gt; P1: spare capacity found",  # escaped, as Slack reads text
        "acknowledged by slack:alice",
        "mitigating: drain_node n0701 succeeded",
        "all alerts resolved for 10 min",
    ]
    assert [r.reply_broadcast for r in replies] == [False] * 5  # a resolution edits the message in place
    assert "Resolved* after 1 h 35 min" in replies[-1].blocks[0]["text"]["text"]


def test_chart_is_uploaded_once_into_the_thread_with_files_upload_v2(recorder: SlackRecorder) -> None:
    notifier, threads = notifier_for(recorder), Threads()
    incident = make_incident()
    opened = build_notification(change(incident, ChangeKind.OPENED, 0, "opened"), series=[gpu_temperature()])
    again = build_notification(
        change(incident, ChangeKind.UPDATED, 1, "2 more alerts"), series=[gpu_temperature()]
    )
    deliver(notifier, threads, opened)
    deliver(notifier, threads, again)

    methods = [c.method for c in recorder.calls]
    assert methods.count("files.getUploadURLExternal") == 1
    assert methods.count("upload") == 1
    assert methods.count("files.completeUploadExternal") == 1
    [uploaded] = recorder.files()
    assert uploaded.data.startswith(b"\x89PNG\r\n\x1a\n")
    assert uploaded.filename == "inc-r07.png"
    assert uploaded.thread_ts == threads.state.ts
    assert threads.state.chart_posted


def test_rate_limited_call_is_retried_after_retry_after(recorder: SlackRecorder) -> None:
    recorder.fail_next("chat.postMessage", status=429, retry_after=0)
    deliver(notifier_for(recorder), Threads(), build_notification(lifecycle()[0]))

    posts = [c for c in recorder.calls if c.method == "chat.postMessage"]
    assert [c.status for c in posts] == [429, 200, 200]
    assert len(recorder.channel_messages()) == 1


def test_rate_limit_beyond_the_retries_is_a_retryable_backend_error(recorder: SlackRecorder) -> None:
    recorder.fail_next("chat.postMessage", status=429, retry_after=0)
    with pytest.raises(BackendError) as caught:
        deliver(notifier_for(recorder, retries=0), Threads(), build_notification(lifecycle()[0]))
    assert caught.value.retryable
    assert caught.value.backend == "slack"
    assert recorder.channel_messages() == []


def test_a_long_retry_after_is_left_to_the_outbox_not_slept_in_the_client(recorder: SlackRecorder) -> None:
    recorder.fail_next("chat.postMessage", status=429, retry_after=3600)
    with pytest.raises(BackendError) as caught:  # at once: the one dispatcher thread is not held an hour
        deliver(notifier_for(recorder), Threads(), build_notification(lifecycle()[0]))
    assert caught.value.retryable and caught.value.retry_after == 3600  # the outbox waits that long
    assert [c.status for c in recorder.calls if c.method == "chat.postMessage"] == [429]


@pytest.mark.parametrize(
    ("header", "wait"),
    [("1.5", 1.5), ("-3", 1.0), ("Wed, 21 Oct 2015 07:28:00 GMT", 1.0), ("soon", 1.0)],
    ids=["fraction", "negative", "http-date", "garbage"],
)
def test_a_retry_after_the_client_cannot_sleep_on_is_the_outboxs_rate_limit(
    recorder: SlackRecorder, header: str, wait: float
) -> None:
    # slack-sdk's 429 retry reads the header with int() and sleeps it: a ValueError escaped the client, was
    # logged as a notifier crash (gpuwarden_outbox_errors_total) and the message backed off 2 s, unpaused.
    recorder.fail_next("chat.postMessage", status=429, retry_after=header)
    with pytest.raises(BackendError) as caught:
        deliver(notifier_for(recorder), Threads(), build_notification(lifecycle()[0]))
    assert caught.value.retryable and caught.value.retry_after == wait
    assert [c.status for c in recorder.calls if c.method == "chat.postMessage"] == [429]


def test_a_deleted_incident_message_is_posted_again_with_the_event(recorder: SlackRecorder) -> None:
    notifier, threads = notifier_for(recorder), Threads()
    first, second, *_ = lifecycle()
    deliver(notifier, threads, build_notification(first))
    old_ts = threads.state.ts
    recorder.fail_next("chat.update", status=200, error="message_not_found")  # someone deleted it
    deliver(notifier, threads, build_notification(second))
    assert threads.state.ts != old_ts
    new_parent = next(m for m in recorder.channel_messages() if m.ts == threads.state.ts)
    assert [r.text for r in recorder.replies(new_parent.ts)] == [
        "priority changed: P0 -&gt; P1: spare capacity found"
    ]


def test_a_chart_that_cannot_be_uploaded_does_not_hold_back_the_event(recorder: SlackRecorder) -> None:
    notifier, threads = notifier_for(recorder), Threads()
    recorder.fail_next("files.getUploadURLExternal", status=200, error="missing_scope")
    opened = build_notification(
        change(make_incident(), ChangeKind.OPENED, 0, "opened"), series=[gpu_temperature()]
    )
    deliver(notifier, threads, opened)
    [parent] = recorder.channel_messages()
    assert [r.text for r in recorder.replies(parent.ts)] == ["opened"]
    assert recorder.files() == [] and threads.state.chart_posted  # not tried again with every event


def test_an_upload_url_answering_500_is_logged_as_an_answer_not_as_slack_unreachable(
    recorder: SlackRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    # The upload step raises urllib's HTTPError, an OSError: it said "cannot reach Slack: HTTP Error 500".
    recorder.fail_next("upload", status=500)
    opened = build_notification(
        change(make_incident(), ChangeKind.OPENED, 0, "opened"), series=[gpu_temperature()]
    )
    deliver(notifier_for(recorder), Threads(), opened)
    assert "chart not attached" in caplog.text and "answered HTTP 500" in caplog.text
    assert "cannot reach Slack" not in caplog.text


@pytest.mark.parametrize(
    ("status", "error", "retryable"),
    [(500, "internal_error", True), (503, "service_unavailable", True), (200, "invalid_auth", False)],
    ids=["500", "503", "invalid-auth"],
)
def test_slack_errors_become_backend_errors_that_say_whether_to_retry(
    recorder: SlackRecorder, status: int, error: str, retryable: bool
) -> None:
    recorder.fail_next("chat.postMessage", status=status, error=error)
    with pytest.raises(BackendError) as caught:
        deliver(notifier_for(recorder), Threads(), build_notification(lifecycle()[0]))
    assert caught.value.retryable is retryable
    assert error in str(caught.value) or str(status) in str(caught.value)


def test_wrong_token_is_not_retryable(recorder: SlackRecorder) -> None:
    notifier = SlackNotifier(make_client("xoxb-wrong", base_url=recorder.base_url), "#gpu-incidents")
    with pytest.raises(BackendError, match="invalid_auth") as caught:
        deliver(notifier, Threads(), build_notification(lifecycle()[0]))
    assert not caught.value.retryable


def test_unreachable_slack_is_retryable(recorder: SlackRecorder) -> None:
    notifier = notifier_for(recorder)
    recorder.stop()
    with pytest.raises(BackendError, match="cannot reach Slack") as caught:
        deliver(notifier, Threads(), build_notification(lifecycle()[0]))
    assert caught.value.retryable


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
    assert parent.edits == 1


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
    # Only what came after the event is read (its time, less an hour for a clock that runs ahead).
    assert all(float(c.params["oldest"]) == opened.event_at.timestamp() - 3600 for c in history)


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


@pytest.mark.parametrize(
    ("secret", "buttons"), [(None, False), ("s3cret", True)], ids=["no-secret", "secret"]
)
def test_buttons_appear_only_when_serve_can_hear_them_else_the_message_says_how_to_acknowledge(
    recorder: SlackRecorder, secret: str | None, buttons: bool
) -> None:
    # Without slack.signing_secret serve mounts no /slack/interactions: a pressed Acknowledge failed in
    # Slack, and the message said nothing of another way to acknowledge.
    config = SlackConfig(
        bot_token=SecretStr(recorder.token),
        base_url=recorder.base_url,
        signing_secret=SecretStr(secret) if secret else None,
    )
    notifier = SlackNotifier.from_config(config)
    deliver(notifier, Threads(), build_notification(lifecycle()[0]))
    [parent] = recorder.channel_messages()
    blocks = parent.attachments[0]["blocks"]
    assert any(b["type"] == "actions" for b in blocks) is buttons
    [context] = [b for b in blocks if b["type"] == "context"]
    hint = "acknowledge: `gpuwarden incidents ack inc-r07`"
    assert (hint in context["elements"][0]["text"]) is not buttons
    minimal = minimal_message(build_notification(lifecycle()[0]), interactive=buttons).attachments[0][
        "blocks"
    ]
    assert any(b["type"] == "actions" for b in minimal) is buttons
    assert (hint in str(minimal)) is not buttons


def test_retry_reads_every_page_of_a_long_thread(
    recorder: SlackRecorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(slack_module, "REPLIES_PAGE", 2)
    notifier, threads = notifier_for(recorder), Threads()
    changes = lifecycle()
    for c in changes:
        deliver(notifier, threads, build_notification(c))
    deliver(notifier, threads, build_notification(changes[-1]), retry=True)

    [parent] = recorder.channel_messages()
    assert len(recorder.replies(parent.ts)) == 5, "the resolution on the third page was found"
    reads = [c for c in recorder.calls if c.method == "conversations.replies"]
    assert len(reads) == 3


class CountingSource:
    """A series source that counts questions and can be broken."""

    def __init__(self, *, broken: bool = False) -> None:
        self.asked: list[str] = []
        self.broken = broken

    def series_for(self, notification: Notification) -> list[ChartSeries]:
        self.asked.append(notification.change.value)
        if self.broken:
            raise RuntimeError("prometheus exploded")
        return [gpu_temperature()]


def test_series_source_is_asked_at_delivery_only_when_the_incident_opens(recorder: SlackRecorder) -> None:
    source = CountingSource()
    client = make_client(recorder.token, base_url=recorder.base_url)
    notifier, threads = SlackNotifier(client, "#gpu-incidents", series_source=source), Threads()
    for c in lifecycle():
        deliver(notifier, threads, build_notification(c))
    assert source.asked == ["opened"]
    assert len(recorder.files()) == 1
    assert threads.state.chart_posted


def test_a_broken_series_source_costs_the_chart_not_the_message(recorder: SlackRecorder) -> None:
    client = make_client(recorder.token, base_url=recorder.base_url)
    notifier, threads = (
        SlackNotifier(client, "#gpu-incidents", series_source=CountingSource(broken=True)),
        Threads(),
    )
    deliver(notifier, threads, build_notification(lifecycle()[0]))
    assert len(recorder.channel_messages()) == 1
    assert recorder.files() == []
    assert not threads.state.chart_posted


def test_a_reopening_and_an_escalation_reach_the_channel_not_only_the_thread(recorder: SlackRecorder) -> None:
    notifier, threads = notifier_for(recorder), Threads()
    changes = [change(make_incident(priority=Priority.P2), ChangeKind.OPENED, 0, "opened")]
    escalated = make_incident(priority=Priority.P0)
    changes.append(
        change(escalated, ChangeKind.PRIORITY_CHANGED, 2, "P2 -> P0", "priority", {"from": "P2", "to": "P0"})
    )
    lowered = make_incident(priority=Priority.P1)
    changes.append(
        change(lowered, ChangeKind.PRIORITY_CHANGED, 4, "P0 -> P1", "priority", {"from": "P0", "to": "P1"})
    )
    changes.append(
        change(make_incident(priority=Priority.P1), ChangeKind.REOPENED, 900, "GPULost fired again")
    )
    for c in changes:
        deliver(notifier, threads, build_notification(c))
    [parent] = recorder.channel_messages()
    assert [r.reply_broadcast for r in recorder.replies(parent.ts)] == [False, True, False, True]


def test_a_reopening_held_by_a_flap_is_replied_in_the_thread_without_reaching_the_channel(
    recorder: SlackRecorder,
) -> None:
    notifier, threads = notifier_for(recorder), Threads()
    held = {"fingerprint": "f1", "flapping": True}
    changes = [
        change(make_incident(), ChangeKind.OPENED, 0, "opened"),
        change(
            make_incident(),
            ChangeKind.REOPENED,
            5,
            "reopened: X fired again (flapping: held, no page)",
            data=held,
        ),
    ]
    for c in changes:
        deliver(notifier, threads, build_notification(c))
    [parent] = recorder.channel_messages()
    assert [r.reply_broadcast for r in recorder.replies(parent.ts)] == [False, False]
    assert "flapping: held" in recorder.replies(parent.ts)[-1].text


def test_resolutions_reach_the_channel_only_when_configured(recorder: SlackRecorder) -> None:
    notifier, threads = notifier_for(recorder, broadcast_resolutions=True), Threads()
    for c in lifecycle():
        deliver(notifier, threads, build_notification(c))
    [parent] = recorder.channel_messages()
    assert [r.reply_broadcast for r in recorder.replies(parent.ts)] == [False, False, False, False, True]
    assert [m.text for m in recorder.visible_in_channel()][1:] == ["all alerts resolved for 10 min"]


def test_the_resolution_of_a_reopening_that_paged_nobody_is_not_broadcast_either(
    recorder: SlackRecorder,
) -> None:
    # With broadcast_resolutions, each cycle's resolution of a cycling incident reached the channel while
    # its reopening, held, was a thread reply: the channel heard "resolved" of what it never heard reopen.
    # Once the held opening escalates (that pages), or reminds, its resolution is broadcast again.
    notifier, threads = notifier_for(recorder, broadcast_resolutions=True), Threads()
    inc = make_incident(priority=Priority.P2)
    cycling = {"fingerprint": "f1", "flapping": False, "cycling": 2}
    reminder = {**cycling, "reminder": 14472.0}
    steps = [
        (ChangeKind.OPENED, "opened", None, None),
        (ChangeKind.RESOLVED, "resolved", None, None),
        (ChangeKind.REOPENED, "reopened: X fired again", None, {"fingerprint": "f1", "flapping": False}),
        (ChangeKind.RESOLVED, "resolved", None, None),
        (ChangeKind.REOPENED, "reopened: X fired again (cycling: ...)", None, cycling),
        (ChangeKind.RESOLVED, "resolved", None, None),
        (ChangeKind.REOPENED, "reopened: X fired again (cycling: ...)", None, cycling),
        (ChangeKind.PRIORITY_CHANGED, "priority P0", "priority", {"from": "P2", "to": "P0"}),
        (ChangeKind.RESOLVED, "resolved", None, None),
        (ChangeKind.REOPENED, "reopened: X fired again (cycling: ...)", None, cycling),
        (ChangeKind.RESOLVED, "resolved", None, None),
        # Still cycling 4 h after the last page: a reminder pages, as a reopening does, and so does its end.
        (ChangeKind.REOPENED, "reopened: X fired again (cycling: ...; reminding)", None, reminder),
        (ChangeKind.RESOLVED, "resolved", None, None),
    ]
    for minute, (kind, message, event_kind, data) in enumerate(steps):
        deliver(notifier, threads, build_notification(change(inc, kind, minute, message, event_kind, data)))
    [parent] = recorder.channel_messages()
    broadcast = [r.reply_broadcast for r in recorder.replies(parent.ts)]
    assert broadcast == [False, True, True, True, False, False, False, True, True, False, False, True, True]


def _silenced(n: Notification) -> Notification:
    return n.model_copy(update={"silenced_until": n.event_at + timedelta(hours=1)})


def test_a_silenced_incident_is_only_edited_in_place_no_reply_no_broadcast_no_chart(
    recorder: SlackRecorder,
) -> None:
    notifier, threads = notifier_for(recorder), Threads()
    deliver(notifier, threads, build_notification(lifecycle()[0]))
    escalated = change(
        make_incident(priority=Priority.P0), ChangeKind.PRIORITY_CHANGED, 2, "P2 -> P0", "priority"
    )
    reopened = change(make_incident(), ChangeKind.REOPENED, 9, "GPULost fired again")
    for c in (escalated, reopened):
        deliver(notifier, threads, _silenced(build_notification(c, series=[gpu_temperature()])))
    [parent] = recorder.channel_messages()
    assert parent.edits == 2
    assert "silenced until" in str(parent.attachments)
    assert [r.text for r in recorder.replies(parent.ts)] == ["opened with 412 alerts"]
    assert recorder.visible_in_channel() == [parent] and recorder.files() == []


def test_a_silenced_incident_without_a_message_yet_gets_none(recorder: SlackRecorder) -> None:
    deliver(notifier_for(recorder), Threads(), _silenced(build_notification(lifecycle()[0])))
    assert recorder.calls == []


def test_a_deleted_message_of_a_silenced_incident_is_not_posted_again_until_the_silence_ends(
    recorder: SlackRecorder,
) -> None:
    notifier, threads = notifier_for(recorder), Threads()
    first, second, third, *_ = lifecycle()
    deliver(notifier, threads, build_notification(first))
    recorder.fail_next("chat.update", status=200, error="message_not_found")
    deliver(notifier, threads, _silenced(build_notification(second)))
    assert len(recorder.channel_messages()) == 1
    recorder.fail_next("chat.update", status=200, error="message_not_found")
    deliver(notifier, threads, build_notification(third))
    [_, again] = recorder.channel_messages()
    assert [r.text for r in recorder.replies(again.ts)] == ["acknowledged by slack:alice"]


def test_names_that_spell_mentions_notify_nobody(recorder: SlackRecorder) -> None:
    notifier, threads = notifier_for(recorder), Threads()
    hostile = hostile_notification()
    opened = hostile.model_copy(update={"change": ChangeKind.OPENED, "key": "opened"})
    odd = gpu_temperature().model_copy(update={"name": 'DCGM_FI_DEV_GPU_TEMP{job="<!channel>"}'})
    deliver(notifier, threads, opened.model_copy(update={"series": (odd,)}))
    deliver(notifier, threads, hostile)
    assert len(recorder.channel_messages()) == 1 and len(recorder.files()) == 1
    assert len(recorder.replies(threads.state.ts or "")) == 3  # the chart, the opening, the note
    assert recorder.mentions() == []


def test_a_huge_incident_is_posted_whole_within_slacks_limits(recorder: SlackRecorder) -> None:
    notifier, threads = notifier_for(recorder), Threads()
    deliver(notifier, threads, huge_notification())
    [parent] = recorder.channel_messages()
    assert [b.get("block_id") for b in parent.attachments[0]["blocks"]][:3] == ["title", "summary", "impact"]
    [reply] = recorder.replies(parent.ts)
    assert reply.text.startswith("note: &amp; &lt;x&gt; &amp;") and len(reply.text) <= 4000


def test_a_message_slack_refuses_is_sent_minimal_and_the_refusal_logged(
    recorder: SlackRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    notifier, threads = notifier_for(recorder), Threads()
    why = "attachments[0].blocks[5].elements[1].confirm.text.text: longer than 300 characters"
    opened, lowered, *_ = lifecycle()
    recorder.fail_next("chat.postMessage", status=200, error="invalid_blocks", errors=(why,))
    with caplog.at_level("WARNING", logger="alerting.notifiers.slack"):
        deliver(notifier, threads, build_notification(opened))
    [parent] = recorder.channel_messages()
    assert [b.get("block_id") for b in parent.attachments[0]["blocks"]] == ["minimal", "incident_actions"]
    assert "P0 urgent* rack r07 lost power" in str(parent.attachments)
    assert why in caplog.text and "invalid_blocks" in caplog.text
    assert len(recorder.replies(parent.ts)) == 1  # the event went on: no error left for the outbox to retry
    recorder.fail_next("chat.update", status=200, error="msg_too_long")
    recorder.fail_next("chat.postMessage", status=200, error="invalid_blocks")  # the reply's blocks too
    deliver(notifier, threads, build_notification(lowered))
    assert parent.attachments[0]["blocks"][0]["block_id"] == "minimal" and "P1 severe" in str(
        parent.attachments
    )
    assert recorder.replies(parent.ts)[-1].text == "P0 -&gt; P1: spare capacity found"
    deliver(notifier, threads, build_notification(lifecycle()[2]))  # accepted again: the full message
    assert parent.attachments[0]["blocks"][0]["block_id"] == "title"


def test_a_refused_minimal_message_fails_the_delivery_for_the_outbox_to_retry(
    recorder: SlackRecorder,
) -> None:
    recorder.fail_next("chat.postMessage", status=200, error="invalid_blocks")
    recorder.fail_next("chat.postMessage", status=200, error="invalid_blocks")  # the minimal one too
    with pytest.raises(BackendError, match="invalid_blocks"):
        deliver(notifier_for(recorder), Threads(), build_notification(lifecycle()[0]))


# An answer trickled under the client's read timeout (a slow proxy, or Slack itself): the deadline of these
# tests is far shorter than the trickle, so the call is seen to end while its answer still trickles.
DEADLINE = 0.5  # the call to abandon: late however fast the machine, its answer trickles for TRICKLE
TRICKLE = 10.0
IN_TIME = 30.0  # the calls that must answer: an upper bound, never waited out


def call_deadline(notifier: SlackNotifier, seconds: float) -> None:
    """Set ``notifier``'s whole-call deadline (real time). DEADLINE for every call failed on a stalled test
    process: the retry's history lookup after the trickle ended was abandoned at 0.5 s."""
    notifier._deadline.seconds = seconds


@pytest.mark.parametrize(
    ("method", "retry"),
    [
        ("chat.postMessage", False),
        ("chat.update", False),
        ("conversations.history", True),
        ("conversations.replies", True),
        ("upload", False),
    ],
    ids=["post", "update", "history-lookup", "thread-lookup", "chart-upload"],
)
def test_an_answer_trickled_under_the_read_timeout_fails_the_call_at_its_deadline(
    recorder: SlackRecorder, method: str, retry: bool
) -> None:
    # slack.timeout_seconds bounds each read, not the call: an answer trickled a byte at a time under it
    # held the Slack notifier's thread for as long as it went on (40 s under a 2 s timeout).
    notifier, threads = notifier_for(recorder, channel="C0123456789", deadline=DEADLINE), Threads()
    incident = make_incident()
    series = [gpu_temperature()] if method == "upload" else []
    opened = build_notification(change(incident, ChangeKind.OPENED, 0, "opened"), series=series)
    later = build_notification(change(incident, ChangeKind.UPDATED, 1, "2 more alerts"))
    if method in ("chat.update", "conversations.replies"):
        call_deadline(notifier, IN_TIME)
        deliver(notifier, threads, opened)
        call_deadline(notifier, DEADLINE)
    recorder.trickle_next(method, seconds=TRICKLE)
    with pytest.raises(BackendError, match="abandoned") as caught:
        deliver(notifier, threads, later if threads.state.ts else opened, retry=retry)
    assert caught.value.retryable
    # Its answer still trickles (for TRICKLE, from when the call reached the recorder: on a stalled test
    # process that can come after the call was abandoned, which read 0 here).
    assert recorder.wait_trickling() and recorder.trickling() == 1, "the call ended with its answer"


@pytest.mark.parametrize("which", ["parent", "reply"])
def test_a_post_abandoned_at_its_deadline_that_reached_slack_is_not_posted_again(
    recorder: SlackRecorder, which: str
) -> None:
    notifier, threads = notifier_for(recorder, channel="C0123456789", deadline=DEADLINE), Threads()
    changes = [build_notification(c) for c in lifecycle()[:2]]
    if which == "reply":
        call_deadline(notifier, IN_TIME)
        deliver(notifier, threads, changes[0])
        call_deadline(notifier, DEADLINE)
    n = changes[1] if which == "reply" else changes[0]
    recorder.trickle_next("chat.postMessage", seconds=TRICKLE)  # Slack posted it; its answer trickles
    with pytest.raises(BackendError, match="abandoned"):
        deliver(notifier, threads, n)
    # The retry is not made while the abandoned post may still land: it would not find it, and post again.
    with pytest.raises(BackendError, match="still ran"):
        deliver(notifier, threads, n, retry=True)
    recorder.end_trickles()
    call_deadline(notifier, IN_TIME)  # the retry waits for the abandoned post to end, then looks it up
    deliver(notifier, threads, n, retry=True)

    [parent] = recorder.channel_messages()
    assert threads.state.ts == parent.ts
    told = changes[: 1 + (which == "reply")]
    assert [r.event for r in recorder.replies(parent.ts)] == [c.event_kind for c in told]


def test_a_retry_after_longer_than_the_calls_time_left_is_the_outboxs_rate_limit(
    recorder: SlackRecorder,
) -> None:
    # slack-sdk slept a 429's Retry-After inside the call: past the call's deadline it was abandoned as a
    # timeout, not paused as a rate limit, and went on to post unwaited.
    # A 5 s deadline, not 0.5 s: the 429 itself must come within it on a loaded machine; Retry-After is
    # longer still, and is not waited (the unfixed notifier slept it and was abandoned at the deadline).
    notifier = notifier_for(recorder, deadline=5.0)
    recorder.fail_next("chat.postMessage", status=429, retry_after=10)
    with pytest.raises(BackendError) as caught:
        deliver(notifier, Threads(), build_notification(lifecycle()[0]))
    assert caught.value.retry_after == 10.0
    assert [c.status for c in recorder.calls] == [429]


def test_the_ticks_reminder_of_an_incident_still_firing_is_a_broadcast_thread_reply(
    recorder: SlackRecorder,
) -> None:
    # A P0 nobody acknowledged at 23:00, still firing at 03:00: the reminder reaches the channel as a paged
    # reopening does; another update of it (a note) stays in the thread.
    notifier, threads = notifier_for(recorder), Threads()
    inc = make_incident(priority=Priority.P0)
    reminder = "still firing 4h after the last page, not acknowledged: reminding"
    steps = [
        (ChangeKind.OPENED, "opened", None, None),
        (ChangeKind.UPDATED, "note", "note", {"by": "bob"}),
        (ChangeKind.UPDATED, reminder, "reminder", {"reminder": 14400.0}),
    ]
    for minute, (kind, message, event_kind, data) in enumerate(steps):
        deliver(notifier, threads, build_notification(change(inc, kind, minute, message, event_kind, data)))
    [parent] = recorder.channel_messages()
    assert [(r.text, r.reply_broadcast) for r in recorder.replies(parent.ts)][1:] == [
        ("note (by bob)", False),
        (f"reminder: {reminder}", True),
    ]


class _Redirecting(LocalServer):
    """A Slack API base URL that answers every call with ``status`` to ``location``."""

    def __init__(self, status: int, location: str) -> None:
        class Handler(QuietHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self.send_response(status)
                self.send_header("Location", location)
                self.send_header("Content-Length", "0")
                self.end_headers()

        super().__init__(Handler)


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_refused_without_sending_the_bot_token_to_where_it_points(status: int) -> None:
    """urllib followed a 301, 302 or 303 from the Slack base URL with the ``Authorization: Bearer xoxb-...``
    header, to any host, and took that host's "ok" as the message posted; the webhook notifier follows no
    redirect either."""
    elsewhere = FixedAnswer(200, b'{"ok": true, "channel": "C0123456789", "ts": "1700000000.000100"}')
    redirecting = _Redirecting(status, f"{elsewhere.url}/api/chat.postMessage")
    try:
        client = make_client("xoxb-S3cret", base_url=f"{redirecting.url}/api/")
        with pytest.raises(BackendError, match=f"HTTP {status}") as caught:
            deliver(SlackNotifier(client, "C0123456789"), Threads(), build_notification(lifecycle()[0]))
    finally:
        redirecting.close()
        elsewhere.close()
    assert elsewhere.authorizations == []
    assert f"a redirect to {elsewhere.url}/********** (not followed" in str(caught.value)
    assert not caught.value.retryable
