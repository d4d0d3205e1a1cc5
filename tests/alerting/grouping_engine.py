"""An incident engine on a migrated store and GPU heat alerts, for the grouping and title tests."""

from __future__ import annotations

from pathlib import Path

from alerting import scenarios as sc
from alerting.engine import IncidentEngine
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert, AlertStatus
from tests.migrated_store import migrated_sqlite

BASE = {"cluster": sc.CLUSTER, "severity": "critical"}


def _engine(tmp_path: Path, clock: FakeClock) -> IncidentEngine:
    sql = migrated_sqlite(tmp_path / "incidents.db")
    config = AlertingConfig(announce_delay_seconds=0)
    return IncidentEngine(sql, clock, config, sc.fleet_inventory())


def _heat(node: str, gpu: int, status: AlertStatus = AlertStatus.FIRING) -> Alert:
    labels = {**BASE, "alertname": "GPUThermal", "Hostname": node, "gpu": str(gpu), "severity": "warning"}
    return Alert(labels, status=status)
