"""The notification outbox over the API: what waits, what failed and why, and queueing failed ones again.

``GET /api/v1/outbox`` (``?status=pending|sending|sent|failed|orphaned``, ``?incident=``, ``?limit=``,
newest that many, default 100) answers ``{"counts": {status: n}, "held": n, "messages": [...]}`` (counts of
the ``?incident=`` only when one is asked for; ``held``: how many of the pending are a webhook's updates held
on purpose, ``edit_interval_seconds``; ``paused``: notifiers waiting out a rate limit; ``blocked``: those
whose far end refused every call at their last try, a revoked token, with ``reason``), each message
without its payload but with ``event``, what it tells,
and for a pending one behind an earlier message of its incident still waiting, ``waiting_behind``.
``POST /api/v1/outbox/retry`` (``{"incident": id}`` optional) queues failed messages again, after someone
fixed the token or the channel, and answers ``{"requeued": n, "overtaken": m}``; 404 for an incident the
store does not hold (both POSTs).
``POST /api/v1/outbox/discard`` (``{"notifier": name, "statuses": ["orphaned"], "incident": id, "by": who,
"dry_run": false, "ids": [n, ...]}``; ``notifier`` and ``by`` are required) drops a notifier's orphaned (and,
asked, failed) messages for good, with ``ids`` only those of them (what a dry run's answer listed: a message
that failed meanwhile is not taken), and answers ``{"notifier", "discarded": {status: n}, "total", "dry_run",
"ids"}``: 404 when no message of that notifier is stored, 400 naming the field for a status that cannot be
discarded. Routes and
their auth are wired in ``gpuwarden.api``; without a notifier configured they answer 404 saying so.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from alerting.ingest import acted_by
from alerting.outbox import Outbox
from alerting.outbox_orphans import DISCARDABLE
from alerting.outbox_tables import ORPHANED, PENDING, SENDING, STATUSES, OutboxMessage
from alerting.store import IncidentStore, NotFound
from gpuwarden.clock import rfc3339
from gpuwarden.errors import InputError
from gpuwarden.params import choice, json_object, positive, single

DEFAULT_LIMIT = 100
LIST_QUERY = ("status", "incident", "limit")
RETRY_FIELDS = ("incident",)
DISCARD_FIELDS = ("notifier", "statuses", "incident", "by", "dry_run", "ids")
MAX_MESSAGES = 1_000_000


def _stamp(seconds: float | None) -> str | None:
    return None if seconds is None else rfc3339(datetime.fromtimestamp(seconds, UTC))


def message_summary(m: OutboxMessage, behind: OutboxMessage | None = None) -> dict[str, Any]:
    """A stored message as the API shows it (no payload: it holds the incident's whole text); ``behind``: the
    earlier message of its incident it waits for (``Outbox.waiting_behind``), shown as ``waiting_behind``:
    it goes once that one went, whatever its own ``next_attempt_at`` says."""
    return {
        "id": m.id,
        "notifier": m.notifier,
        "incident_id": m.incident_id,
        "event": _event(m.payload),
        "status": m.status,
        "attempts": m.attempts,
        "created_at": _stamp(m.created_at),
        "next_attempt_at": _stamp(m.next_attempt_at) if m.status in (PENDING, SENDING) else None,
        "sent_at": _stamp(m.sent_at),
        "last_error": m.last_error,
        "waiting_behind": None if behind is None else _behind(behind),
    }


def _behind(head: OutboxMessage) -> dict[str, Any]:
    """The message another waits for, with when it is tried next (null while it is being sent)."""
    due = _stamp(head.next_attempt_at) if head.status == PENDING else None
    return {"id": head.id, "status": head.status, "next_attempt_at": due}


def _event(payload: str) -> str:
    """What the message tells: the change (opened, escalation, acknowledged, resolved, ...), or for an
    update the timeline event's kind (note, silenced, alert_added, ...)."""
    try:
        data = orjson.loads(payload)
    except orjson.JSONDecodeError:
        return ""
    if not isinstance(data, dict):
        return ""
    if data.get("escalated"):
        return "escalation"
    change = str(data.get("change", ""))
    return str(data.get("event_kind", change)) if change == "updated" else change


class OutboxApi:
    """Handlers of the outbox routes."""

    def __init__(self, outbox: Outbox | None, store: IncidentStore) -> None:
        self.outbox = outbox
        self.store = store

    def _outbox(self) -> Outbox:
        if self.outbox is None:
            raise NotFound("no outbox: no notifier is configured (slack.bot_token, webhooks)")
        return self.outbox

    async def list_messages(self, request: Request) -> Response:
        """Counts per status and the newest messages, optionally of one status or incident."""
        outbox = self._outbox()
        params = request.query_params
        status = choice(single(params, "status"), "status", STATUSES)
        limit = positive(single(params, "limit", str(DEFAULT_LIMIT)), "limit", MAX_MESSAGES)
        incident = single(params, "incident")

        def read() -> dict[str, Any]:
            messages = outbox.messages(status, incident, limit=limit or DEFAULT_LIMIT)
            counts, held = outbox.depths(incident)  # of the incident asked about, as the messages are
            paused = {
                name: {"until": _stamp(until), "seconds_left": round(left, 1)}
                for name, (until, left) in outbox.pauses().items()
            }
            blocked = {
                name: {"since": _stamp(block.since), "next_try": _stamp(block.until), "reason": block.reason}
                for name, block in outbox.blocked().items()
            }
            behind = outbox.waiting_behind(messages)
            summaries = [message_summary(m, behind.get(m.id)) for m in messages]
            return {
                "counts": counts,
                "held": held,
                "messages": summaries,
                "paused": paused,
                "blocked": blocked,
            }

        return JSONResponse(await run_in_threadpool(read))

    async def retry(self, request: Request, body: bytes) -> Response:
        """Queue failed messages again (of one incident if the body names it)."""
        outbox = self._outbox()
        data = json_object(body, RETRY_FIELDS)
        incident = await self._incident(data)
        requeued, overtaken = await run_in_threadpool(outbox.requeue_failed, incident)
        return JSONResponse({"requeued": requeued, "overtaken": overtaken})

    async def discard(self, request: Request, body: bytes) -> Response:
        """Drop a notifier's orphaned (or, asked, failed) messages for good, or say what would go."""
        outbox = self._outbox()
        data = json_object(body, DISCARD_FIELDS)
        notifier = _name(data.get("notifier"), "notifier")
        by = acted_by(data)
        incident = await self._incident(data)
        statuses = data.get("statuses", [ORPHANED])
        if not isinstance(statuses, list) or not all(isinstance(s, str) for s in statuses):
            raise InputError(f"must be a list of statuses: {', '.join(DISCARDABLE)}", field="statuses")
        dry_run = data.get("dry_run", False)
        if not isinstance(dry_run, bool):
            raise InputError("must be true or false", field="dry_run")
        ids = _ids(data.get("ids"))
        done = await run_in_threadpool(
            lambda: outbox.discard(notifier, statuses, by=by, incident_id=incident, dry_run=dry_run, ids=ids)
        )
        counts = done.counts
        return JSONResponse(
            {
                "notifier": notifier,
                "discarded": counts,
                "total": sum(counts.values()),
                "dry_run": dry_run,
                "ids": done.ids,
            }
        )

    async def _incident(self, data: dict[str, Any]) -> str | None:
        """The body's ``incident``, if any, once the store is known to hold it: one that does not exist (a
        typo) is 404 naming it, as ``incidents show`` answers, not a request that acted on nothing."""
        if data.get("incident") is None:
            return None
        incident = _name(data["incident"], "incident")
        if not await run_in_threadpool(self.store.rows_by_id, [incident]):
            raise NotFound(f"no incident {incident!r} (incidents list shows them)", field="incident")
        return incident


def _ids(value: object) -> list[int] | None:
    """The body's ``ids``: the messages a dry run listed (its answer's ``ids``), the only ones to discard."""
    if value is None:
        return None
    if not isinstance(value, list) or not all(type(i) is int and i > 0 for i in value):
        raise InputError("must be a list of message ids (whole numbers above 0)", field="ids")
    return value


def _name(value: object, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InputError("must be a non-empty string", field=field)
    return value
