"""Alerts on the GPUs of node r07-n01 and an engine over the scenario fleet with 8 spare GPUs, for the
joining tests."""

from __future__ import annotations

from pathlib import Path

from alerting import scenarios
from alerting.db import make_engine
from alerting.engine import IncidentEngine
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert, AlertStatus
from tests.migrated_store import migrated_sqlite

ANOMALY = {"alertname": "GpuwardenAnomaly", "for": "DCGM_FI_DEV_POWER_USAGE", "model": "fleet"}


def _on(gpu: int, status: AlertStatus = AlertStatus.FIRING, **labels: str) -> Alert:
    return Alert({"cluster": "c1", "Hostname": "r07-n01", "gpu": str(gpu), **labels}, status=status)


def _engine_fleet(tmp_path: Path) -> tuple[FakeClock, IncidentEngine]:
    path = str(tmp_path / "incidents.db")
    migrated_sqlite(Path(path)).dispose()
    clock = FakeClock()
    config = AlertingConfig(announce_delay_seconds=0)
    return clock, IncidentEngine(make_engine(path), clock, config, scenarios.fleet_inventory(spare_gpus=8))
