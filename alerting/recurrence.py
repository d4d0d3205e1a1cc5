"""Recurrence: the incidents resolved within the reopen window, as candidates for a fault that comes back
through another alert than the one that was their member (``IncidentJoining._reopen_recurring``; the rule
is ``alerting.root_facts.recurs``).

A transaction asks the store only for those whose stored root may hold a new alert's node, and loads their
alerts once: a fleet keeps hundreds of incidents resolved within a day, and every new fault asks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Select, String, and_, bindparam, or_, select
from sqlalchemy.orm import Session

from alerting.batch import OpenIncident
from alerting.member import Member
from alerting.store_models import AlertRow, IncidentRow
from alerting.topology import RACK_DEPTH, Path
from gpuwarden.model import IncidentState, Priority

_RESOLVED_SINCE = (
    IncidentRow.state == IncidentState.RESOLVED.value,
    IncidentRow.merged_into.is_(None),
    IncidentRow.resolved_at >= bindparam("since"),
)
_ANY = select(IncidentRow.id).where(*_RESOLVED_SINCE).limit(1)


def _near_query() -> Select[str, str]:
    """Incidents resolved since ``:since`` (not merged) whose stored root (``target_to_dict``) may hold an
    alert on node ``:node`` of rack ``:rack`` in cluster ``:cluster``: that cluster, rack or node, or a GPU of
    the node. A workload root holds no infrastructure. Built once: only the parameters change per node."""
    root = IncidentRow.root_target
    kind, name, cluster = (root[k].as_string() for k in ("type", "name", "cluster"))
    at = {k: bindparam(k, type_=String) for k in ("cluster", "rack", "node")}
    return select(IncidentRow.id, IncidentRow.priority).where(
        *_RESOLVED_SINCE,
        or_(
            and_(kind == "cluster", name == at["cluster"]),
            and_(kind == "rack", cluster == at["cluster"], name == at["rack"]),
            and_(kind == "node", cluster == at["cluster"], name == at["node"]),
            and_(kind == "gpu", root["node"].as_string() == at["node"]),
        ),
    )


_NEAR = _near_query()


@dataclass
class RecentlyResolved:
    """The incidents resolved within the reopen window (not merged), for one transaction."""

    session: Session
    since: datetime
    member_of: Callable[[AlertRow], Member]
    load: Callable[[OpenIncident], None]  # fills in an incident's root path and workloads from its members
    loaded: dict[str, OpenIncident] = field(default_factory=dict)
    found: dict[Path, list[str]] = field(default_factory=dict)  # the ids near each node path asked
    none: bool | None = None  # whether no incident resolved within the window at all (asked once)

    def near(self, path: Path, now: datetime) -> list[OpenIncident]:
        """Those whose stored root may hold ``path``, with their members: each node asked and each incident
        loaded once per transaction."""
        if self.none is None:  # most transactions of a quiet fleet: one query, not one per new node
            self.none = self.session.execute(_ANY, {"since": self.since}).first() is None
        if self.none:
            return []
        node = path[: RACK_DEPTH + 1]
        ids = self.found.get(node)
        if ids is None:
            # A shorter path (a rack's alert) asks for no node: NULL equals nothing.
            rack, name = (node[i] if len(node) > i else None for i in (1, RACK_DEPTH))
            params = {"since": self.since, "cluster": node[0], "rack": rack, "node": name}
            ids = self.found[node] = []
            for incident_id, priority in self.session.execute(_NEAR, params):
                ids.append(incident_id)
                if incident_id not in self.loaded:
                    self.loaded[incident_id] = self._read(incident_id, Priority(priority), now)
        return [self.loaded[i] for i in ids if self.loaded[i].members]

    def _read(self, incident_id: str, priority: Priority, now: datetime) -> OpenIncident:
        past = OpenIncident(incident_id, (), priority, IncidentState.RESOLVED, now)
        alerts = self.session.scalars(select(AlertRow).where(AlertRow.incident_id == incident_id))
        past.members = {a.fingerprint: self.member_of(a) for a in alerts}
        self.load(past)
        return past
