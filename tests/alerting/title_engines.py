"""An incident engine told that node a01 is down, over the inventory a title test gives it."""

from __future__ import annotations

from pathlib import Path

from alerting.db import make_engine
from alerting.engine import IncidentEngine
from alerting.inventory import StaticInventory
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert
from tests.migrated_store import migrated_sqlite


def _a01_down(tmp_path: Path, inventory: StaticInventory) -> IncidentEngine:
    """An engine over ``inventory`` that has been told node a01 of cluster k is down."""
    path = str(tmp_path / "incidents.db")
    migrated_sqlite(Path(path)).dispose()
    engine = IncidentEngine(
        make_engine(path), FakeClock(), AlertingConfig(announce_delay_seconds=0), inventory
    )
    engine.ingest([Alert({"alertname": "KubeNodeNotReady", "cluster": "k", "node": "a01"})])
    return engine
