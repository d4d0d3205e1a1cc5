"""Engines with the index of open incidents or the full scan, steps run on them with the index checked
against its incidents at each, and what a user sees of the outcome."""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import Hashable
from datetime import UTC, datetime
from pathlib import Path

from alerting.batch import OpenIncident
from alerting.correlation import rolls_up
from alerting.engine import IncidentEngine
from alerting.faults import SYMPTOM_KINDS
from alerting.inventory import Inventory
from alerting.member import Signal
from alerting.topology import RACK_DEPTH, UNKNOWN
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert, AlertStatus, FaultKind, TimelineEvent
from tests.migrated_store import migrated_sqlite

START = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


Outcome = frozenset[tuple[str, str, str, str, str, frozenset[str], tuple[tuple[str, str, str], ...]]]


_INCIDENT_ID = re.compile(r"inc-[0-9a-f]{12}")


def _engine(
    tmp_path: Path, inventory: Inventory | None, *, full_scan: bool
) -> tuple[IncidentEngine, FakeClock]:
    sql = migrated_sqlite(tmp_path / f"{uuid.uuid4().hex}.db")
    clock = FakeClock(START.timestamp())
    engine = IncidentEngine(sql, clock, AlertingConfig(announce_delay_seconds=0), inventory)
    if full_scan:
        engine._open.full_scan = True
    return engine, clock


def _outcome(engine: IncidentEngine) -> Outcome:
    """Every incident, open, resolved or merged: root, priority, title, state, its alerts and its timeline
    (not its id, which another run draws anew)."""
    found = set()
    for row, _ in engine.store.list_rows(include_merged=True):
        incident = engine.store.get(row.id)
        target = str(sorted(row.root_target.items()))
        fps = frozenset(incident.alert_fingerprints)
        timeline = tuple(
            (e.at.isoformat(), e.kind, _INCIDENT_ID.sub("inc-?", e.message)) for e in incident.timeline
        )
        found.add((row.root_kind, target, row.priority, incident.title, row.state, fps, timeline))
    return frozenset(found)


def _expected(inc: OpenIncident) -> dict[str, frozenset[Hashable]]:
    """What the index should file ``inc`` under, worked out from scratch."""
    root = inc.root_path
    signals = Counter(m.signal for m in inc.members.values())
    xid_nodes: dict[Signal, set[tuple[str, ...]]] = {}
    for m in inc.members.values():
        if m.signal[1] is FaultKind.XID:
            xid_nodes.setdefault(m.signal, set()).add(m.location.path[: RACK_DEPTH + 1])
    ranks = {g[0] for m in inc.members.values() if m.kind in SYMPTOM_KINDS for g in m.location.runs_on}
    return {
        "root": frozenset({root}) if root else frozenset(),
        "under": frozenset(root[:d] for d in range(1, len(root) + 1)),
        "workload": frozenset((w.kind, w.namespace, w.name) for w in inc.workloads),
        "gpu": frozenset(inc.placed),
        "holding": frozenset(signals),
        "holding_twice": frozenset(s for s, n in signals.items() if n >= 2),
        "rolling_up": frozenset((s, root[0]) for s, n in signals.items() if n >= 2 and rolls_up(root)),
        "xid_spread": frozenset(s for s, nodes in xid_nodes.items() if len(nodes) >= 2),
        "in_rack": frozenset(
            (m.signal, m.location.path[:RACK_DEPTH])
            for m in inc.members.values()
            if len(m.location.path) >= RACK_DEPTH and m.location.path[1] != UNKNOWN
        ),
        "ranks_in": frozenset(ranks),
        "rootless": frozenset() if root else frozenset({()}),
        "pathless": frozenset(
            m.labels.get("alertname", "") for m in inc.members.values() if not m.location.path
        ),
        "memberless": frozenset() if inc.members else frozenset({()}),
    }


def _lost_by_others(engine: IncidentEngine, skip: str | None) -> frozenset[tuple[str, str, int]]:
    """The GPUs the open incidents but ``skip`` took, from scratch."""
    return frozenset().union(*(o.lost for o in engine._open.values() if o.id != skip))


def _check_filed(engine: IncidentEngine) -> None:
    for inc in engine._open.values():
        assert engine._open.filed(inc.id) == _expected(inc), inc.id
        assert engine._open.lost_by_others(inc.id) == _lost_by_others(engine, inc.id), inc.id
    assert engine._open.lost_by_others(None) == _lost_by_others(engine, None)
    now = engine.clock.now().timestamp()
    due = [
        i
        for i in engine._open.values()
        if any(m.flapping and m.settles_at <= now for m in i.members.values())
        or not any(m.firing or m.flapping for m in i.members.values())
    ]
    assert {i.id for i in engine._open.quiet_candidates(now)} == {i.id for i in due}


def _run(engine: IncidentEngine, clock: FakeClock, steps: list[tuple[str, object]], check: bool) -> Outcome:
    for kind, value in steps:
        if kind == "post":
            assert isinstance(value, list)
            engine.ingest(value)
        else:
            assert isinstance(value, float)
            clock.advance(value)
            engine.tick()
        if check:
            _check_filed(engine)
    return _outcome(engine)


def _timeline(engine: IncidentEngine, incident_id: str) -> list[TimelineEvent]:
    return engine.store.get(incident_id).timeline


def _flapped(engine: IncidentEngine, clock: FakeClock, labels: list[dict[str, str]]) -> None:
    """Fire ``labels``, then resolve and fire them again until they flap (firing at the end)."""
    engine.ingest([Alert(one, starts_at=START) for one in labels])
    for change in range(AlertingConfig().flap_start_transitions):
        clock.advance(5)
        status = AlertStatus.RESOLVED if change % 2 == 0 else AlertStatus.FIRING
        engine.ingest([Alert(one, status=status, starts_at=START) for one in labels])
