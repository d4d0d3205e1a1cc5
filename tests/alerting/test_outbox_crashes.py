"""The outbox when the process dies mid-delivery (before a message is marked sent, before a first post's
ts is saved, killed as Slack takes a reply) or a first post outlives its deadline: nothing lost or sent
twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine

from alerting.notifiers.base import ThreadState
from alerting.notifiers.recorder import RecordedCall, SlackRecorder
from alerting.notifiers.slack import SlackNotifier, make_client
from alerting.outbox import Outbox
from alerting.outbox_tables import PENDING, SENDING, SENT
from gpuwarden.clock import FakeClock
from tests.alerting.notifiers.incidents import gpu_temperature, lifecycle
from tests.alerting.outbox_deliveries import REPLY_ORDER, Crash, CrashAfterSend, reply_kinds, slack


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
    assert dying.thread("slack", "inc-r07") == ThreadState(channel), "where it went saved, its ts lost"

    restarted = Outbox(engine, [slack(recorder, channel)], FakeClock())
    for c in lifecycle()[1:]:
        restarted(c)
    assert restarted.dispatch_due() == 5
    [parent] = recorder.channel_messages()
    assert restarted.thread("slack", "inc-r07") == ThreadState(channel, parent.ts)
    assert reply_kinds(recorder, parent.ts) == REPLY_ORDER


def test_a_crash_before_a_first_posts_ts_is_saved_and_a_changed_channel_map_posts_it_once(
    engine: Engine, recorder: SlackRecorder
) -> None:
    # Posted P0 to the P0 channel; serve died before saving its ts; the operator routed P0 elsewhere and
    # restarted: the retry looks for the message where it was posted, not in the channel the map gives now.
    def routed(p0: str) -> SlackNotifier:
        client = make_client(recorder.token, base_url=recorder.base_url, rate_limit_retries=0)
        return SlackNotifier(client, "C0DEFAULT00", channels_by_priority={"P0": p0})

    dying = Outbox(engine, [CrashAfterSend(routed("C0ONCALL00"), before_saving_thread=True)], FakeClock())
    dying(lifecycle()[0])
    with pytest.raises(Crash):
        dying.dispatch_due()

    restarted = Outbox(engine, [routed("C0PAGING00")], FakeClock())
    assert restarted.dispatch_due() == 1
    [parent] = recorder.channel_messages()
    assert parent.channel == "C0ONCALL00"
    assert restarted.thread("slack", "inc-r07") == ThreadState("C0ONCALL00", parent.ts)
    assert reply_kinds(recorder, parent.ts) == ["opened"]


def test_a_crash_after_a_deleted_message_is_posted_again_posts_it_once(
    engine: Engine, recorder: SlackRecorder
) -> None:
    # Someone deleted the incident's message; the next change posted it again and serve died before saving
    # the new ts: the retry finds the new message, not the deleted one's ts, which would post a third.
    channel = recorder.channel_id("#gpu-incidents")
    changes = lifecycle()
    first = Outbox(engine, [slack(recorder, channel)], FakeClock())
    first(changes[0])
    first.dispatch_due()
    [deleted] = recorder.channel_messages()
    recorder.delete_by_someone(channel, deleted.ts)
    first(changes[1])
    dying = Outbox(engine, [CrashAfterSend(slack(recorder, channel), before_saving_thread=True)], FakeClock())
    with pytest.raises(Crash):
        dying.dispatch_due()

    restarted = Outbox(engine, [slack(recorder, channel)], FakeClock())
    assert restarted.dispatch_due() == 1
    [again] = recorder.channel_messages()
    assert restarted.thread("slack", "inc-r07") == ThreadState(channel, again.ts)
    assert reply_kinds(recorder, again.ts) == ["priority_changed"]


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


def _killed_at(
    proc: subprocess.Popen[bytes], recorder: SlackRecorder, at: Callable[[RecordedCall], object]
) -> None:
    """Wait for ``proc``, a dispatcher, killed with SIGKILL by the Slack stand-in once a call it answered is
    ``at`` one (Slack has done it; the dispatcher dies before it hears so)."""

    def kill(call: RecordedCall) -> None:
        if proc.poll() is None and at(call):
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()

    recorder.on_call = kill
    try:
        assert proc.wait(timeout=120) == -signal.SIGKILL
    finally:
        recorder.on_call = None
        if proc.poll() is None:
            proc.kill()


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

    def seventh_reply(call: RecordedCall) -> bool:
        nonlocal replies
        if call.method == "chat.postMessage" and "thread_ts" in call.params and call.response.get("ok"):
            replies += 1
        return replies == 7  # Slack has the reply; the dispatcher dies before it hears so

    _killed_at(proc, recorder, seventh_reply)
    assert [m.status for m in queue.messages(SENDING)] == [SENDING]

    restarted = Outbox(engine, [slack(recorder, channel)], FakeClock())
    restarted.dispatch_due()
    assert {m.status for m in restarted.messages()} == {SENT}
    parents = recorder.channel_messages()
    assert len(parents) == 3
    for parent in parents:
        assert reply_kinds(recorder, parent.ts) == REPLY_ORDER


@pytest.mark.parametrize(
    ("status", "error", "retry_after"),
    [(429, "ratelimited", 120), (200, "ratelimited", None), (500, "internal_error", None)],
    ids=["429-retry-after-longer-than-the-client-waits", "ratelimited-error", "500"],
)
def test_a_recovery_lookup_that_slack_refuses_is_retried_never_posted_blind(
    engine: Engine, recorder: SlackRecorder, status: int, error: str, retry_after: int | None
) -> None:
    # After a crash between Slack's answer and saving its ts, the lookup itself is rate limited or fails:
    # the message waits (a pause, a backoff) and its next try looks again; neither posted twice nor lost.
    channel = recorder.channel_id("#gpu-incidents")
    dying = Outbox(engine, [CrashAfterSend(slack(recorder, channel), before_saving_thread=True)], FakeClock())
    dying(lifecycle()[0])
    with pytest.raises(Crash):
        dying.dispatch_due()

    clock = FakeClock()
    restarted = Outbox(engine, [slack(recorder, channel, clock)], clock)
    recorder.fail_next("conversations.history", status=status, error=error, retry_after=retry_after)
    assert restarted.dispatch_due() == 0
    assert len(recorder.channel_messages()) == 1 and [m.status for m in restarted.messages()] == [PENDING]
    clock.advance(300)
    assert restarted.dispatch_due() == 1
    [parent] = recorder.channel_messages()
    assert restarted.thread("slack", "inc-r07") == ThreadState(channel, parent.ts)
    assert reply_kinds(recorder, parent.ts) == ["opened"]


CHARTING = """
import sys
from alerting.db import make_engine
from alerting.notifiers.slack import SlackNotifier, make_client
from alerting.outbox import Outbox
from gpuwarden.clock import SystemClock
from tests.alerting.notifiers.incidents import gpu_temperature
class Series:
    def series_for(self, notification):
        return [gpu_temperature()]
db, base_url, token, channel = sys.argv[1:5]
client = make_client(token, base_url=base_url, rate_limit_retries=0)
notifier = SlackNotifier(client, channel, series_source=Series())
Outbox(make_engine(db), [notifier], SystemClock()).dispatch_due()
"""


class _Series:
    def series_for(self, notification: object) -> list[object]:
        return [gpu_temperature()]


def test_sigkill_as_slack_completes_the_charts_upload_attaches_it_once(
    tmp_path: Path, engine: Engine, recorder: SlackRecorder
) -> None:
    """Slack has the chart (``files.completeUploadExternal`` answered), the dispatcher dies before it saves
    ``chart_posted``: the retry attached it a second time to the thread, as it looked for nothing."""
    channel = recorder.channel_id("#gpu-incidents")
    queue = Outbox(engine, [slack(recorder, channel)], FakeClock())
    for c in lifecycle():
        queue(c)
    argv = [sys.executable, "-c", CHARTING, str(tmp_path / "gpuwarden.db"), recorder.base_url, recorder.token]
    proc = subprocess.Popen([*argv, channel], cwd=Path(__file__).resolve().parents[2])

    _killed_at(proc, recorder, lambda c: c.method == "files.completeUploadExternal" and c.response.get("ok"))
    assert len(recorder.files()) == 1 and [m.status for m in queue.messages(SENDING)] == [SENDING]

    client = make_client(recorder.token, base_url=recorder.base_url, rate_limit_retries=0)
    restarted = Outbox(engine, [SlackNotifier(client, channel, series_source=_Series())], FakeClock())
    restarted.dispatch_due()
    assert {m.status for m in restarted.messages()} == {SENT}
    [parent] = recorder.channel_messages()
    assert len(recorder.files()) == 1, "the chart attached twice"
    assert [r.files for r in recorder.replies(parent.ts) if r.files] == [[recorder.files()[0].id]]
    assert restarted.thread("slack", "inc-r07") == ThreadState(channel, parent.ts, chart_posted=True)
    assert [r.event for r in recorder.replies(parent.ts) if not r.files] == REPLY_ORDER
