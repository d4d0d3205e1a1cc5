"""Slack refusing calls until someone acts, through the outbox on the local stand-in: a revoked token holds
every Slack message (none failed) until a restart with a working one; a thread in a channel the app was
removed from, or that was archived, holds its incident (the others go on) or goes on where the channel map
sends the incident now; a lookup Slack refuses says what it could not do and how to fix it."""

from __future__ import annotations

import logging

import pytest
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine

from alerting.notifiers.base import build_notification
from alerting.notifiers.recorder import SlackRecorder
from alerting.notifiers.slack import SlackNotifier, make_client
from alerting.outbox import Outbox
from alerting.outbox_metrics import OutboxCollector
from alerting.outbox_refusals import BLOCK_RETRY_SECONDS
from alerting.outbox_tables import PENDING, SENT
from alerting.subscriptions import ChangeKind
from gpuwarden.clock import FakeClock
from gpuwarden.errors import BackendError
from gpuwarden.model import Priority
from tests.alerting.notifiers.incidents import change, lifecycle, make_incident
from tests.alerting.notifiers.slack_threads import Threads, deliver
from tests.alerting.outbox_deliveries import REPLY_ORDER, Crash, CrashAfterSend, reply_kinds

CHANNEL, ONCALL, OTHER = "C0INCIDENT1", "C0ONCALL001", "C0OTHER0001"


def _slack(recorder: SlackRecorder, clock: FakeClock, **routes: str) -> SlackNotifier:
    """A notifier with the recorder's token as it is now (a restart reads it again)."""
    client = make_client(recorder.token, base_url=recorder.base_url, rate_limit_retries=0)
    return SlackNotifier(client, CHANNEL, clock=clock, channels_by_priority=routes)


def _blocked(outbox: Outbox) -> float | None:
    registry = CollectorRegistry()
    registry.register(OutboxCollector(outbox))
    return registry.get_sample_value("gpuwarden_notifier_blocked", {"notifier": "slack"})


def test_a_revoked_token_holds_every_slack_message_until_a_restart_with_a_working_one(
    sql: Engine, recorder: SlackRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    # Each message was failed for good (token_revoked), one error logged per message, and none went out once
    # the token was replaced until someone ran `outbox retry`.
    clock = FakeClock()
    outbox = Outbox(sql, [_slack(recorder, clock)], clock)
    outbox(lifecycle("inc-a")[0])
    outbox.dispatch_due()
    recorder.revoke_token("xoxb-reinstalled")
    for step in lifecycle("inc-a")[1:3]:
        outbox(step)
    outbox(lifecycle("inc-b")[0])
    with caplog.at_level(logging.DEBUG, logger="alerting.outbox"):
        for _ in range(3):
            assert outbox.dispatch_due() == 0
            clock.advance(BLOCK_RETRY_SECONDS)
    assert [m.status for m in outbox.messages()] == [SENT, PENDING, PENDING, PENDING]
    # What `outbox list` shows: the message tried (the new incident's opening goes first) says why.
    assert "token_revoked" in str(next(m for m in outbox.messages() if m.incident_id == "inc-b").last_error)
    assert "token_revoked" in outbox.blocked()["slack"].reason and _blocked(outbox) == 1
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "none failed" in errors[0].getMessage()  # said once, not per try
    assert len([c for c in recorder.calls if c.response.get("error") == "token_revoked"]) == 3  # one a try

    restarted = Outbox(sql, [_slack(recorder, clock)], clock)  # the new token configured
    assert restarted.dispatch_due() == 3
    assert [m.status for m in restarted.messages()] == [SENT] * 4
    a = next(m for m in recorder.channel_messages() if "inc-a" in str(m.metadata))
    assert reply_kinds(recorder, a.ts) == REPLY_ORDER[:3]  # in order, in the incident's own thread
    assert len(recorder.channel_messages()) == 2 and _blocked(restarted) == 0


def test_a_thread_in_an_archived_channel_holds_its_incident_until_unarchived_and_the_others_go_on(
    sql: Engine, recorder: SlackRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    # Every later message of the incident failed for good (chat.update: is_inactive) and stayed failed after
    # the channel was unarchived.
    clock = FakeClock()
    outbox = Outbox(sql, [_slack(recorder, clock, P3=OTHER)], clock)
    outbox(lifecycle("inc-a")[0])
    outbox.dispatch_due()
    recorder.archive(CHANNEL)
    for step in lifecycle("inc-a")[1:3]:
        outbox(step)
    other = make_incident("inc-b", priority=Priority.P3)
    outbox(change(other, ChangeKind.OPENED, 0, "opened"))
    assert outbox.dispatch_due() == 1  # inc-b, in its own channel
    clock.advance(60)
    assert outbox.dispatch_due() == 0
    held = [m for m in outbox.messages() if m.incident_id == "inc-a"]
    assert [m.status for m in held] == [SENT, PENDING, PENDING]
    assert f"thread is in channel {CHANNEL}, where the app can no longer post (is_inactive)" in str(
        held[1].last_error
    )
    assert f"unarchive {CHANNEL}" in str(held[1].last_error)

    holds = [r for r in caplog.records if r.levelno == logging.WARNING and "held:" in r.getMessage()]
    assert len(holds) == 1  # said once, not at every try

    recorder.archive(CHANNEL, archived=False)
    clock.advance(60)
    assert outbox.dispatch_due() == 2
    [parent] = recorder.channel_messages(CHANNEL)
    assert reply_kinds(recorder, parent.ts) == REPLY_ORDER[:3]


def test_a_thread_whose_channel_the_app_left_goes_on_where_the_channel_map_sends_its_incident_now(
    sql: Engine, recorder: SlackRecorder
) -> None:
    clock = FakeClock()
    outbox = Outbox(sql, [_slack(recorder, clock)], clock)
    outbox(lifecycle("inc-a")[0])
    outbox.dispatch_due()
    recorder.remove_app(CHANNEL)
    for step in lifecycle("inc-a")[1:]:
        outbox(step)
    assert outbox.dispatch_due() == 0
    assert "invite the app to C0INCIDENT1" in str(outbox.messages()[1].last_error)

    # The operator sends P1 (the incident's priority now) to another channel and restarts serve.
    rerouted = Outbox(sql, [_slack(recorder, clock, P1=ONCALL)], clock)
    assert rerouted.dispatch_due() == 4
    [old] = recorder.channel_messages(CHANNEL)
    [new] = recorder.channel_messages(ONCALL)
    assert reply_kinds(recorder, old.ts) == ["opened"]
    replies = recorder.replies(new.ts)
    assert f"goes on here: the app can no longer post in its thread in channel {CHANNEL}" in replies[0].text
    assert [r.event for r in replies[1:]] == REPLY_ORDER[1:]  # each once, none lost
    assert "(acknowledged)" not in new.text and "resolved" in new.text.lower()  # shows it as it is now


def test_a_thread_that_goes_on_in_a_channel_without_threads_says_so_in_a_message_of_that_channel(
    recorder: SlackRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    # Its note went to the new thread, which Slack refused there: "its note not posted", nothing said where
    # the incident came from.
    threads = Threads()
    deliver(_slack(recorder, FakeClock()), threads, build_notification(lifecycle("inc-a")[0]))
    recorder.remove_app(CHANNEL)
    recorder.forbid_threads(ONCALL)
    with caplog.at_level(logging.WARNING):
        deliver(_slack(recorder, FakeClock(), P1=ONCALL), threads, build_notification(lifecycle("inc-a")[1]))
    new, note, moved = recorder.channel_messages(ONCALL)
    assert note.text.startswith("Incident inc-a (") and f"after its message {new.ts}" in note.text
    assert f"goes on here: the app can no longer post in its thread in channel {CHANNEL}" in note.text
    assert moved.event == "priority_changed" and recorder.replies(new.ts) == []
    assert not [r for r in caplog.records if "note not posted" in r.getMessage()]


def test_a_crash_right_after_the_thread_went_on_elsewhere_posts_no_second_message_there(
    sql: Engine, recorder: SlackRecorder
) -> None:
    clock = FakeClock()
    outbox = Outbox(sql, [_slack(recorder, clock)], clock)
    outbox(lifecycle("inc-a")[0])
    outbox.dispatch_due()
    recorder.remove_app(CHANNEL)
    outbox(lifecycle("inc-a")[1])
    # Dies once the new message is in #oncall, before its ts is saved: where it went was saved before.
    dying = CrashAfterSend(_slack(recorder, clock, P1=ONCALL), before_saving_thread=True)
    with pytest.raises(Crash):
        Outbox(sql, [dying], clock).dispatch_due()
    assert len(recorder.channel_messages(ONCALL)) == 1

    restarted = Outbox(sql, [_slack(recorder, clock, P1=ONCALL)], clock)
    assert restarted.dispatch_due() == 1
    [new] = recorder.channel_messages(ONCALL)  # found by the retry's lookup, not posted again
    assert reply_kinds(recorder, new.ts) == ["priority_changed"]


@pytest.mark.parametrize(
    ("method", "error", "fix"),
    [
        ("chat.update", "not_in_channel", f"invite the app to {CHANNEL}"),
        ("chat.update", "channel_not_found", f"invite the app to {CHANNEL}"),
        ("chat.update", "is_inactive", f"unarchive {CHANNEL}"),
        ("chat.postMessage", "is_archived", f"unarchive {CHANNEL}"),
        ("chat.postMessage", "restricted_action_read_only_channel", f"let the app post in {CHANNEL}"),
    ],
    ids=["left-update", "private-left", "archived-update", "archived-reply", "read-only-reply"],
)
def test_each_error_that_shuts_a_threads_channel_holds_its_incident_naming_the_channel_and_fix(
    recorder: SlackRecorder, method: str, error: str, fix: str
) -> None:
    client = make_client(recorder.token, base_url=recorder.base_url, rate_limit_retries=0)
    notifier, threads = SlackNotifier(client, CHANNEL), Threads()
    first, second, *_ = lifecycle()
    deliver(notifier, threads, build_notification(first))
    recorder.fail_next(method, status=200, error=error)
    with pytest.raises(BackendError) as caught:
        deliver(notifier, threads, build_notification(second))
    held = caught.value
    assert held.retry_after is not None and held.limit == f"channel {CHANNEL}"  # this incident waits
    assert f"where the app can no longer post ({error})" in str(held) and fix in str(held)
    assert threads.state.ts == recorder.channel_messages(CHANNEL)[0].ts  # its thread kept


def test_a_silenced_incidents_edit_in_a_shut_channel_is_held_back_not_failed(recorder: SlackRecorder) -> None:
    client = make_client(recorder.token, base_url=recorder.base_url, rate_limit_retries=0)
    notifier, threads = SlackNotifier(client, CHANNEL), Threads()
    first, second, *_ = lifecycle()
    deliver(notifier, threads, build_notification(first))
    recorder.archive(CHANNEL)
    silenced = build_notification(second).model_copy(update={"silenced_until": second.event.at})
    assert notifier.deliver(silenced, threads.state, retry=False, save=threads.save) is False
    assert threads.state.ts == recorder.channel_messages(CHANNEL)[0].ts  # its thread kept


def test_an_incident_past_the_workspaces_edit_window_still_gets_every_change_in_its_thread(
    sql: Engine, recorder: SlackRecorder
) -> None:
    # An admin's message edit window: chat.update answered edit_window_closed, which failed this change and
    # every later one of the incident for good (each edits the message first), and `outbox retry` again.
    clock = FakeClock()
    outbox = Outbox(sql, [_slack(recorder, clock)], clock)
    outbox(lifecycle()[0])
    outbox.dispatch_due()
    recorder.set_edit_window(0)
    for step in lifecycle()[1:]:
        outbox(step)
    assert outbox.dispatch_due() == 4
    [parent] = recorder.channel_messages()
    assert reply_kinds(recorder, parent.ts) == REPLY_ORDER and parent.edits == 0


def test_a_lookup_refused_not_in_channel_says_what_it_looked_for_what_failed_and_the_fix(
    recorder: SlackRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    # It said "impossible, posting without it (...grant channels:history... set slack.channel to the
    # channel's id)" and then "invite it; then `gpuwarden outbox retry` sends what failed meanwhile": nothing
    # had failed, and neither scope nor id was the matter.
    client = make_client(recorder.token, base_url=recorder.base_url, rate_limit_retries=0)
    recorder.fail_next("conversations.history", status=200, error="not_in_channel")
    deliver(SlackNotifier(client, CHANNEL), Threads(), build_notification(lifecycle()[0]), retry=True)
    [said] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert (
        f"could not look for the incident's message (key slack:inc-r07:parent) in channel {CHANNEL}" in said
    )
    assert "conversations.history failed: not_in_channel" in said
    assert (
        "it is sent without knowing whether an earlier attempt already posted it, so it may show twice"
        in said
    )
    assert f"the app is not in channel {CHANNEL}" in said and "/invite @<app>" in said
    assert "outbox retry" not in said and "channels:history" not in said


def test_messages_whose_metadata_slack_refuses_go_without_it_warned_of_once(
    sql: Engine, recorder: SlackRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    # The app's manifest declares a schema for event type gpuwarden_notification that the idempotency key
    # does not meet: Slack answered invalid_metadata_schema to every post, and every message failed for good.
    clock = FakeClock()
    outbox = Outbox(sql, [_slack(recorder, clock)], clock)
    recorder.refuse_metadata("invalid_metadata_schema")
    for step in lifecycle("inc-a"):
        outbox(step)
    with caplog.at_level(logging.WARNING):
        assert outbox.dispatch_due() == 5
    assert [m.status for m in outbox.messages()] == [SENT] * 5
    [parent] = recorder.channel_messages(CHANNEL)
    replies = recorder.replies(parent.ts)
    assert len(replies) == 5 and all(r.metadata is None for r in replies)
    assert "resolved" in parent.text.lower()
    warned = [r.getMessage() for r in caplog.records if "refuses the messages' metadata" in r.getMessage()]
    assert len(warned) == 1 and "invalid_metadata_schema" in warned[0] and "show twice" in warned[0]
