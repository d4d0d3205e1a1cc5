"""Query parameters and JSON body fields of the HTTP APIs: one value, a choice among values, a positive whole
number, and none but those a route takes (400 naming them)."""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence
from typing import Any

from starlette.datastructures import QueryParams

from alerting.ingest import parse_json
from gpuwarden.errors import InputError

# Other words for a field, said as the one to write: amtool's and the CLI's ``--author`` and Alertmanager's
# ``createdBy`` are ``by``, the CLI's ``--for`` is ``duration``, a note (``/notes``) is its ``text``. No
# spelling is close to them.
_SYNONYMS = {"author": "by", "createdBy": "by", "for": "duration", "note": "text"}

MAX_LIMIT = 1_000_000_000
"""The largest ``?limit=`` (the stores take 64-bit limits: a larger number overflowed into a 503)."""


def single(params: QueryParams, name: str, default: str | None = None) -> str | None:
    """The value of a parameter that takes one (``default`` when absent). Given twice, it is refused:
    ``?limit=1&limit=2`` took one of them silently, and which one the caller meant is not clear."""
    values = params.getlist(name)
    if len(values) > 1:
        raise InputError(f"given {len(values)} times; give it once", field=name)
    return values[0] if values else default


def choice(value: str | None, name: str, allowed: Sequence[str]) -> str | None:
    """``value`` if it is one of ``allowed`` (or absent)."""
    if value is None or value in allowed:
        return value
    raise InputError(f"{value!r} is not one of {', '.join(allowed)}", field=name)


def positive(value: str | None, name: str, maximum: int = MAX_LIMIT) -> int | None:
    """``value`` as a whole number from 1 to ``maximum`` (or absent); ASCII digits only ("²" is a digit
    to ``str.isdigit``, not to ``int``)."""
    if value is None:
        return None
    if not re.fullmatch(r"[0-9]{1,10}", value) or not 1 <= int(value) <= maximum:
        raise InputError(f"{value!r} is not a whole number from 1 to {maximum}", field=name)
    return int(value)


def known_query(params: QueryParams, accepted: Sequence[str], route: str, instead: str = "") -> None:
    """Refuse a query parameter ``route`` (``GET /api/v1/incidents``) does not take, saying those it takes or
    ``instead`` where it takes none: a misspelt filter (``?priorty=P0``, or the outbox's ``?state=`` for its
    ``status``) was ignored, and the answer listed everything as if it had matched."""
    for name in params:
        if name not in accepted:
            takes = f"{route} takes {', '.join(accepted)}" if accepted else f"{route} takes none{instead}"
            if not name:
                raise InputError(f"a query parameter without a name; {takes}", field="query")
            raise InputError(f"unknown query parameter; {meant(name, accepted)}{takes}", field=name)


def json_object(body: bytes, fields: Sequence[str]) -> dict[str, Any]:
    """The body as a JSON object (empty: ``{}``) holding no key but ``fields``: a misspelt one was ignored,
    so that ``{"author": "alice"}`` acknowledged an incident "by api", and an outbox request that its
    fields narrow (``dryrun``, or ``id`` for ``incident``) acted on everything, or for real."""
    data = parse_json(body) if body.strip() else {}
    if not isinstance(data, dict):
        raise InputError("must be a JSON object", field="body")
    unknown = sorted(set(data) - set(fields))
    if unknown:
        name = unknown[0]
        raise InputError(
            f"unknown field; {meant(name, fields)}this request takes {', '.join(fields)}", field=name
        )
    return data


def meant(name: str, accepted: Sequence[str]) -> str:
    """``did you mean X? `` for the accepted name ``name`` stands for (another tool's word for it, or a
    spelling close to it in any case), as ``config validate`` says it of a key; else nothing."""
    synonym = _SYNONYMS.get(name)
    if synonym in accepted:
        return f"did you mean {synonym}? "
    lowered = {a.lower(): a for a in accepted}
    close = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.6)
    return f"did you mean {lowered[close[0]]}? " if close else ""
