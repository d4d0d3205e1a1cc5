from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from alerting import scenarios
from alerting.engine import IncidentEngine
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert
from tests.migrated_store import migrated_sqlite

START = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


def _incidents(tmp_path: Path, alerts: list[Alert]) -> list[tuple[str, str, str | None, int]]:
    """Post the storm in four waves 15 s apart in batches of 64, like rule evaluations would."""
    sql = migrated_sqlite(tmp_path / "incidents.db")
    clock = FakeClock(START.timestamp())
    config = AlertingConfig(announce_delay_seconds=0)
    engine = IncidentEngine(sql, clock, config, scenarios.fleet_inventory())
    for wave in (alerts[i::4] for i in range(4)):
        for i in range(0, len(wave), 64):
            engine.ingest(wave[i : i + 64])
        clock.advance(15)
    return sorted(
        (r.priority, r.root_kind, r.root_target.get("name"), n) for r, n in engine.store.list_rows()
    )


EXPECTED = {
    # A rack without power stops the job's ranks there; no spare GPUs in the fleet: P0.
    "rack_power_loss": [("P0", "rack_down", "r07", 264)],
    # An NVSwitch takes the node's GPUs out of the job: the job stops, P0, rooted at the node.
    "nvlink_switch_failure": [("P0", "nvlink", "r08-n03", 24)],
    # XID 119 on every GPU of two racks, the job on them stalls: one cluster-wide fault, P0.
    "driver_rollout_xids": [("P0", "xid", "c1", 256)],
    # Every rank hangs with no infrastructure fault: the job itself is the root cause, P0.
    "training_job_stall": [("P0", "job_stalled", "llm-70b", 256)],
}


def _incidents_on_timeline(tmp_path: Path, alerts: list[Alert]) -> list[tuple[str, str, str | None, int]]:
    """Post the storm as it unfolds: every 15 s rule evaluation sends each alert whose onset has passed."""
    sql = migrated_sqlite(tmp_path / "timeline.db")
    clock = FakeClock(START.timestamp())
    engine = IncidentEngine(sql, clock, AlertingConfig(), scenarios.fleet_inventory())
    last = max(a.starts_at or START for a in alerts)
    while clock.now() <= last + timedelta(seconds=15):
        due = [a for a in alerts if (a.starts_at or START) <= clock.now()]
        for i in range(0, len(due), 64):
            engine.ingest(due[i : i + 64])
        clock.advance(15)
    return sorted(
        (r.priority, r.root_kind, r.root_target.get("name"), n) for r, n in engine.store.list_rows()
    )


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_storm_stays_one_incident_while_it_unfolds_over_minutes(tmp_path: Path, name: str) -> None:
    # The driver rollout reaches rack r08 four minutes after r07: its XIDs join the r07 incident, whose
    # root moves up to the cluster, rather than opening a second incident (and a second page).
    alerts = scenarios.storm_scenarios(START)[name]
    assert _incidents_on_timeline(tmp_path, alerts) == EXPECTED[name]


def test_two_unrelated_faults_stay_two_incidents_while_they_unfold(tmp_path: Path) -> None:
    found = _incidents_on_timeline(tmp_path, scenarios.unrelated_faults(START))
    assert [(kind, target) for _, kind, target, _ in found] == [
        ("node_down", "r02-n04"),
        ("rack_down", "r05"),
    ]


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_storm_becomes_one_incident_with_its_root_cause_and_priority(tmp_path: Path, name: str) -> None:
    alerts = scenarios.storm_scenarios(START)[name]
    assert _incidents(tmp_path, alerts) == EXPECTED[name]


def test_storms_hold_whatever_order_the_alerts_arrive_in(tmp_path: Path) -> None:
    alerts = list(scenarios.driver_rollout_xids((7, 8), START))
    random.Random(7).shuffle(alerts)
    assert _incidents(tmp_path, alerts) == EXPECTED["driver_rollout_xids"]


def test_two_unrelated_faults_stay_two_incidents(tmp_path: Path) -> None:
    found = _incidents(tmp_path, scenarios.unrelated_faults(START))
    assert [(kind, target) for _, kind, target, _ in found] == [
        ("node_down", "r02-n04"),
        ("rack_down", "r05"),
    ]


def test_no_storm_repeats_an_alert() -> None:
    for name, alerts in scenarios.storm_scenarios(START).items():
        assert len({a.fingerprint for a in alerts}) == len(alerts), name
