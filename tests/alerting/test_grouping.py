"""Grouping: an incident's root cause, impact and priority follow what still fires."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from alerting import scenarios as sc
from alerting.db import make_engine
from alerting.engine import IncidentEngine
from alerting.migrate import upgrade
from alerting.notifiers.base import build_notification
from alerting.notifiers.blocks import incident_message
from alerting.subscriptions import IncidentChange
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert, AlertStatus

BASE = {"cluster": sc.CLUSTER, "severity": "critical"}


def _engine(tmp_path: Path, clock: FakeClock) -> IncidentEngine:
    path = str(tmp_path / "incidents.db")
    upgrade(make_engine(path))
    config = AlertingConfig(announce_delay_seconds=0)
    return IncidentEngine(make_engine(path), clock, config, sc.fleet_inventory())


def _gpu_lost(node: str) -> list[Alert]:
    gpu = {**BASE, "Hostname": node, "gpu": "0"}
    return [Alert({**gpu, "alertname": "GPULost"}), Alert({**gpu, "alertname": "GPUXid", "xid": "79"})]


def _node_down(node: str, status: AlertStatus = AlertStatus.FIRING) -> Alert:
    return Alert({**BASE, "alertname": "NodeDown", "instance": f"{node}:9100", "job": "node"}, status=status)


def test_root_cause_moves_back_to_the_lost_gpu_once_the_rack_nodes_recover(tmp_path: Path) -> None:
    clock = FakeClock()
    engine = _engine(tmp_path, clock)
    told: list[IncidentChange] = []
    engine.subscribe(told.append)
    gpu_node = sc.node_name(1, 1)
    nodes = [sc.node_name(1, n) for n in range(1, 6)]
    engine.ingest(_gpu_lost(gpu_node))
    clock.advance(30)
    engine.ingest([_node_down(n) for n in nodes])
    (row, _), *others = engine.store.list_rows()
    assert not others and row.root_target["type"] == "rack"  # the nodes' fault took the incident up
    clock.advance(60)
    engine.ingest([_node_down(n, AlertStatus.RESOLVED) for n in nodes])

    incident = engine.store.get(row.id)
    assert incident.root_cause.kind.value == "gpu_lost"
    assert str(incident.root_cause.target) == f"gpu/{gpu_node}/0"
    # The last message people got offers to remediate the lost GPU, not the rack.
    shown = str(incident_message(build_notification(told[-1])).attachments)
    assert f"Approve remediating *gpu_lost* on `{incident.root_cause.target}`" in shown
    timeline = [e.message for e in incident.timeline]
    assert any(m.startswith("root cause is now gpu_lost") for m in timeline)


def test_root_cause_stays_what_it_was_when_everything_resolves_at_once(tmp_path: Path) -> None:
    clock = FakeClock()
    engine = _engine(tmp_path, clock)
    nodes = [sc.node_name(1, n) for n in range(1, 6)]
    engine.ingest(_gpu_lost(sc.node_name(1, 1)) + [_node_down(n) for n in nodes])
    (row, _), *_ = engine.store.list_rows()
    before = (row.root_kind, row.root_target)
    clock.advance(timedelta(minutes=1).total_seconds())
    gpu = [Alert(a.labels, status=AlertStatus.RESOLVED) for a in _gpu_lost(sc.node_name(1, 1))]
    engine.ingest([_node_down(n, AlertStatus.RESOLVED) for n in nodes] + gpu)
    after = engine.store.get(row.id)
    assert after.timeline[-1].kind == "quiet"  # all resolved, the quiet period started
    assert (after.root_cause.kind.value, str(after.root_cause.target)) == (before[0], "rack/r01")
