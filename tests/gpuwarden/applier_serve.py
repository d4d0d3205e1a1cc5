"""A serve's engine, journal applier and API over them, as the liveness and readiness tests use them."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from pydantic import SecretStr

from alerting import scenarios
from alerting.applier import JournalApplier
from alerting.engine import IncidentEngine
from alerting.journal import AcceptJournal, applied_offset
from gpuwarden.api import create_app
from gpuwarden.clock import FakeClock
from gpuwarden.config import ApiConfig
from tests.gpuwarden.api_client import TOKEN, TestClient
from tests.migrated_store import migrated_sqlite

LABELS = {"alertname": "NodeDown", "cluster": "c1", "node": "r02-n03"}
FIRING = {"labels": LABELS, "startsAt": "2026-01-01T00:00:00Z"}
RESOLVED = {**FIRING, "endsAt": "2026-01-01T00:00:30Z"}


def engine_at(tmp_path: Path) -> IncidentEngine:
    """An engine on a migrated SQLite store in ``tmp_path``, a fake clock and the scenarios' fleet."""
    sql = migrated_sqlite(tmp_path / "api.db")
    return IncidentEngine(sql, FakeClock(), inventory=scenarios.fleet_inventory())


def applier_at(tmp_path: Path) -> JournalApplier:
    """The journal applier of an ``engine_at`` engine (retrying after 0.05 s)."""
    engine = engine_at(tmp_path)
    sql = engine.store.engine
    applier = JournalApplier(
        AcceptJournal(tmp_path / "journal", lambda jid: applied_offset(sql, jid)), engine
    )
    applier.retry_seconds = 0.05
    return applier


def client_of(applier: JournalApplier) -> TestClient:
    """The API of a serve over ``applier`` and its engine (entered, it runs the applier's loop)."""
    app = create_app(applier.engine, ApiConfig(token=SecretStr(TOKEN)), applier=applier)
    return TestClient(app, raise_server_exceptions=False)


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until ``check`` holds (fails after ``timeout`` s)."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)
