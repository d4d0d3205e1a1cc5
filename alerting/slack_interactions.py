"""Slack button callbacks (Acknowledge / Approve remediation / Silence 1 h), behind Slack's request signature.

Slack signs each request: ``X-Slack-Signature: v0=<hex HMAC-SHA256 of "v0:<timestamp>:<raw body>">`` with the
app's signing secret, and sends ``X-Slack-Request-Timestamp``. A request is accepted only when the timestamp
is within five minutes of the clock (replay window) and the signature matches (``hmac.compare_digest``).
The body is form-encoded with one field, ``payload``, holding the interaction JSON.

Slack reads only the status of the answer (a 200 within 3 s), never its body: a press that is refused (the
incident is resolved, merged or unknown) is told to the person who pressed as an ephemeral message posted
to the payload's ``response_url``, after the answer has gone.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import parse_qs

import orjson
from pydantic import SecretStr
from slack_sdk.errors import SlackClientError
from slack_sdk.webhook import WebhookClient
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from alerting.ingest import NAME_LIMIT, stored_text
from alerting.notifiers.blocks import (
    ACTION_ACKNOWLEDGE,
    ACTION_APPROVE,
    ACTION_SILENCE_1H,
    escape,
    truncate,
)
from alerting.notifiers.deadline import DeadlineCaller
from alerting.silences import BUTTON_SILENCE_SECONDS
from alerting.slack_replays import REPLAY_WINDOW_SECONDS, HandledSlackRequests
from alerting.subscriptions import IncidentActions
from gpuwarden.clock import Clock
from gpuwarden.errors import GpuwardenError, InputError
from gpuwarden.httpbody import BodyRefused, read_limited

logger = logging.getLogger(__name__)

# A block_actions payload echoes the whole message the button is on. gpuwarden's incident message is at most
# about 35,000 characters (text and fallback 4,000 each; header 150; four fields of 2,000; impact, targets,
# recommendations, runbook, actions and context 3,000 each; a 300-character confirmation), and a character
# costs at most 16 bytes once Slack's JSON (\ud83d\ude00 for an emoji) is form-encoded (%5Cud83d%5Cude00):
# under 600 KB (an incident with every field full of emoji measures 334 KB). 1 MiB leaves room for the
# payload's other fields, and reading that much before the signature is checked costs little. The old
# 64 KiB refused presses on any incident with a long impact (413: the button did nothing).
MAX_BODY_BYTES = 1024 * 1024
RESPONSE_TIMEOUT_SECONDS = 5  # each read of the answer (urllib's timeout)
RESPONSE_DEADLINE_SECONDS = 15.0  # the whole telling: an answer trickled under the timeout holds no longer
_TIMESTAMP = re.compile(r"[0-9]{1,12}")


def slack_signature(secret: str, timestamp: str, body: bytes) -> str:
    """The ``X-Slack-Signature`` value Slack computes for a body."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def verify_slack_signature(
    secret: str, headers: Any, body: bytes, now: float, window: float = REPLAY_WINDOW_SECONDS
) -> str | None:
    """None when the request is Slack's and fresh; otherwise why it is refused."""
    timestamp = headers.get("x-slack-request-timestamp")
    signature = headers.get("x-slack-signature")
    if not timestamp or not signature:
        return "missing Slack signature headers"
    # Unix seconds in ASCII digits, as Slack sends them: int() also reads "+1", "1_0" and other scripts'
    # digits, and 400 digits overflowed the float comparison below (a 503, before the signature was checked).
    if not _TIMESTAMP.fullmatch(timestamp):
        return "malformed X-Slack-Request-Timestamp"
    sent_at = int(timestamp)
    if abs(now - sent_at) > window:
        return "stale request: timestamp outside the 5-minute replay window"
    expected = slack_signature(secret, timestamp, body)
    if not hmac.compare_digest(expected.encode(), str(signature).encode()):
        return "signature mismatch"
    return None


@dataclass(frozen=True, slots=True)
class ButtonPress:
    """One button a person pressed."""

    action_id: str
    incident_id: str
    user: str
    response_url: str = ""  # where Slack takes messages for the person who pressed


def parse_interaction(body: bytes) -> list[ButtonPress]:
    """The button presses in a ``block_actions`` payload; ``ValueError`` names what is malformed."""
    try:
        form = parse_qs(body.decode("utf-8"), strict_parsing=False)
    except UnicodeDecodeError as exc:
        raise ValueError("body is not UTF-8") from exc
    if form.get("ssl_check") == ["1"]:
        return []  # Slack checking the endpoint's certificate
    raw = form.get("payload")
    if not raw:
        raise ValueError("payload: missing form field")
    try:
        # orjson, as the API parses bodies: nesting past 1024 levels is a JSONDecodeError, where json.loads
        # raised RecursionError (a 503).
        payload = orjson.loads(raw[0])
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"payload: not JSON ({exc.msg})") from exc
    if not isinstance(payload, dict):
        raise ValueError("payload: must be a JSON object")
    if payload.get("type") != "block_actions":
        return []
    who = _who(payload.get("user"))
    response_url = payload.get("response_url")
    if not isinstance(response_url, str) or not response_url.startswith(("https://", "http://")):
        response_url = ""
    actions = payload.get("actions")
    if not isinstance(actions, list):
        raise ValueError("payload.actions: must be a list")
    presses = []
    for i, action in enumerate(actions):
        if not isinstance(action, dict) or not isinstance(action.get("action_id"), str):
            raise ValueError(f"payload.actions[{i}].action_id: missing")
        value = action.get("value")
        if not isinstance(value, str) or not value:
            raise ValueError(f"payload.actions[{i}].value: missing incident id")
        presses.append(ButtonPress(action["action_id"], value, who, response_url))
    return presses


def _who(user: Any) -> str:
    """``slack:<username>``, or ``slack:<user id>`` when the username is not what the incident API takes as
    ``by`` (a non-empty string without NUL, at most ``NAME_LIMIT`` characters with the prefix).

    The request is signed by Slack, so the press is someone's: refusing it would fail a real button, and a
    truncated name would not be theirs. The id is Slack's stable name for the person. Neither usable: 400.
    """
    if not isinstance(user, dict) or not (user.get("username") or user.get("id")):
        raise ValueError("payload.user: missing")
    for key in ("username", "id"):
        name = user.get(key)
        if not isinstance(name, str) or not name.strip():
            continue
        try:
            return stored_text(f"slack:{name}", "by", NAME_LIMIT)
        except InputError as exc:
            logger.warning("slack user %s not stored as by (%s); trying the next", key, exc.message)
    raise ValueError(
        "payload.user: neither username nor id is a name gpuwarden can record (a non-empty string"
        f" without NUL, at most {NAME_LIMIT - len('slack:')} characters)"
    )


_VERBS = {
    ACTION_ACKNOWLEDGE: "acknowledge",
    ACTION_APPROVE: "approve remediating",
    ACTION_SILENCE_1H: "silence",
}


def tell_refused(
    response_url: str,
    refused: Sequence[tuple[ButtonPress, str]],
    repeats: Sequence[tuple[ButtonPress, str]] = (),
) -> None:
    """Post why presses were refused, or changed nothing, to the person who pressed, seen only by them
    (``ephemeral``) and under the incident's message, which stays as it is (``replace_original: false``).
    Never raises: a reply that cannot be posted is logged."""
    lines = [
        f":warning: Could not {_VERBS.get(p.action_id, f'do {escape(p.action_id)} on')}"
        f" `{escape(p.incident_id)}`: {escape(error)}"
        for p, error in refused
    ]
    lines += [f"Nothing to do for `{escape(p.incident_id)}`: {escape(why)}" for p, why in repeats]
    text = truncate("\n".join(lines), 3000)
    try:  # CallAbandoned (past the deadline) is an OSError
        client = WebhookClient(response_url, timeout=RESPONSE_TIMEOUT_SECONDS)
        send = partial(client.send, text=text, response_type="ephemeral", replace_original=False)
        answer = DeadlineCaller(RESPONSE_DEADLINE_SECONDS, name="slack response_url").call("send", send)
    except (SlackClientError, OSError, ValueError) as exc:
        logger.warning("slack response_url not reached error=%s", exc)
        return
    if answer.status_code != 200:
        logger.warning("slack response_url refused status=%d body=%s", answer.status_code, answer.body[:200])


def _handlers(actions: IncidentActions) -> dict[str, Callable[[ButtonPress], str]]:
    """Each button's action; what it returns says why nothing changed (empty when something did)."""

    return {
        ACTION_ACKNOWLEDGE: lambda p: actions.acknowledge_outcome(p.incident_id, by=p.user).already,
        ACTION_APPROVE: lambda p: actions.approve_remediation_outcome(p.incident_id, by=p.user).already,
        ACTION_SILENCE_1H: lambda p: (
            actions.silence_incident_outcome(p.incident_id, BUTTON_SILENCE_SECONDS, by=p.user).already
        ),
    }


def slack_interaction_routes(
    signing_secret: str | SecretStr,
    actions: IncidentActions,
    clock: Clock,
    *,
    handled: HandledSlackRequests,
    path: str = "/slack/interactions",
) -> list[Route]:
    """Starlette routes for Slack's interactivity request URL; ``handled`` remembers the requests already
    acted on, so that one sent again within the replay window changes nothing."""
    secret = signing_secret.get_secret_value() if isinstance(signing_secret, SecretStr) else signing_secret
    if not secret:
        raise ValueError("a Slack signing secret is required")
    handlers = _handlers(actions)

    async def interactions(request: Request) -> Response:
        try:
            body = await read_limited(request, MAX_BODY_BYTES)  # a chunked body too: never all of it
        except BodyRefused as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=exc.status)
        problem = verify_slack_signature(secret, request.headers, body, clock.time())
        if problem is not None:
            logger.warning("slack request refused reason=%s", problem)
            return JSONResponse({"ok": False, "error": problem}, status_code=401)
        try:
            presses = parse_interaction(body)
        except ValueError as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=400)
        signature = str(request.headers["x-slack-signature"])  # verified: Slack's, of this body and time
        sent_at = int(request.headers["x-slack-request-timestamp"])
        if presses and not handled.first_use(signature, sent_at, clock.time()):
            return _replayed(presses)
        results = [_press(handlers, press) for press in presses]
        refused = [(p, str(r["error"])) for p, r in zip(presses, results, strict=True) if not r["ok"]]
        repeats = [(p, str(r["already"])) for p, r in zip(presses, results, strict=True) if r.get("already")]
        told = next((p.response_url for p, _ in refused + repeats if p.response_url), "")
        # Slack only needs a 200 within 3 s; the message itself is updated through the outbox, and a refusal
        # (or a press that changed nothing: someone acted first) is posted to the response_url once this
        # answer has gone.
        task = BackgroundTask(tell_refused, told, refused, repeats) if told and (refused or repeats) else None
        return JSONResponse({"ok": True, "actions": results}, background=task)

    return [Route(path, interactions, methods=["POST"])]


ALREADY_HANDLED = "this request was already handled; it changed nothing this time"


def _replayed(presses: Sequence[ButtonPress]) -> Response:
    """The answer to a request handled before (a replay, or a copy Slack sent again): nothing is done.

    A 200, since Slack retries other answers; the presser is told, as for a press that changed nothing.
    """
    logger.warning(
        "slack request replayed; ignored actions=%s incident_ids=%s by=%s",
        ",".join(p.action_id for p in presses),
        ",".join(p.incident_id for p in presses),
        presses[0].user,
    )
    told = next((p.response_url for p in presses if p.response_url), "")
    task = BackgroundTask(tell_refused, told, (), [(p, ALREADY_HANDLED) for p in presses]) if told else None
    return JSONResponse({"ok": True, "already": ALREADY_HANDLED, "actions": []}, background=task)


def _press(handlers: dict[str, Callable[[ButtonPress], str]], press: ButtonPress) -> dict[str, Any]:
    """Run one press; its result, with the error when it was refused."""
    handler = handlers.get(press.action_id)
    if handler is None:
        return {"action_id": press.action_id, "ok": False, "error": "unknown action"}
    try:
        already = handler(press)
    except GpuwardenError as exc:
        logger.warning(
            "slack action refused action=%s incident_id=%s error=%s", press.action_id, press.incident_id, exc
        )
        return {"action_id": press.action_id, "ok": False, "error": str(exc)}
    except LookupError as exc:  # an engine that does not know the incident
        return {"action_id": press.action_id, "ok": False, "error": f"unknown incident {exc}"}
    if already:
        logger.info(
            "slack action changed nothing action=%s incident_id=%s by=%s reason=%s",
            press.action_id,
            press.incident_id,
            press.user,
            already,
        )
        return {
            "action_id": press.action_id,
            "ok": True,
            "incident_id": press.incident_id,
            "already": already,
        }
    logger.info(
        "slack action done action=%s incident_id=%s by=%s", press.action_id, press.incident_id, press.user
    )
    return {"action_id": press.action_id, "ok": True, "incident_id": press.incident_id}
