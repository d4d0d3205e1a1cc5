"""A generic outgoing webhook: each notification is one JSON POST, retried through the outbox.

Delivery is at-least-once: a receiver should drop repeats by the ``Idempotency-Key`` header (the same as
``idempotency_key`` in the body, and the same on every retry of a message, across restarts). With a secret,
the body is signed like Slack signs its requests:
``X-Gpuwarden-Signature: v0=<hex hmac-sha256 of "v0:<timestamp>:<body>">`` with ``X-Gpuwarden-Timestamp``.

Every message carries the whole incident as it was after its change, so a receiver that missed earlier
messages (refused for good, or left out by the webhook's ``events``/``priorities``) still has its state; the
first message a receiver gets for an incident says ``first_for_receiver: true`` (normally ``opened``), and a
receiver creates its ticket from whichever message that is. A ``reassessed`` update is held
``edit_interval_seconds`` by the outbox, and only the latest of those waiting is sent
(``base.EditHoldingNotifier``): each is a POST here, where Slack edits one message. The body is bounded
(``MAX_BODY_BYTES``): long lists keep their first ``MAX_LIST_ITEMS`` with their full count, long texts are
cut, and a receiver that still answers 413 gets the compact form (no lists, short texts) at once.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict
from datetime import datetime
from functools import partial
from typing import Any

import httpx

from alerting.notifiers.base import Notification, ThreadSaver, ThreadState
from alerting.notifiers.deadline import CallAbandoned, DeadlineCaller
from alerting.subscriptions import ChangeKind
from gpuwarden.clock import Clock, SystemClock, rfc3339
from gpuwarden.config_notify import WEBHOOK_EVENTS, WebhookConfig
from gpuwarden.errors import BackendError
from gpuwarden.redaction import shown_redirect, shown_url

PAYLOAD_VERSION = "1"
MAX_LIST_ITEMS = 50
"""Items kept of each list (affected targets, actions taken, ...); ``<list>_total`` gives the full count."""
MAX_TEXT_CHARS = 1000
"""A longer title, summary, message or list item is cut to this many characters (ending in "…")."""
COMPACT_TEXT_CHARS = 200
MAX_BODY_BYTES = 64 * 1024
"""A larger body is sent in the compact form: 64 KiB passes the smallest body limit seen in common
receivers' defaults (nginx's is 1 MiB, AWS API Gateway's 10 MB); a 204 KB body was refused with 413."""
RETRYABLE_STATUSES = frozenset({408, 425, 429})
"""Retried beside every 5xx; other answers (400, 401, 403, 404, 413 after the compact form, ...) are
refused for good and shown by ``gpuwarden outbox list --status failed``."""


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _time(at: datetime | None) -> str | None:
    """A time as Alertmanager's webhook and gpuwarden's API write it: RFC 3339 in UTC with a ``Z`` (an aware
    time in another zone converted, never written with its offset); None as null."""
    return None if at is None else rfc3339(at)


def webhook_payload(
    n: Notification, *, first_for_receiver: bool = True, compact: bool = False
) -> dict[str, Any]:
    """The JSON body: the incident snapshot, the change and the event, bounded (see the module docstring);
    ``compact`` leaves the lists empty (their counts stay) and cuts texts to ``COMPACT_TEXT_CHARS``."""
    limit = COMPACT_TEXT_CHARS if compact else MAX_TEXT_CHARS
    keep = 0 if compact else MAX_LIST_ITEMS
    cut = [False]

    def text(value: str) -> str:
        short = _cut(value, limit)
        cut[0] |= short != value
        return short

    def items(values: Sequence[str]) -> list[str]:
        cut[0] |= len(values) > keep
        return [text(v) for v in values[:keep]]

    fields = dict(list(n.root_cause_fields.items())[:keep])
    cut[0] |= len(fields) < len(n.root_cause_fields)
    incident = {
        "id": n.incident_id,
        "title": text(n.title),
        "priority": n.priority,
        "state": n.state,
        "root_cause": {
            "kind": n.root_cause_kind,
            "target": text(n.root_cause_target),
            "fields": {k: text(v) for k, v in fields.items()},
            "fields_total": len(n.root_cause_fields),
            "cluster": text(n.root_cause_cluster),  # as titles name it: only in a fleet of several clusters
        },
        "impact": {
            "summary": text(n.impact_summary),
            "parts": items(n.impact_parts),
            "parts_total": len(n.impact_parts),
            "gpus": n.gpus_affected,
            "nodes": n.nodes_affected,
        },
        "affected_targets": items(n.affected_targets),
        "affected_targets_total": len(n.affected_targets),
        "recommended_actions": items(n.recommended_actions),
        "recommended_actions_total": len(n.recommended_actions),
        "actions_taken": items(n.actions_taken),
        "actions_taken_total": len(n.actions_taken),
        "flapping": items(n.flapping),  # alert names, as Slack's State shows them; empty once resolved
        "flapping_total": len(n.flapping),
        "runbook_url": n.runbook_url if len(n.runbook_url) <= MAX_TEXT_CHARS else "",
        "opened_at": _time(n.opened_at),
        "resolved_at": _time(n.resolved_at),
        "silenced_until": _time(n.silenced_until),
    }
    event = {
        "at": _time(n.event_at),
        "kind": n.event_kind,
        "message": text(n.event_message),
        "escalated": n.escalated,
        # Whether people must see it arrive: an opening (Slack's new message in the channel), a reopening, an
        # escalation or a reminder (Slack broadcasts it), not one of an incident its own transaction merged
        # into another (that one pages) nor a flap's or a cycle's (unless it is a reminder).
        "pages": n.pages,
        "by": text(n.event_by),  # who made the change, when a person did; empty for the engine's
        "also": items(n.also),  # what the change's transaction did besides that no change tells
        "also_total": len(n.also),
        # A repeat of the incident's cycle (Slack edits its message, no reply): how often, within how long,
        # its alerts fired again and it went quiet; null for any other change.
        "folded": None if n.folded is None else asdict(n.folded),
        # A reopening held as cycling or flapping that pages after all, or the tick's reminder of an incident
        # firing steadily (``change`` updated, ``kind`` reminder), its incident's last page being
        # ``alerting.remind_after_seconds`` old: how many seconds old; null for any other change.
        "reminder": None if n.reminder is None else {"last_page_seconds": n.reminder},
    }
    return {
        "version": PAYLOAD_VERSION,
        "idempotency_key": n.key,
        "change": n.change.value,
        "first_for_receiver": first_for_receiver,
        "incident": incident,
        "event": event,
        "truncated": cut[0],
    }


def webhook_body(n: Notification, *, first_for_receiver: bool, compact: bool = False) -> bytes:
    """The body as sent: compact JSON, in the compact form when the full one passes ``MAX_BODY_BYTES``."""
    payload = webhook_payload(n, first_for_receiver=first_for_receiver, compact=compact)
    body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    if len(body) > MAX_BODY_BYTES and not compact:
        return webhook_body(n, first_for_receiver=first_for_receiver, compact=True)
    return body


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``v0=`` + hex HMAC-SHA256 of ``v0:<timestamp>:<body>``."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


def posted(notification: Notification, *, told: bool) -> bool:
    """Whether the webhook POSTs ``notification`` (``told``: the receiver heard of its incident): always, but
    for a silenced incident only its resolution or reopening to a receiver that heard of it
    (``WebhookNotifier.deliver`` says why); the rest the outbox marks sent, held back."""
    ends_or_reopens = notification.is_resolution or notification.change is ChangeKind.REOPENED
    return notification.silenced_until is None or (ends_or_reopens and told)


class WebhookNotifier:
    """POSTs each notification as JSON to one URL."""

    def __init__(
        self,
        url: str,
        *,
        name: str = "webhook",
        secret: str | None = None,
        bearer_token: str | None = None,
        headers: Mapping[str, str] | None = None,
        events: Collection[str] = WEBHOOK_EVENTS,
        priorities: Collection[str] = ("P0", "P1", "P2", "P3"),
        timeout_seconds: float = 10.0,
        call_deadline_seconds: float = 30.0,
        edit_interval_seconds: float = 0.0,
        client: httpx.Client | None = None,
        clock: Clock | None = None,
    ) -> None:
        """``timeout_seconds`` bounds each step of a POST (connect, send, each read);
        ``call_deadline_seconds`` the whole POST, status line and headers included;
        ``edit_interval_seconds``: a ``reassessed`` change waits that long, and only the latest of those
        waiting is sent (``EditHoldingNotifier``)."""
        self._url = url
        self._name = name
        self._secret = secret
        self._headers = dict(headers or {})
        if bearer_token is not None:
            self._headers["Authorization"] = f"Bearer {bearer_token}"
        self._events = frozenset(events)
        self._priorities = frozenset(priorities)
        self._client = client or httpx.Client(timeout=timeout_seconds)
        self._deadline = DeadlineCaller(call_deadline_seconds, name=name, setting="call_deadline_seconds")
        self._clock = clock or SystemClock()
        self._edit_interval = edit_interval_seconds

    @classmethod
    def from_config(cls, config: WebhookConfig, *, clock: Clock | None = None) -> WebhookNotifier:
        """Build from one item of the ``webhooks`` list; its outbox name is ``webhook:<name>``."""
        return cls(
            config.url,
            name=config.notifier_name,
            secret=config.signing_secret.get_secret_value() if config.signing_secret else None,
            bearer_token=config.bearer_token.get_secret_value() if config.bearer_token else None,
            headers=config.headers,
            events=config.events,
            priorities=config.priorities,
            timeout_seconds=config.timeout_seconds,
            call_deadline_seconds=config.call_deadline_seconds,
            edit_interval_seconds=config.edit_interval_seconds,
            clock=clock,
        )

    @property
    def name(self) -> str:
        """The destination's name in the outbox."""
        return self._name

    @property
    def edit_interval_seconds(self) -> float:
        """How long a ``reassessed`` change waits for a later one (each is a POST of its own here)."""
        return self._edit_interval

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()

    def wants(self, notification: Notification, *, known: bool) -> bool:
        """Whether the change is sent: its kind is one of ``events``, and the incident is at one of
        ``priorities`` or was already queued here (``known``: a receiver that heard of an incident hears
        of its later changes, its resolution included, whatever its priority has become)."""
        if notification.change.value not in self._events:
            return False
        return known or notification.priority in self._priorities

    def deliver(
        self, notification: Notification, thread: ThreadState, *, retry: bool, save: ThreadSaver
    ) -> bool:
        """POST the notification; 2xx is delivered, 408/425/429/5xx and transport errors are retryable, a
        413 is sent again at once in the compact form.

        The thread remembers the first message delivered (``ts``: its key), so only that one (and its
        retries) says ``first_for_receiver``. Nothing is posted for a silenced incident (a receiver may
        page, and a silence pages nobody) but its resolution and its reopening, to a receiver that heard of
        it: no silence end follows a resolved incident, and without the one its ticket would stay open for
        good, without the other closed while the incident is open again. The body's ``silenced_until`` says
        the silence holds (a receiver that pages holds its page).
        """
        if not posted(notification, told=thread.ts is not None):
            return False  # held back: counted as held, not sent
        first = thread.ts is None or thread.ts == notification.key
        response = self._post(notification, webhook_body(notification, first_for_receiver=first))
        if response.status_code == 413:
            compact = webhook_body(notification, first_for_receiver=first, compact=True)
            response = self._post(notification, compact)
        if response.is_success:
            if thread.ts is None:
                save(ThreadState(ts=notification.key))
            return True
        status = response.status_code
        retryable = status in RETRYABLE_STATUSES or status >= 500
        retry_after = _retry_after(response) if status in (429, 503) else None
        raise BackendError(
            f"POST answered HTTP {status}{' (compact form too)' if status == 413 else ''}"
            f"{self._redirect(response)}",
            backend=self._name,
            retryable=retryable,
            retry_after=retry_after,
        )

    def _redirect(self, response: httpx.Response) -> str:
        """For a redirect, where it points (its scheme and host, as ``config show`` shows URLs: the rest may
        be a credential) and that it is not followed; otherwise nothing."""
        location = response.headers.get("Location")
        if not response.is_redirect or not location:
            return ""
        target = shown_redirect(self._url, location)
        return f", a redirect to {target} (not followed: set the webhook's url to where it points)"

    def _post(self, notification: Notification, body: bytes) -> httpx.Response:
        headers = {
            **self._headers,
            "Content-Type": "application/json",
            "Idempotency-Key": notification.key,
            "User-Agent": "gpuwarden-webhook",
        }
        if self._secret is not None:
            timestamp = str(int(self._clock.time()))
            headers["X-Gpuwarden-Timestamp"] = timestamp
            headers["X-Gpuwarden-Signature"] = sign(self._secret, timestamp, body)
        request = self._client.build_request("POST", self._url, content=body, headers=headers)
        try:
            return self._deadline.call("POST", partial(self._answer, request))
        except CallAbandoned as exc:  # a status line or headers trickled under the timeout of each read
            raise BackendError(f"POST failed: {exc}", backend=self._name, retryable=True) from exc
        except httpx.HTTPError as exc:
            error = _without_url(str(exc), self._url)
            raise BackendError(f"POST failed: {error}", backend=self._name, retryable=True) from exc

    def _answer(self, request: httpx.Request) -> httpx.Response:
        # The status and headers say it all: the body is not read. httpx's timeout bounds each read, not
        # the POST, so a receiver trickling its body held this webhook's thread as long as it liked, and
        # one pausing longer than the timeout after its 200 got the message again as a retry.
        response = self._client.send(request, stream=True)
        response.close()
        return response


def _without_url(text: str, url: str) -> str:
    """``text`` with ``url`` (as given, or as httpx writes it) shown as ``config show`` shows it: the error
    is logged and listed by ``GET /api/v1/outbox``, and the URL's path or query may be the credential."""
    shown = shown_url(url)
    for written in {url, str(httpx.URL(url))}:
        text = text.replace(written, shown)
    return text


MAX_RETRY_AFTER_SECONDS = 3600.0


def _retry_after(response: httpx.Response) -> float | None:
    """A 429's or 503's ``Retry-After`` in seconds (1 s to an hour), or None (absent, or a date)."""
    try:
        seconds = float(response.headers.get("Retry-After", ""))
    except ValueError:
        return None
    if math.isnan(seconds) or seconds < 0:  # no advice
        return None
    return min(max(seconds, 1.0), MAX_RETRY_AFTER_SECONDS)
