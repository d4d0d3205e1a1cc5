"""``slack.channels_by_priority``: an incident's message goes to the channel of its priority when posted, and
its thread stays in that channel whatever its priority later."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerting.notifiers.base import ThreadState, build_notification
from alerting.notifiers.recorder import SlackRecorder
from alerting.notifiers.slack import SlackNotifier, make_client
from alerting.subscriptions import ChangeKind
from gpuwarden.config import load_config
from gpuwarden.errors import BackendError
from gpuwarden.model import Priority
from tests.alerting.notifiers.incidents import change, gpu_temperature, lifecycle, make_incident
from tests.alerting.notifiers.slack_threads import Threads, deliver

ONCALL, ALERTS, DEFAULT = "#gpu-oncall", "#gpu-alerts", "#gpu-incidents"


def _routed(recorder: SlackRecorder) -> SlackNotifier:
    """P0 and P1 to #gpu-oncall, P2 to #gpu-alerts, P3 (not listed) to slack.channel."""
    client = make_client(recorder.token, base_url=recorder.base_url, rate_limit_retries=0)
    by_priority = {"P0": ONCALL, "P1": ONCALL, "P2": ALERTS}
    return SlackNotifier(client, DEFAULT, channels_by_priority=by_priority)


@pytest.mark.parametrize(
    ("priority", "channel"),
    [(Priority.P0, ONCALL), (Priority.P1, ONCALL), (Priority.P2, ALERTS), (Priority.P3, DEFAULT)],
    ids=["P0", "P1", "P2", "P3-not-listed"],
)
def test_an_incidents_message_goes_to_the_channel_of_its_priority(
    recorder: SlackRecorder, priority: Priority, channel: str
) -> None:
    notifier, threads = _routed(recorder), Threads()
    deliver(
        notifier,
        threads,
        build_notification(change(make_incident(priority=priority), ChangeKind.OPENED, 0, "opened")),
    )
    [parent] = recorder.channel_messages()
    assert parent.channel == recorder.channel_id(channel)
    assert [r.event for r in recorder.replies(parent.ts)] == ["opened"]


def test_a_thread_stays_in_its_first_channel_when_the_priority_changes(recorder: SlackRecorder) -> None:
    """Opened P2 in #gpu-alerts, escalated to P0: edited and replied there (the escalation broadcast to that
    channel), no new message in #gpu-oncall; posted again there too when someone deleted it."""
    notifier, threads = _routed(recorder), Threads()
    opened = change(make_incident(priority=Priority.P2), ChangeKind.OPENED, 0, "opened")
    escalated = change(
        make_incident(priority=Priority.P0),
        ChangeKind.PRIORITY_CHANGED,
        2,
        "P2 -> P0",
        "priority",
        {"from": "P2", "to": "P0"},
    )
    acknowledged = change(make_incident(priority=Priority.P0), ChangeKind.ACKNOWLEDGED, 4, "by alice")
    deliver(notifier, threads, build_notification(opened))
    deliver(notifier, threads, build_notification(escalated))
    recorder.fail_next("chat.update", status=200, error="message_not_found")  # someone deleted it
    deliver(notifier, threads, build_notification(acknowledged))

    assert recorder.channel_messages(ONCALL) == []
    first, again = recorder.channel_messages(ALERTS)
    assert first.edits == 1 and [r.event for r in recorder.replies(first.ts)] == [
        "opened",
        "priority",
    ]
    assert [r.reply_broadcast for r in recorder.replies(first.ts)] == [False, True]
    assert threads.state.channel == recorder.channel_id(ALERTS) and threads.state.ts == again.ts


def test_a_retried_first_post_is_looked_for_in_the_channel_of_its_priority(recorder: SlackRecorder) -> None:
    # With a channel id (Slack's history is read by id), the retry after a crash finds the message it posted
    # there, not in slack.channel.
    client = make_client(recorder.token, base_url=recorder.base_url, rate_limit_retries=0)
    notifier = SlackNotifier(client, "C0DEFAULT00", channels_by_priority={"P0": "C0ONCALL00"})
    opened = build_notification(change(make_incident(priority=Priority.P0), ChangeKind.OPENED, 0, "opened"))
    deliver(notifier, Threads(), opened)  # reached Slack; its answer was lost
    fresh = Threads()
    deliver(notifier, fresh, opened, retry=True)
    [parent] = recorder.channel_messages()
    assert parent.channel == "C0ONCALL00" and fresh.state.ts == parent.ts


def test_the_channel_map_is_read_from_the_config_and_left_out_everything_goes_to_slack_channel(
    tmp_path: Path, recorder: SlackRecorder
) -> None:
    path = tmp_path / "c.yaml"
    text = f"slack:\n  bot_token: {{env: SLACK_BOT_TOKEN}}\n  channel: '{DEFAULT}'\n"
    text += f"  base_url: {recorder.base_url}\n"
    for routed in (True, False):
        path.write_text(text + (f"  channels_by_priority:\n    P0: '{ONCALL}'\n" if routed else ""))
        config = load_config(path, environ={"SLACK_BOT_TOKEN": recorder.token})
        notifier = SlackNotifier.from_config(config.slack)
        incident = make_incident(f"inc-{routed}", priority=Priority.P0)
        deliver(notifier, Threads(), build_notification(change(incident, ChangeKind.OPENED, 0, "opened")))
    assert [m.text.split(":")[0] for m in recorder.channel_messages(ONCALL)] == ["P0 rack r07 lost power"]
    assert len(recorder.channel_messages(DEFAULT)) == 1


def test_a_first_post_slack_refused_goes_where_the_changed_map_says_at_its_retry(
    recorder: SlackRecorder,
) -> None:
    # P0 routed to a channel the app is not in: Slack refused the post (nothing posted). The operator routed
    # P0 to another channel and retried the failed message: it goes there, not to the refused channel.
    def routed(p0: str) -> SlackNotifier:
        client = make_client(recorder.token, base_url=recorder.base_url, rate_limit_retries=0)
        return SlackNotifier(client, "C0DEFAULT00", channels_by_priority={"P0": p0})

    opened = build_notification(change(make_incident(priority=Priority.P0), ChangeKind.OPENED, 0, "opened"))
    threads = Threads()
    recorder.fail_next("chat.postMessage", status=200, error="not_in_channel")
    with pytest.raises(BackendError, match="not_in_channel"):
        deliver(routed("C0NOTMEMBER"), threads, opened)
    deliver(routed("C0ONCALL00"), threads, opened, retry=True)
    [parent] = recorder.channel_messages()
    assert parent.channel == "C0ONCALL00" and threads.state == ThreadState("C0ONCALL00", parent.ts)


@pytest.mark.parametrize("error", ["not_in_channel", "is_archived"])
def test_an_error_about_the_channel_names_the_one_the_thread_is_in_not_slack_channel(
    recorder: SlackRecorder, error: str
) -> None:
    # Opened P2 in #gpu-alerts; since then P2 is routed elsewhere and the app was removed from #gpu-alerts:
    # the error said "the app is not in slack.channel", which the operator found it was in.
    notifier, threads = _routed(recorder), Threads()
    deliver(
        notifier,
        threads,
        build_notification(change(make_incident(priority=Priority.P2), ChangeKind.OPENED, 0, "opened")),
    )
    # (Were P2 routed elsewhere since, its thread would go on there: test_outbox_slack_refusals.)
    client = make_client(recorder.token, base_url=recorder.base_url, rate_limit_retries=0)
    by_id = {
        "P2": recorder.channel_id(ALERTS),
        "P0": ONCALL,
    }  # by id: known the thread's, by name only once posted
    remapped = SlackNotifier(client, DEFAULT, channels_by_priority=by_id)
    acknowledged = change(make_incident(priority=Priority.P2), ChangeKind.ACKNOWLEDGED, 4, "by alice")
    recorder.fail_next("chat.update", status=200, error=error)
    with pytest.raises(BackendError) as caught:
        deliver(remapped, threads, build_notification(acknowledged))
    assert f"thread is in channel {recorder.channel_id(ALERTS)}, where the app can no longer post" in str(
        caught.value
    )
    assert "not in slack.channel" not in str(caught.value)


@pytest.mark.parametrize("routes", [{}, {"P1": "C0ONCALL001"}], ids=["held", "goes-on-elsewhere"])
def test_a_thread_only_channel_whose_incident_message_was_deleted_is_said_so_not_shut_to_the_app(
    recorder: SlackRecorder, routes: dict[str, str]
) -> None:
    # The app still posts thread replies there; only its message, deleted, cannot be posted again. The hold
    # said "where the app can no longer post", and the note of the thread that went on, "the app can no
    # longer post in its thread": a person invited the app, or looked for a removal, for nothing.
    client = make_client(recorder.token, base_url=recorder.base_url, rate_limit_retries=0)
    notifier, threads = SlackNotifier(client, "C0INCIDENT1", channels_by_priority=routes), Threads()
    first, second, third, *_ = lifecycle()
    deliver(notifier, threads, build_notification(first))
    recorder.threads_only("C0INCIDENT1")
    deliver(notifier, threads, build_notification(second))  # a reply goes
    recorder.delete_by_someone("C0INCIDENT1", str(threads.state.ts))
    if not routes:
        with pytest.raises(BackendError) as caught:
            deliver(notifier, threads, build_notification(third))
        said = str(caught.value)
    else:
        deliver(notifier, threads, build_notification(third))
        [moved] = recorder.channel_messages("C0ONCALL001")
        said = recorder.replies(moved.ts)[0].text
    assert "no longer post" not in said and "takes thread replies only" in said, said
    assert "gone (deleted)" in said, said


@pytest.mark.parametrize(
    ("error", "fix"),
    [
        ("not_in_channel", "the app is not in channel C0ONCALL001: invite it"),
        ("missing_scope", "grant the app the scope Slack names (needed) and reinstall it"),
    ],
    ids=["not-in-channel", "missing-scope"],
)
def test_a_chart_its_channel_refuses_is_warned_of_naming_that_channel_and_no_retry_of_what_did_not_fail(
    recorder: SlackRecorder, caplog: pytest.LogCaptureFixture, error: str, fix: str
) -> None:
    # The P0 chart went to #oncall; the warning said "the app is not in slack.channel" (#incidents) and
    # "then `gpuwarden outbox retry` sends what failed meanwhile": nothing failed, and no retry attaches it.
    client = make_client(recorder.token, base_url=recorder.base_url, rate_limit_retries=0)
    notifier = SlackNotifier(client, "C0INCIDENT1", channels_by_priority={"P0": "C0ONCALL001"})
    recorder.fail_next("files.completeUploadExternal", status=200, error=error)
    opened = change(make_incident("inc-a", priority=Priority.P0), ChangeKind.OPENED, 0, "x")
    deliver(notifier, Threads(), build_notification(opened, series=[gpu_temperature()]))
    [said] = [r.getMessage() for r in caplog.records if "chart not attached" in r.getMessage()]
    assert fix in said and "slack.channel" not in said and "outbox retry" not in said, said
