"""The outbox: a change stored once and told as one message updated in place with its thread, in the
background; its tables; a backlog delivered most urgent first."""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Engine, inspect
from sqlalchemy.exc import OperationalError

from alerting.db import Base, make_engine
from alerting.notifiers.base import ChartSeries, Notification, ThreadSaver, ThreadState
from alerting.notifiers.recorder import SlackRecorder
from alerting.notifiers.slack import SlackNotifier, make_client
from alerting.outbox import Outbox
from alerting.outbox_tables import PENDING, SENT
from alerting.subscriptions import ChangeKind, IncidentChange
from gpuwarden.clock import FakeClock, SystemClock
from gpuwarden.model import Priority
from tests.alerting.notifiers.incidents import (
    change,
    gpu_temperature,
    lifecycle,
    make_incident,
)
from tests.alerting.outbox_deliveries import REPLY_ORDER, reply_kinds, slack


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


def test_duplicate_notifier_names_are_refused(engine: Engine, recorder: SlackRecorder) -> None:
    with pytest.raises(ValueError, match="unique"):
        Outbox(engine, [slack(recorder), slack(recorder)], FakeClock())


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
    notifier = slack(recorder)
    outbox = Outbox(engine, [notifier], FakeClock())
    for name in "abc":
        outbox(_opened(f"inc-{name}", Priority.P3))
    real_open = notifier.open_thread  # each incident's message goes before the replies: alone, opening it

    def open_thread(
        notification: Notification, thread: ThreadState, *, retry: bool, save: ThreadSaver
    ) -> bool:
        opened = real_open(notification, thread, retry=retry, save=save)
        if notification.incident_id == "inc-a":
            outbox(_opened("inc-z", Priority.P0))  # the engine opens a P0 meanwhile
        return opened

    notifier.open_thread = open_thread  # type: ignore[method-assign]
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


def test_after_serves_second_stop_signal_no_message_more_is_sent_and_the_rest_stays_pending(
    engine: Engine, recorder: SlackRecorder
) -> None:
    """A second SIGTERM while the outbox drained a backlog: the drain went on to its end. It now sends
    nothing more once hurried; what it had not sent stays pending, sent once at the next start."""
    outbox = Outbox(engine, [slack(recorder)], FakeClock())
    for name in ("a", "b", "c"):
        outbox(_opened(f"inc-{name}", Priority.P3))
    outbox.hurry.set()
    assert outbox.dispatch_due() == 0 and recorder.channel_messages() == []
    next_start = Outbox(engine, [slack(recorder)], FakeClock())
    assert next_start.dispatch_due() == 3
    assert sorted(_parents(recorder)) == ["a", "b", "c"]


def test_once_serve_stops_its_outbox_no_send_begins_and_what_waits_stays_pending(
    engine: Engine, recorder: SlackRecorder
) -> None:
    """serve's stop lets the send in flight finish (``finish_sends``), and no other begins after it: one
    begun as the process ends would be cut, left ``sending`` and sent again at the next start."""
    outbox = Outbox(engine, [slack(recorder)], FakeClock())
    outbox(_opened("inc-a", Priority.P3))
    assert outbox.finish_sends(5) is True  # none was in flight
    assert outbox.dispatch_due() == 0 and recorder.channel_messages() == []
    assert outbox.counts() == {"pending": 1}
    assert Outbox(engine, [slack(recorder)], FakeClock()).dispatch_due() == 1
