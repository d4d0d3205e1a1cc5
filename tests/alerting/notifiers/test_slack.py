"""SlackNotifier against the local Slack API recorder (real slack-sdk calls over HTTP): the messages it
posts, edits and replies, charts, buttons, what reaches the channel, silenced incidents and messages Slack
refuses."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
from pydantic import SecretStr

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
from gpuwarden.config import SlackConfig
from gpuwarden.errors import BackendError
from gpuwarden.model import Priority, root_key
from tests.alerting.notifiers.incidents import (
    change,
    gpu_temperature,
    hostile_notification,
    huge_notification,
    lifecycle,
    make_incident,
    reassessed,
)
from tests.alerting.notifiers.slack_threads import Threads, deliver, notifier_for


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
    # Approve names the root cause its dialog asks about too: a press approves that one only.
    assert [b["value"].partition("|")[0] for b in buttons] == ["inc-r07"] * 3
    assert buttons[1]["value"] == f"inc-r07|{root_key('rack_down', 'rack/r07')}"
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


def test_a_change_that_leaves_the_message_as_it_was_sends_no_edit_until_a_restart(
    recorder: SlackRecorder,
) -> None:
    # The crash fuzz counted 13-14 `chat.update` calls per 5 seeds, with no crash, that sent exactly the
    # content of the edit before them: a change at the same moment that changes nothing on screen.
    notifier, threads = notifier_for(recorder), Threads()
    deliver(notifier, threads, build_notification(lifecycle()[0]))
    deliver(notifier, threads, build_notification(reassessed("drain node n0701", 5)))
    assert len(recorder.calls_to("chat.update")) == 1
    same = build_notification(replace(reassessed("drain node n0701", 5), repeat=1))
    assert notifier.deliver(same, threads.state, retry=False, save=threads.save)  # delivered, nothing sent
    assert len(recorder.calls_to("chat.update")) == 1
    deliver(notifier, threads, build_notification(reassessed("reboot node n0701", 5)))
    assert len(recorder.calls_to("chat.update")) == 2
    # Kept in memory only: a restarted serve edits once more with the same content (Slack shows no change).
    again = build_notification(replace(reassessed("reboot node n0701", 5), repeat=1))
    deliver(notifier_for(recorder), threads, again)
    assert len(recorder.calls_to("chat.update")) == 3
    [parent] = recorder.channel_messages()
    assert "reboot node n0701" in str(parent.attachments)


def test_after_a_failed_edit_the_next_one_is_sent_even_if_it_shows_what_the_one_before_did(
    recorder: SlackRecorder,
) -> None:
    # A failed edit (a call past its deadline) may have reached Slack: the message may show it now.
    notifier, threads = notifier_for(recorder), Threads()
    deliver(notifier, threads, build_notification(lifecycle()[0]))
    deliver(notifier, threads, build_notification(reassessed("drain node n0701", 5)))
    recorder.fail_next("chat.update", status=200, error="internal_error")
    with pytest.raises(BackendError):
        deliver(notifier, threads, build_notification(reassessed("reboot node n0701", 5)))
    deliver(notifier, threads, build_notification(replace(reassessed("drain node n0701", 5), repeat=1)))
    assert len(recorder.calls_to("chat.update")) == 2
    [parent] = recorder.channel_messages()
    assert "drain node n0701" in str(parent.attachments)
