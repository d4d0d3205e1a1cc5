"""Slack's button callbacks: signature, replay window, payload parsing, dispatch to IncidentActions."""

from __future__ import annotations

import asyncio
import json
import warnings
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

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
from alerting.outcomes import ActionOutcome
from alerting.scenarios import fleet_inventory, node_failure
from alerting.slack_interactions import (
    MAX_BODY_BYTES,
    ButtonPress,
    slack_interaction_routes,
    slack_signature,
    tell_refused,
    verify_slack_signature,
)
from alerting.slack_replays import HandledSlackRequests
from gpuwarden.clock import FakeClock, rfc3339
from gpuwarden.config import AlertingConfig
from gpuwarden.errors import InputError
from gpuwarden.model import Incident, IncidentState
from tests.alerting.notifiers.incidents import huge_notification, make_incident
from tests.migrated_store import migrated_sqlite

with warnings.catch_warnings():
    # Starlette's TestClient now asks for httpx2, which the project does not ship; with httpx it still works.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
PATH = "/slack/interactions"


class RecordingActions:
    """IncidentActions that remember calls; incident ``inc-gone`` does not exist."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, float | None]] = []

    def _incident(self, incident_id: str) -> Incident:
        if incident_id == "inc-gone":
            raise KeyError(incident_id)
        if incident_id == "inc-closed":
            raise InputError("incident is resolved", field="incident_id")
        return make_incident(incident_id)

    def acknowledge(self, incident_id: str, by: str) -> Incident:
        self.calls.append(("acknowledge", incident_id, by, None))
        return self._incident(incident_id)

    def approve_remediation(self, incident_id: str, by: str) -> Incident:
        self.calls.append(("approve_remediation", incident_id, by, None))
        return self._incident(incident_id)

    def acknowledge_outcome(self, incident_id: str, by: str) -> ActionOutcome:
        return ActionOutcome(self.acknowledge(incident_id, by))

    def approve_remediation_outcome(self, incident_id: str, by: str) -> ActionOutcome:
        return ActionOutcome(self.approve_remediation(incident_id, by))

    def silence_incident(self, incident_id: str, duration_seconds: float, by: str) -> Incident:
        self.calls.append(("silence_incident", incident_id, by, duration_seconds))
        return self._incident(incident_id)

    def silence_incident_outcome(self, incident_id: str, duration_seconds: float, by: str) -> ActionOutcome:
        return ActionOutcome(self.silence_incident(incident_id, duration_seconds, by))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def actions() -> RecordingActions:
    return RecordingActions()


@pytest.fixture
def handled(tmp_path: Path) -> HandledSlackRequests:
    return HandledSlackRequests(migrated_sqlite(tmp_path / "handled.db"))


@pytest.fixture
def client(clock: FakeClock, actions: RecordingActions, handled: HandledSlackRequests) -> TestClient:
    return TestClient(Starlette(routes=slack_interaction_routes(SECRET, actions, clock, handled=handled)))


def button_body(action_id: str, incident_id: str = "inc-r07", user: str = "alice", **more: object) -> bytes:
    payload = {
        "type": "block_actions",
        "user": {"id": "U123", "username": user},
        "actions": [{"action_id": action_id, "value": incident_id, "type": "button"}],
        **more,
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


def signed(body: bytes, timestamp: int, secret: str = SECRET) -> dict[str, str]:
    return {
        "X-Slack-Request-Timestamp": str(timestamp),
        "X-Slack-Signature": slack_signature(secret, str(timestamp), body),
        "Content-Type": "application/x-www-form-urlencoded",
    }


def test_signature_matches_slacks_documented_example() -> None:
    # The worked example in Slack's "Verifying requests from Slack" guide.
    body = (
        b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
        b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
        b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
        b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c"
    )
    expected = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    assert slack_signature(SECRET, "1531420618", body) == expected


@pytest.mark.parametrize(
    ("action_id", "expected"),
    [
        (ACTION_ACKNOWLEDGE, ("acknowledge", "inc-r07", "slack:alice", None)),
        (ACTION_APPROVE, ("approve_remediation", "inc-r07", "slack:alice", None)),
        (ACTION_SILENCE_1H, ("silence_incident", "inc-r07", "slack:alice", 3600.0)),
    ],
    ids=["acknowledge", "approve", "silence-1h"],
)
def test_a_validly_signed_button_press_calls_the_incident_action(
    client: TestClient,
    clock: FakeClock,
    actions: RecordingActions,
    action_id: str,
    expected: tuple[object, ...],
) -> None:
    body = button_body(action_id)
    response = client.post(PATH, content=body, headers=signed(body, int(clock.time())))
    assert response.status_code == 200
    assert response.json()["actions"] == [{"action_id": action_id, "ok": True, "incident_id": "inc-r07"}]
    assert actions.calls == [expected]


def test_a_bad_signature_is_refused_and_nothing_happens(
    client: TestClient, clock: FakeClock, actions: RecordingActions
) -> None:
    body = button_body(ACTION_ACKNOWLEDGE)
    response = client.post(
        PATH, content=body, headers=signed(body, int(clock.time()), secret="not-the-secret")
    )
    assert response.status_code == 401
    assert "signature mismatch" in response.json()["error"]
    assert actions.calls == []


def test_a_body_changed_after_signing_is_refused(
    client: TestClient, clock: FakeClock, actions: RecordingActions
) -> None:
    headers = signed(button_body(ACTION_ACKNOWLEDGE), int(clock.time()))
    response = client.post(PATH, content=button_body(ACTION_APPROVE), headers=headers)
    assert response.status_code == 401
    assert actions.calls == []


@pytest.mark.parametrize("age", [301, -301], ids=["replayed-later", "from-the-future"])
def test_a_request_outside_the_five_minute_window_is_refused(
    client: TestClient, clock: FakeClock, actions: RecordingActions, age: int
) -> None:
    body = button_body(ACTION_ACKNOWLEDGE)
    response = client.post(PATH, content=body, headers=signed(body, int(clock.time()) - age))
    assert response.status_code == 401
    assert "stale" in response.json()["error"]
    assert actions.calls == []


def test_a_request_just_inside_the_window_is_accepted(client: TestClient, clock: FakeClock) -> None:
    body = button_body(ACTION_ACKNOWLEDGE)
    assert client.post(PATH, content=body, headers=signed(body, int(clock.time()) - 300)).status_code == 200


@pytest.mark.parametrize("missing", ["X-Slack-Signature", "X-Slack-Request-Timestamp"])
def test_missing_signature_headers_are_refused(
    client: TestClient, clock: FakeClock, actions: RecordingActions, missing: str
) -> None:
    body = button_body(ACTION_ACKNOWLEDGE)
    headers = signed(body, int(clock.time()))
    del headers[missing]
    response = client.post(PATH, content=body, headers=headers)
    assert response.status_code == 401
    assert "missing" in response.json()["error"]
    assert actions.calls == []


@pytest.mark.parametrize(
    "timestamp",
    [
        lambda now: "9" * 400,
        lambda now: f"{now}.0",
        lambda now: f"+{now}",
        lambda now: f"{now // 10}_{now % 10}",
    ],
    ids=["400-digits", "decimal", "plus-sign", "underscore"],
)
def test_a_timestamp_that_is_not_plain_unix_seconds_is_refused_before_the_signature(
    client: TestClient,
    clock: FakeClock,
    actions: RecordingActions,
    timestamp: Callable[[int], str],
) -> None:
    """Slack sends ASCII digits; what else ``int()`` reads (or overflows a float with) is refused as 401."""
    body = button_body(ACTION_ACKNOWLEDGE)
    sent = timestamp(int(clock.time()))
    headers = {**signed(body, 0), "X-Slack-Request-Timestamp": sent}
    headers["X-Slack-Signature"] = slack_signature(SECRET, sent, body)  # signed: only the form is wrong
    response = client.post(PATH, content=body, headers=headers)
    assert response.status_code == 401
    assert "malformed X-Slack-Request-Timestamp" in response.json()["error"]
    assert actions.calls == []


def test_a_timestamp_in_other_digits_is_malformed_even_when_signed(clock: FakeClock) -> None:
    """``int()`` reads Arabic-Indic digits (HTTP headers are Latin-1, but the check must not rely on it)."""
    body = button_body(ACTION_ACKNOWLEDGE)
    sent = str(int(clock.time())).translate(str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩"))
    headers = {"x-slack-request-timestamp": sent, "x-slack-signature": slack_signature(SECRET, sent, body)}
    problem = verify_slack_signature(SECRET, headers, body, clock.time())
    assert problem == "malformed X-Slack-Request-Timestamp"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"nothing=here", "payload: missing"),
        (b"payload=" + b"[" * 50_000, "payload: not JSON"),  # json.loads' RecursionError was a 503
        (urlencode({"payload": "{not json"}).encode(), "payload: not JSON"),
        (
            urlencode({"payload": json.dumps({"type": "block_actions", "actions": []})}).encode(),
            "payload.user",
        ),
        (
            urlencode(
                {
                    "payload": json.dumps(
                        {"type": "block_actions", "user": {"id": "U1"}, "actions": [{"action_id": "x"}]}
                    )
                }
            ).encode(),
            "payload.actions[0].value",
        ),
    ],
    ids=["no-payload", "nested-too-deep", "not-json", "no-user", "no-incident-id"],
)
def test_a_malformed_payload_is_a_400_naming_the_field(
    client: TestClient, clock: FakeClock, body: bytes, field: str
) -> None:
    response = client.post(PATH, content=body, headers=signed(body, int(clock.time())))
    assert response.status_code == 400
    assert field in response.json()["error"]


def _pressed_by(user: object) -> bytes:
    payload = {
        "type": "block_actions",
        "user": user,
        "actions": [{"action_id": ACTION_ACKNOWLEDGE, "value": "inc-r07", "type": "button"}],
    }
    return urlencode({"payload": json.dumps(payload)}).encode()


@pytest.mark.parametrize(
    "username",
    ["u" * 500, "u\x00x", {"a": 1}, "  "],
    ids=["too-long", "nul", "object", "blank"],
)
def test_a_username_the_api_would_refuse_as_by_gives_way_to_the_user_id(
    client: TestClient, clock: FakeClock, actions: RecordingActions, username: object
) -> None:
    """The request is Slack's (signed): the press counts, recorded as the Slack user id, which the incident
    API's ``by`` takes (a truncated name would not be theirs; PostgreSQL refuses a NUL or 129 characters)."""
    body = _pressed_by({"id": "U123", "username": username})
    response = client.post(PATH, content=body, headers=signed(body, int(clock.time())))
    assert response.status_code == 200, response.text
    assert actions.calls == [("acknowledge", "inc-r07", "slack:U123", None)]


@pytest.mark.parametrize(
    "user",
    [{"id": "U" * 200, "username": "u" * 200}, {"id": 5}, {"id": "U\x00", "username": None}],
    ids=["both-too-long", "id-a-number", "id-with-nul"],
)
def test_a_user_without_a_usable_name_or_id_is_a_400(
    client: TestClient, clock: FakeClock, actions: RecordingActions, user: object
) -> None:
    body = _pressed_by(user)
    response = client.post(PATH, content=body, headers=signed(body, int(clock.time())))
    assert response.status_code == 400 and "payload.user" in response.json()["error"]
    assert actions.calls == []


def test_unknown_incident_and_refused_action_are_reported_not_crashed(
    client: TestClient, clock: FakeClock
) -> None:
    for incident_id, error in (("inc-gone", "unknown incident"), ("inc-closed", "incident is resolved")):
        body = button_body(ACTION_ACKNOWLEDGE, incident_id)
        response = client.post(PATH, content=body, headers=signed(body, int(clock.time())))
        assert response.status_code == 200
        [result] = response.json()["actions"]
        assert result["ok"] is False
        assert error in result["error"]


def test_an_oversized_body_is_refused_before_it_is_verified(client: TestClient, clock: FakeClock) -> None:
    body = b"payload=" + b"x" * MAX_BODY_BYTES
    assert client.post(PATH, content=body, headers=signed(body, int(clock.time()))).status_code == 413


def test_a_compressed_body_is_refused_415_as_serve_refuses_one_not_left_to_fail_the_request(
    client: TestClient, clock: FakeClock, actions: RecordingActions
) -> None:
    # Only a body over the limit was answered here: read_limited's other refusals left the endpoint, and
    # serve's catch-all made them a 503 "request failed", counted and logged with a traceback.
    body = button_body("ack")
    headers = {**signed(body, int(clock.time())), "Content-Encoding": "gzip"}
    response = client.post(PATH, content=body, headers=headers)
    assert response.status_code == 415, response.text
    assert response.json() == {
        "ok": False,
        "error": "Content-Encoding gzip is not accepted; send the body uncompressed",
    }
    assert actions.calls == []


def test_a_chunked_body_without_a_length_is_cut_off_at_the_limit_unsigned(
    clock: FakeClock, actions: RecordingActions, handled: HandledSlackRequests
) -> None:
    app = Starlette(routes=slack_interaction_routes(SECRET, actions, clock, handled=handled))
    asked = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:  # 1,000 chunks of 4 KiB and no Content-Length
        nonlocal asked
        asked += 1
        return {"type": "http.request", "body": b"x" * 4096, "more_body": asked < 1000}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": PATH,
        "raw_path": PATH.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"transfer-encoding", b"chunked")],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 2),
    }
    asyncio.run(app(scope, receive, send))
    assert sent[0]["status"] == 413 and actions.calls == []
    assert asked <= MAX_BODY_BYTES // 4096 + 1  # stopped once past the limit; it read all 4 MB before


def test_ssl_check_is_answered(client: TestClient, clock: FakeClock, actions: RecordingActions) -> None:
    body = b"ssl_check=1&token=abc"
    response = client.post(PATH, content=body, headers=signed(body, int(clock.time())))
    assert response.status_code == 200
    assert actions.calls == []


def test_routes_need_a_signing_secret(
    actions: RecordingActions, clock: FakeClock, handled: HandledSlackRequests
) -> None:
    with pytest.raises(ValueError, match="signing secret"):
        slack_interaction_routes("", actions, clock, handled=handled)


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
