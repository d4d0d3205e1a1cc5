"""Fixtures shared by the incident engine's tests, the outbox's (its store and the Slack recorder), and the
Slack button tests' actions and client."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.exceptions import StarletteDeprecationWarning

from alerting.notifiers.recorder import SlackRecorder
from alerting.slack_interactions import slack_interaction_routes
from alerting.slack_replays import HandledSlackRequests
from gpuwarden.clock import FakeClock
from tests.alerting.slack_presses import SECRET, RecordingActions
from tests.migrated_store import migrated_sqlite

with warnings.catch_warnings():
    # Starlette's TestClient now asks for httpx2, which the project does not ship; with httpx it still works.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient


@pytest.fixture
def sql(tmp_path: Path) -> Engine:
    """A migrated SQLite store in the test's temp directory."""
    return migrated_sqlite(tmp_path / "gpuwarden.db")


@pytest.fixture
def db(tmp_path: Path) -> str:
    """A store at the newest revision: a copy of one migrated once per process (``migrated_sqlite``)."""
    path = tmp_path / "incidents.db"
    migrated_sqlite(path).dispose()
    return str(path)


@pytest.fixture
def engine(sql: Engine) -> Engine:
    """The store under the name these tests give it (the outbox's SQLAlchemy engine)."""
    return sql


@pytest.fixture
def recorder() -> Iterator[SlackRecorder]:
    with SlackRecorder() as rec:
        yield rec


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def actions() -> RecordingActions:
    return RecordingActions()


@pytest.fixture
def handled(tmp_path: Path) -> HandledSlackRequests:
    return HandledSlackRequests(migrated_sqlite(tmp_path / "handled.db"))


@pytest.fixture
def client(clock: FakeClock, actions: RecordingActions, handled: HandledSlackRequests) -> TestClient:
    return TestClient(Starlette(routes=slack_interaction_routes(SECRET, actions, clock, handled=handled)))
