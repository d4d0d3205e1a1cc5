from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path

import pytest

from alerting import scenarios
from alerting.engine import IncidentEngine
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert, AlertStatus
from tests.migrated_store import migrated_sqlite

START = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(START.timestamp())


@pytest.fixture
def engine(tmp_path: Path, clock: FakeClock) -> IncidentEngine:
    sql = migrated_sqlite(tmp_path / "incidents.db")
    config = AlertingConfig(announce_delay_seconds=0, quiet_period_seconds=3600)
    return IncidentEngine(sql, clock, config, scenarios.fleet_inventory())


def _post(engine: IncidentEngine, alerts: list[Alert], size: int = 25) -> None:
    for i in range(0, len(alerts), size):
        engine.ingest(alerts[i : i + size])


def _listed(engine: IncidentEngine) -> tuple[list[tuple[str, str | None, int]], set[str | None]]:
    """The incidents not merged (root kind, root name, alerts) and where the merged ones went."""
    rows = engine.store.list_rows(include_merged=True)
    kept = [r for r, _ in rows if r.merged_into is None]
    roots = sorted((r.root_kind, r.root_target.get("name"), n) for r, n in rows if r.merged_into is None)
    assert {r.merged_into for r, _ in rows} - {None} <= {r.id for r in kept}
    return roots, {r.merged_into for r, _ in rows if r.merged_into is not None}


def _xid(node: str, gpu: int, code: str, at: datetime | None = None) -> Alert:
    labels = {"alertname": "GPUXid", "cluster": "c1", "Hostname": node, "gpu": str(gpu), "xid": code}
    return Alert(labels, starts_at=at)


@pytest.mark.parametrize("seed", range(8), ids=[f"order{s}" for s in range(8)])
def test_a_driver_rollout_over_two_racks_is_one_incident_whatever_order_its_alerts_arrive_in(
    engine: IncidentEngine, clock: FakeClock, seed: int
) -> None:
    # Shuffled, the first alerts of r03 came before r02's incident held two nodes: each rack grew its own
    # incident and the merge pass, which folded only incidents inside the other's root, left two.
    alerts = scenarios.driver_rollout_xids((2, 3), clock.now(), stalled_job=None)
    random.Random(seed).shuffle(alerts)
    _post(engine, alerts)
    roots, merged_into = _listed(engine)
    assert roots == [("xid", "c1", 128)]
    (survivor,) = [r.id for r, _ in engine.store.list_rows()]
    assert merged_into <= {survivor}


@pytest.mark.parametrize("seed", range(4), ids=[f"order{s}" for s in range(4)])
def test_two_codes_spreading_over_two_racks_are_one_incident_per_rack_in_any_order(
    engine: IncidentEngine, seed: int
) -> None:
    alerts = [_xid(f"r02-n0{n}", g, "119") for n in (1, 2) for g in range(4)]
    alerts += [_xid(f"r03-n0{n}", g, "31") for n in (1, 2) for g in range(4)]
    random.Random(seed).shuffle(alerts)
    _post(engine, alerts, size=4)
    assert _listed(engine)[0] == [("xid", "r02", 8), ("xid", "r03", 8)]


@pytest.mark.parametrize("outage_first", [True, False], ids=["outage-first", "spread-first"])
def test_a_rack_outage_does_not_roll_up_with_a_spread_elsewhere_by_its_xids(
    engine: IncidentEngine, clock: FakeClock, outage_first: bool
) -> None:
    # The XID 31s on two nodes of the dead rack are its evidence (b5b0fee), not a signal spreading: the
    # XID 31 on two GPUs of r05-n03 is another fault, whichever incident formed first.
    outage = scenarios.rack_failure(7, clock.now()) + [_xid(f"r07-n0{n}", 2, "31") for n in (1, 2)]
    spread = [_xid("r05-n03", g, "31") for g in (4, 5)]
    for alerts in (outage, spread) if outage_first else (spread, outage):
        _post(engine, alerts)
        clock.advance(30)
    roots = [(kind, name) for kind, name, _ in _listed(engine)[0]]
    assert roots == [("rack_down", "r07"), ("xid", "r05-n03")]


def test_a_spread_that_began_long_before_does_not_take_in_the_next_racks(
    engine: IncidentEngine, clock: FakeClock
) -> None:
    # XID 119 on two nodes of r02 resolved; its incident waits out the quiet period. XID 119 on two nodes of
    # r03 twenty minutes later is no alert of the same rule evaluations: it is not rolled up with r02's.
    first = [_xid(f"r02-n0{n}", g, "119", clock.now()) for n in (1, 2) for g in range(2)]
    _post(engine, first)
    clock.advance(60)
    _post(engine, [Alert(a.labels, status=AlertStatus.RESOLVED) for a in first])
    clock.advance(1200)
    _post(engine, [_xid("r03-n01", g, "119", clock.now()) for g in range(2)])
    _post(engine, [_xid("r03-n02", g, "119", clock.now()) for g in range(2)])
    assert _listed(engine)[0] == [("xid", "r02", 4), ("xid", "r03", 4)]


def test_a_spread_goes_to_the_incident_of_it_opened_first(engine: IncidentEngine, clock: FakeClock) -> None:
    # r03's first alerts opened an incident (perhaps announced already); r02's, opened later, spread over two
    # nodes: r02's incident is folded into r03's, not r03's page resolved as merged into a new one.
    _post(engine, [_xid("r03-n01", g, "119", clock.now()) for g in range(2)])
    [first] = engine.open_incident_ids()
    clock.advance(15)
    _post(engine, [_xid(f"r02-n0{n}", g, "119", clock.now()) for n in (1, 2) for g in range(2)])
    roots, merged_into = _listed(engine)
    assert roots == [("xid", "c1", 6)]
    assert list(engine.open_incident_ids()) == [first] and merged_into == {first}
