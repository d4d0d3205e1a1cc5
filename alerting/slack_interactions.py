"""Slack button callbacks (Acknowledge / Approve remediation / Silence 1 h), behind Slack's request signature.

Slack signs each request: ``X-Slack-Signature: v0=<hex HMAC-SHA256 of "v0:<timestamp>:<raw body>">`` with the
app's signing secret, and sends ``X-Slack-Request-Timestamp``. A request is accepted only when the timestamp
is within five minutes of the clock (replay window) and the signature matches (``hmac.compare_digest``).
The body is form-encoded with one field, ``payload``, holding the interaction JSON.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import orjson
from pydantic import SecretStr
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from alerting.ingest import NAME_LIMIT, stored_text
from alerting.notifiers.blocks import ACTION_ACKNOWLEDGE, ACTION_APPROVE, ACTION_SILENCE_1H
from alerting.subscriptions import IncidentActions
from gpuwarden.clock import Clock
from gpuwarden.errors import GpuwardenError, InputError
from gpuwarden.httpbody import BodyTooLarge, read_limited

logger = logging.getLogger(__name__)

REPLAY_WINDOW_SECONDS = 300
MAX_BODY_BYTES = 64 * 1024
SILENCE_SECONDS = 3600.0
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
        presses.append(ButtonPress(action["action_id"], value, who))
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


def _handlers(actions: IncidentActions) -> dict[str, Callable[[ButtonPress], object]]:
    return {
        ACTION_ACKNOWLEDGE: lambda p: actions.acknowledge(p.incident_id, by=p.user),
        ACTION_APPROVE: lambda p: actions.approve_remediation(p.incident_id, by=p.user),
        ACTION_SILENCE_1H: lambda p: actions.silence_incident(p.incident_id, SILENCE_SECONDS, by=p.user),
    }


def slack_interaction_routes(
    signing_secret: str | SecretStr,
    actions: IncidentActions,
    clock: Clock,
    *,
    path: str = "/slack/interactions",
) -> list[Route]:
    """Starlette routes for Slack's interactivity request URL."""
    secret = signing_secret.get_secret_value() if isinstance(signing_secret, SecretStr) else signing_secret
    if not secret:
        raise ValueError("a Slack signing secret is required")
    handlers = _handlers(actions)

    async def interactions(request: Request) -> Response:
        try:
            body = await read_limited(request, MAX_BODY_BYTES)  # a chunked body too: never all of it
        except BodyTooLarge:
            return JSONResponse({"ok": False, "error": "body too large"}, status_code=413)
        problem = verify_slack_signature(secret, request.headers, body, clock.time())
        if problem is not None:
            logger.warning("slack request refused reason=%s", problem)
            return JSONResponse({"ok": False, "error": problem}, status_code=401)
        try:
            presses = parse_interaction(body)
        except ValueError as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=400)
        results: list[dict[str, Any]] = []
        for press in presses:
            handler = handlers.get(press.action_id)
            if handler is None:
                results.append({"action_id": press.action_id, "ok": False, "error": "unknown action"})
                continue
            try:
                handler(press)
            except GpuwardenError as exc:
                logger.warning(
                    "slack action refused action=%s incident_id=%s error=%s",
                    press.action_id,
                    press.incident_id,
                    exc,
                )
                results.append({"action_id": press.action_id, "ok": False, "error": str(exc)})
                continue
            except LookupError as exc:  # an engine that does not know the incident
                results.append(
                    {"action_id": press.action_id, "ok": False, "error": f"unknown incident {exc}"}
                )
                continue
            logger.info(
                "slack action done action=%s incident_id=%s by=%s",
                press.action_id,
                press.incident_id,
                press.user,
            )
            results.append({"action_id": press.action_id, "ok": True, "incident_id": press.incident_id})
        # Slack only needs a 200 within 3 s; the message itself is updated through the outbox.
        return JSONResponse({"ok": True, "actions": results})

    return [Route(path, interactions, methods=["POST"])]
