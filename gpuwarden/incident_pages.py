"""Keyset paging of ``GET /api/v1/incidents``: ``?continue=TOKEN`` lists the incidents after the last one of
the page that gave the token (``X-Continue``), in the same order, as kubectl's ``--chunk-size`` continues.

The token is opaque to callers: URL-safe base64 of the last listed incident's sort key (``last_opened_at``,
``opened_at``, ``id``: ``IncidentStore.list_key``). Paging by key, not offset, reads from the key on in the
``(state, last_opened_at, opened_at)`` index, and an incident opened meanwhile neither repeats nor hides one.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime

from alerting.store import IncidentStore, ListKey
from alerting.store_models import IncidentRow
from gpuwarden.errors import InputError

CONTINUE = "continue"  # the query parameter
CONTINUE_HEADER = "X-Continue"  # the answer's header: the token of the next page, absent after the last
_MAX_TOKEN = 512


def continue_token(key: ListKey) -> str:
    """The token of the page after the incident at ``key``."""
    last, opened, incident_id = key
    raw = json.dumps([last.isoformat() if last else None, opened.isoformat(), incident_id])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def continue_key(token: str | None) -> ListKey | None:
    """The key a ``continue_token`` holds (``None`` for none); another is refused naming ``continue``."""
    if token is None:
        return None
    try:
        if len(token) > _MAX_TOKEN:
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        last, opened, incident_id = json.loads(raw)
        if not isinstance(incident_id, str) or not incident_id:
            raise ValueError("no id")
        return (_time(last) if last is not None else None, _time(opened), incident_id)
    except (ValueError, TypeError, binascii.Error):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise InputError(
            "is not a token this list gave (X-Continue of the previous page)", field=CONTINUE
        ) from None


def _time(value: object) -> datetime:
    if not isinstance(value, str):
        raise TypeError("no time")
    at = datetime.fromisoformat(value)
    if at.tzinfo is None:
        raise ValueError("naive")
    return at.astimezone(UTC)


def incident_page(
    store: IncidentStore, state: str | None, priority: str | None, limit: int | None, after: ListKey | None
) -> tuple[list[tuple[IncidentRow, int]], dict[str, str]]:
    """The incidents of one page (merged ones too) with their alert counts, and the answer's headers:
    ``X-Total-Count`` (how many match, the cap and ``continue`` aside) and ``X-Continue`` where more come."""
    more = None if limit is None else limit + 1  # one more says whether a next page has any
    rows = store.list_rows(state, include_merged=True, priority=priority, limit=more, after=after)
    headers = {}
    if limit is not None and len(rows) > limit:
        rows = rows[:limit]
        headers[CONTINUE_HEADER] = continue_token(store.list_key(rows[-1][0]))
    listed_all = limit is None and after is None
    total = len(rows) if listed_all else store.count_rows(state, include_merged=True, priority=priority)
    headers["X-Total-Count"] = str(total)
    return rows, headers
