"""Recurrence: the incidents resolved within the reopen window, as candidates for a fault that comes back
through another alert than the one that was their member (``IncidentJoining._reopen_recurring``; the rule
is ``alerting.root_facts.recurs``).

A transaction asks the store only for those whose stored root may hold a new alert's node, and loads their
alerts once: a fleet keeps hundreds of incidents resolved within a day, and every new fault asks. It asks by
the node's places (``alerting.root_places``), through the index of the roots' place keys: the cost of a new
node does not grow with the incidents resolved in the window (reading every one's root out of its JSON, a
POST of 2,000 new nodes took 33-38 s to apply beside 8,000 of them, 2.4 s beside none). Whether any
resolved within the window at all is answered from when the latest resolved (``LatestResolved``),
remembered until an incident resolves again: a quiet fleet's new fault asks the store nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, bindparam, event, select, update
from sqlalchemy.orm import Session, SessionTransaction, object_session

from alerting.batch import OpenIncident
from alerting.member import Member
from alerting.root_places import Place, place_key, root_place
from alerting.store_models import AlertRow, IncidentRow
from alerting.topology import RACK_DEPTH, Path
from gpuwarden.model import IncidentState, Priority

_RESOLVED_SINCE = (
    IncidentRow.state == IncidentState.RESOLVED.value,
    IncidentRow.merged_into.is_(None),
    IncidentRow.resolved_at >= bindparam("since"),
)
_LATEST = (
    select(IncidentRow.resolved_at)
    .where(*_RESOLVED_SINCE[:2], IncidentRow.resolved_at.is_not(None))
    .order_by(IncidentRow.resolved_at.desc())
    .limit(1)
)
_resolutions = 0  # incidents that may have joined the resolved, unmerged ones in this process, ever
_RESOLVING = "gpuwarden.resolving"  # Session.info key: its transaction set an incident resolved


def _may_resolve(column: str, value: object, old: object) -> bool:
    """Whether setting ``column`` of an incident's row to ``value`` may make it one resolved (and not merged):
    a resolution, a later resolution time, a merge taken back. Opening one (NULL, ``triggered``) is not."""
    if column == "merged_into":
        return value is None and isinstance(old, str)
    if column == "state":
        return value == IncidentState.RESOLVED.value
    return value is not None


def _watch(column: str) -> None:
    def counted(target: IncidentRow, value: object, old: object, _initiator: object) -> None:
        global _resolutions  # noqa: PLW0603 - one count for every engine of the process: see LatestResolved
        if not _may_resolve(column, value, old):
            return
        session = object_session(target)
        if session is None:  # a row made resolved (none is): counted now
            _resolutions += 1
        else:  # counted when its transaction ends (``_ended``), committed or rolled back
            session.info[_RESOLVING] = True

    event.listen(getattr(IncidentRow, column), "set", counted)


for _column in ("state", "resolved_at", "merged_into"):
    _watch(_column)


@event.listens_for(Session, "after_transaction_end")
def _ended(session: Session, transaction: SessionTransaction) -> None:
    """A transaction that set an incident resolved ended: counted then, not at the set, so that an answer read
    in it before its flush (ingest runs without autoflush), which did not see the resolution, is not kept."""
    global _resolutions  # noqa: PLW0603
    if transaction.parent is None and session.info.pop(_RESOLVING, False):
        _resolutions += 1


class LatestResolved:
    """When the latest incident resolved (not merged), as the store has it, remembered between transactions.

    Every new infrastructure fault asks whether any incident resolved within the reopen window; the answer
    is "no" while the latest resolved before it, with no query. Forgotten, so read again at the next ask,
    whenever a transaction that set an incident's row resolved, gave it a resolution time or unmerged it ends
    anywhere in the process (the ORM's attribute events: SQL that bypasses the ORM changes no
    incident's state or resolution; the count is the process's, so another engine's resolution costs this
    one a query, never a wrong answer); and when the engine rebuilds its view of the store (at start, and
    after a failed transaction, whose changes the answer may have seen and which rolled back). ``serve`` is
    the store's one writer.
    """

    def __init__(self) -> None:
        self._at: datetime | None = None
        self._seen: int | None = None  # ``_resolutions`` when ``_at`` was read; None: not read

    def none_since(self, session: Session, since: datetime) -> bool:
        """Whether no incident resolved at ``since`` or later (and is not merged), read in ``session``."""
        if self._seen != _resolutions:
            seen = _resolutions
            self._at = session.scalar(_LATEST)
            self._seen = seen
        return self._at is None or self._at < since

    def forget(self) -> None:
        """Read it again at the next ask."""
        self._seen = None

    def count_from_now(self, sessions: Callable[[], Session], now: datetime) -> None:
        """Store every incident resolved "after" ``now`` (the wall clock was set back since: an NTP
        correction, a VM restored) as resolved at ``now``: its reopen window counts from now, not the step
        later. An UPDATE, which the ORM's events do not see: read again at the next ask."""
        with sessions() as session, session.begin():
            session.execute(
                update(IncidentRow)
                .where(*_RESOLVED_SINCE[:2], IncidentRow.resolved_at > now)
                .values(resolved_at=now)
                .execution_options(synchronize_session=False)
            )
        self.forget()


def _near_query() -> Select[tuple[str, str, Any]]:
    """Incidents resolved since ``:since`` (not merged) whose stored root's place key is one of ``:keys``
    (``alerting.root_places``): their id, priority and root (whose place decides; the key only narrows).
    Read through ``ix_incidents_root_key_state_merged_into_resolved_at``. Built once: only the parameters
    change."""
    return select(IncidentRow.id, IncidentRow.priority, IncidentRow.root_target).where(
        *_RESOLVED_SINCE, IncidentRow.root_key.in_(bindparam("keys", expanding=True))
    )


def places_near(node: Path) -> list[Place]:
    """The places of the roots that may hold an alert on node ``node`` (a cluster, rack, node path; a
    shorter one, a rack's alert, asks for no node): its cluster, its rack, its node, a GPU of the node. A
    workload root holds no infrastructure."""
    cluster = node[0]
    rack, name = (node[i] if len(node) > i else None for i in (1, RACK_DEPTH))
    places: list[Place] = [("cluster", cluster)]
    if rack is not None:
        places.append(("rack", cluster, rack))
    if name is not None:
        places += [("node", cluster, name), ("gpu", name)]
    return places


_NEAR = _near_query()


@dataclass
class RecentlyResolved:
    """The incidents resolved within the reopen window (not merged), for one transaction."""

    session: Session
    since: datetime
    member_of: Callable[[AlertRow], Member]
    load: Callable[[OpenIncident], None]  # fills in an incident's root path and workloads from its members
    latest: LatestResolved = field(default_factory=LatestResolved)  # the engine's, across transactions
    loaded: dict[str, OpenIncident] = field(default_factory=dict)
    found: dict[Path, list[str]] = field(default_factory=dict)  # the ids near each node path asked
    none: bool | None = None  # whether no incident resolved within the window at all (asked once)

    def near(self, path: Path, now: datetime) -> list[OpenIncident]:
        """Those whose stored root may hold ``path``, with their members: each node asked and each incident
        loaded once per transaction."""
        if self.none is None:  # most transactions of a quiet fleet: one query, not one per new node
            self.none = self.latest.none_since(self.session, self.since)
        if self.none:
            return []
        node = path[: RACK_DEPTH + 1]
        ids = self.found.get(node)
        if ids is None:
            places = places_near(node)
            params = {"since": self.since, "keys": [place_key(p) for p in places]}
            ids = self.found[node] = []
            for incident_id, priority, target in self.session.execute(_NEAR, params):
                if root_place(target) not in places:  # another place of the same digest
                    continue
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
