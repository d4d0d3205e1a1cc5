"""Alertmanager's API v2 beyond ingest, as ``amtool`` and Grafana's Alertmanager data source use it.

``GET /api/v2/alerts`` lists the firing alerts (``gettableAlerts``: state, ``silencedBy``, ``inhibitedBy``;
``filter``, ``active``, ``silenced``, ``inhibited``, ``receiver`` as in Alertmanager) and ``GET
/api/v2/alerts/groups`` (one group per incident, for Grafana's alert-group view); ``GET /api/v2/receivers``.
Silences: ``POST /api/v2/silences`` (with the ``id`` of an existing silence it updates it, as ``amtool
silence update`` expects), ``GET /api/v2/silences`` (expired ones too, until retention deletes them;
``filter`` as Alertmanager applies it to silences), ``GET`` and ``DELETE
/api/v2/silence/{silenceID}`` (``amtool silence expire``). ``GET /api/v2/status`` answers with an
Alertmanager configuration (``gpuwarden.alertmanager_config``) as ``config.original`` and no cluster.
Routes and their auth are wired in ``gpuwarden.api``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from alerting.engine import IncidentEngine
from alerting.ingest import parse_json, parse_time, stored_name, stored_text
from alerting.matchers import (
    Matcher,
    MatchOp,
    all_match,
    matcher_from_dict,
    mutes_everything,
    parse_matcher,
)
from alerting.silences import Silence, SilenceKind
from alerting.store_models import AlertRow
from gpuwarden import __version__
from gpuwarden.alertmanager_config import RECEIVER, alertmanager_config
from gpuwarden.clock import rfc3339
from gpuwarden.errors import REQUIRED, TOO_FEW_ITEMS, UNPROCESSABLE, InputError
from gpuwarden.params import single


def iso(at: datetime | None) -> str | None:
    """RFC 3339 in UTC with a ``Z``."""
    return rfc3339(at) if at is not None else None


def gettable_silence(s: Silence, now: datetime) -> dict[str, Any]:
    """Alertmanager's ``gettableSilence``."""
    return {
        "id": s.id,
        "matchers": [m.to_dict() for m in s.matchers],
        "startsAt": iso(s.starts_at),
        "endsAt": iso(s.ends_at),
        "updatedAt": iso(s.updated_at or s.starts_at),  # set, updated in place or expired
        "createdBy": s.created_by,
        "comment": s.comment,
        "status": {"state": s.state(now)},
        # gpuwarden's own field, as posted: a window matches the inventory's topology too.
        **({"maintenance": True} if s.kind is SilenceKind.MAINTENANCE else {}),
    }


def gettable_alert(
    row: AlertRow, silenced: list[str], inhibited: list[str], open_end: datetime
) -> dict[str, Any]:
    """Alertmanager's ``gettableAlert`` of a stored firing alert. One without an end of its own (a webhook
    alert fires until Alertmanager says it resolved) shows ``open_end``, as Alertmanager shows an alert it
    has to time out: never Go's zero time, which its API does not return."""
    return {
        "labels": row.labels,
        "annotations": row.annotations,
        "startsAt": iso(row.starts_at),
        "endsAt": iso(row.ends_at or open_end),
        "updatedAt": iso(row.last_seen),
        "generatorURL": row.generator_url,
        "fingerprint": row.fingerprint,
        "receivers": [{"name": RECEIVER}],
        "status": {
            "state": "suppressed" if silenced or inhibited else "active",
            "silencedBy": silenced,
            "inhibitedBy": inhibited,
        },
    }


@dataclass(frozen=True, slots=True)
class _AlertQuery:
    """The query of an alert listing, read (and refused with a 400) on the event loop."""

    show: dict[str, bool]
    filters: list[Matcher]
    receiver: str | None

    @classmethod
    def of(cls, request: Request) -> _AlertQuery:
        params = request.query_params
        show = {name: _flag(single(params, name), name) for name in ("active", "silenced", "inhibited")}
        return cls(show, _filters(params.getlist("filter")), single(params, "receiver"))


class AlertmanagerApi:
    """The handlers; ``gpuwarden.api`` wraps them with the token check, the read barrier and errors."""

    def __init__(self, engine: IncidentEngine) -> None:
        self.engine = engine
        self.started = datetime.now(UTC)

    # The read routes do their matching and rendering in the thread pool, never on the event loop: with
    # thousands of alerts and silences it takes a while, and the loop answers /healthz and POSTs meanwhile.

    async def list_alerts(self, request: Request) -> Response:
        """Firing alerts matching every ``filter`` matcher, by state as Alertmanager filters them."""
        query = _AlertQuery.of(request)
        return await run_in_threadpool(lambda: JSONResponse([alert for alert, _ in self._alerts(query)]))

    async def list_groups(self, request: Request) -> Response:
        """``alertGroups``: an incident is a group (labels ``incident``, ``priority``, ``root_cause``) with
        its alerts, those the incident's own silence mutes too; firing alerts in no incident (held back by a
        silence, a window or an inhibition) form one group without labels. Same filters as the alerts."""
        query = _AlertQuery.of(request)
        return await run_in_threadpool(self._groups, query)

    def _groups(self, query: _AlertQuery) -> Response:
        by_incident: dict[str | None, list[dict[str, Any]]] = {}
        for alert, incident_id in self._alerts(query):
            by_incident.setdefault(incident_id, []).append(alert)
        rows = self.engine.store.rows_by_id([i for i in by_incident if i])
        groups = []
        for incident_id, alerts in by_incident.items():
            row = rows.get(incident_id) if incident_id else None
            labels = (
                {
                    "incident": row.id,
                    "priority": row.priority,
                    "root_cause": row.root_kind,
                    "title": row.title,
                }
                if row is not None
                else {}
            )
            groups.append({"labels": labels, "receiver": {"name": RECEIVER}, "alerts": alerts})
        return JSONResponse(groups)

    def _alerts(self, query: _AlertQuery) -> list[tuple[dict[str, Any], str | None]]:
        show, filters = query.show, query.filters
        if query.receiver is not None and not _receiver_matches(query.receiver):
            return []  # every alert has the one receiver
        rows = self.engine.store.firing_alerts()
        now = self.engine.clock.now()
        open_end = now + timedelta(seconds=self.engine.config.resolve_timeout_seconds)
        out = []
        for row in rows:
            if row.ends_at is not None and row.ends_at <= now:
                continue  # resolved by its endsAt, as Alertmanager lists it, though the next tick records it
            if not all_match(filters, row.labels):
                continue
            silenced, inhibited = self.engine.mute_state(row.fingerprint, row.labels, row.incident_id)
            active = not silenced and not inhibited
            if (active and not show["active"]) or (silenced and not show["silenced"]):
                continue
            if inhibited and not show["inhibited"]:
                continue
            out.append((gettable_alert(row, silenced, inhibited, open_end), row.incident_id))
        return out

    async def post_silence(self, request: Request, body: bytes) -> Response:
        """Alertmanager's ``postableSilence`` (plus ``maintenance: true`` for a maintenance window)."""
        data = parse_json(body)
        if not isinstance(data, dict):
            raise InputError("must be a JSON object", field="body")
        raw = data.get("matchers")
        if raw is None:  # absent or null, as Alertmanager answers (an empty list: too few; text: a 400)
            raise InputError("is required", field="matchers", status=UNPROCESSABLE, code=REQUIRED)
        if not isinstance(raw, list):
            raise InputError("must be a list of matchers", field="matchers")
        if not raw:
            raise InputError(
                "at least one matcher is required",
                field="matchers",
                status=UNPROCESSABLE,
                code=TOO_FEW_ITEMS,
            )
        matchers = [
            matcher_from_dict(m, f"matchers[{i}]") if isinstance(m, dict) else _bad_matcher(i)
            for i, m in enumerate(raw)
        ]
        if mutes_everything(matchers):
            raise InputError("at least one matcher must not match the empty string", field="matchers")
        starts = _start(data, self.engine.clock.now())
        ends = _required_time(data, "endsAt")
        kind = _kind(data.get("maintenance"))
        replaced = data.get("id")
        if replaced is not None and not isinstance(replaced, str):
            raise InputError("must be a string", field="id")
        silence_id = await run_in_threadpool(
            self.engine.add_silence,
            matchers,
            starts,
            ends,
            _creator(data),
            comment=_text(data, "comment", ""),
            kind=kind,
            update=replaced or None,  # an update (404 if unknown): in place, or the old one ends now
        )
        return JSONResponse({"silenceID": silence_id})

    async def list_silences(self, request: Request) -> Response:
        """Every silence and maintenance window, expired ones too until retention deletes them; with
        ``filter``, those whose matchers match it as Alertmanager compares them (``amtool silence query``).
        Not incidents' silences (``/api/v1/incidents/{id}/silence``)."""
        filters = _filters(request.query_params.getlist("filter"))

        def listed() -> Response:
            now = self.engine.clock.now()
            # An incident's silence mutes its incident, not a label set: with no matchers, which Alertmanager
            # never has (it refuses them; amtool and Grafana show one as muting everything), it is not
            # listed.
            return JSONResponse(
                [
                    gettable_silence(s, now)
                    for s in self.engine.all_silences()
                    if s.incident_id is None and _silence_matches(s.matchers, filters)
                ]
            )

        return await run_in_threadpool(listed)

    async def list_receivers(self, request: Request) -> Response:
        """``GET /api/v2/receivers``: the one receiver every alert reaches."""
        return JSONResponse([{"name": RECEIVER}])

    async def get_silence(self, request: Request) -> Response:
        """One silence."""
        silence = await run_in_threadpool(self.engine.silence, request.path_params["silence_id"])
        return JSONResponse(gettable_silence(silence, self.engine.clock.now()))

    async def expire_silence(self, request: Request, body: bytes) -> Response:
        """End a silence now; the alerts it muted fire again at the engine's next tick."""
        await run_in_threadpool(self.engine.expire_silence, request.path_params["silence_id"])
        return Response(status_code=200)

    async def status(self, request: Request) -> Response:
        """Alertmanager's ``alertmanagerStatus``: no cluster; an Alertmanager config saying what is done."""
        config = alertmanager_config(self.engine.config)
        return JSONResponse(
            {
                "cluster": {"name": "", "status": "disabled", "peers": []},
                "config": {"original": config},
                "uptime": iso(self.started),
                "versionInfo": {
                    "version": __version__,
                    "branch": "",
                    "buildDate": "",
                    "buildUser": "",
                    "goVersion": "",
                    "revision": "",
                },
            }
        )


def _filters(texts: list[str]) -> list[Matcher]:
    """The ``filter`` matchers of a request."""
    filters = []
    for text in texts:
        try:
            filters.append(parse_matcher(text))
        except InputError as exc:
            raise InputError(exc.message, field="filter") from exc
    return filters


def _receiver_matches(pattern: str) -> bool:
    """Whether the ``receiver`` filter, an anchored regular expression as in Alertmanager, takes ours."""
    try:
        return Matcher("receiver", MatchOp.RE, pattern).matches({"receiver": RECEIVER})
    except InputError as exc:
        raise InputError(exc.message, field="receiver") from exc


def _silence_matches(matchers: Sequence[Matcher], filters: Sequence[Matcher]) -> bool:
    """Alertmanager's silence filter (api/v2 ``CheckSilenceMatchesFilterLabels``): every filter matcher is one
    of the silence's own, the same name, operator and value. Not a match of the filter against the silence's
    values: ``amtool silence query alertname=A`` listed ``alertname!="A"`` too (a silence muting everything
    but A), which ``amtool silence expire $(amtool silence query -q alertname=A)`` then ended."""
    return all(f in matchers for f in filters)


# What Alertmanager 0.25 reads as true (go-openapi's ``swag.ConvertBool``, any case; measured), and the usual
# words for false. It reads every other word as false too: a typo (``ture``, ``maybe``) is refused here,
# not taken as false, which hid every alert it was meant to show.
_TRUE = frozenset(("true", "1", "yes", "ok", "y", "on", "selected", "checked", "t", "enabled"))
_FALSE = frozenset(("false", "0", "no", "off", "n", "f", "disabled"))


def _flag(value: str | None, name: str) -> bool:
    """A boolean query parameter (``active``, ``silenced``...): absent or empty, true, as in Alertmanager."""
    if not value:
        return True
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise InputError(f"{value!r} is not true or false (nor yes/no, on/off, 1/0)", field=name)


def _bad_matcher(index: int) -> Any:
    raise InputError("must be an object", field=f"matchers[{index}]")


def _kind(maintenance: Any) -> SilenceKind | None:
    """``maintenance`` as posted: true or false; absent or null on an update (amtool and Grafana post back
    what they read, which does not say it), which keeps the updated one's kind. Only a JSON boolean: the
    string "false" is true to Python and made a maintenance window."""
    if maintenance is None:
        return None
    if not isinstance(maintenance, bool):
        raise InputError("must be true or false (a JSON boolean)", field="maintenance")
    return SilenceKind.MAINTENANCE if maintenance else SilenceKind.SILENCE


def _text(data: dict[str, Any], name: str, default: str) -> str:
    """``comment``: a string. Alertmanager requires it; gpuwarden takes its absence (the default) as it
    always has, but not null or another type (stored as its Python repr before)."""
    value = data.get(name, default)
    if not isinstance(value, str):
        raise InputError("must be a string", field=name)
    return stored_text(value, name)


def _creator(data: dict[str, Any]) -> str:
    """``createdBy``: who sets the silence, the first thing an on-call asks of a mute. Absent, ``api`` (as
    gpuwarden always took it); else a name as every ``by`` is (``stored_name``). Alertmanager 0.25 refuses
    its absence but takes "" (measured): a silence nobody set is refused here instead."""
    value = data.get("createdBy", "api")
    if isinstance(value, str) and not value.strip():
        raise InputError(
            "must say who creates the silence: a name, as amtool's --author (default $USER)",
            field="createdBy",
        )
    return stored_name(value, "createdBy")


def _start(data: dict[str, Any], now: datetime) -> datetime:
    """``startsAt``: required, but "" and Go's zero time (``0001-01-01T00:00:00Z``) are a start before now,
    which starts the silence now, as Alertmanager 0.25 takes them (measured; it refuses only an absent
    one)."""
    raw = data.get("startsAt")
    if isinstance(raw, str) and parse_time(raw, "startsAt") is None:
        return now
    return _required_time(data, "startsAt")


def _required_time(data: dict[str, Any], name: str) -> datetime:
    if data.get(name) is None:  # absent or null: Alertmanager's 422 (a time it cannot read is a 400)
        raise InputError("is required (an RFC 3339 time)", field=name, status=UNPROCESSABLE, code=REQUIRED)
    parsed = parse_time(data.get(name), name)
    if parsed is None:
        raise InputError("required RFC 3339 time", field=name)
    return parsed
