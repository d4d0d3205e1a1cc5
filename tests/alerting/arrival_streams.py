"""Alerts posted in an order, and the engine that takes them: shared by the arrival-order tests
(``test_arrival_order.py``) and the announcing and merge tests that feed the same storms."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

from alerting import scenarios as sc
from alerting.engine import IncidentEngine
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert
from tests.migrated_store import migrated_sqlite

START = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def _ranks(alerts: list[Alert]) -> list[Alert]:
    """The job's stalls: one alert per rank (a pair of faults may stall a rank twice: keep the first)."""
    out: dict[frozenset[tuple[str, str]], Alert] = {}
    for a in sorted(alerts, key=_onset):
        out.setdefault(frozenset(a.labels.items()), a)
    return list(out.values())


def _onset(a: Alert) -> datetime:
    return a.starts_at or START


def _engine(tmp_path: Path, at: datetime) -> IncidentEngine:
    sql = migrated_sqlite(tmp_path / f"{uuid.uuid4().hex}.db")
    config = AlertingConfig(announce_delay_seconds=0)
    return IncidentEngine(sql, FakeClock(at.timestamp()), config, sc.fleet_inventory())


def _batches(alerts: list[Alert], size: int) -> list[list[Alert]]:
    return [alerts[i : i + size] for i in range(0, len(alerts), size)]
