"""A generic outgoing webhook: each notification is one JSON POST, retried through the outbox.

Delivery is at-least-once: a receiver should drop repeats by the ``Idempotency-Key`` header (the same as
``idempotency_key`` in the body). With a secret, the body is signed like Slack signs its requests:
``X-Gpuwarden-Signature: v0=<hex hmac-sha256 of "v0:<timestamp>:<body>">`` with ``X-Gpuwarden-Timestamp``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Mapping
from typing import Any

import httpx

from alerting.notifiers.base import Notification, ThreadSaver, ThreadState
from gpuwarden.clock import Clock, SystemClock
from gpuwarden.errors import BackendError

PAYLOAD_VERSION = "1"


def webhook_payload(n: Notification) -> dict[str, Any]:
    """The JSON body: the incident snapshot, the change and the event."""
    return {
        "version": PAYLOAD_VERSION,
        "idempotency_key": n.key,
        "change": n.change.value,
        "incident": {
            "id": n.incident_id,
            "title": n.title,
            "priority": n.priority,
            "state": n.state,
            "root_cause": {"kind": n.root_cause_kind, "target": n.root_cause_target},
            "impact": {"summary": n.impact_summary, "gpus": n.gpus_affected, "nodes": n.nodes_affected},
            "affected_targets": list(n.affected_targets),
            "runbook_url": n.runbook_url,
            "actions_taken": list(n.actions_taken),
            "opened_at": n.opened_at.isoformat(),
            "resolved_at": n.resolved_at.isoformat() if n.resolved_at else None,
        },
        "event": {"at": n.event_at.isoformat(), "kind": n.event_kind, "message": n.event_message},
    }


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """``v0=`` + hex HMAC-SHA256 of ``v0:<timestamp>:<body>``."""
    base = b"v0:" + timestamp.encode() + b":" + body
    return "v0=" + hmac.new(secret.encode(), base, hashlib.sha256).hexdigest()


class WebhookNotifier:
    """POSTs each notification as JSON to one URL."""

    def __init__(
        self,
        url: str,
        *,
        name: str = "webhook",
        secret: str | None = None,
        headers: Mapping[str, str] | None = None,
        timeout_seconds: float = 10.0,
        client: httpx.Client | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._url = url
        self._name = name
        self._secret = secret
        self._headers = dict(headers or {})
        self._client = client or httpx.Client(timeout=timeout_seconds)
        self._clock = clock or SystemClock()

    @property
    def name(self) -> str:
        """The destination's name in the outbox."""
        return self._name

    def close(self) -> None:
        """Close the HTTP client."""
        self._client.close()

    def deliver(
        self, notification: Notification, thread: ThreadState, *, retry: bool, save: ThreadSaver
    ) -> None:
        """POST the notification; 2xx is delivered, 408/429/5xx and transport errors are retryable.

        Nothing is posted for a silenced incident: a receiver may page, and a silence pages nobody.
        """
        if notification.silenced_until is not None:
            return
        body = json.dumps(webhook_payload(notification), separators=(",", ":")).encode()
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
        try:
            response = self._client.post(self._url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise BackendError(f"POST failed: {exc}", backend=self._name, retryable=True) from exc
        if response.is_success:
            return
        retryable = response.status_code in (408, 425, 429) or response.status_code >= 500
        raise BackendError(
            f"POST answered HTTP {response.status_code}", backend=self._name, retryable=retryable
        )
