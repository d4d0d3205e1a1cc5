"""Keyset paging of ``GET /api/v1/incidents``: ``?continue=TOKEN`` lists the incidents after the last one of
the page that gave the token (``X-Continue``), in the same order, as kubectl's ``--chunk-size`` continues.

The token is opaque to callers: URL-safe base64 of the last listed incident's sort key (``last_opened_at``,
``opened_at``, ``id``: ``IncidentStore.list_key``) and of the filters of its list (``state``, ``priority``).
Paging by key, not offset, reads from the key on in the ``(state, last_opened_at, opened_at)`` index, and an
incident opened meanwhile neither repeats nor hides one. A token sent with other filters than its list's is
refused (400 naming ``continue``): the key of one list's page is no place in another's, whose page from it
silently left incidents out or listed them again.
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


def continue_token(key: ListKey, state: str | None = None, priority: str | None = None) -> str:
    """The token of the page after the incident at ``key`` in the list of ``state`` and ``priority``."""
    last, opened, incident_id = key
    raw = json.dumps([last.isoformat() if last else None, opened.isoformat(), incident_id, state, priority])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def continue_key(token: str | None, state: str | None = None, priority: str | None = None) -> ListKey | None:
    """The key a ``continue_token`` holds (``None`` for none); another, or one of a list with other filters
    than ``state`` and ``priority``, is refused naming ``continue``."""
    if token is None:
        return None
    try:
        if len(token) > _MAX_TOKEN:
            raise ValueError("too long")
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        last, opened, incident_id, *filters = json.loads(raw)
        if not isinstance(incident_id, str) or not incident_id:
            raise ValueError("no id")
        key = (_time(last) if last is not None else None, _time(opened), incident_id)
        if len(filters) != 2 or not all(f is None or isinstance(f, str) for f in filters):
            raise ValueError("no filters")
    except (ValueError, TypeError, binascii.Error):  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise InputError(
            "is not a token this list gave (X-Continue of the previous page)", field=CONTINUE
        ) from None
    if filters != [state, priority]:
        given, sent = _filters(*filters), _filters(state, priority)
        raise InputError(
            f"is a token of the list of {given}, and this one asks for {sent}: send it with the filters"
            " of the page that gave it (its `next page:` command), or leave continue out to list from the"
            " newest",
            field=CONTINUE,
        )
    return key


def _filters(state: str | None, priority: str | None) -> str:
    """A list's filters as a person reads them: ``state=resolved and any priority``."""
    return " and ".join(
        (f"state={state}" if state else "any state", f"priority={priority}" if priority else "any priority")
    )


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
        headers[CONTINUE_HEADER] = continue_token(store.list_key(rows[-1][0]), state, priority)
    listed_all = limit is None and after is None
    total = len(rows) if listed_all else store.count_rows(state, include_merged=True, priority=priority)
    headers["X-Total-Count"] = str(total)
    return rows, headers
