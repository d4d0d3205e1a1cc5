"""The error answers of serve's API to a request that failed: a store that cannot be reached, or cannot
write its files (a full disk)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import Engine, event

from alerting.engine import IncidentEngine
from gpuwarden.api_errors import failure_text
from tests.gpuwarden.api_client import AUTH, SILENCE, TestClient
from tests.gpuwarden.api_error import error_text


@pytest.mark.parametrize(
    ("method", "path", "safe"),
    [
        ("POST", "/api/v2/alerts", True),
        ("POST", "/api/v1/webhook/alertmanager", True),
        ("POST", "/api/v1/incidents/inc-1/ack", True),
        ("POST", "/api/v1/incidents/inc-1/mitigate", True),
        ("POST", "/api/v1/incidents/inc-1/resolve", True),
        ("POST", "/api/v1/incidents/inc-1/silence", True),
        ("DELETE", "/api/v2/silence/sil-1", True),
        ("POST", "/api/v1/outbox/retry", True),
        ("POST", "/api/v1/outbox/discard", True),
        ("POST", "/api/v1/incidents/inc-1/notes", False),
        ("POST", "/api/v2/silences", False),
        ("POST", "/api/v1/incidents/inc-1/ack/more", False),
    ],
)
def test_a_failed_write_says_its_outcome_is_unknown_and_whether_repeating_it_is_safe(
    method: str, path: str, safe: bool
) -> None:
    text = failure_text(method, path, unreachable=True)
    assert text.startswith("the store is unreachable; whether the change was stored is unknown")
    assert ("a retry is safe" in text) is safe and ("look before you retry" in text) is not safe


def test_a_failed_read_says_it_could_not_read() -> None:
    assert failure_text("GET", "/api/v1/incidents", unreachable=False) == (
        "internal error; the store could not be read, retry later"
    )


@contextmanager
def disk_full(sql: Engine) -> Iterator[None]:
    """The store cannot grow by a page, as on a full disk: SQLite answers SQLITE_FULL ("database or disk is
    full") to a write that needs one."""

    def cap(conn: Any) -> None:
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
        conn.exec_driver_sql(f"PRAGMA max_page_count = {pages}")

    event.listen(sql, "begin", cap)
    try:
        yield
    finally:
        event.remove(sql, "begin", cap)
        with sql.begin() as conn:
            conn.exec_driver_sql("PRAGMA max_page_count = 1073741823")


def test_a_silence_on_a_full_disk_says_the_store_cannot_write_its_files_and_that_it_was_not_stored(
    client: TestClient, engine: IncidentEngine
) -> None:
    big = {**SILENCE, "comment": "c" * 3000}  # two such rows fill more than one page: the second needs one
    first = client.post("/api/v2/silences", json=big, headers=AUTH).json()["silenceID"]
    other = {**big, "matchers": [{"name": "node", "value": "r02-n04", "isRegex": False}]}
    with disk_full(engine.store.engine):
        answer = client.post("/api/v2/silences", json=other, headers=AUTH)
    said = error_text(answer)
    assert answer.status_code == 503, said
    assert said == (
        "the store cannot write its files: database or disk is full;"
        " the change was not stored: send it again once the store can write"
    ), said
    assert [s["id"] for s in client.get("/api/v2/silences").json()] == [first]
