"""Slack's Approve button approves the root cause its dialog named: one pressed on a message whose root cause
has been replaced since (the edit not yet in Slack) approves nothing and says what the root cause is now."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.exceptions import StarletteDeprecationWarning

from alerting.db import make_engine
from alerting.engine import IncidentEngine
from alerting.migrate import upgrade
from alerting.notifiers.blocks import ACTION_APPROVE
from alerting.notifiers.recorder import SlackRecorder
from alerting.notifiers.slack import SlackNotifier, make_client
from alerting.outbox import Outbox
from alerting.scenarios import fleet_inventory, node_failure
from alerting.slack_interactions import slack_interaction_routes
from alerting.slack_replays import HandledSlackRequests
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import IncidentState
from tests.alerting.slack_presses import PATH, SECRET, button_body, signed

with warnings.catch_warnings():
    # Starlette's TestClient now asks for httpx2, which the project does not ship; with httpx it still works.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient


def _approve_button(recorder: SlackRecorder) -> dict[str, Any]:
    [parent] = recorder.channel_messages()
    actions = next(b for b in parent.attachments[0]["blocks"] if b["type"] == "actions")
    button: dict[str, Any] = next(e for e in actions["elements"] if e["action_id"] == ACTION_APPROVE)
    return button


def _engine_and_its_slack_routes(tmp_path: Path) -> tuple[FakeClock, Engine, IncidentEngine, TestClient]:
    """An incident engine on a fresh store, announcing at once, and a client of its Slack button routes."""
    clock = FakeClock()
    sql = make_engine(str(tmp_path / "gpuwarden.db"))
    upgrade(sql)
    engine = IncidentEngine(sql, clock, AlertingConfig(announce_delay_seconds=0), inventory=fleet_inventory())
    client = TestClient(
        Starlette(routes=slack_interaction_routes(SECRET, engine, clock, handled=HandledSlackRequests(sql)))
    )
    return clock, sql, engine, client


def test_an_approve_pressed_after_the_root_cause_changed_approves_nothing_and_says_what_it_is_now(
    tmp_path: Path,
) -> None:
    clock, sql, engine, client = _engine_and_its_slack_routes(tmp_path)
    node_down, gpu_lost, *_ = node_failure(3, 2, clock.now())
    with SlackRecorder() as recorder:
        outbox = Outbox(
            sql, [SlackNotifier(make_client(recorder.token, base_url=recorder.base_url), "#gpu")], clock
        )
        engine.subscribe(outbox)
        [incident_id] = engine.ingest([gpu_lost]).opened
        outbox.dispatch_due()
        shown = _approve_button(recorder)  # what the on-call sees, and confirms
        assert "GPU lost* on `gpu/r03-n02/0`" in shown["confirm"]["text"]["text"]
        clock.advance(5)
        engine.ingest([node_down])  # the node is the root cause now; Slack's message not yet edited
        assert engine.store.get(incident_id).root_cause.kind.value == "node_down"

        body = button_body(ACTION_APPROVE, shown["value"], response_url=recorder.response_url)
        answer = client.post(PATH, content=body, headers=signed(body, int(clock.time()))).json()
        told = recorder.responses()

        incident = engine.store.get(incident_id)
        assert incident.state is IncidentState.TRIGGERED
        assert "remediation_approved" not in [e.kind for e in incident.timeline]
        [result] = answer["actions"]
        assert result["ok"] is False and "root cause changed" in result["error"]
        assert [t["text"] for t in told] == [
            f":warning: Could not approve remediating `{incident_id}`: incident: {incident_id}'s root cause"
            " changed after the message you pressed was posted: it is now node down on node/r03-n02;"
            " nothing was approved (approve on the message as it is now)"
        ]

        # The message as it is now asks about the node, and its button approves that.
        outbox.dispatch_due()
        now_shown = _approve_button(recorder)
        assert "node down* on `node/r03-n02" in now_shown["confirm"]["text"]["text"]
        body = button_body(ACTION_APPROVE, now_shown["value"], user="bob")
        answer = client.post(PATH, content=body, headers=signed(body, int(clock.time()))).json()
    assert answer["actions"] == [{"action_id": ACTION_APPROVE, "ok": True, "incident_id": incident_id}]
    approval = engine.store.get(incident_id).timeline[-1]
    assert approval.kind == "remediation_approved" and approval.data["root_kind"] == "node_down"
    assert engine.store.get(incident_id).state is IncidentState.MITIGATING


def test_an_approve_button_posted_before_buttons_named_their_root_cause_still_approves(
    tmp_path: Path,
) -> None:
    clock, _, engine, client = _engine_and_its_slack_routes(tmp_path)
    [incident_id] = engine.ingest(node_failure(3, 2, clock.now())).opened
    body = button_body(ACTION_APPROVE, incident_id)  # the value was the incident's id alone
    answer = client.post(PATH, content=body, headers=signed(body, int(clock.time()))).json()
    assert answer["actions"] == [{"action_id": ACTION_APPROVE, "ok": True, "incident_id": incident_id}]
    assert engine.store.get(incident_id).state is IncidentState.MITIGATING
