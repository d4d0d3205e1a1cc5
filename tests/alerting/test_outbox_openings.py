"""Every waiting incident's first Slack message goes before the other messages (``alerting.outbox_plan``):
a storm's last incident is paged after one post per incident, not after the timelines of all before it;
each incident's messages keep their order, and a crash while posting a first message alone posts nothing
twice."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import Engine

from alerting.notifiers.base import Notification, ThreadOpeningNotifier, ThreadSaver, ThreadState
from alerting.notifiers.recorder import SlackRecorder
from alerting.notifiers.slack import SlackNotifier
from alerting.outbox import Outbox
from alerting.outbox_tables import SENDING, SENT
from alerting.subscriptions import ChangeKind
from gpuwarden.clock import FakeClock
from gpuwarden.model import IncidentState, Priority
from tests.alerting.notifiers.incidents import change, make_incident
from tests.alerting.outbox_deliveries import Crash, reply_kinds, slack, ts_lost


def _queue_opened_and_acknowledged(outbox: Outbox, incidents: list[tuple[str, Priority]]) -> None:
    """Each incident opened, then (all opened) each acknowledged, as a storm's tick and its on-call do."""
    made = [make_incident(f"inc-{name}", priority=p, title=f"inc-{name} {p}") for name, p in incidents]
    for incident in made:
        outbox(change(incident, ChangeKind.OPENED, 0, "incident opened"))
    for incident in made:
        incident.state = IncidentState.ACKNOWLEDGED
        outbox(change(incident, ChangeKind.ACKNOWLEDGED, 1, "acknowledged by alice"))


def _posts(recorder: SlackRecorder) -> list[str]:
    """Each post in the order Slack took it: ``a`` for incident a's message, ``a:opened`` for a reply."""
    parents = {m.ts: re.findall(r"inc-(\w+) P\d", m.text)[0] for m in recorder.channel_messages()}
    shown = []
    for call in recorder.calls_to("chat.postMessage"):
        thread = call.params.get("thread_ts")
        if thread is None:
            shown.append(parents[str(call.response["ts"])])
        else:
            [reply] = [r for r in recorder.replies(str(thread)) if r.ts == call.response["ts"]]
            shown.append(f"{parents[str(thread)]}:{reply.event}")
    return shown


def test_every_waiting_incidents_first_message_is_posted_before_any_reply(
    engine: Engine, recorder: SlackRecorder
) -> None:
    """A storm opened and acknowledged before the first send: the last incident's message waited behind
    every reply of the incidents before it (on Slack's one post a second, 596 s for the 200th)."""
    outbox = Outbox(engine, [slack(recorder)], FakeClock())
    _queue_opened_and_acknowledged(outbox, [("a", Priority.P0), ("b", Priority.P0), ("c", Priority.P0)])
    assert outbox.dispatch_due() == 6
    assert _posts(recorder) == [
        "a",
        "b",
        "c",
        "a:opened",
        "a:acknowledged",
        "b:opened",
        "b:acknowledged",
        "c:opened",
        "c:acknowledged",
    ]
    for parent in recorder.channel_messages():
        assert reply_kinds(recorder, parent.ts) == ["opened", "acknowledged"]
        assert parent.edits == 1, "edited for its acknowledgement only, not again after its post"
    assert {m.status for m in outbox.messages()} == {SENT}


def test_first_messages_go_most_urgent_first_and_so_do_the_replies_after_them(
    engine: Engine, recorder: SlackRecorder
) -> None:
    outbox = Outbox(engine, [slack(recorder)], FakeClock())
    _queue_opened_and_acknowledged(outbox, [("a", Priority.P3), ("b", Priority.P3), ("c", Priority.P0)])
    assert outbox.dispatch_due() == 6
    assert _posts(recorder) == [
        "c",
        "a",
        "b",
        "c:opened",
        "c:acknowledged",
        "a:opened",
        "a:acknowledged",
        "b:opened",
        "b:acknowledged",
    ]


@pytest.mark.parametrize(
    ("priority", "rounds", "posts"),
    [
        (
            Priority.P0,
            [5, 0],
            ["a", "b", "a:opened", "a:acknowledged", "z", "b:opened", "b:acknowledged", "z:opened"],
        ),
        (
            Priority.P3,
            [4, 1],
            ["a", "b", "a:opened", "a:acknowledged", "b:opened", "b:acknowledged", "z", "z:opened"],
        ),
    ],
    ids=["of-their-priority-next", "less-urgent-after-them"],
)
def test_a_page_stored_while_replies_drain_goes_before_the_replies_left_of_its_priority(
    engine: Engine, recorder: SlackRecorder, priority: Priority, rounds: list[int], posts: list[str]
) -> None:
    """A new incident's message stored while the outbox posts others' replies (minutes, rate limited) goes
    next when it is as urgent as they are; a P3's page waits behind a P0's updates."""
    notifier = slack(recorder)
    outbox = Outbox(engine, [notifier], FakeClock())
    _queue_opened_and_acknowledged(outbox, [("a", Priority.P0), ("b", Priority.P0)])
    real_deliver = notifier.deliver

    def deliver(notification: Notification, thread: ThreadState, *, retry: bool, save: ThreadSaver) -> bool:
        delivered = real_deliver(notification, thread, retry=retry, save=save)
        if notification.incident_id == "inc-a" and notification.change is ChangeKind.OPENED:
            new = make_incident("inc-z", priority=priority, title=f"inc-z {priority.value}")
            outbox(change(new, ChangeKind.OPENED, 0, "incident opened"))  # the engine opens one meanwhile
        return delivered

    notifier.deliver = deliver  # type: ignore[method-assign]
    assert [outbox.dispatch_due(), outbox.dispatch_due()] == rounds  # a less urgent one in the next round
    assert _posts(recorder) == posts  # an incident's messages go together, as before


class CrashWhileOpening:
    """Posts an incident's first message through the real notifier, then dies: before the post's ``ts`` is
    saved (``before_saving_thread``) or after, before the outbox records the opening."""

    def __init__(self, inner: SlackNotifier, *, before_saving_thread: bool) -> None:
        self.inner = inner
        self.before_saving_thread = before_saving_thread

    @property
    def name(self) -> str:
        return self.inner.name

    def deliver(
        self, notification: Notification, thread: ThreadState, *, retry: bool, save: ThreadSaver
    ) -> bool | None:
        return self.inner.deliver(notification, thread, retry=retry, save=save)

    def open_thread(
        self, notification: Notification, thread: ThreadState, *, retry: bool, save: ThreadSaver
    ) -> bool:
        self.inner.open_thread(
            notification, thread, retry=retry, save=ts_lost(save) if self.before_saving_thread else save
        )
        raise Crash


@pytest.mark.parametrize("before_saving_thread", [True, False], ids=["before-saving-ts", "after-saving-ts"])
def test_a_crash_while_posting_a_first_message_alone_posts_nothing_twice(
    engine: Engine, recorder: SlackRecorder, before_saving_thread: bool
) -> None:
    channel = recorder.channel_id("#gpu-incidents")
    dying_notifier = CrashWhileOpening(slack(recorder, channel), before_saving_thread=before_saving_thread)
    assert isinstance(dying_notifier, ThreadOpeningNotifier)
    dying = Outbox(engine, [dying_notifier], FakeClock())
    _queue_opened_and_acknowledged(dying, [("a", Priority.P0), ("b", Priority.P0)])
    with pytest.raises(Crash):
        dying.dispatch_due()
    assert next(m.status for m in dying.messages()) == SENDING
    assert len(recorder.channel_messages()) == 1

    restarted = Outbox(engine, [slack(recorder, channel)], FakeClock())
    assert restarted.dispatch_due() == 4
    parents = recorder.channel_messages()
    assert sorted(re.findall(r"inc-(\w+) P\d", m.text)[0] for m in parents) == ["a", "b"]
    for parent in parents:
        assert reply_kinds(recorder, parent.ts) == ["opened", "acknowledged"]
        # The one found in the channel's history says which notification it was posted for.
        assert parent.edits == 1, "edited for its acknowledgement only, not again for its opening"
    assert {m.status for m in restarted.messages()} == {SENT}


class CrashAfterOpening:
    """Posts every incident's first message alone through the real notifier, then dies at the first
    delivery of the rest (its reply, its later changes)."""

    def __init__(self, inner: SlackNotifier) -> None:
        self.inner = inner

    @property
    def name(self) -> str:
        return self.inner.name

    def deliver(
        self, notification: Notification, thread: ThreadState, *, retry: bool, save: ThreadSaver
    ) -> bool | None:
        raise Crash

    def open_thread(
        self, notification: Notification, thread: ThreadState, *, retry: bool, save: ThreadSaver
    ) -> bool:
        return self.inner.open_thread(notification, thread, retry=retry, save=save)


def test_a_restart_between_posting_first_messages_alone_and_their_replies_edits_none_of_them_again(
    engine: Engine, recorder: SlackRecorder
) -> None:
    """A storm's first messages posted, serve killed before their replies: the restarted notifier edited
    each once more with what it already showed (it kept in memory which notification it had posted each
    for), one ``chat.update`` more per incident of the storm on Slack's rate-limited channel."""
    channel = recorder.channel_id("#gpu-incidents")
    dying = Outbox(engine, [CrashAfterOpening(slack(recorder, channel))], FakeClock())
    _queue_opened_and_acknowledged(dying, [("a", Priority.P0), ("b", Priority.P0)])
    with pytest.raises(Crash):
        dying.dispatch_due()
    assert len(recorder.channel_messages()) == 2 and recorder.calls_to("chat.update") == []

    restarted = Outbox(engine, [slack(recorder, channel)], FakeClock())
    assert restarted.dispatch_due() == 4
    assert len(recorder.channel_messages()) == 2
    for parent in recorder.channel_messages():
        assert reply_kinds(recorder, parent.ts) == ["opened", "acknowledged"]
        assert parent.edits == 1, "edited for its acknowledgement only, not again for its opening"
    assert {m.status for m in restarted.messages()} == {SENT}
