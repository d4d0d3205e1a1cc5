"""Which resolved incidents a new fault's node asks about, by their root's place key and as the JSON said.

Until migration 0020 the store picked the incidents resolved within the reopen window that may hold a new
alert's node by reading their root's fields out of ``root_target`` (the query kept below, as it was); now by
``root_key`` (``alerting.root_places``), then the place read back. Both must pick the same incidents for
every shape of root and of path: which incident a fault back reopens is chosen among them. Shared with the
PostgreSQL test.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, Select, String, and_, bindparam, or_, select
from sqlalchemy.orm import Session

from alerting.batch import OpenIncident
from alerting.member import Member
from alerting.recurrence import RecentlyResolved
from alerting.store_models import AlertRow, IncidentRow
from alerting.topology import RACK_DEPTH, Path

NOW = datetime(2026, 1, 2, tzinfo=UTC)
SINCE = NOW - timedelta(days=1)

# Roots of incidents resolved within the window: every kind, names that meet across clusters, the rack a
# node of no known rack has (``?``), the unnamed cluster of alerts with no cluster label, names JSON
# escapes, and roots no version stores (a field missing or null): each matches what it matched before.
RESOLVED: dict[str, dict[str, Any]] = {
    "cluster-c1": {"type": "cluster", "name": "c1"},
    "cluster-unnamed": {"type": "cluster", "name": ""},
    "rack-c1-r1": {"type": "rack", "cluster": "c1", "name": "r1"},
    "rack-c1-unknown": {"type": "rack", "cluster": "c1", "name": "?"},
    "rack-c2-r1": {"type": "rack", "cluster": "c2", "name": "r1"},
    "node-c1-n1": {"type": "node", "cluster": "c1", "rack": "r1", "name": "n1"},
    "node-c1-n1-unracked": {"type": "node", "cluster": "c1", "rack": "?", "name": "n1"},
    "node-c2-n1": {"type": "node", "cluster": "c2", "rack": "r1", "name": "n1"},
    "node-c1-n2": {"type": "node", "cluster": "c1", "rack": "r1", "name": "n2"},
    "node-unnamed-n1": {"type": "node", "cluster": "", "rack": "?", "name": "n1"},
    "node-quoted": {"type": "node", "cluster": "c1", "rack": "?", "name": 'n"1\\ü'},
    "gpu-n1": {"type": "gpu", "node": "n1", "index": 3, "uuid": ""},
    "gpu-n2": {"type": "gpu", "node": "n2", "index": 0, "uuid": "GPU-x"},
    "gpu-quoted": {"type": "gpu", "node": 'n"1\\ü', "index": 1, "uuid": ""},
    "workload": {"type": "workload", "kind": "training_job", "name": "n1", "cluster": "c1"},
    "node-no-cluster": {"type": "node", "rack": "?", "name": "n1"},
    "rack-null-name": {"type": "rack", "cluster": "c1", "name": None},
    "no-type": {"cluster": "c1", "name": "n1"},
}
# Rooted where the fault is, and not asked: resolved before the window, merged, open.
DECOYS: dict[str, tuple[str, datetime | None, str | None]] = {
    "old-node-c1-n1": ("resolved", SINCE - timedelta(seconds=1), None),
    "merged-node-c1-n1": ("resolved", NOW, "cluster-c1"),
    "open-node-c1-n1": ("triggered", None, None),
}
PATHS: list[Path] = [
    ("c1",),
    ("c1", "r1"),
    ("c1", "?"),
    ("c1", "r1", "n1"),
    ("c1", "?", "n1", "3"),
    ("c2", "r1", "n1"),
    ("", "?", "n1"),
    ("c1", "?", "n2", "GPU-x"),
    ("c1", "?", 'n"1\\ü'),
    ("c3", "?", "n9"),
]


def _json_near() -> Select[tuple[str, str]]:
    """The query before 0020 (``alerting.recurrence``): the root's fields read out of its JSON."""
    root = IncidentRow.root_target
    kind, name, cluster = (root[k].as_string() for k in ("type", "name", "cluster"))
    at = {k: bindparam(k, type_=String) for k in ("cluster", "rack", "node")}
    return select(IncidentRow.id, IncidentRow.priority).where(
        IncidentRow.state == "resolved",
        IncidentRow.merged_into.is_(None),
        IncidentRow.resolved_at >= bindparam("since"),
        or_(
            and_(kind == "cluster", name == at["cluster"]),
            and_(kind == "rack", cluster == at["cluster"], name == at["rack"]),
            and_(kind == "node", cluster == at["cluster"], name == at["node"]),
            and_(kind == "gpu", root["node"].as_string() == at["node"]),
        ),
    )


def _row(incident_id: str, target: dict[str, Any], state: str, resolved_at: datetime | None) -> IncidentRow:
    at = NOW - timedelta(hours=1)
    return IncidentRow(
        id=incident_id,
        title="",
        priority="P2",
        state=state,
        root_kind="unknown",
        root_target=target,
        opened_at=at,
        last_opened_at=at,
        updated_at=at,
        last_alert_at=at,
        first_onset_at=at,
        resolved_at=resolved_at,
        impact={},
        actions=[],
        reopen_count=0,
    )


def _no_member(row: AlertRow) -> Member:
    raise AssertionError(f"no incident here has alerts: {row.fingerprint}")


def _nothing(past: OpenIncident) -> None:
    """What recurrence fills in from an incident's members: none here."""


def near_both_ways(engine: Engine) -> list[tuple[Path, set[str], set[str]]]:
    """Store the shapes (through the ORM, which keys their roots), then for each path: the incidents the
    JSON query picks and those ``RecentlyResolved`` asks about."""
    with Session(engine) as session, session.begin():
        session.add_all(_row(i, t, "resolved", NOW) for i, t in RESOLVED.items())
        for incident_id, (state, resolved_at, merged_into) in DECOYS.items():
            row = _row(incident_id, RESOLVED["node-c1-n1"], state, resolved_at)
            row.merged_into = merged_into
            session.add(row)
    out = []
    with Session(engine) as session:
        for path in PATHS:
            node = path[: RACK_DEPTH + 1]
            rack, name = (node[i] if len(node) > i else None for i in (1, RACK_DEPTH))
            params = {"since": SINCE, "cluster": node[0], "rack": rack, "node": name}
            before = {incident_id for incident_id, _ in session.execute(_json_near(), params)}
            resolved = RecentlyResolved(session, SINCE, _no_member, _nothing)
            assert resolved.near(path, NOW) == []  # none has members
            out.append((path, before, set(resolved.found[node])))
    return out
