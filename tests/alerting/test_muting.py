"""A silenced incident pages nobody: the engine, the outbox, Slack (the recorder) and a webhook together."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, update

from alerting.muting import catch_up
from alerting.notifiers.blocks import RESOLVED_COLOUR
from alerting.notifiers.recorder import SlackRecorder
from alerting.store_models import TimelineRow
from alerting.subscriptions import ChangeKind
from gpuwarden.model import AlertStatus
from tests.alerting.muting_pipeline import Pipeline

XID = {"alertname": "GpuXid", "xid": "79", "cluster": "c1", "node": "n05", "gpu": "3"}
NODE_DOWN = {"alertname": "NodeDown", "cluster": "c1", "node": "n05"}


@pytest.fixture
def pipe(sql: Engine) -> Iterator[Pipeline]:
    with SlackRecorder() as recorder:
        pipe = Pipeline(sql, recorder)
        yield pipe
        pipe.hook.close()


def _opened_and_silenced(pipe: Pipeline) -> None:
    pipe.ingest(XID)
    assert pipe.changes[0].incident.priority.value == "P2"
    pipe.clock.advance(60)
    pipe.engine.silence_incident(pipe.incident_id(), 3600, "slack:alice")
    pipe.outbox.dispatch_due()


def test_an_escalation_of_a_silenced_incident_reaches_no_thread_no_channel_and_no_webhook(
    pipe: Pipeline,
) -> None:
    _opened_and_silenced(pipe)
    pipe.ingest(NODE_DOWN)
    assert pipe.engine.store.get(pipe.incident_id()).priority.value == "P1"
    assert pipe.replies() == ["opened"]
    assert len(pipe.recorder.visible_in_channel()) == 1  # the incident's message, no broadcast
    assert pipe.hook_events() == ["opened"]
    # The incident's own message still shows where it stands, edited in place (an edit pages nobody).
    [attachment] = pipe.parent().attachments
    assert attachment["blocks"][0]["text"]["text"].startswith(":red_circle: P1")
    assert "silenced until" in str(attachment["blocks"])


def test_the_changes_told_while_silenced_carry_when_the_silence_ends(pipe: Pipeline) -> None:
    _opened_and_silenced(pipe)
    pipe.ingest(NODE_DOWN)
    ends = pipe.changes[0].event.at + timedelta(seconds=60 + 3600)
    assert [c.silenced_until for c in pipe.changes] == [None] + [ends] * (len(pipe.changes) - 1)


def test_when_the_silence_ends_one_broadcast_catches_up_on_the_escalation_it_held_back(
    pipe: Pipeline,
) -> None:
    _opened_and_silenced(pipe)
    pipe.ingest(NODE_DOWN)
    pipe.tick(1800)
    assert pipe.replies() == ["opened"]
    pipe.tick(1800)
    assert pipe.replies() == ["opened", "silence_ended"]
    [caught_up] = pipe.recorder.replies(pipe.parent().ts)[1:]
    assert caught_up.reply_broadcast
    assert "priority rose from P2 to P1" in caught_up.text
    assert "NodeDown (n05)" in caught_up.text
    assert "silenced until" not in str(pipe.parent().attachments)
    [*_, body] = pipe.recorder.hook_posts("ops")
    assert (body["change"], body["incident"]["priority"]) == ("priority_changed", "P1")
    assert pipe.hook_events() == ["opened", "silence_ended"]
    pipe.tick(60)
    assert pipe.replies() == ["opened", "silence_ended"]  # once


def test_a_silence_expired_early_without_a_rise_catches_up_in_the_thread_only(pipe: Pipeline) -> None:
    _opened_and_silenced(pipe)
    [silence] = [s for s in pipe.engine.silences() if s.incident_id == pipe.incident_id()]
    pipe.engine.expire_silence(silence.id)
    pipe.tick(10)
    assert pipe.replies() == ["opened", "silence_ended"]
    [caught_up] = pipe.recorder.replies(pipe.parent().ts)[1:]
    assert not caught_up.reply_broadcast
    assert "nothing happened while silenced" in caught_up.text


def test_an_escalation_after_a_silence_was_expired_early_is_not_caught_up_on_as_held_back(
    pipe: Pipeline,
) -> None:
    # alice's hour-long silence is expired through the API (DELETE) 10 minutes in; n05 goes down a minute
    # later, before the tick sees the end: unsilenced, its escalation pages at once. The catch-up counted
    # the silence as running its full hour: "priority rose from P2 to P1 while silenced", a second page.
    _opened_and_silenced(pipe)
    [silence] = [s for s in pipe.engine.silences() if s.incident_id == pipe.incident_id()]
    pipe.clock.advance(600)
    pipe.engine.expire_silence(silence.id)
    pipe.ingest(NODE_DOWN)
    pipe.tick(5)
    assert pipe.replies() == ["opened", "root_cause_changed", "priority", "silence_ended"]
    *_, escalated, caught_up = pipe.recorder.replies(pipe.parent().ts)
    assert escalated.reply_broadcast  # paged as it came
    assert not caught_up.reply_broadcast
    assert caught_up.text == "silence ended (silenced by slack:alice); nothing happened while silenced"
    assert pipe.hook_events() == ["opened", "root_cause_changed", "priority", "silence_ended"]
    assert pipe.recorder.hook_posts("ops")[-1]["event"]["pages"] is False


def test_a_silence_expired_early_while_resolved_is_not_of_the_next_silences_catch_up(pipe: Pipeline) -> None:
    # alice silences the incident for 4 h; it resolves, and she expires her silence through the API (no
    # catch-up: it is resolved). It reopens, paging, and bob silences it for 1 h. Counted as running its
    # 4 h, alice's silence overlapped bob's: his catch-up said "silenced by slack:alice, slack:bob" and
    # counted the reopening, told unsilenced, as held back.
    pipe.ingest(XID)
    pipe.engine.silence_incident(pipe.incident_id(), 4 * 3600, "slack:alice")
    [silence] = [s for s in pipe.engine.silences() if s.incident_id == pipe.incident_id()]
    pipe.ingest(XID, AlertStatus.RESOLVED)
    pipe.tick(pipe.engine.config.quiet_period_seconds + 1)
    pipe.engine.expire_silence(silence.id)
    pipe.tick(5)
    pipe.ingest(XID)
    assert pipe.replies() == ["opened", "reopened"]
    pipe.engine.silence_incident(pipe.incident_id(), 3600, "slack:bob")
    pipe.ingest(NODE_DOWN)
    pipe.tick(3600)
    assert pipe.replies()[-1] == "silence_ended"
    caught_up = pipe.recorder.replies(pipe.parent().ts)[-1]
    assert caught_up.text.startswith("silence ended (silenced by slack:bob); priority rose from P2 to P1")
    assert "reopened" not in caught_up.text


def test_a_silenced_incident_that_resolves_is_only_edited_green_in_slack_and_closes_a_webhooks_ticket(
    pipe: Pipeline,
) -> None:
    _opened_and_silenced(pipe)
    pipe.ingest(XID, AlertStatus.RESOLVED)
    pipe.tick(pipe.engine.config.quiet_period_seconds + 1)
    assert pipe.engine.store.get(pipe.incident_id()).state.value == "resolved"
    assert pipe.replies() == ["opened"]
    assert pipe.parent().attachments[0]["color"] == RESOLVED_COLOUR
    # The receiver heard "opened"; no silence end follows a resolved incident, so without its resolution
    # (as Alertmanager mutes it) the receiver's ticket stayed open for good. A resolution pages nobody.
    assert pipe.hook_events() == ["opened", "resolved"]
    pipe.tick(3600)  # the silence ends after the incident: nothing to catch up on
    assert pipe.replies() == ["opened"]
    assert pipe.hook_events() == ["opened", "resolved"]


def test_messages_queued_before_the_silence_are_still_delivered(pipe: Pipeline) -> None:
    pipe.recorder.set_outage(503)
    pipe.ingest(XID)
    pipe.clock.advance(60)
    pipe.engine.silence_incident(pipe.incident_id(), 3600, "slack:alice")
    pipe.recorder.set_outage(None)
    pipe.clock.advance(600)
    pipe.outbox.dispatch_due()
    assert pipe.replies() == ["opened"]
    assert pipe.hook_events() == ["opened"]


def test_the_catch_up_survives_a_restart_during_the_silence(pipe: Pipeline) -> None:
    _opened_and_silenced(pipe)
    pipe.ingest(NODE_DOWN)
    pipe.restart()
    pipe.tick(3600)
    assert pipe.replies() == ["opened", "silence_ended"]
    assert pipe.recorder.replies(pipe.parent().ts)[-1].reply_broadcast


@pytest.mark.parametrize("restart", ["before", "after"])
def test_a_silences_last_half_hour_is_told_once_in_place_across_a_restart(
    pipe: Pipeline, restart: str
) -> None:
    """The edit that offers "Extend silence 1 h" comes once per silence end, pages nobody (no reply, no
    webhook POST), survives a restart on either side of the tick that tells it, and is not something the
    silence held back."""
    _opened_and_silenced(pipe)
    pipe.tick(1790)  # 10 s more than half the hour left
    if restart == "before":
        pipe.restart()
    pipe.tick(20)
    if restart == "after":
        pipe.restart()
    pipe.tick(20)
    kinds = [e.kind for e in pipe.engine.store.get(pipe.incident_id()).timeline]
    assert kinds.count("silence_ending") == 1
    assert pipe.replies() == ["opened"] and pipe.hook_events() == ["opened"]
    assert "Extend silence 1 h" in str(pipe.parent().attachments)
    pipe.tick(1800)
    assert pipe.replies() == ["opened", "silence_ended"]
    assert "nothing happened while silenced" in pipe.recorder.replies(pipe.parent().ts)[-1].text
    assert "Extend silence 1 h" not in str(pipe.parent().attachments)


@pytest.mark.parametrize("restart", [False, True], ids=["live", "restart-after-the-end-before-a-tick"])
def test_a_silence_ending_on_a_resolved_incident_catches_up_alike_with_a_restart_before_the_tick(
    pipe: Pipeline, restart: bool
) -> None:
    """Restart fuzz (seed 17): resolved while silenced, its fault back meanwhile (muted); the silence ends and
    ``serve`` restarts before any tick sees it. Live, the tick's release reopened the incident and, open
    again by then, it caught up on the silence (priority changes of a resolved incident, its resolution);
    restarted, it was resolved at the end and got none. Resolved when its silence ended: no catch-up either
    way; its reopening pages."""
    _opened_and_silenced(pipe)
    incident_id = pipe.incident_id()
    pipe.ingest(XID, AlertStatus.RESOLVED)
    pipe.tick(pipe.engine.config.quiet_period_seconds + 1)
    pipe.ingest(XID)  # muted: the incident stays resolved until the silence ends
    assert pipe.engine.store.get(incident_id).state.value == "resolved"
    pipe.clock.advance(3600)  # past the silence's end, no tick yet
    if restart:
        pipe.restart()
    pipe.tick(5)
    assert pipe.engine.store.get(incident_id).state.value == "triggered"
    assert pipe.replies() == ["opened", "reopened"]
    pipe.tick(60)
    assert pipe.replies() == ["opened", "reopened"]


def test_other_incidents_are_not_silenced(pipe: Pipeline) -> None:
    _opened_and_silenced(pipe)
    pipe.ingest({"alertname": "GpuXid", "xid": "79", "cluster": "c2", "node": "m01", "gpu": "0"})
    [_, other] = pipe.recorder.channel_messages()
    assert [r.event for r in pipe.recorder.replies(other.ts)] == ["opened"]
    assert pipe.hook_events() == ["opened", "opened"]
    assert ChangeKind.OPENED is pipe.changes[-1].kind and pipe.changes[-1].silenced_until is None


def test_an_incident_silenced_before_its_announcement_is_posted_when_the_silence_ends(sql: Engine) -> None:
    with SlackRecorder() as recorder:
        pipe = Pipeline(sql, recorder, announce_delay=30)
        pipe.ingest(XID)
        incident_id = pipe.engine.open_incident_ids()[0]
        pipe.engine.silence_incident(incident_id, 600, "alice")
        pipe.tick(60)  # announced, silenced: nothing anywhere
        assert recorder.calls == [] and pipe.hook_events() == []
        pipe.tick(600)
        assert pipe.replies() == ["silence_ended"]
        assert pipe.hook_events() == ["silence_ended"]
        pipe.hook.close()


def _timeline(*events: tuple[str, str, dict[str, object]]) -> list[TimelineRow]:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    rows, late = [], False
    for k, m, d in events:
        late = late or k == "later"
        when = at + timedelta(hours=2) if late else at  # after the hour's silence ran out
        rows.append(TimelineRow(at=when, kind="priority" if k == "later" else k, message=m, data=d))
    return rows


OPENED = ("opened", "incident opened", {})
SILENCED = ("silenced", "silenced for 3600s by alice", {"by": "alice", "seconds": 3600})
TO_P1 = ("priority", "priority P1: node down", {"from": "P2", "to": "P1"})
TO_P2 = ("priority", "priority P2: replica back", {"from": "P1", "to": "P2"})
ENDED = ("silence_ended", "silence ended", {})


@pytest.mark.parametrize(
    ("timeline", "priority", "rose", "shown"),
    [
        ([OPENED, SILENCED, TO_P1], "P1", True, "priority rose from P2 to P1 while silenced"),
        ([OPENED, SILENCED, TO_P1, TO_P2], "P2", False, "2 event(s) while silenced"),
        ([OPENED, SILENCED], "P2", False, "nothing happened while silenced"),
        ([OPENED, SILENCED, TO_P1, ENDED, SILENCED], "P1", False, "nothing happened while silenced"),
        ([OPENED, SILENCED, *[TO_P1] * 7], "P1", True, "and 2 more on the timeline"),
        (
            [OPENED, SILENCED, ("later", "priority P0", {"from": "P2", "to": "P0"})],
            "P2",
            False,
            "nothing happened",
        ),
    ],
    ids=["rose", "rose-and-fell-back", "quiet", "second-silence", "many-events", "after-it-ran-out"],
)
def test_the_catch_up_says_what_happened_during_the_last_silence(
    timeline: list[tuple[str, str, dict[str, object]]], priority: str, rose: bool, shown: str
) -> None:
    message, data, escalated = catch_up(_timeline(*timeline), priority)
    assert escalated is rose
    assert shown in message and message.startswith("silence ended (silenced by alice)")
    assert data["to"] == priority


def test_a_catch_up_names_only_the_silences_that_ran_up_to_its_end() -> None:
    # alice silenced the incident for 1 h at 00:00; it resolved while silenced, so her silence's end was
    # seen by nobody (no catch-up for a resolved incident); it reopened at 02:00, paging, and bob silenced
    # it at 03:00 for 1 h, then carol for 2 h at 03:30. The catch-up at 05:30 said "silenced by alice, bob,
    # carol" and counted the reopening of 02:00, told unsilenced, as held back.
    at = datetime(2026, 1, 1, tzinfo=UTC)

    def event(hours: float, kind: str, message: str, data: dict[str, object]) -> TimelineRow:
        return TimelineRow(at=at + timedelta(hours=hours), kind=kind, message=message, data=data)

    timeline = [
        event(-1, *OPENED),
        event(0, *SILENCED),
        event(0.5, "resolved", "resolved: quiet for 10m", {}),
        event(2, "reopened", "reopened: NodeDown fired again", {}),
        event(3, "silenced", "silenced for 1h by bob", {"by": "bob", "seconds": 3600}),
        event(3.5, "silenced", "silenced for 2h by carol", {"by": "carol", "seconds": 7200}),
        event(4, *TO_P1),
    ]
    message, data, _ = catch_up(timeline, "P1")
    assert message.startswith("silence ended (silenced by bob, carol); ")
    assert data["silenced_by"] == ["bob", "carol"]
    assert data["held"] == 1 and "1 event(s) while silenced: priority P1: node down" in message


def _as_an_earlier_version_wrote_it(pipe: Pipeline) -> None:
    """The incident's ``silenced`` event as a version that held no notifications back stored it."""
    with pipe.sql.begin() as connection:
        connection.execute(
            update(TimelineRow)
            .where(TimelineRow.kind == "silenced")
            .values(data={"by": "slack:alice", "seconds": 3600})
        )


def test_a_silence_of_an_earlier_version_that_ended_before_the_upgrade_gets_no_catch_up(
    pipe: Pipeline,
) -> None:
    # That version sent the escalations itself: a catch-up after the upgrade would page for nothing.
    _opened_and_silenced(pipe)
    _as_an_earlier_version_wrote_it(pipe)
    pipe.clock.advance(3601)
    pipe.restart()
    pipe.tick(60)
    pipe.ingest(NODE_DOWN)  # after the silence ran out: an ordinary escalation
    assert "silence_ended" not in [e.kind for e in pipe.engine.store.get(pipe.incident_id()).timeline]


def test_a_silence_of_an_earlier_version_still_running_catches_up_on_what_came_after_the_upgrade(
    pipe: Pipeline,
) -> None:
    _opened_and_silenced(pipe)
    _as_an_earlier_version_wrote_it(pipe)
    pipe.restart()  # this version holds notifications back from now on
    pipe.ingest(NODE_DOWN)  # P2 -> P1 while silenced
    assert pipe.replies() == ["opened"]
    pipe.tick(3600)
    assert pipe.replies() == ["opened", "silence_ended"]
    assert pipe.recorder.replies(pipe.parent().ts)[-1].reply_broadcast  # the escalation, caught up


def test_a_resolved_incident_still_silenced_holds_back_its_reopen_until_the_silence_ends(
    pipe: Pipeline,
) -> None:
    """Why ``incidents list`` still says "resolved (silenced until ...)": the silence mutes the incident's
    alerts that fire again, so the incident does not reopen (nor page) until the silence ends."""
    _opened_and_silenced(pipe)
    incident_id = pipe.incident_id()
    pipe.ingest(XID, AlertStatus.RESOLVED)
    pipe.tick(pipe.engine.config.quiet_period_seconds + 1)
    assert pipe.engine.store.get(incident_id).state.value == "resolved"
    assert incident_id in pipe.engine.silenced_until()
    pipe.ingest(XID)  # the fault comes back while the silence runs
    assert pipe.engine.store.get(incident_id).state.value == "resolved"
    assert pipe.engine.muted_count() == 1 and pipe.replies() == ["opened"]
    pipe.tick(3600)  # the silence ends: the held-back alert reopens the incident, as a reopen does
    assert incident_id not in pipe.engine.silenced_until()
    assert pipe.engine.store.get(incident_id).state.value == "triggered"
    assert pipe.engine.muted_count() == 0 and "reopened" in pipe.replies()
