"""The open incidents, indexed by what could make one of them take a new alert or another incident.

Correlation asks which open incident explains a new alert (``correlation.join_rank``), and the merge pass
which open incidents a touched one takes in or spreads with (``grouping``, ``spreading``, ``regrouping``).
Asking every open incident made a stream of separate faults quadratic: 1,000 nodes down with no inventory
and no cluster label (all in one unnamed cluster, no rack) took tens of seconds to apply. Each rule that can
answer yes needs something the two share: a place on one path (the incident's root above the alert, the
same node, the same known rack), a workload, a GPU its workloads run on, or a signal held twice under a
root that may roll it up to the cluster (a rack, a node of an unknown rack: ``correlation.rolls_up``). So the
incidents are filed under those (``alerting.index_tables``), kept up to date as they change (their root,
workloads and placement are set as attributes; their members through ``incident_members.Members``), and a
question looks only where a yes can be: a superset of the incidents that could answer it, in the order of
the open set, which the callers' rules then filter exactly as they filtered the whole set.

The tick asks which open incidents it may resolve or whose flapping alerts may settle
(``quiet_candidates``): those with no member firing or flapping (their quiet period), and those with a member
flapping once the first of them may settle (``Member.settles_at``): under a stream where every alert flaps,
every open incident was reread at every tick. Their members' changes mark them to be looked at again; a
member's ``firing``, ``flapping`` and ``settles_at`` change through ``members[fp] = member`` (the one change
made in place, a flapping flag cleared by the tick, is of an incident the tick already looks at).

``OpenIncidents(full_scan=True)`` answers every question with every open incident: the plain scan, kept
to check the index against (``tests/alerting/test_incident_index.py``).
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Iterable, Iterator
from typing import TYPE_CHECKING

from alerting.correlation import gpus_under, rolls_up, spread_root
from alerting.faults import OUTAGE_KINDS, SYMPTOM_KINDS
from alerting.index_tables import (
    Filed,
    WorkloadKey,
    count_filing,
    cross,
    file_under,
    pathless_name,
    rank_clusters,
    refile_keys,
    unfile,
    workload_key,
)
from alerting.inventory import GpuKey, Inventory
from alerting.member import Member, Signal
from alerting.topology import RACK_DEPTH, UNKNOWN, Path
from gpuwarden.model import FaultKind, WorkloadRef

if TYPE_CHECKING:
    from alerting.batch import OpenIncident


_NOW = float("-inf")


def _tick_due_at(inc: OpenIncident) -> float | None:
    """From when the tick has something to look at: when the first flapping member may settle (until all
    have, the incident cannot resolve), at once when no member fires (its quiet period), else never."""
    settles = [m.settles_at for m in inc.members.values() if m.flapping]
    if settles:
        return min(settles)
    return None if any(m.firing for m in inc.members.values()) else _NOW


class OpenIncidents(dict[str, "OpenIncident"]):
    """The engine's open incidents by id, in the order they were opened, and their index."""

    def __init__(self, *, full_scan: bool = False) -> None:
        super().__init__()
        self.full_scan = full_scan
        self._seq: dict[str, int] = {}
        self._counter = itertools.count()
        self._filed: dict[str, Filed] = {}
        self._by_root: dict[Hashable, set[str]] = {}  # each incident under its root
        self._under: dict[Hashable, set[str]] = {}  # each incident under every prefix of its root
        self._rootless: set[str] = set()
        self._by_workload: dict[Hashable, set[str]] = {}
        self._by_gpu: dict[Hashable, set[str]] = {}  # the GPUs its workloads run on (``placed``)
        self._holding: dict[Hashable, set[str]] = {}  # signals of one member or more
        self._holding_twice: dict[Hashable, set[str]] = {}  # of two or more (a spread needs two)
        # (signal, cluster) of two members or more, rooted where it may roll up to the cluster (``rolls_up``)
        self._rolling_up: dict[Hashable, set[str]] = {}
        self._xid_spread: dict[Hashable, set[str]] = {}  # XID signals on two nodes or more (``spread_of``)
        self._in_rack: dict[Hashable, set[str]] = {}  # (signal, known rack) of a member
        self._ranks_in: dict[Hashable, set[str]] = {}  # clusters of its placed stalled ranks' GPUs
        self._pathless: dict[Hashable, set[str]] = {}  # names of its members without a place
        self._memberless: set[str] = set()  # no member at all (every member "is" of any name)
        self._tick_at: dict[str, float] = {}  # from when the tick has something to look at (``_tick_due_at``)
        self._tick_looked: set[str] = set()  # what the last tick was given (it may have changed them)
        self._tick_dirty: set[str] = set()  # members changed since: to look at again
        self._remind_dirty: set[str] = set()  # members changed since the reminders last asked
        self._lost_counts: dict[GpuKey, int] = {}  # per GPU, how many incidents' outages took it
        self._all_lost: frozenset[GpuKey] | None = None  # its keys, made again once one changed

    # --- the open set -------------------------------------------------------------------------

    def __setitem__(self, incident_id: str, inc: OpenIncident) -> None:
        old = self.get(incident_id)
        if old is not None and old is not inc:
            self._forget(old)
        if incident_id not in self:
            self._seq[incident_id] = next(self._counter)
        super().__setitem__(incident_id, inc)
        if old is not inc:
            inc.index = self
            self._filed[incident_id] = Filed()
            self.refile(inc)

    def __delitem__(self, incident_id: str) -> None:
        self.pop(incident_id)

    def pop(self, incident_id: str, *default: OpenIncident | None) -> OpenIncident | None:  # type: ignore[override]
        """Take an incident out of the open set (and of the index)."""
        if incident_id not in self and default:
            return default[0]
        inc = super().pop(incident_id)
        self._forget(inc)
        return inc

    def clear(self) -> None:
        """Empty the open set."""
        for incident_id in list(self):
            self.pop(incident_id)

    def _forget(self, inc: OpenIncident) -> None:
        filed = self._filed.pop(inc.id, None)
        self._seq.pop(inc.id, None)
        self._memberless.discard(inc.id)
        self._tick_at.pop(inc.id, None)
        self._tick_looked.discard(inc.id)
        self._tick_dirty.discard(inc.id)
        self._remind_dirty.discard(inc.id)
        inc.index = None
        if filed is None:
            return
        self._file_root(inc.id, filed, None)
        self._file_workloads(inc.id, filed, frozenset())
        self._file_gpus(inc.id, filed, frozenset())
        self._file_lost(filed, frozenset())
        self._unfile_members(inc.id, filed)

    # --- keeping it up to date ----------------------------------------------------------------

    def refile(self, inc: OpenIncident, what: str = "") -> None:
        """File ``inc`` again: under its root, workloads, placement or lost GPUs (``what``), else all and its
        members."""
        filed = self._filed.get(inc.id)
        if filed is None or self.get(inc.id) is not inc:
            return
        if what in ("", "root_path"):
            self._file_root(inc.id, filed, inc.root_path)
        if what in ("", "workloads"):
            self._file_workloads(inc.id, filed, frozenset(map(workload_key, inc.workloads)))
        if what in ("", "placed"):
            self._file_gpus(inc.id, filed, inc.placed)
        if what in ("", "lost"):
            self._file_lost(filed, inc.lost)
        if what in ("", "members"):
            self._unfile_members(inc.id, filed)
            for member in inc.members.values():
                self.member_changed(inc.id, None, member)
            self._members_changed(inc.id, filed)

    def _unfile_members(self, incident_id: str, filed: Filed) -> None:
        """Take out what the members of ``incident_id`` filed it under (their counts to zero)."""
        for signal in list(filed.signals):
            self._count_signal(incident_id, filed, signal, -filed.signals[signal])
        for cluster in list(filed.ranks):
            self._count_ranks(incident_id, filed, cluster, -filed.ranks[cluster])
        for name in list(filed.pathless):
            count_filing(filed.pathless, name, -filed.pathless[name], incident_id, ((self._pathless, 1),))
        for signal, nodes in list(filed.xid_nodes.items()):
            for node in list(nodes):
                self._count_xid_node(incident_id, filed, signal, node, -nodes[node])
        for key in list(filed.signal_racks):
            count_filing(
                filed.signal_racks, key, -filed.signal_racks[key], incident_id, ((self._in_rack, 1),)
            )

    def member_changed(self, incident_id: str, old: Member | None, new: Member | None) -> None:
        """A member of an open incident was added (``old`` None), replaced or removed (``new`` None)."""
        filed = self._filed.get(incident_id)
        if filed is None:
            return
        for member, step in ((old, -1), (new, 1)):
            if member is None:
                continue
            self._count_signal(incident_id, filed, member.signal, step)
            for cluster in rank_clusters(member):
                self._count_ranks(incident_id, filed, cluster, step)
            name = pathless_name(member)
            if name is not None:
                count_filing(filed.pathless, name, step, incident_id, ((self._pathless, 1),))
            path = member.location.path
            if member.signal[1] is FaultKind.XID:
                self._count_xid_node(incident_id, filed, member.signal, path[: RACK_DEPTH + 1], step)
            if len(path) >= RACK_DEPTH and path[1] != UNKNOWN:
                key = (member.signal, path[:RACK_DEPTH])
                count_filing(filed.signal_racks, key, step, incident_id, ((self._in_rack, 1),))
        self._members_changed(incident_id, filed)

    def _members_changed(self, incident_id: str, filed: Filed) -> None:
        if filed.signals:  # every member holds a signal: none, no member
            self._memberless.discard(incident_id)
        else:
            self._memberless.add(incident_id)
        self._tick_dirty.add(incident_id)
        self._remind_dirty.add(incident_id)

    def _count_signal(self, incident_id: str, filed: Filed, signal: Signal, step: int) -> None:
        tables = ((self._holding, 1), (self._holding_twice, 2))
        before = count_filing(filed.signals, signal, step, incident_id, tables)
        if filed.root and rolls_up(filed.root):
            key = (signal, filed.root[0])
            cross(self._rolling_up, key, incident_id, least=2, before=before, after=before + step)

    def _count_xid_node(self, incident_id: str, filed: Filed, signal: Signal, node: Path, step: int) -> None:
        """Count a member of an XID signal on ``node``: on two nodes or more it may be a spread's."""
        nodes = filed.xid_nodes.get(signal)
        if nodes is None:
            nodes = filed.xid_nodes[signal] = {}
        before = len(nodes)
        count_filing(nodes, node, step, incident_id, ())
        if not nodes:
            del filed.xid_nodes[signal]
        cross(self._xid_spread, signal, incident_id, least=2, before=before, after=len(nodes))

    def _count_ranks(self, incident_id: str, filed: Filed, cluster: str, step: int) -> None:
        count_filing(filed.ranks, cluster, step, incident_id, ((self._ranks_in, 1),))

    def _file_root(self, incident_id: str, filed: Filed, root: Path | None) -> None:
        if filed.root == root:
            return
        for path, add in ((filed.root, unfile), (root, file_under)):
            if path is None:
                continue
            if path and rolls_up(path):
                for signal, count in filed.signals.items():
                    if count >= 2:
                        add(self._rolling_up, (signal, path[0]), incident_id)
            if not path:
                (self._rootless.add if add is file_under else self._rootless.discard)(incident_id)
                continue
            add(self._by_root, path, incident_id)
            for depth in range(1, len(path) + 1):
                add(self._under, path[:depth], incident_id)
        filed.root = root

    def _file_workloads(self, incident_id: str, filed: Filed, keys: frozenset[WorkloadKey]) -> None:
        refile_keys(self._by_workload, incident_id, filed.workloads, keys)
        filed.workloads = keys

    def _file_gpus(self, incident_id: str, filed: Filed, gpus: frozenset[GpuKey]) -> None:
        refile_keys(self._by_gpu, incident_id, filed.gpus, gpus)
        filed.gpus = gpus

    def _file_lost(self, filed: Filed, lost: frozenset[GpuKey]) -> None:
        if lost == filed.lost:
            return
        counts = self._lost_counts
        for key in filed.lost - lost:
            if counts[key] == 1:
                del counts[key]
            else:
                counts[key] -= 1
        for key in lost - filed.lost:
            counts[key] = counts.get(key, 0) + 1
        filed.lost = lost
        self._all_lost = None

    # --- questions ----------------------------------------------------------------------------

    def lost_by_others(self, skip: str | None) -> frozenset[GpuKey]:
        """The GPUs the open incidents' outages took (``OpenIncident.lost``), but for incident ``skip``'s
        (those no other took too). Asked for each incident an inventory refresh assesses: the union of every
        other's lost GPUs, made afresh each time, made a refresh quadratic in the open incidents."""
        if self.full_scan:
            return frozenset().union(*(o.lost for o in self.values() if o.id != skip and o.lost))
        if self._all_lost is None:
            self._all_lost = frozenset(self._lost_counts)
        filed = self._filed.get(skip) if skip is not None else None
        only = [key for key in filed.lost if self._lost_counts[key] == 1] if filed is not None else []
        return self._all_lost.difference(only) if only else self._all_lost

    def _in_order(self, ids: Iterable[str], skip: str = "") -> list[OpenIncident]:
        """The incidents of ``ids`` (but ``skip``) in the order of the open set."""
        seq = self._seq
        return [self[i] for i in sorted(set(ids), key=seq.__getitem__) if i != skip]

    def _all(self, skip: str = "") -> list[OpenIncident]:
        return [inc for inc in self.values() if inc.id != skip]

    def _lookup(self, table: dict[Hashable, set[str]], keys: Iterable[Hashable]) -> Iterator[str]:
        for key in keys:
            yield from table.get(key, ())

    def join_candidates(self, new: Member, inventory: Inventory | None) -> list[OpenIncident]:
        """The open incidents that ``correlation.join_rank`` may rank for ``new`` (a superset)."""
        if self.full_scan:
            return self._all()
        path, workloads = new.location.path, new.location.workloads
        ids: set[str] = set()
        if not path and not workloads:
            # An alert without place or workload: only incidents whose members all lack a place and have
            # its name (each holds one such member, or none at all).
            ids.update(self._pathless.get(new.labels.get("alertname", ""), ()))
            ids |= self._memberless
        # The root above the alert or above a GPU its rank runs on; a workload it names (any cluster).
        prefixes = {p[:d] for p in (path, *new.location.runs_on) for d in range(1, len(p) + 1)}
        ids.update(self._lookup(self._by_root, prefixes))
        if new.kind in SYMPTOM_KINDS:
            ids.update(self._lookup(self._by_workload, map(workload_key, workloads)))
        if new.is_infra:
            ids |= self._infra_candidates(new, inventory)
        return self._in_order(ids)

    def _infra_candidates(self, new: Member, inventory: Inventory | None) -> set[str]:
        """Incidents an infrastructure alert may join other than by a root above it: one on its node, in its
        known rack, holding its signal twice where it may roll it up to the alert's cluster (a spread: in
        its known rack, it is there already), or whose workloads run on GPUs under it."""
        path = new.location.path
        ids: set[str] = set()
        if len(path) > RACK_DEPTH:
            ids.update(self._under.get(path[: RACK_DEPTH + 1], ()))  # the same node
        if len(path) >= RACK_DEPTH and path[1] != UNKNOWN:
            ids.update(self._under.get(path[:RACK_DEPTH], ()))  # the same known rack
        if new.kind not in OUTAGE_KINDS:
            ids.update(self._rolling_up.get((new.signal, path[0]), ()))
        # Whose workloads run under it: a rootless incident (its job's stalls), or, for an outage where the
        # rack is unknown, any incident (replicas of one service down together). Only then: each needs the
        # inventory's GPUs under the alert's place.
        unplaced_outage = new.is_outage and path[1:2] == (UNKNOWN,)
        if inventory is not None and (unplaced_outage or self._rootless):
            hosting = self._lookup(self._by_gpu, gpus_under(path, inventory))
            ids.update(hosting if unplaced_outage else (i for i in hosting if i in self._rootless))
        return ids

    def merge_candidates(self, inc: OpenIncident, spread: Iterable[str]) -> list[OpenIncident]:
        """The open incidents the merge pass may fold into ``inc`` (a superset): under its root, rootless
        ones sharing a workload, those of ``spread``, and with a node down the incidents of its known rack."""
        if self.full_scan:
            return self._all(inc.id)
        root = inc.root_path
        ids = set(spread)
        if root:
            ids.update(self._under.get(root, ()))
        keys = map(workload_key, inc.workloads)
        ids.update(i for i in self._lookup(self._by_workload, keys) if i in self._rootless)
        if len(root) > RACK_DEPTH and root[1] != UNKNOWN:
            ids.update(self._under.get(root[:RACK_DEPTH], ()))
        return self._in_order(ids, inc.id)

    def rootless_sharing(self, workloads: Iterable[WorkloadRef]) -> bool:
        """Whether an open incident without a root shares one of ``workloads``."""
        return any(i in self._rootless for i in self._lookup(self._by_workload, map(workload_key, workloads)))

    def rooted_takers(self, inc: OpenIncident) -> list[OpenIncident]:
        """The open incidents with a root whose merge pass may take in the rootless ``inc`` (a superset):
        those sharing a workload with it, and those rooted above a GPU one of its stalled ranks runs on (the
        other way round of ``merge_candidates`` and ``rank_partners``)."""
        if self.full_scan:
            return self._all(inc.id)
        keys = map(workload_key, inc.workloads)
        ids = {i for i in self._lookup(self._by_workload, keys) if i not in self._rootless}
        gpus = [gpu for fp in inc.stalled_ranks()[0] for gpu in inc.members[fp].location.runs_on]
        ids.update(self._lookup(self._by_root, {g[:d] for g in gpus for d in range(1, len(g) + 1)}))
        return self._in_order(ids, inc.id)

    def wider_takers(self, inc: OpenIncident) -> list[OpenIncident]:
        """The open incidents rooted strictly above the root of ``inc``, whose merge pass may take it in
        (``merging.IncidentMerging._wider_taker``: the other way round of ``merge_candidates``' under)."""
        if self.full_scan:
            return self._all(inc.id)
        root = inc.root_path
        return self._in_order(self._lookup(self._by_root, {root[:d] for d in range(1, len(root))}), inc.id)

    def under(self, path: Path) -> list[OpenIncident]:
        """The open incidents rooted at ``path`` or below it."""
        if self.full_scan:
            return self._all()
        return self._in_order(self._under.get(path, ()))

    def spread_partners(self, inc: OpenIncident) -> list[OpenIncident]:
        """The open incidents ``spreading.spread_candidates`` may find spreading with ``inc`` (a superset):
        none unless ``inc`` has a root a spread may have. Else, as ``same_signal_spread`` takes a signal's
        alert into an incident holding it twice rooted in the alert's known rack or where it rolls up
        (``rolls_up``), either way round: those holding twice a signal of ``inc`` rooted where they roll it
        up or in the known rack of one of its alerts of it; and for a signal ``inc`` holds twice, those
        holding it (in its known rack, unless ``inc`` rolls it up)."""
        if self.full_scan:
            return self._all()
        filed = self._filed.get(inc.id)
        if filed is None:
            return self._all()
        root = inc.root_path
        if not spread_root(root):
            return []
        ids: set[str] = set()
        for signal, count in filed.signals.items():
            ids.update(self._rolling_up.get((signal, root[0]), ()))
            if count < 2:
                continue
            if rolls_up(root):
                ids.update(self._holding.get(signal, ()))
            else:  # a node of a known rack
                ids.update(self._in_rack.get((signal, root[:RACK_DEPTH]), ()))
        twice = self._holding_twice
        for signal, rack in filed.signal_racks:
            ids.update(self._under.get(rack, set()) & twice.get(signal, set()))
        return self._in_order(ids)

    def rank_partners(self, inc: OpenIncident) -> list[OpenIncident]:
        """The open incidents ``regrouping.regroup_ranks`` may move stalled ranks between with ``inc``: with
        ranks placed in its root's cluster, or rooted above a GPU of one of its own ranks."""
        if self.full_scan:
            return self._all()
        ids: set[str] = set()
        if inc.root_path:
            ids.update(self._ranks_in.get(inc.root_path[0], ()))
        gpus = [gpu for fp in inc.stalled_ranks()[0] for gpu in inc.members[fp].location.runs_on]
        ids.update(self._lookup(self._by_root, {g[:d] for g in gpus for d in range(1, len(g) + 1)}))
        return self._in_order(ids)

    def signal_partners(self, inc: OpenIncident) -> list[OpenIncident]:
        """The open incidents ``regrouping.regroup_spread`` may move alerts of an XID spreading between with
        ``inc``: those holding the XID it spreads, or holding on two nodes or more an XID it holds (a
        spread's, ``RootFacts.spread_of``)."""
        if self.full_scan:
            return self._all()
        own = inc.facts().spread_of
        if own is not None:
            return self._in_order(self._holding.get(own, ()))
        filed = self._filed.get(inc.id)
        if filed is None:
            return self._all()
        return self._in_order(self._lookup(self._xid_spread, filed.xid_nodes))

    def quiet_candidates(self, now: float, ahead: float = float("inf")) -> list[OpenIncident]:
        """The open incidents the tick may resolve or settle at ``now`` (a POSIX timestamp; a superset): with
        no member firing or flapping, or a flapping one that may settle by now or over ``ahead`` after (the
        clock set back). Those whose members changed since are looked at again, as are those given then."""
        if self.full_scan:
            return self._all()
        for incident_id in self._tick_looked | self._tick_dirty:
            at = _tick_due_at(self[incident_id])
            if at is None:
                self._tick_at.pop(incident_id, None)
            else:
                self._tick_at[incident_id] = at
        self._tick_dirty = set()
        self._tick_looked = {i for i, at in self._tick_at.items() if not now < at <= now + ahead}
        return self._in_order(self._tick_looked)

    def changed_for_reminders(self) -> set[str]:
        """The open incidents whose members changed since the last call (``alerting.reminding``: one that
        nothing of fired unmuted then may have such a member now)."""
        changed, self._remind_dirty = self._remind_dirty, set()
        return changed

    def filed(self, incident_id: str) -> dict[str, frozenset[Hashable]]:
        """What ``incident_id`` is filed under, table by table (a walk of every table: for checks and
        debugging, not for the engine's questions). Empty for an incident that is not open."""
        tables = {
            "root": self._by_root,
            "under": self._under,
            "workload": self._by_workload,
            "gpu": self._by_gpu,
            "holding": self._holding,
            "holding_twice": self._holding_twice,
            "rolling_up": self._rolling_up,
            "xid_spread": self._xid_spread,
            "in_rack": self._in_rack,
            "ranks_in": self._ranks_in,
            "pathless": self._pathless,
        }
        found = {
            name: frozenset(k for k, ids in t.items() if incident_id in ids) for name, t in tables.items()
        }
        found["rootless"] = frozenset({()}) if incident_id in self._rootless else frozenset()
        found["memberless"] = frozenset({()}) if incident_id in self._memberless else frozenset()
        return found
