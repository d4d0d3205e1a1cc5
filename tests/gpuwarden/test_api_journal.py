"""The API with an accept journal (as ``gpuwarden serve`` runs it): ack on append, reads see own writes."""

from __future__ import annotations

import errno
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr

from alerting import scenarios
from alerting.applier import JournalApplier
from alerting.db import make_engine
from alerting.engine import IncidentEngine
from alerting.journal import KIND_POSTABLE, AcceptJournal, applied_offset
from alerting.migrate import upgrade
from gpuwarden.api import create_app
from gpuwarden.clock import FakeClock
from gpuwarden.config import ApiConfig
from gpuwarden.model import label_fingerprint
from tests.gpuwarden.api_client import AUTH, NODE_DOWN, TOKEN, TestClient
from tests.gpuwarden.api_error import error_field


@pytest.fixture
def applier(tmp_path: Path) -> JournalApplier:
    sql = make_engine(str(tmp_path / "api.db"))
    upgrade(sql)
    engine = IncidentEngine(sql, FakeClock(), inventory=scenarios.fleet_inventory())
    journal = AcceptJournal(tmp_path / "journal", lambda jid: applied_offset(sql, jid))
    return JournalApplier(journal, engine)


@pytest.fixture
def client(applier: JournalApplier) -> Iterator[TestClient]:
    app = create_app(applier.engine, ApiConfig(token=SecretStr(TOKEN), max_body_bytes=4096), applier=applier)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def test_a_post_is_journaled_before_200_and_the_next_read_sees_its_incident(
    client: TestClient, applier: JournalApplier
) -> None:
    assert client.post("/api/v2/alerts", json=[NODE_DOWN], headers=AUTH).status_code == 200
    assert [r.alerts()[0].labels for r in applier.journal.read(0)] == [NODE_DOWN["labels"]]
    (item,) = client.get("/api/v1/incidents").json()
    assert (item["alert_count"], item["root_cause"]["kind"]) == (1, "node_down")
    assert applier.engine.store.alert(label_fingerprint(NODE_DOWN["labels"])) is not None  # type: ignore[arg-type]


def test_ingest_status_reports_accepted_and_applied_offsets(
    client: TestClient, applier: JournalApplier
) -> None:
    client.post("/api/v2/alerts", json=[NODE_DOWN], headers=AUTH)
    client.get("/api/v1/incidents")  # the read barrier: applied by now
    status = client.get("/api/v1/ingest/status").json()
    assert status["journal"] is True
    assert status["accepted_offset"] == status["applied_offset"] == applier.journal.end > 0
    assert (status["lag_bytes"], status["alerts_accepted"], status["alerts_applied"]) == (0, 1, 1)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"{not json", "body"),
        (json.dumps([NODE_DOWN, {"labels": {"a": 1}}]).encode(), "[1].labels.a"),
        (json.dumps([{"labels": {"a": "b"}, "startsAt": "yesterday"}]).encode(), "[0].startsAt"),
        (
            json.dumps([NODE_DOWN, {"labels": {"a": "b"}, "startsAt": "9999-01-01T00:00:00Z"}]).encode(),
            "[1].startsAt",
        ),
    ],
    ids=["bad-json", "non-string-label", "bad-time", "starts-after-it-would-end"],
)
def test_a_bad_batch_gets_400_and_nothing_of_it_reaches_the_journal(
    client: TestClient, applier: JournalApplier, body: bytes, field: str
) -> None:
    response = client.post(
        "/api/v2/alerts", content=body, headers={**AUTH, "Content-Type": "application/json"}
    )
    assert (response.status_code, error_field(response)) == (400, field)
    assert applier.journal.end == 0
    assert client.get("/api/v1/incidents").json() == []


def test_writes_without_the_token_or_over_the_limit_are_refused_before_the_journal(
    client: TestClient, applier: JournalApplier
) -> None:
    assert client.post("/api/v2/alerts", json=[NODE_DOWN]).status_code == 401
    big = [{"labels": {"alertname": "X", "pad": "x" * 5000}}]
    assert client.post("/api/v2/alerts", json=big, headers=AUTH).status_code == 413
    assert applier.journal.end == 0


def test_webhook_through_the_journal_is_idempotent(client: TestClient, applier: JournalApplier) -> None:
    payload = {"version": "4", "status": "firing", "receiver": "gw", "alerts": [NODE_DOWN], "extra": 1}
    for _ in range(2):
        response = client.post("/api/v1/webhook/alertmanager", json=payload, headers=AUTH)
        assert response.json() == {"status": "ok", "accepted": 1}
    (item,) = client.get("/api/v1/incidents").json()
    assert item["alert_count"] == 1
    assert applier.engine.store.alert_count() == 1


def test_an_alert_posted_without_ends_at_ends_resolve_timeout_after_it_was_accepted(
    client: TestClient, applier: JournalApplier
) -> None:
    engine = applier.engine
    clock = engine.clock
    assert isinstance(clock, FakeClock)
    client.post("/api/v2/alerts", json=[NODE_DOWN], headers=AUTH)
    clock.advance(120)  # applied later than accepted: the timeout counts from the accept
    client.get("/api/v1/incidents")  # the read barrier applies it
    row = engine.store.alert(label_fingerprint(NODE_DOWN["labels"]))  # type: ignore[arg-type]
    assert row is not None and row.status == "firing"
    assert row.ends_at is not None and (row.ends_at - clock.now()).total_seconds() == 180
    clock.advance(181)
    engine.tick()
    assert engine.store.alert(row.fingerprint).status == "resolved"  # type: ignore[union-attr]


def test_a_journal_record_with_an_alert_that_starts_too_late_keeps_the_rest_of_its_batch(
    client: TestClient, applier: JournalApplier
) -> None:
    # Accepted by a version that did not check, or before resolve_timeout was lowered: replayed now.
    late = {"labels": {"alertname": "Late"}, "startsAt": "9999-01-01T00:00:00Z"}
    body = json.dumps([NODE_DOWN, late]).encode()
    applier.journal.append(KIND_POSTABLE, body, 2, accepted_at=applier.engine.clock.time())
    (item,) = client.get("/api/v1/incidents").json()  # the read barrier applies the record
    assert item["alert_count"] == 1 and item["root_cause"]["kind"] == "node_down"


@pytest.mark.parametrize("route", ["/api/v2/alerts", "/api/v1/webhook/alertmanager"])
def test_a_post_the_full_disk_cannot_journal_gets_503_saying_so_and_a_retry_is_taken_once_it_has_room(
    client: TestClient,
    applier: JournalApplier,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    route: str,
) -> None:
    payload = [NODE_DOWN] if route == "/api/v2/alerts" else {"version": "4", "alerts": [NODE_DOWN]}
    real_write = os.write
    journal = applier.journal

    def full_disk(fd: int, data: bytes) -> int:
        if fd == journal._fd:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    with monkeypatch.context() as patch:
        patch.setattr(os, "write", full_disk)
        response = client.post(route, json=payload, headers=AUTH)
    assert response.status_code == 503 and response.headers["Retry-After"]
    message = response.text
    assert "journal cannot be written" in message and "No space left on device" in message
    assert "nothing was stored, a retry is safe" in message and "internal error" not in message
    assert str(journal.directory) in message
    assert not [r for r in caplog.records if r.exc_info]  # one line in the log, no traceback per POST
    assert journal.end == 0
    assert client.post(route, json=payload, headers=AUTH).status_code == 200
    (item,) = client.get("/api/v1/incidents").json()
    assert item["alert_count"] == 1
