"""Parsing what arrives over HTTP: Prometheus' ``POST /api/v2/alerts`` body and Alertmanager's webhook v4.

Errors are ``InputError`` naming the offending field (``[3].labels.node``); unknown keys are ignored,
because Alertmanager adds fields in minor releases.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson

from alerting.request_uri import request_uri_problem
from gpuwarden.clock import shown
from gpuwarden.errors import INVALID_FORMAT, REQUIRED, UNPROCESSABLE, InputError
from gpuwarden.labelnumbers import label_number
from gpuwarden.model import Alert, AlertSource, AlertStatus, RecommendedAction
from gpuwarden.printable import escape_controls
from gpuwarden.xid import action_for_xid

logger = logging.getLogger(__name__)
# Go's zero time, "0001-01-01T00:00:00Z": no value. Only that instant (time.Time.IsZero, in any offset): a
# second later is a time, and an endsAt then says the alert has ended.
_GO_ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)
_LATEST = datetime.max.replace(tzinfo=UTC)


def parse_json(body: bytes) -> Any:
    """Decode a JSON body or fail naming the position."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        try:  # orjson says "str is not valid UTF-8: surrogates not allowed ... (char 0)" of any bad byte
            body.decode()
        except UnicodeDecodeError as bad:
            raise InputError(
                f"body is not UTF-8 (a bad byte, 0x{body[bad.start]:02x}, at offset {bad.start});"
                " send JSON encoded in UTF-8",
                field="body",
            ) from exc
        raise InputError(f"body is not valid JSON: {exc}", field="body") from exc


# What Alertmanager 0.25 takes with a timezone (go-openapi strfmt.DateTime): RFC 3339, a comma for the
# decimal point as Go reads it, an offset without its colon after 3 or 6 decimals, and minutes with Z.
# Python's fromisoformat takes ISO 8601 forms that Alertmanager answers 400: 20261201T100000Z, a week date
# (2026-W48-2T10:00:00Z), an hour alone (T10Z), a space before a time without seconds (2026-12-01 10:00Z).
_AM_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}"
    r"(?:Z|:[0-9]{2}(?:(?:[.,][0-9]+)?(?:Z|[+-][0-9]{2}:[0-9]{2})|[.,](?:[0-9]{3}|[0-9]{6})[+-][0-9]{4}))"
)


def parse_time(value: Any, field: str, *, strict: bool = True) -> datetime | None:
    """An RFC 3339 time with a timezone, in UTC; None for null, "" and Go's zero time. One whose instant is
    not between years 1 and 9999 in UTC is refused: Go holds it, Python's datetime cannot. ``strict``
    (the API's edge) refuses the ISO 8601 forms beyond what Alertmanager takes (``_AM_TIME``); off, the
    journal's replay still reads what an older release accepted."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InputError("must be an RFC 3339 string", field=field)
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as exc:
        raise InputError(f"not an RFC 3339 time: {value!r}", field=field) from exc
    if parsed.tzinfo is None:
        raise InputError("time needs a timezone (Z or an offset)", field=field)
    if strict and _AM_TIME.fullmatch(value) is None:
        raise InputError(f"not an RFC 3339 time (like 2026-12-01T10:00:00Z): {value!r}", field=field)
    try:
        at = parsed.astimezone(UTC)
    except OverflowError as exc:  # 9999-12-31T23:00:00-05:00 is in year 10000 in UTC
        raise InputError(f"out of range: {value!r} is not in years 1 to 9999 in UTC", field=field) from exc
    return None if at == _GO_ZERO_TIME else at


_NUL = "\x00"
# PostgreSQL's text and JSON cannot hold it: refused on every store alike, before the 200 (a record the
# store then refuses would be quarantined, good alerts of its batch with it).
_NUL_REFUSED = "must not contain a NUL character (\\u0000)"


NAME_LIMIT = 128  # who did it (``by``, ``createdBy``): the store's column, on every backend


def stored_text(value: str, field: str, limit: int | None = None) -> str:
    """Text a request asks to store, refused (400 naming ``field``) where a store would refuse it: a NUL,
    or more than ``limit`` characters; PostgreSQL refuses both where SQLite takes them."""
    if _NUL in value:
        raise InputError(_NUL_REFUSED, field=field)
    if limit is not None and len(value) > limit:
        raise InputError(f"must be at most {limit} characters (got {len(value)})", field=field)
    return value


def stored_name(value: object, field: str) -> str:
    """Who did something (``by``): a non-empty string that ``stored_text`` takes within ``NAME_LIMIT``, on one
    line of visible text. It is printed after "note by", in the Slack thread and on the timeline: a newline
    in ``bob\\nEVIL: approved`` forged a line there, and a bidi override or an ESC sequence showed another
    name than the one stored."""
    if not isinstance(value, str) or not value.strip():
        raise InputError("must be a non-empty string", field=field)
    stored_text(value, field, NAME_LIMIT)
    if escape_controls(value) != value:
        raise InputError(f"a name is one line of visible text; got {value!r}", field=field)
    return value


def acted_by(data: Mapping[str, Any]) -> str:
    """The ``by`` of an action's body (an incident's ack, note, ...; an outbox discard), required: without it
    the action was recorded "by api", on the timeline, in Slack and in the postmortem, naming nobody."""
    if "by" not in data:
        raise InputError("is required: who acts, a name (the CLI sends --by, by default $USER)", field="by")
    return stored_name(data["by"], "by")


def _string_map(value: Any, field: str, *, required: bool) -> dict[str, str]:
    if value is None and not required:
        return {}
    if not isinstance(value, Mapping):
        raise InputError("must be an object of string values", field=field)
    if type(value) is dict and all(type(item) is str and _NUL not in item for item in value.values()):
        # The common case, checked in one pass (JSON object keys are always strings).
        if required and not value:
            raise InputError("must not be empty", field=field)
        if any(_NUL in key for key in value):
            raise InputError(_NUL_REFUSED, field=field)
        return value
    out: dict[str, str] = {}
    for key, item in value.items():
        if not isinstance(item, str):
            raise InputError("must be a string", field=f"{field}.{key}")
        if _NUL in item or _NUL in str(key):
            raise InputError(_NUL_REFUSED, field=f"{field}.{key}")
        out[str(key)] = item
    if required and not out:
        raise InputError("must not be empty", field=field)
    return out


def _alert(item: Any, where: str, source: AlertSource, strict: bool) -> Alert:
    if not isinstance(item, Mapping):
        raise InputError("must be an object", field=where)
    if item.get("labels") is None:  # absent or null: Alertmanager's 422 (a type error is a 400)
        raise InputError("is required", field=f"{where}.labels", status=UNPROCESSABLE, code=REQUIRED)
    labels = _string_map(item.get("labels"), f"{where}.labels", required=True)
    if "" in labels:
        raise InputError("a label name must not be empty", field=f"{where}.labels")
    if "" in labels.values():
        # Alertmanager drops empty-valued labels before it fingerprints: {a="x", b=""} is {a="x"}.
        labels = {k: v for k, v in labels.items() if v}
        if not labels:
            raise InputError("must not be empty (empty values do not count)", field=f"{where}.labels")
    annotations = _string_map(item.get("annotations"), f"{where}.annotations", required=False)
    starts_at = parse_time(item.get("startsAt"), f"{where}.startsAt", strict=strict)
    ends_at = parse_time(item.get("endsAt"), f"{where}.endsAt", strict=strict)
    if starts_at is not None and ends_at is not None and ends_at < starts_at:
        raise InputError("endsAt is before startsAt", field=f"{where}.endsAt")
    generator = item.get("generatorURL", "") or ""
    if not isinstance(generator, str):
        raise InputError("must be a string", field=f"{where}.generatorURL")
    if _NUL in generator:
        raise InputError(_NUL_REFUSED, field=f"{where}.generatorURL")
    if strict and source is AlertSource.RULE and generator and (bad := request_uri_problem(generator)):
        # Alertmanager's format ``uri`` (422). Only its API: a webhook carries what an Alertmanager took.
        raise InputError(
            f"must be a URI (an absolute URL such as http://prometheus:9090/graph?..., or a path): {bad}",
            field=f"{where}.generatorURL",
            status=UNPROCESSABLE,
            code=INVALID_FORMAT,
        )
    status = AlertStatus.FIRING
    # Only the webhook's alerts carry a status. Alertmanager's postableAlert has none: it ignores the
    # field and resolves by endsAt alone, so a batch copied from GET /api/v2/alerts is taken
    raw_status = item.get("status") if source is AlertSource.WEBHOOK else None
    if raw_status is not None:
        if raw_status not in ("firing", "resolved"):
            raise InputError("must be 'firing' or 'resolved'", field=f"{where}.status")
        status = AlertStatus(raw_status)
    return Alert(
        labels=labels,
        status=status,
        starts_at=starts_at,
        ends_at=ends_at,
        annotations=annotations,
        source=source,
        generator_url=generator,
        score=_score(annotations),
        recommended_action=_action(annotations, labels),
    )


_ACTIONS = {a.value: a for a in RecommendedAction}


def _score(annotations: Mapping[str, str]) -> float | None:
    """The ``score`` annotation (the anomaly service's, or a rule's) when it is a finite number."""
    raw = annotations.get("score")
    if raw is None:  # most alerts: no exception raised and caught per alert on the ingest path
        return None
    try:
        value = float(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _action(annotations: Mapping[str, str], labels: Mapping[str, str]) -> RecommendedAction:
    """The ``recommended_action`` annotation when it names one; else, for an alert carrying an XID (an ``xid``
    or ``xid_code`` label, as a rule over the exporter's per-XID counter keeps it), the XID catalog's action;
    else no recommendation."""
    named = annotations.get("recommended_action")
    if named is not None:
        return _ACTIONS.get(named, RecommendedAction.NONE)
    code = labels.get("xid") or labels.get("xid_code")
    if code is None:  # most alerts: two dict lookups on the ingest path
        return RecommendedAction.NONE
    number = label_number(code)
    return action_for_xid(number) if number is not None else RecommendedAction.NONE


def parse_postable_alerts(
    data: Any,
    received_at: datetime | None = None,
    resolve_timeout: timedelta | None = None,
    *,
    refuse_late: bool = True,
) -> list[Alert]:
    """Alertmanager's ``postableAlerts``: a JSON array of alerts (Prometheus' notifier sends this).

    As in Alertmanager, an alert posted without ``endsAt`` ends ``resolve_timeout`` after it was received,
    so one its sender stops re-posting resolves by itself; one whose ``startsAt`` is later than that is
    refused, as Alertmanager refuses it (it would otherwise fire until its far-off start plus the timeout).
    With ``refuse_late`` off (the journal's replay of what was accepted before), such an alert is dropped
    and logged instead: the rest of its batch was acknowledged and must not be lost; and its times are read
    as an older release accepted them (``parse_time`` not strict).
    """
    if not isinstance(data, list):
        raise InputError("must be a JSON array of alerts", field="body")
    alerts = [_alert(item, f"[{i}]", AlertSource.RULE, refuse_late) for i, item in enumerate(data)]
    if received_at is None or resolve_timeout is None:
        return alerts
    ends = _later(received_at, resolve_timeout)
    timed: list[Alert] = []
    for i, a in enumerate(alerts):
        if a.ends_at is not None or a.status is AlertStatus.RESOLVED:
            timed.append(a)
            continue
        if a.starts_at is not None and a.starts_at > ends:
            if not refuse_late:
                logger.warning("alert %d of a journal record starts after it would end; dropped", i)
                continue
            raise InputError(
                f"is after {shown(ends)}, when an alert posted now without endsAt ends (the resolve "
                "timeout after it was received): check the sender's clock, or send endsAt",
                field=f"[{i}].startsAt",
            )
        timed.append(replace(a, ends_at=ends, timeout=True))
    return timed


def _later(at: datetime, delta: timedelta) -> datetime:
    """``at + delta``, kept at the last representable time for a startsAt near year 9999."""
    return at + delta if at < _LATEST - delta else _LATEST


def parse_webhook(data: Any, *, strict: bool = True) -> list[Alert]:
    """Alertmanager's webhook payload version 4; ``strict`` off: the journal's replay (``parse_time``)."""
    if not isinstance(data, Mapping):
        raise InputError("must be a JSON object", field="body")
    version = data.get("version")
    if version != "4":
        raise InputError(f'unsupported version {version!r}; expected "4"', field="version")
    alerts = data.get("alerts")
    if not isinstance(alerts, list):
        raise InputError("must be an array", field="alerts")
    return [_alert(item, f"alerts[{i}]", AlertSource.WEBHOOK, strict) for i, item in enumerate(alerts)]


def webhook_truncated(data: Mapping[str, Any]) -> int:
    """How many alerts Alertmanager left out of a webhook notification (``truncatedAlerts``: its
    ``max_alerts`` cut the group); 0 when absent or not a count (a field it adds later must not refuse the
    notification's alerts)."""
    value = data.get("truncatedAlerts")
    return value if type(value) is int and value > 0 else 0
