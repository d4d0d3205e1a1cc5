"""Slack's button callbacks as a request: signature, replay window, timestamps, payload parsing, users, body
limits and encodings, and dispatch to IncidentActions."""

from __future__ import annotations

import asyncio
import json
import warnings
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl, urlencode

import pytest
from starlette.applications import Starlette
from starlette.exceptions import StarletteDeprecationWarning

from alerting.notifiers.blocks import ACTION_ACKNOWLEDGE, ACTION_APPROVE, ACTION_SILENCE_1H
from alerting.slack_interactions import (
    MAX_BODY_BYTES,
    slack_interaction_routes,
    slack_signature,
    verify_slack_signature,
)
from alerting.slack_replays import HandledSlackRequests
from gpuwarden.clock import FakeClock
from tests.alerting.slack_presses import PATH, SECRET, RecordingActions, button_body, signed

with warnings.catch_warnings():
    # Starlette's TestClient now asks for httpx2, which the project does not ship; with httpx it still works.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient


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


def test_a_body_changed_by_a_proxy_is_refused_saying_it_may_have_been_changed_on_the_way(
    client: TestClient, clock: FakeClock, actions: RecordingActions, caplog: pytest.LogCaptureFixture
) -> None:
    """A proxy or WAF that decodes the form and encodes it again (``+`` for ``%20``, its own escapes) breaks
    Slack's signature: "signature mismatch" alone sent operators to rotate a signing secret that was right."""
    body = button_body(ACTION_ACKNOWLEDGE)
    reencoded = urlencode(parse_qsl(body.decode()), safe=":,").encode()
    assert reencoded != body
    response = client.post(PATH, content=reencoded, headers=signed(body, int(clock.time())))
    assert response.status_code == 401
    said = "something on the way (a proxy, a WAF) changed the body, which must reach serve byte for byte"
    assert said in response.json()["error"]
    assert said in caplog.text
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
