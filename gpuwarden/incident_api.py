"""What people do to an incident over the API: acknowledge, mark mitigating, note, silence, resolve.

``POST /api/v1/incidents/{id}/ack`` (``{"by"}``), ``.../mitigate`` (``{"action", "by"}``: someone is working
on it, by hand or by a tool gpuwarden does not drive), ``.../notes`` (``{"text", "by"}``: on the timeline, in
the Slack thread and in the postmortem), ``.../silence`` (``{"duration": "1h", "by"}``, the Slack
button's silence for any duration) and ``.../resolve`` (``{"by"}``: resolved by hand once none of its alerts
fires, without waiting for the quiet period; 409 while any does). ``by`` defaults to ``api``; another key is
refused 400 naming it (``author``: "did you mean by?"). Each answers
with the incident's detail; ``ack``, ``mitigate``, ``silence`` and ``resolve`` add ``changed`` and
``message`` (``changed`` false: it was already so, and ``message`` says by whom and since when, e.g. "already
acknowledged by alice at ...", "already mitigating (drain r07-n03) by bob since ...", "already silenced until
... by bob" or "already resolved by bob at ..."), so that a retried request changes nothing. A note is
stored each time it is posted: the same words may be said twice on purpose. A silence's id (in its timeline
event, "silenced for 1h by bob (silence sil-...)", and the detail's ``silence_ids``) is what lifts it early:
``DELETE /api/v2/silence/{id}``, as ``amtool silence expire`` sends it.
Routes and their auth are wired in ``gpuwarden.api``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from alerting.engine import IncidentEngine
from alerting.ingest import acted_by, stored_text
from alerting.member import recommended_by_alerts
from alerting.outcomes import ActionOutcome, duration_text
from alerting.silences import parse_duration
from alerting.store import IncidentStore, impact_to_dict
from alerting.titles import root_cluster
from alerting.topology import target_to_dict
from gpuwarden.alertmanager_api import iso
from gpuwarden.errors import InputError
from gpuwarden.model import Incident
from gpuwarden.params import json_object

Handler = Callable[[Request, bytes], Awaitable[Response]]


def incident_detail(
    incident: Incident,
    alerts: Sequence[dict[str, Any]],
    silenced_until: datetime | None = None,
    cluster: str = "",
    silence_ids: Sequence[str] = (),
) -> dict[str, Any]:
    """The detail shape: the summary plus impact, timeline and member alerts. ``cluster``: the root cause's,
    as titles name it (``titles.root_cluster``); ``silence_ids``: the silences holding it
    (``SilenceKeeping.incident_silences``)."""
    impact = incident.impact
    return {
        "id": incident.id,
        "title": incident.title,
        "priority": incident.priority.value,
        "state": incident.state.value,
        "root_cause": {
            "kind": incident.root_cause.kind.value,
            "target": target_to_dict(incident.root_cause.target),
            "cluster": cluster,  # named only in a fleet of more than one cluster, as titles do
        },
        "alert_count": len(incident.alert_fingerprints),  # merged into another: those it handed over
        "opened_at": iso(incident.opened_at),
        "resolved_at": iso(incident.resolved_at),
        "last_opened_at": iso(incident.last_opened_at or incident.opened_at),
        "merged_into": incident.merged_into,
        "silenced_until": iso(silenced_until),
        "silence_ids": list(silence_ids),  # expiring each lifts the silence early: DELETE /api/v2/silence/ID
        # The stored shape, with workloads as "kind/namespace/name" strings for people and scripts.
        "impact": {
            **impact_to_dict(impact),
            "workloads": [str(w) for w in impact.workloads],
            "namespaced": sorted(str(w) for w in impact.namespaced),  # shown namespace/name in the title
        },
        "timeline": [
            {"at": iso(e.at), "kind": e.kind, "message": e.message, "data": dict(e.data)}
            for e in incident.timeline
        ],
        "alerts": list(alerts),
        # What Slack's Recommended section and a webhook's recommended_actions say: the most drastic first,
        # with an XID's follow-up (79: contact support). None for one merged into another: its alerts are
        # that one's now, where to act (``outcomes.resolved_conflict``).
        "recommended_actions": list(
            recommended_by_alerts(
                (a["labels"], a["recommended_action"])
                for a in alerts
                if a["status"] == "firing" and not incident.merged_into
            )
        ),
    }


def _fields(body: bytes, *names: str) -> dict[str, Any]:
    """The action's body: ``names`` and ``by``, no other key (``{"author": "alice"}`` acknowledged it "by
    api"). ``by`` is required, as the README lists it: without it ``{}`` was acknowledged "by api", on the
    timeline, in Slack and in the postmortem, naming nobody."""
    data = json_object(body, (*names, "by"))
    acted_by(data)
    return data


def _text(data: dict[str, Any], field: str) -> str:
    value = data.get(field)
    if not isinstance(value, str) or not value.strip():
        raise InputError("must be a non-empty string", field=field)
    return stored_text(value.strip(), field)


class IncidentActionsApi:
    """Handlers of the incident actions; each takes the request and its (size-checked) body."""

    def __init__(self, engine: IncidentEngine) -> None:
        self.engine = engine

    def handlers(self) -> dict[str, Handler]:
        """Action name (the last path segment) to handler."""
        return {
            "ack": self.ack,
            "mitigate": self.mitigate,
            "notes": self.note,
            "silence": self.silence,
            "resolve": self.resolve,
        }

    async def _answer(self, call: Callable[..., Incident], *args: object) -> Response:
        incident = await run_in_threadpool(call, *args)
        return await run_in_threadpool(detail_response, self.engine, incident)

    async def ack(self, request: Request, body: bytes) -> Response:
        """Acknowledge (idempotent: a repeat answers 200, ``changed`` false, saying who acknowledged it)."""
        data = _fields(body)
        incident_id = request.path_params["incident_id"]
        outcome = await run_in_threadpool(self.engine.acknowledge_outcome, incident_id, data["by"])
        return await run_in_threadpool(
            self._outcome, outcome, outcome.already or f"acknowledged by {data['by']}"
        )

    async def resolve(self, request: Request, body: bytes) -> Response:
        """Resolve by hand (409 while an alert of it fires, or once it was merged into another; idempotent
        as ``ack``: a repeat answers 200, ``changed`` false, saying who resolved it and when)."""
        data = _fields(body)
        incident_id = request.path_params["incident_id"]
        outcome = await run_in_threadpool(self.engine.resolve_outcome, incident_id, data["by"])
        return await run_in_threadpool(self._outcome, outcome, outcome.already or f"resolved by {data['by']}")

    def _outcome(self, outcome: ActionOutcome, message: str) -> Response:
        """The detail of an action's incident, with whether the action changed it and what it did (in the
        thread pool: it waits for the engine's lock)."""
        detail = _detail(self.engine, outcome.incident)
        return JSONResponse({**detail, "changed": outcome.changed, "message": message})

    async def mitigate(self, request: Request, body: bytes) -> Response:
        """Mark mitigating, saying what is being done (idempotent as ``ack``: the same action again while it
        is mitigating answers 200, ``changed`` false, saying who marked it and since when)."""
        data = _fields(body, "action")
        action = _text(data, "action")
        incident_id, by = request.path_params["incident_id"], data["by"]
        outcome = await run_in_threadpool(self.engine.mark_mitigating_outcome, incident_id, by, action)
        return await run_in_threadpool(self._outcome, outcome, outcome.already or f"mitigating: {action}")

    async def note(self, request: Request, body: bytes) -> Response:
        """Add a note to the timeline."""
        data = _fields(body, "text")
        text = _text(data, "text")
        return await self._answer(self.engine.add_note, request.path_params["incident_id"], data["by"], text)

    async def silence(self, request: Request, body: bytes) -> Response:
        """Silence the incident's alerts for ``duration`` (idempotent as ``ack``: a request while a silence
        holds it, ``lifecycle.silence_incident_outcome``'s repeat, answers 200, ``changed`` false, saying
        until when and whose)."""
        data = _fields(body, "duration")
        duration = data.get("duration")
        if not isinstance(duration, str):
            raise InputError("must be a duration like 30m, 1h or 1h30m", field="duration")
        seconds = parse_duration(duration)
        incident_id, by = request.path_params["incident_id"], data["by"]
        outcome = await run_in_threadpool(self.engine.silence_incident_outcome, incident_id, seconds, by)
        # What the timeline says of it, with the new silence's id; the one the engine just added (under its
        # lock) is the last "silenced" event.
        made = next((e for e in reversed(outcome.incident.timeline) if e.kind == "silenced"), None)
        done = made.message if made is not None else f"silenced for {duration_text(seconds)} by {by}"
        return await run_in_threadpool(self._outcome, outcome, outcome.already or done)


def detail_response(engine: IncidentEngine, incident: Incident) -> Response:
    """An incident's detail with its alerts (in the thread pool: it waits for the engine's lock)."""
    return JSONResponse(_detail(engine, incident))


def _detail(engine: IncidentEngine, incident: Incident) -> dict[str, Any]:
    """``incident_detail`` of the incident, with its alerts and the silences holding it."""
    alerts = alert_dicts(engine.store, incident.id)
    held = engine.incident_silences().get(incident.id, [])  # one read: its end and ids agree
    until = held[-1].ends_at if held else None
    return incident_detail(incident, alerts, until, _cluster(engine, incident), [h.id for h in held])


def _cluster(engine: IncidentEngine, incident: Incident) -> str:
    """The cluster its root cause is named in: only in a fleet of more than one cluster."""
    return root_cluster(incident.root_cause.target, engine.inventory)


def alert_dicts(store: IncidentStore, incident_id: str) -> list[dict[str, Any]]:
    """An incident's alerts as the API shows them."""
    return [
        {
            "fingerprint": a.fingerprint,
            "labels": a.labels,
            "annotations": a.annotations,
            "score": a.score,
            "recommended_action": a.recommended_action,
            "status": a.status,
            "startsAt": iso(a.starts_at),
            "endsAt": iso(a.ends_at),
            "flapping": a.flapping,
            "receive_count": a.receive_count,
        }
        for a in store.alerts_of(incident_id)
    ]
