"""Slack refusing an incident's channel, through the outbox on the local stand-in: an incident's first
message refused (the app not in the channel, the channel archived) holds the incident, none failed, until it
is fixed or the channel map sends it elsewhere; a channel that takes no thread replies gets each change as a
message of the channel; a token without chat:write holds every Slack message, one without channels:history
only warns."""

from __future__ import annotations

import logging
from dataclasses import replace

import pytest
from sqlalchemy import Engine

from alerting.notifiers.base import build_notification
from alerting.notifiers.recorder import SlackRecorder
from alerting.notifiers.slack import SlackNotifier, make_client
from alerting.outbox import Outbox
from alerting.outbox_refusals import BLOCK_RETRY_SECONDS
from alerting.outbox_tables import PENDING, SENT
from alerting.subscriptions import ChangeKind
from gpuwarden.clock import FakeClock
from gpuwarden.errors import BackendError
from gpuwarden.model import Priority
from tests.alerting.notifiers.incidents import change, gpu_temperature, lifecycle, make_incident
from tests.alerting.notifiers.slack_threads import Threads, deliver
from tests.alerting.outbox_deliveries import REPLY_ORDER, Crash, CrashAfterSend, reply_kinds

CHANNEL, ONCALL, OTHER = "C0INCIDENT1", "C0ONCALL001", "C0OTHER0001"


def _slack(recorder: SlackRecorder, clock: FakeClock, **routes: str) -> SlackNotifier:
    client = make_client(recorder.token, base_url=recorder.base_url, rate_limit_retries=0)
    return SlackNotifier(client, CHANNEL, clock=clock, channels_by_priority=routes)


def _shut(recorder: SlackRecorder, how: str, *, shut: bool = True) -> None:
    if how == "left":
        recorder.remove_app(CHANNEL, removed=shut)
    elif how == "thread_only":
        recorder.threads_only(CHANNEL, only=shut)
    else:
        recorder.archive(CHANNEL, archived=shut)


CANNOT = "where the app cannot post"


@pytest.mark.parametrize(
    ("how", "code", "where", "fix"),
    [
        ("left", "not_in_channel", CANNOT, f"invite the app to {CHANNEL}"),
        ("archived", "is_archived", CANNOT, "unarchive"),
        # Top-level messages refused, thread replies only: no thread can start there.
        (
            "thread_only",
            "restricted_action_thread_only_channel",
            "which takes thread replies only: the incident's message cannot start its thread there",
            f"let the app post messages in {CHANNEL}",
        ),
    ],
)
def test_an_incident_whose_first_message_its_channel_refuses_is_held_until_fixed_then_goes_in_order(
    sql: Engine,
    recorder: SlackRecorder,
    caplog: pytest.LogCaptureFixture,
    how: str,
    code: str,
    where: str,
    fix: str,
) -> None:
    # Its first message was failed for good, and so was every later one (each posts the message first):
    # nothing went out once the app was invited, or the channel unarchived, until `outbox retry`.
    clock = FakeClock()
    outbox = Outbox(sql, [_slack(recorder, clock, P3=OTHER)], clock)
    _shut(recorder, how)
    for step in lifecycle("inc-a"):
        outbox(step)
    outbox(change(make_incident("inc-b", priority=Priority.P3), ChangeKind.OPENED, 0, "opened"))
    with caplog.at_level(logging.WARNING, logger="alerting.outbox"):
        assert outbox.dispatch_due() == 1  # inc-b, in its own channel
        clock.advance(60)
        assert outbox.dispatch_due() == 0
    held = [m for m in outbox.messages() if m.incident_id == "inc-a"]
    assert [m.status for m in held] == [PENDING] * 5
    error = str(held[0].last_error)
    assert f"message goes to channel {CHANNEL}, {where} ({code})" in error
    assert fix in error and "none failed" in error and "outbox retry" not in error
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len([r for r in caplog.records if "held:" in r.getMessage()]) == 1  # said once

    _shut(recorder, how, shut=False)
    clock.advance(60)
    assert outbox.dispatch_due() == 5
    [parent] = recorder.channel_messages(CHANNEL)
    assert reply_kinds(recorder, parent.ts) == REPLY_ORDER  # each once, in order
    assert "resolved" in parent.text.lower()


def test_an_incident_whose_first_message_was_refused_goes_where_the_channel_map_sends_it_after_a_restart(
    sql: Engine, recorder: SlackRecorder
) -> None:
    clock = FakeClock()
    outbox = Outbox(sql, [_slack(recorder, clock)], clock)
    recorder.remove_app(CHANNEL)
    for step in lifecycle("inc-a")[:3]:
        outbox(step)
    assert outbox.dispatch_due() == 0
    assert [m.status for m in outbox.messages()] == [PENDING] * 3

    rerouted = Outbox(sql, [_slack(recorder, clock, P0=ONCALL)], clock)  # P0: the priority it opened at
    assert rerouted.dispatch_due() == 3
    assert recorder.channel_messages(CHANNEL) == []
    [parent] = recorder.channel_messages(ONCALL)
    assert reply_kinds(recorder, parent.ts) == REPLY_ORDER[:3]


def test_a_channel_that_takes_no_thread_replies_gets_each_change_as_a_message_naming_its_incident(
    sql: Engine, recorder: SlackRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    # Every reply was refused for good (restricted_action_non_threadable_channel): each change after the
    # incident's message failed, `outbox retry` too.
    clock = FakeClock()
    outbox = Outbox(sql, [_slack(recorder, clock)], clock)
    recorder.forbid_threads(CHANNEL)
    for step in lifecycle("inc-a"):
        outbox(step)
    with caplog.at_level(logging.WARNING):
        assert outbox.dispatch_due() == 5
    assert [m.status for m in outbox.messages()] == [SENT] * 5
    parent, *changes = recorder.channel_messages(CHANNEL)
    assert "resolved" in parent.text.lower() and recorder.replies(parent.ts) == []
    assert [m.event for m in changes] == REPLY_ORDER  # each once, in order
    for m in changes:
        assert m.text.startswith("Incident inc-a (") and f"after its message {parent.ts}" in m.text
        assert m.blocks[0]["type"] == "context"
    warned = [r for r in caplog.records if "takes no thread replies" in r.getMessage()]
    assert len(warned) == 1 and CHANNEL in warned[0].getMessage()  # said once


def test_a_channel_that_takes_no_thread_replies_gets_the_chart_as_a_file_naming_its_incident(
    recorder: SlackRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    # The upload went to the thread, which Slack refused: "chart not attached", the chart lost.
    notifier, threads = _slack(recorder, FakeClock()), Threads()
    recorder.forbid_threads(CHANNEL)
    incident = make_incident("inc-a")
    with caplog.at_level(logging.WARNING):
        for i, kind in enumerate((ChangeKind.OPENED, ChangeKind.UPDATED)):
            deliver(
                notifier,
                threads,
                build_notification(change(incident, kind, i, "x"), series=[gpu_temperature()]),
            )
    [chart] = recorder.files()
    parent, shared, *changes = recorder.channel_messages(CHANNEL)
    assert chart.thread_ts is None and shared.files == [chart.id] and threads.state.chart_posted
    assert shared.text.startswith("Incident inc-a (") and f"after its message {parent.ts}" in shared.text
    assert len(changes) == 2 and recorder.replies(parent.ts) == []
    assert not [r for r in caplog.records if "chart not attached" in r.getMessage()]
    assert len([r for r in caplog.records if "takes no thread replies" in r.getMessage()]) == 1


def test_a_chart_shared_in_a_channel_without_threads_right_before_a_crash_is_not_shared_again(
    recorder: SlackRecorder,
) -> None:
    # The retry looked for it in the thread only: a second chart in the channel.
    threads, clock = Threads(), FakeClock()
    recorder.forbid_threads(CHANNEL)
    opened = build_notification(lifecycle("inc-a")[0], series=[gpu_temperature()])
    deliver(_slack(recorder, clock), threads, opened)
    threads.state = replace(threads.state, chart_posted=False)  # died before it saved the chart was there
    deliver(_slack(recorder, clock), threads, opened, retry=True)  # restarted: nothing in memory
    assert len(recorder.files()) == 1 and threads.state.chart_posted
    assert len(recorder.channel_messages(CHANNEL)) == 3  # the message, the chart, the opening


def test_a_change_posted_to_a_channel_without_threads_right_before_a_crash_is_not_posted_again(
    sql: Engine, recorder: SlackRecorder
) -> None:
    clock = FakeClock()
    outbox = Outbox(sql, [_slack(recorder, clock)], clock)
    outbox(lifecycle("inc-a")[0])
    assert outbox.dispatch_due() == 1
    recorder.forbid_threads(CHANNEL)
    outbox(lifecycle("inc-a")[1])
    with pytest.raises(Crash):
        Outbox(sql, [CrashAfterSend(_slack(recorder, clock))], clock).dispatch_due()
    assert len(recorder.channel_messages(CHANNEL)) == 2

    restarted = Outbox(sql, [_slack(recorder, clock)], clock)
    assert restarted.dispatch_due() == 1
    parent, moved = recorder.channel_messages(CHANNEL)  # found by the retry's lookup, not posted again
    assert reply_kinds(recorder, parent.ts) == ["opened"] and moved.event == "priority_changed"


def test_a_token_without_chat_write_holds_every_slack_message_naming_the_scope_until_granted(
    sql: Engine, recorder: SlackRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    # Each message was failed for good (missing_scope), one error per message, and stayed failed once the
    # scope was granted.
    clock = FakeClock()
    outbox = Outbox(sql, [_slack(recorder, clock)], clock)
    recorder.grant_scopes(["channels:history", "files:write"])
    for step in lifecycle("inc-a")[:3]:
        outbox(step)
    outbox(lifecycle("inc-b")[0])
    with caplog.at_level(logging.DEBUG, logger="alerting.outbox"):
        for _ in range(3):
            assert outbox.dispatch_due() == 0
            clock.advance(BLOCK_RETRY_SECONDS)
    assert [m.status for m in outbox.messages()] == [PENDING] * 4
    reason = outbox.blocked()["slack"].reason
    assert (
        "missing_scope (needed: chat:write)" in reason
        and "lacks chat:write, which chat.postMessage" in reason
    )
    assert "reinstall the app" in reason and "none failed" in reason
    assert len([r for r in caplog.records if r.levelno >= logging.ERROR]) == 1  # said once

    recorder.grant_scopes(None)  # granted, the app reinstalled: the same token
    assert outbox.dispatch_due() == 4
    assert [m.status for m in outbox.messages()] == [SENT] * 4
    a = next(m for m in recorder.channel_messages() if "inc-a" in str(m.metadata))
    assert reply_kinds(recorder, a.ts) == REPLY_ORDER[:3]


def test_a_token_without_chat_write_holds_an_edit_too(recorder: SlackRecorder) -> None:
    client = make_client(recorder.token, base_url=recorder.base_url, rate_limit_retries=0)
    notifier, threads = SlackNotifier(client, CHANNEL), Threads()
    first, second, *_ = lifecycle()
    deliver(notifier, threads, build_notification(first))
    recorder.grant_scopes([])
    with pytest.raises(BackendError) as caught:
        deliver(notifier, threads, build_notification(second))
    assert caught.value.until_fixed and "lacks chat:write, which chat.update needs" in str(caught.value)


def test_a_token_without_channels_history_warns_at_a_retry_and_the_message_goes(
    sql: Engine, recorder: SlackRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    clock = FakeClock()
    recorder.grant_scopes(["chat:write", "files:write"])
    outbox = Outbox(sql, [_slack(recorder, clock)], clock)
    outbox(lifecycle("inc-a")[0])
    with pytest.raises(Crash):
        Outbox(sql, [CrashAfterSend(_slack(recorder, clock))], clock).dispatch_due()
    outbox(lifecycle("inc-a")[1])
    with caplog.at_level(logging.WARNING):
        assert outbox.dispatch_due() == 2  # the retry's lookup refused: posted (at least once)
    assert outbox.blocked() == {} and [m.status for m in outbox.messages()] == [SENT, SENT]
    assert any("missing_scope" in r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
