"""Liveness, readiness and the store/ingest metrics of the API as ``serve`` runs it (with a journal)."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr
from sqlalchemy import Engine, event
from sqlalchemy.exc import OperationalError

import gpuwarden.api
from alerting.applier import JournalApplier
from alerting.engine import IncidentEngine
from alerting.health import Heartbeat
from alerting.journal import KIND_POSTABLE, AcceptJournal, applied_offset
from alerting.subscriptions import ChangeKind
from gpuwarden.api import LAG_HEADER, create_app
from gpuwarden.cli.serve_cmd import _tick_loop
from gpuwarden.clock import FakeClock
from gpuwarden.config import ApiConfig
from gpuwarden.model import label_fingerprint
from tests.gpuwarden.api_client import AUTH, TOKEN, TestClient
from tests.gpuwarden.api_error import error_text
from tests.gpuwarden.applier_serve import FIRING, LABELS, RESOLVED, applier_at
from tests.gpuwarden.applier_serve import client_of as _client
from tests.gpuwarden.applier_serve import engine_at as _engine
from tests.gpuwarden.applier_serve import eventually as _eventually


def _metric(client: TestClient, name: str) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith(f"{name} "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


@contextmanager
def store_down(sql: Engine, said: str = "unable to open database file") -> Iterator[None]:
    """Every new connection to the store fails as a database server that went away does, saying ``said``."""

    def refuse(*_: Any) -> None:
        raise sqlite3.OperationalError(said)

    event.listen(sql, "do_connect", refuse)
    sql.dispose()
    try:
        yield
    finally:
        event.remove(sql, "do_connect", refuse)


@pytest.fixture
def applier(tmp_path: Path) -> JournalApplier:
    return applier_at(tmp_path)


def test_a_store_outage_fails_readiness_and_shows_on_metrics_while_liveness_stays_ok(
    applier: JournalApplier,
) -> None:
    with _client(applier) as client:
        assert client.get("/-/ready").status_code == 200
        assert _metric(client, "gpuwarden_store_up") == 1
        with store_down(applier.engine.store.engine):
            assert client.post("/api/v2/alerts", json=[FIRING], headers=AUTH).status_code == 200  # journaled
            _eventually(lambda: applier.failures >= 2)
            assert [client.get(p).status_code for p in ("/healthz", "/-/healthy")] == [200, 200]
            ready = client.get("/-/ready")
            assert ready.status_code == 503 and "store is unreachable" in ready.text, ready.text
            assert _metric(client, "gpuwarden_store_up") == 0
            assert _metric(client, "gpuwarden_ingest_apply_failures_total") >= 2
            assert _metric(client, "gpuwarden_ingest_lag_bytes") == applier.journal.end > 0
            down = client.get("/api/v1/ingest/status").json()
            assert down["store_up"] is False and "unable to open database file" in down["last_error"]
            assert down["last_error_at"] == "2026-01-01T00:00:00Z"
        _eventually(lambda: client.get("/-/ready").status_code == 200)
        _eventually(lambda: applier.lag_bytes == 0)
        up = client.get("/api/v1/ingest/status").json()
        # The error is over once a batch applies again; when the last one happened stays.
        assert (up["store_up"], up["last_error"], up["last_error_at"]) == (True, None, "2026-01-01T00:00:00Z")
        assert (_metric(client, "gpuwarden_store_up"), _metric(client, "gpuwarden_ingest_lag_bytes")) == (
            1,
            0,
        )
        assert _metric(client, "gpuwarden_ingest_records_quarantined_total") == 0  # an outage is no poison
        assert applier.engine.store.alert(label_fingerprint(LABELS)) is not None


def test_ingest_status_counts_the_engine_ticks_done_and_says_when_the_last_ended(
    applier: JournalApplier,
) -> None:
    """A client that must see what time decides (an alert whose endsAt passed resolved) waits for a tick
    begun after its alerts were applied: ``ticks`` two past what it read."""
    clock = applier.engine.clock
    assert isinstance(clock, FakeClock)
    ticking = _tick_loop(applier.engine, 0.01, applier.health)
    app = create_app(applier.engine, ApiConfig(token=SecretStr(TOKEN)), applier=applier, background=[ticking])
    with TestClient(app, raise_server_exceptions=False) as client:

        def status() -> dict[str, Any]:
            found: dict[str, Any] = client.get("/api/v1/ingest/status").json()
            return found

        assert client.post(
            "/api/v2/alerts", json=[{**FIRING, "endsAt": "2026-01-01T00:00:30Z"}], headers=AUTH
        )
        _eventually(lambda: status()["lag_bytes"] == 0)
        seen = status()
        assert seen["last_tick_at"] in (None, "2026-01-01T00:00:00Z")
        clock.advance(60)
        # Two past a count read after the advance: one in flight then may have begun before it (two ticks of
        # 10 ms can both begin between ``seen`` and the advance on a loaded machine).
        after = status()["ticks"]
        _eventually(lambda: status()["ticks"] >= after + 2)
        assert status()["last_tick_at"] == "2026-01-01T00:01:00Z"
    row = applier.engine.store.alert(label_fingerprint(LABELS))
    assert row is not None and row.status == "resolved"  # what time decided: the tick waited for did it


def test_ingest_status_reads_the_ticks_after_the_lag_so_a_tick_ended_meanwhile_is_counted(
    applier: JournalApplier, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``ticks`` read before the lag said N for a tick that ended (and the next one begun) before the apply
    that made the lag 0 in the same answer: that next tick, N + 2 for the client, began before its alerts
    were applied and missed them. Read after the lag, every tick ended before the apply is counted."""
    status = applier.status

    def tick_then_status() -> dict[str, Any]:
        applier.health.ticked(applier.engine.clock.now())  # a tick ends while the answer is made
        return status()

    monkeypatch.setattr(applier, "status", tick_then_status)
    with _client(applier) as client:
        assert client.get("/api/v1/ingest/status").json()["ticks"] == 1


@pytest.mark.parametrize("path", ["/api/v1/incidents", "/api/v2/alerts", "/api/v2/silences"])
def test_a_read_while_the_store_is_down_says_the_store_could_not_be_read(
    applier: JournalApplier, path: str
) -> None:
    with _client(applier) as client, store_down(applier.engine.store.engine):
        response = client.get(path)
        assert response.status_code == 503 and response.headers["Retry-After"] == "1"
        text = error_text(response)
        assert "could not be read" in text and "stored" not in text, text
        assert client.get("/-/ready").status_code == 503  # the read found the store unreachable


@pytest.mark.parametrize(
    ("action", "body", "advice"),
    [
        ("ack", {}, "a retry is safe: if it was stored, the repeat changes nothing"),
        (
            "notes",
            {"text": "PSU swapped"},
            "look before you retry: if it was stored, a repeat stores it again",
        ),
    ],
    ids=["ack", "note"],
)
def test_a_write_the_store_fails_says_its_outcome_is_unknown_and_whether_a_retry_is_safe(
    applier: JournalApplier, action: str, body: dict[str, str], advice: str
) -> None:
    # It said "nothing was stored", untrue when the COMMIT went through and only its answer was lost.
    with _client(applier) as client, store_down(applier.engine.store.engine):
        response = client.post(f"/api/v1/incidents/nope/{action}", json={**body, "by": "sre"}, headers=AUTH)
        assert response.status_code == 503
        text = error_text(response)
        assert "whether the change was stored is unknown" in text and text.endswith(advice), text
        assert "nothing was stored" not in text


def test_an_ack_whose_commit_answer_was_lost_answers_503_and_its_retry_changes_nothing(
    applier: JournalApplier, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = applier.engine
    with _client(applier) as client:
        assert client.post("/api/v2/alerts", json=[FIRING], headers=AUTH).status_code == 200
        _eventually(lambda: bool(client.get("/api/v1/incidents").json()))
        (item,) = client.get("/api/v1/incidents").json()
        notify = engine._notify

        def lost_answer(changes: list[tuple[str, ChangeKind, Any]]) -> None:
            if not any(kind is ChangeKind.ACKNOWLEDGED for _, kind, _ in changes):
                notify(changes)
                return
            monkeypatch.setattr(engine, "_notify", notify)
            raise OperationalError("COMMIT", {}, Exception("server closed the connection unexpectedly"))

        monkeypatch.setattr(engine, "_notify", lost_answer)  # the ack's COMMIT went through, its answer lost
        path = f"/api/v1/incidents/{item['id']}/ack"
        lost = client.post(path, json={"by": "alice"}, headers=AUTH)
        assert lost.status_code == 503
        assert "unknown" in error_text(lost) and "a retry is safe" in error_text(lost)
        retried = client.post(path, json={"by": "alice"}, headers=AUTH)
        assert retried.status_code == 200 and retried.json()["changed"] is False
        assert retried.json()["message"] == "already acknowledged by alice at 2026-01-01T00:00:00Z"
        assert [e["kind"] for e in retried.json()["timeline"]].count("acknowledged") == 1


def test_a_backlog_replays_behind_an_open_port_reads_lag_and_later_writes_apply_after_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = _engine(tmp_path)
    clock = engine.clock
    assert isinstance(clock, FakeClock)
    sql = engine.store.engine
    journal = AcceptJournal(tmp_path / "journal", lambda jid: applied_offset(sql, jid))
    journal.append(KIND_POSTABLE, json.dumps([FIRING]).encode(), 1, accepted_at=engine.clock.time())
    applier = JournalApplier(journal, engine)  # what a restarted serve finds: acknowledged, not applied
    gate = threading.Event()  # holds the replay, as minutes of backlog would
    apply = engine.apply_accepted

    def slow_apply(*args: Any, **kwargs: Any) -> Any:
        gate.wait(10)
        return apply(*args, **kwargs)

    monkeypatch.setattr(engine, "apply_accepted", slow_apply)
    monkeypatch.setattr(gpuwarden.api, "READ_BARRIER_SECONDS", 0.1)
    with _client(applier) as client:
        assert client.get("/healthz").status_code == 200
        ready = client.get("/-/ready")
        assert ready.status_code == 503 and "replaying" in ready.text, ready.text
        assert _metric(client, "gpuwarden_ingest_replaying") == 1
        listing = client.get("/api/v1/incidents")
        assert listing.status_code == 200 and int(listing.headers[LAG_HEADER]) > 0
        # Accepted during the replay: journaled after the backlog, so applied after it.
        clock.advance(60)  # past RESOLVED's endsAt
        assert client.post("/api/v2/alerts", json=[RESOLVED], headers=AUTH).status_code == 200
        gate.set()
        _eventually(lambda: client.get("/-/ready").status_code == 200)
        assert applier.wait_applied(journal.end, 10)
        assert _metric(client, "gpuwarden_ingest_replaying") == 0
    row = engine.store.alert(label_fingerprint(LABELS))
    assert row is not None and row.status == "resolved" and row.receive_count == 2


def test_a_read_during_a_store_outage_does_not_wait_for_an_applier_that_cannot_apply(
    applier: JournalApplier, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It waited the whole 10 s read barrier before its 503, so a CLI with a 10 s timeout saw a timeout."""
    with _client(applier) as client, store_down(applier.engine.store.engine):
        assert client.post("/api/v2/alerts", json=[FIRING], headers=AUTH).status_code == 200
        _eventually(lambda: not applier.health.store_up)  # marked down just after the failure is counted
        waited: list[int] = []
        monkeypatch.setattr(applier, "wait_applied", lambda offset, timeout: waited.append(offset) or False)
        read = client.get("/api/v1/incidents")
        assert read.status_code == 503 and "store" in error_text(read)
        assert waited == []


def _stuck_until(
    engine: IncidentEngine, monkeypatch: pytest.MonkeyPatch
) -> tuple[threading.Event, threading.Event]:
    """Make the engine's next apply block (as a deadlock would) until the returned ``release`` is set; the
    returned ``entered`` is set once the applier is blocked in it."""
    entered, release = threading.Event(), threading.Event()
    apply = engine.apply_accepted

    def stuck(*args: Any, **kwargs: Any) -> Any:
        entered.set()
        release.wait(30)
        return apply(*args, **kwargs)

    monkeypatch.setattr(engine, "apply_accepted", stuck)
    return entered, release


def test_liveness_and_readiness_fail_naming_the_applier_while_it_is_stuck(
    applier: JournalApplier, monkeypatch: pytest.MonkeyPatch
) -> None:
    """They stayed 200, so Kubernetes never restarted a serve that acknowledged alerts and applied none."""
    applier.heartbeat.deadline_seconds = 1.0
    entered, release = _stuck_until(applier.engine, monkeypatch)
    with _client(applier) as client:
        assert [client.get(p).status_code for p in ("/healthz", "/-/healthy", "/-/ready")] == [200] * 3
        assert client.post("/api/v2/alerts", json=[FIRING], headers=AUTH).status_code == 200  # journaled
        assert entered.wait(10)
        _eventually(lambda: client.get("/-/healthy").status_code == 503)
        for path in ("/healthz", "/-/healthy", "/-/ready"):
            answer = client.get(path)
            assert answer.status_code == 503, path
            assert "the journal applier has not made progress" in answer.text, answer.text
            assert "alerting.applier_stall_seconds" in answer.text, answer.text
        assert "it is stuck" in client.get("/api/v1/ingest/status").json()["applier_problem"]
        assert _metric(client, "gpuwarden_ingest_applier_up") == 0
        assert _metric(client, "gpuwarden_ingest_applier_heartbeat_age_seconds") > 1.0
        release.set()
        _eventually(lambda: applier.lag_bytes == 0)
        assert [client.get(p).status_code for p in ("/healthz", "/-/healthy", "/-/ready")] == [200] * 3
        assert _metric(client, "gpuwarden_ingest_applier_up") == 1


def test_liveness_fails_for_good_once_the_applier_thread_died_of_an_exception(
    applier: JournalApplier, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(exc: BaseException) -> bool:
        raise RuntimeError("a bug in the retry path")

    monkeypatch.setattr(applier.health, "store_failed", broken)  # the loop's own handler raises
    with _client(applier) as client, store_down(applier.engine.store.engine):
        assert client.post("/api/v2/alerts", json=[FIRING], headers=AUTH).status_code == 200
        _eventually(lambda: applier.heartbeat.error is not None)
        for path in ("/healthz", "/-/healthy", "/-/ready"):
            answer = client.get(path)
            assert answer.status_code == 503, path
            assert "the journal applier stopped: RuntimeError('a bug in the retry path')" in answer.text


def test_probes_anyone_may_read_name_no_host_or_user_of_the_store(applier: JournalApplier) -> None:
    # /-/ready and /api/v1/ingest/status need no token; a PostgreSQL store's error named its host, the
    # address it resolved to and the user serve connects as. serve's log keeps them.
    said = (
        'connection to server at "db.internal" (10.20.30.40), port 5432 failed: FATAL:  password'
        ' authentication failed for user "gw_admin"'
    )
    with _client(applier) as client, store_down(applier.engine.store.engine, said):
        assert client.post("/api/v2/alerts", json=[FIRING], headers=AUTH).status_code == 200
        _eventually(lambda: applier.failures >= 1 and not applier.health.store_up)
        ready, status = client.get("/-/ready"), client.get("/api/v1/ingest/status")
    assert ready.status_code == 503 and "password authentication failed for user" in ready.text, ready.text
    assert "password authentication failed" in status.json()["last_error"], status.text
    for shown in (ready.text, status.text):
        assert not [name for name in ("db.internal", "10.20.30.40", "gw_admin") if name in shown], shown
        assert "names hidden: serve's log has them" in shown, shown


def test_liveness_stays_ok_while_the_applier_waits_out_a_store_outage_longer_than_its_deadline(
    applier: JournalApplier,
) -> None:
    applier.heartbeat.deadline_seconds = 1.0
    applier.retry_seconds = 60.0  # one retry wait outlasts the test: every beat below comes from inside it
    with _client(applier) as client, store_down(applier.engine.store.engine):
        assert client.post("/api/v2/alerts", json=[FIRING], headers=AUTH).status_code == 200
        _eventually(lambda: applier.failures == 1)
        waiting = applier.heartbeat.beats
        # Ten beats a quarter of the deadline apart: more than twice the deadline spent waiting to retry.
        _eventually(lambda: applier.heartbeat.beats >= waiting + 10)
        assert applier.failures == 1
        assert [client.get(p).status_code for p in ("/healthz", "/-/healthy")] == [200, 200]
        ready = client.get("/-/ready")
        assert ready.status_code == 503 and "store is unreachable" in ready.text, ready.text


def _each_call_takes_a_second(
    applier: JournalApplier, monkeypatch: pytest.MonkeyPatch, method: str
) -> tuple[list[float], list[str | None]]:
    """Give the applier a heartbeat of 3 s on a clock that each call of the engine's ``method`` moves on by a
    second; returns that clock and what the heartbeat said at each call."""
    seconds, seen = [0.0], []
    applier.heartbeat = Heartbeat(
        "the journal applier", 3.0, "alerting.applier_stall_seconds", lambda: seconds[0]
    )
    original = getattr(applier.engine, method)

    def one_second(*args: Any, **kwargs: Any) -> Any:
        seconds[0] += 1.0
        seen.append(applier.heartbeat.problem())
        return original(*args, **kwargs)

    monkeypatch.setattr(applier.engine, method, one_second)
    return seconds, seen


def test_liveness_stays_ok_while_the_applier_works_through_a_storm_longer_than_its_deadline(
    applier: JournalApplier, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine, journal = applier.engine, applier.journal
    applier.batch_bytes = 1  # one record per batch: ten batches
    seconds, seen = _each_call_takes_a_second(applier, monkeypatch, "apply_accepted")
    with _client(applier) as client:
        _eventually(lambda: applier.heartbeat.beats > 0)  # idle, beating
        for k in range(10):
            body = json.dumps([{"labels": {**LABELS, "node": f"r02-n{k:02d}"}}]).encode()
            journal.append(KIND_POSTABLE, body, 1, accepted_at=engine.clock.time())
        applier.notify()
        _eventually(lambda: applier.lag_bytes == 0)
        assert seconds[0] == 10.0 > applier.heartbeat.deadline_seconds
        assert seen == [None] * 10
        assert client.get("/-/healthy").status_code == 200


def test_liveness_stays_ok_while_one_transaction_of_a_big_record_outlasts_its_deadline(
    applier: JournalApplier, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One record of 100,000 alerts (a single POST) is one transaction: its heartbeat beat only between
    transactions, so /-/healthy answered 503 while the applier was working, Kubernetes restarted serve and
    the restart replayed the same record into the same 503: a crash loop that applied nothing after it."""
    engine, journal = applier.engine, applier.journal
    seconds, seen = _each_call_takes_a_second(
        applier, monkeypatch, "_ingest_one"
    )  # each alert of one transaction
    with _client(applier) as client:
        _eventually(lambda: applier.heartbeat.beats > 0)  # idle, beating
        body = json.dumps([{"labels": {**LABELS, "node": f"r02-n{k:02d}"}} for k in range(10)]).encode()
        journal.append(KIND_POSTABLE, body, 10, accepted_at=engine.clock.time())
        applier.notify()
        _eventually(lambda: applier.lag_bytes == 0)
        assert applier.alerts_applied == 10
        assert seconds[0] == 10.0 > applier.heartbeat.deadline_seconds
        assert seen == [None] * 10
        assert client.get("/-/healthy").status_code == 200


def test_ingest_status_shows_the_error_class_and_first_line_of_the_driver_not_the_values_it_names(
    applier: JournalApplier,
) -> None:
    # GET /api/v1/ingest/status needs no token; its last_error was repr(exc), the driver's whole text:
    # PostgreSQL's DETAIL and CONTEXT lines quote the values refused, the alert's labels among them.
    # serve's log keeps the whole text.
    said = "value too long for type character varying(64)\nCONTEXT:  unnamed portal parameter $3 = 'r02-n03'"

    def refuse(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):  # no write commits
            raise sqlite3.OperationalError(said)

    sql = applier.engine.store.engine
    event.listen(sql, "before_cursor_execute", refuse)
    try:
        with _client(applier) as client:
            assert client.post("/api/v2/alerts", json=[FIRING], headers=AUTH).status_code == 200
            _eventually(lambda: applier.last_error is not None)  # set after failures is counted
            shown = client.get("/api/v1/ingest/status").json()["last_error"]
    finally:
        event.remove(sql, "before_cursor_execute", refuse)
    assert shown == "OperationalError: value too long for type character varying(64)", shown


def test_ingest_status_hides_a_label_value_a_non_database_error_quotes_with_a_space_in_it(
    applier: JournalApplier, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The applier's loop records any exception, not only the driver's: Python's repr quotes a label value
    # with ' (a KeyError, a psycopg DataError's "can't parse ... '...'"), and a value with a space in it was
    # shown whole, the quotes being taken for a name's only without a space.
    value = "gpu 7 on r02-n03"

    def bug(_accepted: Any, *_: Any, **__: Any) -> Any:
        raise KeyError(value)

    monkeypatch.setattr(applier.engine, "apply_accepted", bug)
    with _client(applier) as client:
        posted = [{**FIRING, "labels": {**LABELS, "gpu": value}}]
        assert client.post("/api/v2/alerts", json=posted, headers=AUTH).status_code == 200
        _eventually(lambda: applier.last_error is not None)
        shown = client.get("/api/v1/ingest/status").json()["last_error"]
    assert shown == "KeyError: '***' (names hidden: serve's log has them)", shown
