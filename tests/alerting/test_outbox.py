"""The outbox: outages delay but never drop or duplicate; order per incident; crash in mid-dispatch."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, inspect
from sqlalchemy.exc import OperationalError

from alerting.db import Base, make_engine
from alerting.notifiers.base import ChartSeries, Notification, ThreadSaver, ThreadState
from alerting.notifiers.recorder import RecordedCall, SlackRecorder
from alerting.notifiers.slack import SlackNotifier, make_client
from alerting.notifiers.webhook import WebhookNotifier
from alerting.outbox import Backoff, Outbox
from alerting.outbox_metrics import OutboxCollector
from alerting.outbox_tables import DISCARDED, FAILED, PENDING, SENDING, SENT
from alerting.subscriptions import ChangeKind, IncidentChange
from gpuwarden.clock import FakeClock, SystemClock
from gpuwarden.config_notify import WebhookConfig
from gpuwarden.model import Priority
from tests.alerting.notifiers.incidents import (
    T0,
    change,
    gpu_temperature,
    lifecycle,
    make_incident,
    reassessed,
)
from tests.http_stub import LocalServer, QuietHandler

REPLY_ORDER = ["opened", "priority_changed", "acknowledged", "mitigating", "resolved"]


@pytest.fixture
def engine(sql: Engine) -> Engine:
    """The store under the name these tests give it (the outbox's SQLAlchemy engine)."""
    return sql


@pytest.fixture
def recorder() -> Iterator[SlackRecorder]:
    with SlackRecorder() as rec:
        yield rec


def slack(recorder: SlackRecorder, channel: str = "#gpu-incidents") -> SlackNotifier:
    return SlackNotifier(
        make_client(recorder.token, base_url=recorder.base_url, rate_limit_retries=0), channel
    )


def reply_kinds(recorder: SlackRecorder, ts: str) -> list[str]:
    return [r.event for r in recorder.replies(ts)]


class Crash(BaseException):
    """Stands for the process dying: not an Exception, so no handler in the outbox catches it."""


class CrashAfterSend:
    """Delivers through the real notifier, then dies before the outbox can mark the message sent."""

    def __init__(self, inner: SlackNotifier | WebhookNotifier, *, before_saving_thread: bool = False) -> None:
        self.inner = inner
        self.before_saving_thread = before_saving_thread

    @property
    def name(self) -> str:
        return self.inner.name

    def deliver(
        self, notification: Notification, thread: ThreadState, *, retry: bool, save: ThreadSaver
    ) -> None:
        def lost(_state: ThreadState) -> None:
            raise Crash

        self.inner.deliver(
            notification, thread, retry=retry, save=lost if self.before_saving_thread else save
        )
        raise Crash


def test_migration_creates_the_outbox_tables(engine: Engine) -> None:
    assert {"notification_outbox", "notification_threads"} <= set(inspect(engine).get_table_names())


def test_the_same_change_enqueued_twice_is_stored_once(engine: Engine, recorder: SlackRecorder) -> None:
    outbox = Outbox(engine, [slack(recorder)], FakeClock())
    opened = lifecycle()[0]
    assert outbox.enqueue(opened) == 1
    assert outbox.enqueue(opened) == 0
    assert len(outbox.messages()) == 1
    outbox.dispatch_due()
    outbox.enqueue(opened)
    assert outbox.dispatch_due() == 0
    assert len(recorder.channel_messages()) == 1


def test_an_opening_told_again_says_when_the_outbox_first_took_it(
    engine: Engine, recorder: SlackRecorder
) -> None:
    # A serve that crashed between the outbox's enqueue and storing its announcement: the next tells it
    # again, and stores the time the outbox answers, when the page was, not its own.
    clock = FakeClock()
    outbox = Outbox(engine, [slack(recorder)], clock)
    opened, updated = lifecycle()[:2]
    assert outbox(opened) is None
    took = clock.now()
    clock.advance(3600)
    assert outbox(opened) == took
    assert outbox(updated) is None and outbox(updated) is None  # only an opening's time is asked for


def test_a_lifecycle_becomes_one_message_updated_in_place_and_a_thread(
    engine: Engine, recorder: SlackRecorder
) -> None:
    outbox = Outbox(engine, [slack(recorder)], FakeClock())
    for c in lifecycle():
        outbox(c)
    assert outbox.dispatch_due() == 5

    [parent] = recorder.channel_messages()
    assert parent.edits == 4
    assert reply_kinds(recorder, parent.ts) == REPLY_ORDER
    assert outbox.thread("slack", "inc-r07") == ThreadState(parent.channel, parent.ts)
    assert {m.status for m in outbox.messages()} == {SENT}


def test_slack_outage_delays_messages_and_delivers_them_once_in_order_when_back(
    engine: Engine, recorder: SlackRecorder
) -> None:
    clock = FakeClock()
    outbox = Outbox(engine, [slack(recorder)], clock, backoff=Backoff(initial_seconds=2, max_seconds=60))
    changes = lifecycle()
    outbox(changes[0])
    outbox.dispatch_due()
    recorder.stop()
    for c in changes[1:]:
        outbox(c)

    for _ in range(6):  # a long outage: backoff grows, nothing is lost
        assert outbox.dispatch_due() == 0
        clock.advance(60)
    waiting = outbox.messages(PENDING)
    assert len(waiting) == 4
    assert waiting[0].attempts == 6
    assert all(m.attempts == 0 for m in waiting[1:]), "later messages of the incident wait behind the first"

    recorder.start()  # same port, Slack is back
    clock.advance(60)
    assert outbox.dispatch_due() == 4
    assert outbox.dispatch_due() == 0
    [parent] = recorder.channel_messages()
    assert reply_kinds(recorder, parent.ts) == REPLY_ORDER


def test_backoff_waits_longer_after_each_failure(engine: Engine, recorder: SlackRecorder) -> None:
    clock = FakeClock()
    outbox = Outbox(
        engine, [slack(recorder)], clock, backoff=Backoff(initial_seconds=2, factor=2, max_seconds=5)
    )
    recorder.set_outage(500)
    outbox(lifecycle()[0])
    outbox.dispatch_due()
    [row] = outbox.messages()
    assert row.next_attempt_at == clock.time() + 2
    clock.advance(1)
    outbox.dispatch_due()
    assert outbox.messages()[0].attempts == 1, "not retried before the backoff ends"
    clock.advance(1)
    outbox.dispatch_due()
    assert outbox.messages()[0].next_attempt_at == clock.time() + 4
    clock.advance(4)
    outbox.dispatch_due()
    assert outbox.messages()[0].next_attempt_at == clock.time() + 5, "capped"
    assert "service_unavailable" in (outbox.messages()[0].last_error or "")

    recorder.set_outage(None)
    clock.advance(5)
    assert outbox.dispatch_due() == 1
    assert len(recorder.channel_messages()) == 1


def test_slack_failing_does_not_hold_back_the_webhook(engine: Engine, recorder: SlackRecorder) -> None:
    webhook = WebhookNotifier(f"{recorder.root_url}/hooks/oncall", name="webhook:oncall")
    outbox = Outbox(engine, [slack(recorder), webhook], FakeClock())
    recorder.fail_next("chat.postMessage", status=500, times=10)
    outbox(lifecycle("inc-a")[0])
    outbox(lifecycle("inc-b")[0])

    assert outbox.dispatch_due() == 2
    assert [p["incident"]["id"] for p in recorder.hook_posts("oncall")] == ["inc-a", "inc-b"]
    assert recorder.channel_messages() == []
    webhook.close()


def test_a_message_slack_refuses_for_good_is_failed_and_the_next_one_goes(
    engine: Engine, recorder: SlackRecorder
) -> None:
    outbox = Outbox(engine, [slack(recorder)], FakeClock())
    changes = lifecycle()
    outbox(changes[0])
    outbox(changes[1])
    recorder.fail_next("chat.postMessage", status=200, error="channel_not_found")
    assert outbox.dispatch_due() == 1
    statuses = [m.status for m in outbox.messages()]
    assert statuses == [FAILED, SENT]
    assert "channel_not_found" in (outbox.messages()[0].last_error or "")

    # The next one went out and made the incident's message: the failed one, sent now, would set it back
    # to what it said then. It stays failed (and says so).
    assert outbox.requeue_failed() == (0, 1)
    assert [m.status for m in outbox.messages()] == [FAILED, SENT]


def test_messages_that_failed_for_good_go_out_in_order_once_queued_again(
    engine: Engine, recorder: SlackRecorder
) -> None:
    # A revoked token: every message fails for good until someone fixes it and queues them again.
    outbox = Outbox(engine, [slack(recorder)], FakeClock())
    for step in lifecycle()[:3]:
        outbox(step)
    for _ in range(3):
        recorder.fail_next("chat.postMessage", status=200, error="invalid_auth")
    outbox.dispatch_due()
    outbox.dispatch_due()
    assert [m.status for m in outbox.messages()] == [FAILED, FAILED, FAILED]
    assert outbox.requeue_failed(incident_id="inc-other") == (0, 0)
    assert outbox.requeue_failed() == (3, 0)
    assert outbox.dispatch_due() == 3
    assert [m.status for m in outbox.messages()] == [SENT, SENT, SENT]
    assert [m.id for m in outbox.messages(status=SENT, limit=2)] == [m.id for m in outbox.messages()][1:]


def test_crash_after_send_before_marking_sent_does_not_post_twice(
    engine: Engine, recorder: SlackRecorder
) -> None:
    channel = recorder.channel_id("#gpu-incidents")
    changes = lifecycle()
    first = Outbox(engine, [slack(recorder, channel)], FakeClock())
    first(changes[0])
    first.dispatch_due()
    first(changes[1])
    dying = Outbox(engine, [CrashAfterSend(slack(recorder, channel))], FakeClock())
    with pytest.raises(Crash):
        dying.dispatch_due()
    assert [m.status for m in dying.messages()] == [SENT, SENDING]

    restarted = Outbox(engine, [slack(recorder, channel)], FakeClock())
    assert restarted.dispatch_due() == 1
    [parent] = recorder.channel_messages()
    assert reply_kinds(recorder, parent.ts) == ["opened", "priority_changed"]
    assert parent.edits == 2, "the replay only updated the stored message in place"


def test_crash_between_first_post_and_saving_its_ts_recovers_the_message(
    engine: Engine, recorder: SlackRecorder
) -> None:
    channel = recorder.channel_id("#gpu-incidents")
    dying = Outbox(engine, [CrashAfterSend(slack(recorder, channel), before_saving_thread=True)], FakeClock())
    dying(lifecycle()[0])
    with pytest.raises(Crash):
        dying.dispatch_due()
    assert dying.thread("slack", "inc-r07") is None

    restarted = Outbox(engine, [slack(recorder, channel)], FakeClock())
    for c in lifecycle()[1:]:
        restarted(c)
    assert restarted.dispatch_due() == 5
    [parent] = recorder.channel_messages()
    assert restarted.thread("slack", "inc-r07") == ThreadState(channel, parent.ts)
    assert reply_kinds(recorder, parent.ts) == REPLY_ORDER


def test_a_first_post_abandoned_at_its_deadline_is_found_by_its_retry_not_posted_twice(
    engine: Engine, recorder: SlackRecorder
) -> None:
    # Slack carried out the post but trickled its answer past the call's deadline: the outbox retries the
    # message as one that may have reached Slack, and the retry adopts the message instead of posting again.
    channel = recorder.channel_id("#gpu-incidents")
    client = make_client(recorder.token, base_url=recorder.base_url, rate_limit_retries=0)
    clock = FakeClock()
    notifier = SlackNotifier(client, channel, call_deadline_seconds=0.5)  # the trickled post: late anyway
    outbox = Outbox(engine, [notifier], clock)
    recorder.trickle_next("chat.postMessage", seconds=10.0)
    outbox(lifecycle()[0])
    assert outbox.dispatch_due() == 0
    [waiting] = outbox.messages(PENDING)
    assert "abandoned" in (waiting.last_error or "")
    recorder.end_trickles()
    # The retry waits for the abandoned post to end, then looks it up: calls that must answer, so 30 s (a
    # bound not waited out); at 0.5 s a stalled test process saw Slack's retry lookup abandoned too.
    notifier._deadline.seconds = 30.0
    clock.advance(60)
    assert outbox.dispatch_due() == 1
    [parent] = recorder.channel_messages()
    assert outbox.thread("slack", "inc-r07") == ThreadState(channel, parent.ts)
    assert reply_kinds(recorder, parent.ts) == ["opened"]


def test_chart_of_the_anomalous_series_is_attached_when_the_incident_opens(
    engine: Engine, recorder: SlackRecorder
) -> None:
    class Series:
        def series_for(self, notification: Notification) -> list[ChartSeries]:
            return [gpu_temperature()]

    client = make_client(recorder.token, base_url=recorder.base_url, rate_limit_retries=0)
    outbox = Outbox(engine, [SlackNotifier(client, "#gpu-incidents", series_source=Series())], FakeClock())
    incident = make_incident()
    outbox(change(incident, ChangeKind.OPENED, 0, "opened"))
    outbox(change(incident, ChangeKind.UPDATED, 1, "more alerts"))
    outbox.dispatch_due()
    [png] = recorder.files()
    assert png.data.startswith(b"\x89PNG")
    assert outbox.thread("slack", incident.id) == ThreadState(png.channel, png.thread_ts, chart_posted=True)


def test_an_enqueue_the_store_refuses_is_raised_for_the_engine_to_tell_again(
    tmp_path: Path, recorder: SlackRecorder
) -> None:
    # The engine keeps the committed change stored and tells it again later (alerting.handoff).
    engine = make_engine(str(tmp_path / "no-tables.db"))  # not migrated: every insert fails
    outbox = Outbox(engine, [slack(recorder)], FakeClock())
    with pytest.raises(OperationalError):
        outbox(lifecycle()[0])


def test_a_notifier_bug_keeps_the_message_for_later(engine: Engine) -> None:
    class Broken:
        name = "broken"
        calls = 0

        def deliver(
            self, notification: Notification, thread: ThreadState, *, retry: bool, save: ThreadSaver
        ) -> None:
            Broken.calls += 1
            if Broken.calls == 1:
                raise ZeroDivisionError("bug")

    clock = FakeClock()
    outbox = Outbox(engine, [Broken()], clock)
    outbox(lifecycle()[0])
    assert outbox.dispatch_due() == 0
    assert outbox.messages(PENDING)[0].last_error == "ZeroDivisionError: bug"
    clock.advance(60)
    assert outbox.dispatch_due() == 1


def test_webhook_messages_are_retried_through_the_outbox(engine: Engine, recorder: SlackRecorder) -> None:
    clock = FakeClock()
    webhook = WebhookNotifier(f"{recorder.root_url}/hooks/ops", name="webhook:ops")
    outbox = Outbox(engine, [webhook], clock)
    recorder.fail_next("hook:ops", status=503, times=2)
    for c in lifecycle():
        outbox(c)
    outbox.dispatch_due()
    clock.advance(10)
    outbox.dispatch_due()
    clock.advance(10)
    assert outbox.dispatch_due() == 5
    assert [p["change"] for p in recorder.hook_posts("ops")] == REPLY_ORDER
    webhook.close()


def test_waiting_edits_of_an_incident_send_only_the_latest_and_reply_nothing(
    engine: Engine, recorder: SlackRecorder
) -> None:
    # What the alerts recommend changed three times before a dispatch round (every scrape, say): one
    # chat.update and one webhook POST with the latest, no thread reply; the same changes told again after
    # a restart are repeats.
    clock = FakeClock()
    webhook = WebhookNotifier(f"{recorder.root_url}/hooks/ops", name="webhook:ops")
    outbox = Outbox(engine, [slack(recorder), webhook], clock)
    outbox(lifecycle()[0])
    assert outbox.dispatch_due() == 2
    edits = [reassessed(a, k + 1) for k, a in enumerate(["investigate", "reset_gpu", "restart_node"])]
    for c in edits:
        outbox(c)
    assert outbox.dispatch_due() == 2
    [parent] = recorder.channel_messages()
    assert parent.edits == 1 and reply_kinds(recorder, parent.ts) == ["opened"]
    assert "cordon and drain the node, then reboot it" in json.dumps(parent.attachments)
    assert [p["incident"]["recommended_actions"] for p in recorder.hook_posts("ops")] == [
        [],
        ["restart_node"],
    ]
    set_aside = [m for m in outbox.messages() if m.status == DISCARDED]
    assert len(set_aside) == 4 and all("superseded by message" in str(m.last_error) for m in set_aside)
    assert outbox.stats.by_notifier_superseded == {"slack": 2, "webhook:ops": 2}
    restarted = Outbox(engine, [slack(recorder), webhook], clock)
    assert sum(restarted.enqueue(c) for c in edits) == 0 and restarted.dispatch_due() == 0
    webhook.close()


@pytest.mark.parametrize("restarts", [False, True], ids=["one-serve", "restarted"])
def test_a_recommendation_flipping_every_30_s_reaches_a_webhook_once_per_edit_interval_as_the_latest(
    engine: Engine, recorder: SlackRecorder, restarts: bool
) -> None:
    # A repeat flips what an alert recommends every 30 s all night: Slack edits its message each time, and
    # each edit was a POST of its own to a webhook, 960 a night. A configured webhook gets them at most
    # once per ``edit_interval_seconds`` (300 by default), the latest of them, whichever serve (restarted
    # every 3.5 minutes here) sends it; a change that is not an edit goes at once, in place of a held one.
    webhook_edits_flipping_every_30_s(engine, recorder, restarts)


def webhook_edits_flipping_every_30_s(engine: Engine, recorder: SlackRecorder, restarts: bool) -> None:
    """The test above on the store ``engine`` (SQLite or PostgreSQL)."""
    clock = FakeClock()
    config = WebhookConfig(name="ops", url=f"{recorder.root_url}/hooks/ops")
    hooks: list[WebhookNotifier] = []

    def serve() -> Outbox:
        hooks.append(WebhookNotifier.from_config(config, clock=clock))
        return Outbox(engine, [hooks[-1]], clock)

    outbox = serve()
    outbox(lifecycle()[0])
    outbox.dispatch_due()
    advice = ["reset_gpu", "restart_node"]
    for k in range(1, 21):  # 00:00:30 to 00:10:00
        clock.advance(30)
        if restarts and k % 7 == 0:
            outbox = serve()
        outbox(reassessed(advice[k % 2], k / 2))
        outbox.dispatch_due()
    clock.advance(60)
    outbox.dispatch_due()
    clock.advance(30)
    outbox(reassessed(advice[1], 11.5))  # held until 00:16:30
    clock.advance(10)
    outbox(change(make_incident(), ChangeKind.UPDATED, 12, "note by alice: looking", "note"))
    outbox.dispatch_due()
    posts = [(p["event"]["kind"], p["incident"]["recommended_actions"]) for p in recorder.hook_posts("ops")]
    assert posts == [
        ("opened", []),
        ("reassessed", [advice[1]]),  # 00:05:30: the flip of then, those before it set aside
        ("reassessed", [advice[0]]),  # 00:11:00: the last flip, of 00:10:00
        ("note", []),
    ]
    assert outbox.counts() == {SENT: 4, DISCARDED: 19}
    for hook in hooks:
        hook.close()


def test_edits_queued_while_slack_rate_limits_go_out_as_the_latest_alone_once_the_pause_ends(
    engine: Engine, recorder: SlackRecorder
) -> None:
    clock = FakeClock()
    outbox = Outbox(engine, [slack(recorder)], clock)
    outbox(lifecycle()[0])
    outbox.dispatch_due()
    recorder.fail_next("chat.update", status=429, retry_after=60)
    outbox(reassessed("reset_gpu", 1))
    assert outbox.dispatch_due() == 0 and outbox.paused("slack")
    outbox(reassessed("restart_node", 2))
    outbox(reassessed("investigate", 3))
    assert outbox.dispatch_due() == 0  # the pause holds: no call, nothing set aside
    assert [m.status for m in outbox.messages()][1:] == [PENDING, PENDING, PENDING]
    clock.advance(61)
    assert outbox.dispatch_due() == 1
    [parent] = recorder.channel_messages()
    assert parent.edits == 1 and "investigate (no automatic remedy" in json.dumps(parent.attachments)
    assert [m.status for m in outbox.messages()][1:] == [DISCARDED, DISCARDED, SENT]


def test_an_edit_with_nothing_after_it_is_sent_whatever_came_before(
    engine: Engine, recorder: SlackRecorder
) -> None:
    # Only a waiting edit is set aside, never the message after it: the incident's latest state goes out.
    clock = FakeClock()
    outbox = Outbox(engine, [slack(recorder)], clock)
    opened, lowered = lifecycle()[:2]
    outbox(opened)
    outbox(reassessed("reset_gpu", 1))
    outbox(lowered)
    outbox(reassessed("restart_node", 4))
    assert outbox.dispatch_due() == 3
    [parent] = recorder.channel_messages()
    assert reply_kinds(recorder, parent.ts) == ["opened", "priority_changed"]
    assert "cordon and drain the node, then reboot it" in json.dumps(parent.attachments)


def test_an_edit_is_sent_when_the_message_after_it_is_one_the_webhook_holds_back_for_a_silence(
    engine: Engine, recorder: SlackRecorder
) -> None:
    # What the alerts recommend changed, then a silence held the incident before the next dispatch round
    # (the webhook down for a while, say). The note told during the silence is not posted (a receiver may
    # page), so it cannot stand in for the edit: set aside, the receiver would keep the old advice until
    # the silence ends.
    clock = FakeClock()
    webhook = WebhookNotifier(f"{recorder.root_url}/hooks/ops", name="webhook:ops")
    outbox = Outbox(engine, [webhook], clock)
    outbox(lifecycle()[0])
    assert outbox.dispatch_due() == 1
    outbox(reassessed("restart_node", 1))
    silenced = change(make_incident(), ChangeKind.UPDATED, 2, "note by alice: looking", "note")
    outbox(replace(silenced, silenced_until=T0 + timedelta(hours=4)))
    assert outbox.dispatch_due() == 2
    assert [p["incident"]["recommended_actions"] for p in recorder.hook_posts("ops")] == [
        [],
        ["restart_node"],
    ]
    assert outbox.stats.by_notifier_superseded == {}
    webhook.close()


def test_a_resolution_told_under_a_silence_is_not_held_back_by_a_webhook_update_held_before_it(
    engine: Engine, recorder: SlackRecorder
) -> None:
    # What the alerts recommend changed (held ``edit_interval_seconds``, 300 s by default), then someone
    # silenced the noisy incident and it resolved. Told under the silence, the resolution cannot stand in
    # for the update held before it (``_stands_in``): it waited behind it, and the receiver heard of the
    # end up to 5 minutes late, where any other change goes at once. The held update goes at once then,
    # and the resolution after it.
    clock = FakeClock()
    outbox, webhook = _resolved_under_a_silence_after_a_held_update(engine, recorder, clock)
    outbox.dispatch_due()
    posts = [(p["change"], p["incident"]["recommended_actions"]) for p in recorder.hook_posts("ops")]
    assert posts == [("opened", []), ("updated", ["restart_node"]), ("resolved", [])]
    webhook.close()


def test_a_crash_mid_post_of_an_update_sent_early_does_not_hold_back_the_resolution_after_it(
    engine: Engine, recorder: SlackRecorder
) -> None:
    # The held update went early, the resolution told under a silence waiting behind it (the test above),
    # and serve died as its POST reached the receiver. Found ``sending`` at the restart, it kept the time it
    # was held until: taken for a backoff, it and the resolution after it waited out the rest of the hold.
    clock = FakeClock()
    outbox, webhook = _resolved_under_a_silence_after_a_held_update(engine, recorder, clock)
    with pytest.raises(Crash):
        Outbox(engine, [CrashAfterSend(webhook)], clock).dispatch_due()
    assert [m.status for m in outbox.messages()] == [SENT, SENDING, PENDING, PENDING]
    clock.advance(10)
    assert Outbox(engine, [webhook], clock).dispatch_due() == 3
    assert [p["change"] for p in recorder.hook_posts("ops")][-1] == "resolved"
    webhook.close()


def _resolved_under_a_silence_after_a_held_update(
    engine: Engine, recorder: SlackRecorder, clock: FakeClock
) -> tuple[Outbox, WebhookNotifier]:
    """A webhook (``ops``) told inc-r07 opened; a ``reassessed`` update held, then 10 s later the incident
    silenced and 10 s later resolved, both told under the silence; nothing after the opening sent yet."""
    config = WebhookConfig(name="ops", url=f"{recorder.root_url}/hooks/ops")
    webhook = WebhookNotifier.from_config(config, clock=clock)
    outbox = Outbox(engine, [webhook], clock)
    opened, *_, resolved = lifecycle()
    outbox(opened)
    assert outbox.dispatch_due() == 1
    outbox(reassessed("restart_node", 1))
    assert outbox.dispatch_due() == 0  # held
    clock.advance(10)
    until = T0 + timedelta(hours=4)
    silenced = change(make_incident(), ChangeKind.UPDATED, 2, "silenced by alice until later", "silenced")
    outbox(replace(silenced, silenced_until=until))
    clock.advance(10)
    outbox(replace(resolved, silenced_until=until))
    return outbox, webhook


def test_duplicate_notifier_names_are_refused(engine: Engine, recorder: SlackRecorder) -> None:
    with pytest.raises(ValueError, match="unique"):
        Outbox(engine, [slack(recorder), slack(recorder)], FakeClock())


DISPATCHER = """
import sys
from alerting.db import Base, make_engine
from alerting.notifiers.slack import SlackNotifier, make_client
from alerting.outbox import Outbox
from gpuwarden.clock import SystemClock
db, base_url, token, channel = sys.argv[1:5]
notifier = SlackNotifier(make_client(token, base_url=base_url, rate_limit_retries=0), channel)
Outbox(make_engine(db), [notifier], SystemClock()).dispatch_due()
"""


def test_sigkill_while_slack_accepts_a_reply_loses_and_duplicates_nothing(
    tmp_path: Path, engine: Engine, recorder: SlackRecorder
) -> None:
    channel = recorder.channel_id("#gpu-incidents")
    queue = Outbox(engine, [slack(recorder, channel)], FakeClock())
    for incident_id in ("inc-a", "inc-b", "inc-c"):
        for c in lifecycle(incident_id):
            queue(c)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            DISPATCHER,
            str(tmp_path / "gpuwarden.db"),
            recorder.base_url,
            recorder.token,
            channel,
        ],
        cwd=Path(__file__).resolve().parents[2],
    )
    replies = 0

    def kill_on_seventh_reply(call: RecordedCall) -> None:
        nonlocal replies
        if call.method == "chat.postMessage" and "thread_ts" in call.params and call.response.get("ok"):
            replies += 1
            if replies == 7:  # Slack has the reply; the dispatcher dies before it hears so
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()

    recorder.on_call = kill_on_seventh_reply
    try:
        assert proc.wait(timeout=120) == -signal.SIGKILL
    finally:
        recorder.on_call = None
        if proc.poll() is None:
            proc.kill()
    assert [m.status for m in queue.messages(SENDING)] == [SENDING]

    restarted = Outbox(engine, [slack(recorder, channel)], FakeClock())
    restarted.dispatch_due()
    assert {m.status for m in restarted.messages()} == {SENT}
    parents = recorder.channel_messages()
    assert len(parents) == 3
    for parent in parents:
        assert reply_kinds(recorder, parent.ts) == REPLY_ORDER


def test_migrated_outbox_schema_matches_the_models(engine: Engine) -> None:
    ours = {"notification_outbox", "notification_threads", "notifier_pauses"}
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    mentioning_ours = [d for d in diff if any(name in repr(d) for name in ours)]
    assert mentioning_ours == []


def test_run_loop_delivers_in_the_background_until_stopped(engine: Engine, recorder: SlackRecorder) -> None:
    outbox = Outbox(engine, [slack(recorder)], SystemClock())
    stop = threading.Event()
    worker = threading.Thread(target=outbox.run, args=(stop,), kwargs={"poll_seconds": 0.02})
    worker.start()
    try:
        for c in lifecycle():
            outbox(c)
        deadline = time.monotonic() + 30
        while outbox.counts().get(SENT, 0) < 5 and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        stop.set()
        worker.join()
    [parent] = recorder.channel_messages()
    assert reply_kinds(recorder, parent.ts) == REPLY_ORDER


def test_a_rate_limit_pauses_every_call_to_slack_until_its_retry_after_has_passed(
    engine: Engine, recorder: SlackRecorder
) -> None:
    clock = FakeClock()
    outbox = Outbox(engine, [slack(recorder)], clock)
    for incident_id in ("inc-a", "inc-b", "inc-c"):
        outbox(lifecycle(incident_id)[0])
    recorder.fail_next("chat.postMessage", status=429, retry_after=60)
    assert outbox.dispatch_due() == 0
    for _ in range(59):  # Slack asked for 60 s: no call at all meanwhile, for any incident
        clock.advance(1)
        assert outbox.dispatch_due() == 0
    assert len(recorder.calls) == 1
    clock.advance(1)
    assert outbox.dispatch_due() == 3
    # Refused, certainly not posted: the retry posts at once, without looking in the channel's history.
    assert {c.method for c in recorder.calls} == {"chat.postMessage"}  # parents and their replies
    assert len(recorder.channel_messages()) == 3


def test_once_a_delivery_succeeds_messages_backing_off_after_the_outage_go_at_once(
    engine: Engine, recorder: SlackRecorder
) -> None:
    clock = FakeClock()
    outbox = Outbox(engine, [slack(recorder)], clock, backoff=Backoff(initial_seconds=2, max_seconds=300))
    first = lifecycle("inc-a")
    outbox(first[0])
    outbox(first[1])
    recorder.set_outage(503)
    for _ in range(7):  # a long outage: the head of inc-a's queue backs off further each time
        outbox.dispatch_due()
        clock.advance(outbox.messages(PENDING)[0].next_attempt_at - clock.time())
    outbox.dispatch_due()
    assert outbox.messages(PENDING)[0].next_attempt_at - clock.time() >= 128
    recorder.set_outage(None)  # Slack is back; a new incident's message is the first to go
    outbox(lifecycle("inc-b")[0])
    assert outbox.dispatch_due() == 1
    assert outbox.dispatch_due() == 2  # inc-a's, at once and in order, not minutes later
    thread = outbox.thread("slack", "inc-a")
    assert thread is not None and thread.ts is not None
    assert reply_kinds(recorder, thread.ts) == REPLY_ORDER[:2]


def _opened(incident_id: str, priority: Priority) -> IncidentChange:
    incident = make_incident(incident_id, priority=priority, title=f"{incident_id} {priority.value}")
    return change(incident, ChangeKind.OPENED, 0, "opened")


def _parents(recorder: SlackRecorder) -> list[str]:
    """Each top-level message's incident, oldest first (its title names it: ``inc-<name> <priority>``)."""
    return [re.findall(r"inc-(\w+) P\d", m.text)[0] for m in recorder.channel_messages()]


def test_a_backlog_is_delivered_most_urgent_first_then_oldest_first(
    engine: Engine, recorder: SlackRecorder
) -> None:
    """After an outage, a P0 opened last was paged after every older P3 update: incidents went oldest
    first."""
    outbox = Outbox(engine, [slack(recorder)], FakeClock())
    for name, priority in (("a", Priority.P3), ("b", Priority.P2), ("c", Priority.P3), ("d", Priority.P0)):
        outbox(_opened(f"inc-{name}", priority))
    assert outbox.dispatch_due() == 4
    assert _parents(recorder) == ["d", "b", "a", "c"]


def test_a_page_stored_while_a_backlog_drains_goes_next_not_after_the_backlog(
    engine: Engine, recorder: SlackRecorder
) -> None:
    """A round planned its order once: a P0 stored while it delivered (rate limited, for minutes) waited
    for every incident of the round."""
    outbox = Outbox(engine, [slack(recorder)], FakeClock())
    for name in "abc":
        outbox(_opened(f"inc-{name}", Priority.P3))
    real_deliver = outbox._notifiers["slack"].deliver

    def deliver(notification: Notification, thread: ThreadState, *, retry: bool, save: ThreadSaver) -> None:
        real_deliver(notification, thread, retry=retry, save=save)
        if notification.incident_id == "inc-a":
            outbox(_opened("inc-z", Priority.P0))  # the engine opens a P0 meanwhile

    outbox._notifiers["slack"].deliver = deliver  # type: ignore[method-assign]
    assert outbox.dispatch_due() == 4
    assert _parents(recorder) == ["a", "z", "b", "c"]


def test_an_incident_is_served_at_its_most_urgent_waiting_message(
    engine: Engine, recorder: SlackRecorder
) -> None:
    """An escalation to P0 waiting behind its incident's older P3 message lifts the whole incident; its
    own messages keep their order."""
    outbox = Outbox(engine, [slack(recorder)], FakeClock())
    outbox(_opened("inc-a", Priority.P2))
    escalated = make_incident("inc-b", priority=Priority.P3, title="inc-b P3")
    outbox(change(escalated, ChangeKind.OPENED, 0, "opened"))
    outbox(
        change(
            make_incident("inc-b", priority=Priority.P0, title="inc-b P3"),
            ChangeKind.PRIORITY_CHANGED,
            1,
            "P3 -> P0",
        )
    )
    assert outbox.dispatch_due() == 3
    assert _parents(recorder) == ["b", "a"]


def _store_down(*args: object, **kwargs: object) -> int:
    raise OperationalError("SELECT", {}, Exception("connection refused"))


def test_a_store_outage_keeps_the_queue_depth_on_metrics_and_logs_one_traceback(
    engine: Engine, recorder: SlackRecorder, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    registry = CollectorRegistry()
    clock = FakeClock()
    webhook = WebhookNotifier(f"{recorder.root_url}/hooks/ops", name="webhook:ops")
    outbox = Outbox(engine, [slack(recorder), webhook], clock)  # two dispatch loops meet the outage
    registry.register(OutboxCollector(outbox))
    outbox(lifecycle()[0])
    assert registry.get_sample_value("gpuwarden_outbox_up") == 1
    monkeypatch.setattr(outbox, "counts_by_notifier", _store_down)
    monkeypatch.setattr(outbox, "dispatch_due", _store_down)
    # The last depth known, flagged as not current; an alert on pending > 0 does not go absent.
    pending = {"notifier": "slack", "status": "pending"}
    assert registry.get_sample_value("gpuwarden_outbox_messages", pending) == 1
    assert registry.get_sample_value("gpuwarden_outbox_up") == 0
    stop = threading.Event()
    rounds = iter(range(5))
    monkeypatch.setattr(clock, "sleep", lambda s: next(rounds, None) is None and stop.set())
    outbox.run(stop)
    assert outbox.stats.errors == 0  # the store's outage is no outbox error
    assert [r.levelname for r in caplog.records if r.name == "alerting.outbox"].count("ERROR") == 1
    assert sum(r.exc_info is not None for r in caplog.records if r.name == "alerting.outbox") == 1
    webhook.close()


class HangingReceiver:
    """A webhook receiver that holds every POST unanswered until released (a hung far end)."""

    def __init__(self) -> None:
        self.held = threading.Event()
        self.release = threading.Event()
        receiver = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                receiver.held.set()
                receiver.release.wait(120)
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        self.server = LocalServer(Handler)
        self.url = f"{self.server.url}/hooks/slow"

    def close(self) -> None:
        self.release.set()
        self.server.close()


def wait_until(check: Callable[[], bool], timeout: float = 20.0) -> bool:
    """Whether ``check`` came true before ``timeout`` seconds passed (a deadline, not a speed claim)."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_a_hanging_webhook_never_delays_slack_messages(engine: Engine, recorder: SlackRecorder) -> None:
    hanging = HangingReceiver()
    # Listed first, so its message is the first due: one dispatcher for all would sit in its POST.
    webhook = WebhookNotifier(hanging.url, name="webhook:slow", timeout_seconds=120)
    outbox = Outbox(engine, [webhook, slack(recorder)], SystemClock())
    stop = threading.Event()
    worker = threading.Thread(target=outbox.run, args=(stop,), kwargs={"poll_seconds": 0.02})
    try:
        for c in lifecycle():
            outbox(c)
        worker.start()
        assert hanging.held.wait(20), "the webhook's POST never arrived"
        assert wait_until(lambda: outbox.counts_by_notifier().get(("slack", SENT), 0) == 5), (
            "Slack waited behind the hanging webhook"
        )
        [parent] = recorder.channel_messages()
        assert reply_kinds(recorder, parent.ts) == REPLY_ORDER
        assert outbox.counts_by_notifier().get(("webhook:slow", SENT), 0) == 0
        hanging.release.set()  # the receiver answers: its messages follow, once each and in order
        assert wait_until(lambda: outbox.counts_by_notifier().get(("webhook:slow", SENT), 0) == 5)
    finally:
        stop.set()
        hanging.close()
        worker.join(timeout=30)
        webhook.close()
    assert not worker.is_alive()
    assert [m.status for m in outbox.messages()] == [SENT] * 10
