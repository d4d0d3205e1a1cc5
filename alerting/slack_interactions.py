"""Slack button callbacks (Acknowledge / Approve remediation / Silence 1 h), behind Slack's request signature.

Slack signs each request: ``X-Slack-Signature: v0=<hex HMAC-SHA256 of "v0:<timestamp>:<raw body>">`` with the
app's signing secret, and sends ``X-Slack-Request-Timestamp``. A request is accepted only when the timestamp
is within five minutes of the clock (replay window) and the signature matches (``hmac.compare_digest``).
The body is form-encoded with one field, ``payload``, holding the interaction JSON.

Slack reads only the status of the answer (a 200 within 3 s), never its body: a press that is refused (the
incident is resolved, merged or unknown) is told to the person who pressed as an ephemeral message posted
to the payload's ``response_url``, after the answer has gone.

The presses run on a worker thread, never on the event loop: an action waits for the engine's lock (held
through a tick or a large batch of alerts) and the store (a busy SQLite file waits up to 5 s), and on the
loop that wait stalled every request serve answers, health checks and alert posts included. A press still
running after ``ANSWER_WITHIN_SECONDS`` is answered 200 at once, as Slack asks (its 3 s past, Slack shows
the presser an error although the press may still be done), and goes on: what it could not do is told
through the ``response_url`` when it ends, as node-slack-sdk's ``syncResponseTimeout`` falls back to it.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future, wait
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import parse_qs

import orjson
from pydantic import SecretStr
from slack_sdk.errors import SlackClientError
from slack_sdk.webhook import WebhookClient
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from alerting.ingest import NAME_LIMIT, stored_text
from alerting.notifiers.blocks import (
    ACTION_ACKNOWLEDGE,
    ACTION_APPROVE,
    ACTION_SILENCE_1H,
    ROOT_SEPARATOR,
    escape,
    truncate,
)
from alerting.notifiers.deadline import DeadlineCaller
from alerting.silences import BUTTON_SILENCE_SECONDS
from alerting.slack_press_workers import PressWorkers
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
# Slack wants the 200 within 3 s of the press, network included: a press not done by then is answered and
# goes on (``slack_interaction_routes``). 1 s, not nearer 3: 30 presses at once while a 6,000-alert batch was
# applied (the event loop sharing two cores with the applier) were answered up to 1 s after their wait ended.
ANSWER_WITHIN_SECONDS = 1.0
PRESS_WORKERS = 4  # presses run at once (they take the engine's lock in turn)
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
        # Through a proxy or WAF that re-encodes form bodies (or adds a newline) each press ended here with
        # only "signature mismatch", which sent operators to rotate a signing secret that was right.
        return (
            "signature mismatch: slack.signing_secret is not this Slack app's, or something on the way (a"
            " proxy, a WAF) changed the body, which must reach serve byte for byte"
        )
    return None


@dataclass(frozen=True, slots=True)
class ButtonPress:
    """One button a person pressed."""

    action_id: str
    incident_id: str
    user: str
    response_url: str = ""  # where Slack takes messages for the person who pressed
    root: str = ""  # Approve: the root cause its dialog named (``model.root_key``); none on older messages


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
        # An Approve button names the root cause too (``blocks.approve_value``); one posted before it did not.
        incident_id, _, root = value.partition(ROOT_SEPARATOR)
        if not incident_id:
            raise ValueError(f"payload.actions[{i}].value: missing incident id")
        presses.append(ButtonPress(action["action_id"], incident_id, who, response_url, root))
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
        ACTION_APPROVE: lambda p: (
            actions.approve_remediation_outcome(p.incident_id, by=p.user, root=p.root or None).already
        ),
        ACTION_SILENCE_1H: lambda p: (
            actions.silence_incident_outcome(p.incident_id, BUTTON_SILENCE_SECONDS, by=p.user).already
        ),
    }


@dataclass(frozen=True, slots=True)
class _Done:
    """What one request's presses did: each press's result, or nothing when the request was handled before."""

    results: list[dict[str, Any]]
    replayed: bool = False


def _to_tell(
    presses: Sequence[ButtonPress], done: _Done
) -> tuple[str, list[tuple[ButtonPress, str]], list[tuple[ButtonPress, str]]]:
    """Where to tell the presser, the presses refused and those that changed nothing (someone acted first;
    every one of a request handled before: a replay, or a copy Slack sent again, which is logged here). The
    one place this is worked out, whether Slack is answered with it or the presser is told after."""
    if done.replayed:
        _log_replayed(presses)
        told = next((p.response_url for p in presses if p.response_url), "")
        return told, [], [(p, ALREADY_HANDLED) for p in presses]
    refused = [(p, str(r["error"])) for p, r in zip(presses, done.results, strict=True) if not r["ok"]]
    repeats = [(p, str(r["already"])) for p, r in zip(presses, done.results, strict=True) if r.get("already")]
    return next((p.response_url for p, _ in refused + repeats if p.response_url), ""), refused, repeats


STOPPED = "gpuwarden stopped (a restart, a deploy) before doing it; it is not done: press again"
FAILED = (
    "it failed in gpuwarden (serve's log says why) and may not be done: look at the incident before pressing"
    " again"
)


class _PressRun:
    """One request's presses on a worker thread. When Slack had to be answered before they ended, the thread
    tells the presser, once they end, what the answer would have (``late``); the lock settles which side it is
    when both end at once."""

    def __init__(self, presses: Sequence[ButtonPress], work: Callable[[], _Done]) -> None:
        self._presses = presses
        self._work = work
        self._lock = threading.Lock()
        self._ended = False
        self._late = False

    def run(self) -> _Done:
        try:
            done = self._work()
        except Exception:
            if not self._end():
                raise  # the answer is still to come: it fails as before (the API's 503)
            # A loop boundary: nobody else hears of it now.
            logger.exception("slack press failed after its answer incident_ids=%s", _ids(self._presses))
            told = next((p.response_url for p in self._presses if p.response_url), "")
            if told:
                tell_refused(told, [(p, FAILED) for p in self._presses])
            return _Done([])
        if self._end():
            told, refused, repeats = _to_tell(self._presses, done)
            if told and (refused or repeats):
                tell_refused(told, refused, repeats)
        return done

    def stopped(self) -> None:
        """Serve stopped before the presses started: the presser is told to press again (``PressWorkers``)."""
        told = next((p.response_url for p in self._presses if p.response_url), "")
        if told:
            tell_refused(told, [(p, STOPPED) for p in self._presses])

    def _end(self) -> bool:
        """Mark the presses ended; whether Slack was answered without them (the thread tells the presser)."""
        with self._lock:
            self._ended = True
            return self._late

    def answer_without(self) -> bool:
        """Answer Slack without the presses, unless they ended meanwhile (False: their result is there)."""
        with self._lock:
            self._late = not self._ended
            return self._late


def _ids(presses: Sequence[ButtonPress]) -> str:
    return ",".join(p.incident_id for p in presses)


def slack_interaction_routes(
    signing_secret: str | SecretStr,
    actions: IncidentActions,
    clock: Clock,
    *,
    handled: HandledSlackRequests,
    path: str = "/slack/interactions",
    workers: PressWorkers | None = None,
) -> list[Route]:
    """Starlette routes for Slack's interactivity request URL; ``handled`` remembers the requests already
    acted on, so that one sent again within the replay window changes nothing. The presses run on
    ``workers``, which serve closes at its stop (its background task ``PressWorkers.run``)."""
    secret = signing_secret.get_secret_value() if isinstance(signing_secret, SecretStr) else signing_secret
    if not secret:
        raise ValueError("a Slack signing secret is required")
    handlers = _handlers(actions)
    workers = workers or PressWorkers(PRESS_WORKERS)

    async def interactions(request: Request) -> Response:
        try:
            body = await read_limited(request, MAX_BODY_BYTES)  # a chunked body too: never all of it
        except BodyRefused as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=exc.status)
        now = clock.time()
        problem = verify_slack_signature(secret, request.headers, body, now)
        if problem is not None:
            logger.warning("slack request refused reason=%s", problem)
            return JSONResponse({"ok": False, "error": problem}, status_code=401)
        try:
            presses = parse_interaction(body)
        except ValueError as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=400)
        if not presses:
            return JSONResponse({"ok": True, "actions": []})
        signature = str(request.headers["x-slack-signature"])  # verified: Slack's, of this body and time
        sent_at = int(request.headers["x-slack-request-timestamp"])

        def work() -> _Done:
            if not handled.first_use(signature, sent_at, now):
                return _Done([], replayed=True)
            return _Done([_press(handlers, press) for press in presses])

        run = _PressRun(presses, work)
        future: Future[_Done] = workers.submit(run.run, run.stopped)
        # Waited for off the loop too (a future of the loop's own would need the loop alive when it ends).
        await run_in_threadpool(wait, [future], ANSWER_WITHIN_SECONDS)
        if future.cancelled():  # serve is stopping: not done, and Slack shows the presser an error
            return JSONResponse({"ok": False, "error": STOPPED}, status_code=503)
        if run.answer_without():
            logger.warning(
                "slack press not done within %.0f s: Slack answered, the press goes on and its presser is"
                " told what it could not do actions=%s incident_ids=%s by=%s",
                ANSWER_WITHIN_SECONDS,
                ",".join(p.action_id for p in presses),
                _ids(presses),
                presses[0].user,
            )
            return JSONResponse({"ok": True, "pending": True, "actions": []})
        done = await run_in_threadpool(future.result)  # ended: at once; raises what the presses raised
        told, refused, repeats = _to_tell(presses, done)
        # Slack only needs a 200 within 3 s (a replay too: Slack retries other answers); the message itself is
        # updated through the outbox, and a refusal (or a press that changed nothing: someone acted first, or
        # the request was handled before) is posted to the response_url once this answer has gone.
        task = BackgroundTask(tell_refused, told, refused, repeats) if told and (refused or repeats) else None
        if done.replayed:
            return JSONResponse({"ok": True, "already": ALREADY_HANDLED, "actions": []}, background=task)
        return JSONResponse({"ok": True, "actions": done.results}, background=task)

    return [Route(path, interactions, methods=["POST"])]


ALREADY_HANDLED = "this request was already handled; it changed nothing this time"


def _log_replayed(presses: Sequence[ButtonPress]) -> None:
    logger.warning(
        "slack request replayed; ignored actions=%s incident_ids=%s by=%s",
        ",".join(p.action_id for p in presses),
        _ids(presses),
        presses[0].user,
    )


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
