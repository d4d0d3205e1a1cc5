"""Slack button presses reaching the engine and the Slack message, what the presser is told through the
response URL, replayed requests, and a silence extended from Slack."""

from __future__ import annotations

import warnings
from datetime import timedelta
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.exceptions import StarletteDeprecationWarning

from alerting import slack_interactions
from alerting.db import make_engine
from alerting.engine import IncidentEngine
from alerting.migrate import upgrade
from alerting.notifiers.blockkit import validate_attachments
from alerting.notifiers.blocks import ACTION_ACKNOWLEDGE, ACTION_APPROVE, ACTION_SILENCE_1H, incident_message
from alerting.notifiers.recorder import SlackRecorder
from alerting.notifiers.slack import SlackNotifier, make_client
from alerting.outbox import Outbox
from alerting.scenarios import fleet_inventory, node_failure
from alerting.slack_interactions import ButtonPress, slack_interaction_routes, tell_refused
from alerting.slack_replays import HandledSlackRequests
from gpuwarden.clock import FakeClock, rfc3339
from gpuwarden.config import AlertingConfig
from gpuwarden.model import IncidentState
from tests.alerting.notifiers.incidents import huge_notification
from tests.alerting.slack_presses import PATH, SECRET, RecordingActions, button_body, signed

with warnings.catch_warnings():
    # Starlette's TestClient now asks for httpx2, which the project does not ship; with httpx it still works.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient


def test_a_button_press_reaches_the_engine_and_the_slack_message_follows(tmp_path: Path) -> None:
    clock = FakeClock()
    sql = make_engine(str(tmp_path / "gpuwarden.db"))
    upgrade(sql)
    engine = IncidentEngine(sql, clock, AlertingConfig(announce_delay_seconds=0), inventory=fleet_inventory())
    with SlackRecorder() as recorder:
        notifier = SlackNotifier(make_client(recorder.token, base_url=recorder.base_url), "#gpu-incidents")
        outbox = Outbox(sql, [notifier], clock)
        engine.subscribe(outbox)
        engine.ingest(node_failure(3, 2, clock.now()))
        outbox.dispatch_due()
        [parent] = recorder.channel_messages()
        blocks = parent.attachments[0]["blocks"]
        ack = next(
            e
            for b in blocks
            if b["type"] == "actions"
            for e in b["elements"]
            if e["action_id"] == ACTION_ACKNOWLEDGE
        )

        routes = slack_interaction_routes(SECRET, engine, clock, handled=HandledSlackRequests(sql))
        client = TestClient(Starlette(routes=routes))
        body = button_body(ACTION_ACKNOWLEDGE, ack["value"], user="bob")
        assert client.post(PATH, content=body, headers=signed(body, int(clock.time()))).json()["actions"][0][
            "ok"
        ]
        outbox.dispatch_due()

        assert engine.store.get(ack["value"]).state is IncidentState.ACKNOWLEDGED
        [parent] = recorder.channel_messages()
        summary = str(parent.attachments[0]["blocks"][1])
        assert "*State*\\nacknowledged" in summary
        assert ACTION_ACKNOWLEDGE not in str(parent.attachments[0]["blocks"])
        assert "acknowledged by slack:bob" in recorder.replies(parent.ts)[-1].text


def test_a_press_on_the_largest_message_gpuwarden_posts_is_read_whole(
    client: TestClient, clock: FakeClock, actions: RecordingActions
) -> None:
    # Slack echoes the message in the payload: every field of it full, of emoji (16 bytes each once Slack's
    # JSON is form-encoded).
    e = "\N{GRINNING FACE}"
    n = huge_notification().model_copy(
        update={
            "title": e * 3000,
            "root_cause_kind": e * 300,
            "root_cause_target": e * 3000,
            "impact_summary": ", ".join([e * 60] * 1000),
            "impact_parts": (e * 60,) * 1000,
            "affected_targets": (e * 300,) * 1000,
            "actions_taken": (e * 500,) * 40,
            "recommended_actions": (e * 500,) * 100,
            "runbook_url": "https://runbooks.example/" + e * 3000,
        }
    )
    message = incident_message(n)
    assert validate_attachments(message.attachments) == []
    echoed = {"type": "message", "text": message.text, "attachments": message.attachments, "ts": "1.000001"}
    container = {
        "type": "message_attachment",
        "message_ts": "1.000001",
        "channel_id": "C1",
        "attachment_id": 1,
    }
    body = button_body(ACTION_ACKNOWLEDGE, message=echoed, container=container, state={"values": {}})
    assert len(body) > 300_000  # the old 64 KiB limit answered 413: the button did nothing
    response = client.post(PATH, content=body, headers=signed(body, int(clock.time())))
    assert response.status_code == 200 and response.json()["actions"][0]["ok"] is True
    assert actions.calls == [("acknowledge", "inc-r07", "slack:alice", None)]


def test_a_refused_press_is_told_to_the_presser_alone_through_the_response_url(
    client: TestClient, clock: FakeClock
) -> None:
    with SlackRecorder() as recorder:
        for action_id, incident_id in (
            (ACTION_APPROVE, "inc-closed"),
            (ACTION_SILENCE_1H, "inc-gone"),
            ("other_apps_button", "inc-r07"),
            (ACTION_ACKNOWLEDGE, "inc-r07"),  # done: nothing to tell
        ):
            body = button_body(action_id, incident_id, response_url=recorder.response_url)
            response = client.post(PATH, content=body, headers=signed(body, int(clock.time())))
            assert response.status_code == 200
        told = recorder.responses()
    assert [(t["response_type"], t["replace_original"]) for t in told] == [("ephemeral", False)] * 3
    assert (
        told[0]["text"]
        == ":warning: Could not approve remediating `inc-closed`: incident_id: incident is resolved"
    )
    assert told[1]["text"].startswith(":warning: Could not silence `inc-gone`: unknown incident")
    assert told[2]["text"] == ":warning: Could not do other_apps_button on `inc-r07`: unknown action"


def test_a_response_url_that_cannot_be_reached_still_answers_slack(
    client: TestClient, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    with SlackRecorder() as recorder:
        gone = recorder.response_url
    body = button_body(ACTION_ACKNOWLEDGE, "inc-closed", response_url=gone)
    with caplog.at_level("WARNING", logger="alerting.slack_interactions"):
        response = client.post(PATH, content=body, headers=signed(body, int(clock.time())))
    assert response.status_code == 200 and response.json()["actions"][0]["ok"] is False
    assert "response_url not reached" in caplog.text


def test_a_response_url_trickling_its_answer_holds_the_telling_no_longer_than_its_deadline(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # slack-sdk's WebhookClient reads with urllib, its timeout per read: an answer trickled under it held the
    # server thread telling the presser as long as it went on.
    monkeypatch.setattr(slack_interactions, "RESPONSE_DEADLINE_SECONDS", 0.3)
    with SlackRecorder() as recorder:
        recorder.trickle_next("response_url", seconds=10.0)
        press = ButtonPress(ACTION_APPROVE, "inc-closed", "slack:alice", recorder.response_url)
        with caplog.at_level("WARNING", logger="alerting.slack_interactions"):
            tell_refused(recorder.response_url, [(press, "incident is resolved")])
        # Still trickling: once the telling reached the recorder, which a stalled test process can delay
        # past the telling's deadline.
        assert recorder.wait_trickling() and recorder.trickling() == 1, "the telling ended with its answer"
        [told] = recorder.responses()
    assert told["text"].startswith(":warning: Could not approve remediating `inc-closed`")
    assert "abandoned" in caplog.text


def test_a_press_that_changes_nothing_tells_the_presser_who_acted_first(tmp_path: Path) -> None:
    """Two people press Acknowledge (or Approve) on one message: the second must learn that it was done
    already, and by whom, instead of silence; the incident's timeline holds one event."""
    clock = FakeClock()
    sql = make_engine(str(tmp_path / "gpuwarden.db"))
    upgrade(sql)
    engine = IncidentEngine(sql, clock, AlertingConfig(), inventory=fleet_inventory())
    [incident_id] = engine.ingest(node_failure(3, 2, clock.now())).opened
    routes = slack_interaction_routes(SECRET, engine, clock, handled=HandledSlackRequests(sql))
    client = TestClient(Starlette(routes=routes))
    with SlackRecorder() as recorder:
        for action_id in (ACTION_ACKNOWLEDGE, ACTION_APPROVE):
            for user in ("bob", "carol"):
                body = button_body(action_id, incident_id, user=user, response_url=recorder.response_url)
                response = client.post(PATH, content=body, headers=signed(body, int(clock.time())))
                assert response.status_code == 200 and response.json()["actions"][0]["ok"] is True
        told = recorder.responses()
    assert [(t["response_type"], t["replace_original"]) for t in told] == [("ephemeral", False)] * 2
    assert told[0]["text"].startswith(f"Nothing to do for `{incident_id}`: ")
    assert "slack:bob" in told[0]["text"] and "slack:bob" in told[1]["text"]
    kinds = [e.kind for e in engine.store.get(incident_id).timeline]
    assert kinds.count("acknowledged") == 1


def test_a_silence_press_that_changes_nothing_tells_the_presser_whose_silence_holds(tmp_path: Path) -> None:
    """Probe walk: "Silence 1 h" pressed twice by alice: the second press changed nothing (right), and she
    heard nothing at all, where Acknowledge and Approve say who acted first."""
    clock = FakeClock()
    sql = make_engine(str(tmp_path / "gpuwarden.db"))
    upgrade(sql)
    engine = IncidentEngine(sql, clock, AlertingConfig(), inventory=fleet_inventory())
    [incident_id] = engine.ingest(node_failure(3, 2, clock.now())).opened
    client = TestClient(
        Starlette(routes=slack_interaction_routes(SECRET, engine, clock, handled=HandledSlackRequests(sql)))
    )
    until = rfc3339(clock.now() + timedelta(hours=1))  # the first press's silence
    with SlackRecorder() as recorder:
        for _ in range(2):
            body = button_body(ACTION_SILENCE_1H, incident_id, response_url=recorder.response_url)
            response = client.post(PATH, content=body, headers=signed(body, int(clock.time())))
            assert response.status_code == 200 and response.json()["actions"][0]["ok"] is True
            clock.advance(5)
        told = recorder.responses()
    assert [(t["response_type"], t["replace_original"]) for t in told] == [("ephemeral", False)]
    assert told[0]["text"] == (
        f"Nothing to do for `{incident_id}`: already silenced until {until} by slack:alice"
    )
    kinds = [e.kind for e in engine.store.get(incident_id).timeline]
    assert kinds.count("silenced") == 1


def test_a_replayed_signed_request_changes_nothing_and_tells_the_presser_it_was_handled(
    client: TestClient, clock: FakeClock, actions: RecordingActions
) -> None:
    """Someone who saw an Approve request sends it again within Slack's five minutes: the signature and the
    timestamp still verify, but the request was handled, so nothing is approved a second time. A 200, since
    Slack retries anything else."""
    with SlackRecorder() as recorder:
        body = button_body(ACTION_APPROVE, response_url=recorder.response_url)
        headers = signed(body, int(clock.time()))
        assert client.post(PATH, content=body, headers=headers).json()["actions"][0]["ok"] is True
        clock.advance(120)
        replay = client.post(PATH, content=body, headers=headers)
        told = recorder.responses()
    assert replay.status_code == 200
    assert replay.json()["actions"] == [] and "already handled" in replay.json()["already"]
    assert actions.calls == [("approve_remediation", "inc-r07", "slack:alice", None)]
    assert [(t["response_type"], t["replace_original"]) for t in told] == [("ephemeral", False)]
    assert told[0]["text"].startswith("Nothing to do for `inc-r07`: this request was already handled")


def test_a_request_replayed_after_a_restart_on_the_same_store_changes_nothing(
    tmp_path: Path, clock: FakeClock, actions: RecordingActions
) -> None:
    """What was handled is in the store: a restarted server, or a standby that took over, refuses it too."""
    body = button_body(ACTION_APPROVE)
    headers = signed(body, int(clock.time()))
    for _ in ("first server", "after the restart"):
        sql = make_engine(str(tmp_path / "gpuwarden.db"))
        upgrade(sql)
        routes = slack_interaction_routes(SECRET, actions, clock, handled=HandledSlackRequests(sql))
        assert (
            TestClient(Starlette(routes=routes)).post(PATH, content=body, headers=headers).status_code == 200
        )
        sql.dispose()
    assert actions.calls == [("approve_remediation", "inc-r07", "slack:alice", None)]


def test_a_press_sent_again_with_a_new_timestamp_is_a_new_request(
    client: TestClient, clock: FakeClock, actions: RecordingActions
) -> None:
    """Only the very request is refused: the same button pressed again later (Slack signs it anew) is handed
    to the incident action, which decides whether it changes anything."""
    body = button_body(ACTION_ACKNOWLEDGE)
    client.post(PATH, content=body, headers=signed(body, int(clock.time())))
    clock.advance(1)
    client.post(PATH, content=body, headers=signed(body, int(clock.time())))
    assert [c[0] for c in actions.calls] == ["acknowledge", "acknowledge"]


def _silence_button(recorder: SlackRecorder) -> str | None:
    """The label of the incident message's silence button, None when it has none."""
    [parent] = recorder.channel_messages()
    buttons = [e for b in parent.attachments[0]["blocks"] if b["type"] == "actions" for e in b["elements"]]
    return next((e["text"]["text"] for e in buttons if e["action_id"] == ACTION_SILENCE_1H), None)


def test_a_silence_in_its_last_half_hour_can_be_extended_from_slack(tmp_path: Path) -> None:
    """Slack walk-through: bob silenced the incident for 1 h; at 35 minutes he still worked on it, and the
    message offered no way to extend the silence (the button is left out while a silence holds, and nothing
    edited the message again): only the CLI or the API. In the silence's last half hour, when a press
    extends it (``lifecycle._holding``), the message is edited in place, paging nobody, to offer "Extend
    silence 1 h"; alice's press makes a new silence of an hour from then, and the button goes until its
    own last half hour."""
    clock = FakeClock()
    sql = make_engine(str(tmp_path / "gpuwarden.db"))
    upgrade(sql)
    engine = IncidentEngine(sql, clock, AlertingConfig(announce_delay_seconds=0), inventory=fleet_inventory())
    routes = slack_interaction_routes(SECRET, engine, clock, handled=HandledSlackRequests(sql))
    client = TestClient(Starlette(routes=routes))

    def press(user: str) -> None:
        body = button_body(ACTION_SILENCE_1H, incident_id, user=user)
        assert client.post(PATH, content=body, headers=signed(body, int(clock.time()))).json()["actions"][0][
            "ok"
        ]
        outbox.dispatch_due()

    def wait(minutes: int) -> None:
        for _ in range(minutes):  # serve ticks every few seconds; a minute apart is enough here
            clock.advance(60)
            engine.tick()
        outbox.dispatch_due()

    with SlackRecorder() as recorder:
        outbox = Outbox(
            sql, [SlackNotifier(make_client(recorder.token, base_url=recorder.base_url), "#x")], clock
        )
        engine.subscribe(outbox)
        [incident_id] = engine.ingest(node_failure(3, 2, clock.now())).opened
        outbox.dispatch_due()
        assert _silence_button(recorder) == "Silence 1 h"
        press("bob")
        assert _silence_button(recorder) is None
        [parent] = recorder.channel_messages()
        replies = len(recorder.replies(parent.ts))
        wait(29)
        assert _silence_button(recorder) is None  # half an hour left: a press would change nothing
        wait(2)
        assert _silence_button(recorder) == "Extend silence 1 h"
        assert len(recorder.replies(parent.ts)) == replies  # edited in place: nobody paged
        assert len(recorder.channel_messages()) == 1
        press("alice")
        until = engine.store.get(incident_id)
        assert _silence_button(recorder) is None
        wait(29)
        assert _silence_button(recorder) is None
        wait(2)
        assert _silence_button(recorder) == "Extend silence 1 h"
    kinds = [e.kind for e in until.timeline]
    assert kinds.count("silenced") == 2 and "silence_ended" not in kinds
    assert engine.silenced_until()[incident_id] == clock.now() + timedelta(minutes=29)
