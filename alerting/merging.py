"""Merging: the merge pass folds into an incident whose root just moved the open incidents that root explains,
and those that are one signal spreading with it, as the join path would have joined their alerts had they come
in another order.

``IncidentMerging`` is the part of ``IncidentGrouping`` (``alerting.grouping``) that does it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from alerting.batch import Batch, OpenIncident
from alerting.correlation import Candidate, holds_gpu
from alerting.db import in_lists
from alerting.faults import ENVIRONMENT
from alerting.impact import live_root_cause
from alerting.incident_index import OpenIncidents
from alerting.inventory import Inventory
from alerting.lateness import came_after
from alerting.member import Member, describe, first_onset, flapping_in, live, recommended_by
from alerting.rack_spread import Spread, node_signals, rack_spread
from alerting.reminders import TAKEN_UP
from alerting.root_facts import down_nodes, recurs, takes_in
from alerting.spreading import spread_candidates
from alerting.store import with_absorbed_peak
from alerting.store_models import IncidentRow, TimelineRow
from alerting.subscriptions import ChangeKind
from alerting.titles import ABSORBED_MAX, shortened
from alerting.topology import RACK_DEPTH, UNKNOWN, Path, contains
from gpuwarden.model import IncidentState, add_workloads, shares_workload


class IncidentMerging:
    """The merge pass over the engine's open incidents; mixed into ``IncidentGrouping``."""

    _open: OpenIncidents
    inventory: Inventory | None
    _window: timedelta
    _held: Callable[[str, datetime], bool]  # whether a silence holds an incident now (``MuteTracking``)
    _check_reminder_at: Callable[[str, datetime], None]  # ``reminding.SteadyReminding``'s
    # End the silence holding an incident when what comes in is beside what it was set for, saying why.
    _end_if_beside: Callable[[Batch, OpenIncident, Iterable[Member], Callable[[], str]], None]
    _drop_absorbed_silences: Callable[[Batch, str], list[str]]  # end a merged-away incident's, quietly
    _assess_unshown: Callable[[Batch, OpenIncident], None]  # ``grouping.IncidentGrouping``'s

    def _merge_into(self, batch: Batch, inc: OpenIncident, *, early: bool = False) -> str | None:
        """Fold other open incidents that the (new) root of ``inc`` explains into it, and those that are one
        signal spreading with it, as the join path would have joined their alerts in another order; the id
        of the incident that took others in (None: none). The incident opened first, already announced
        perhaps, survives whichever was touched: when that is one of the others, ``inc`` goes into it.
        ``early``: within a POST (``_merge_early``), only with incidents it opened, and without the signal's
        rollout over nodes and racks (``spread_candidates``), which the transaction's pass merges, its
        regrouping taking the signal's alerts out of another fault's incident rather than that whole incident
        into the rollout's."""
        rollout = (
            set()
            if early
            else {
                i
                for i in spread_candidates(inc, self._open.spread_partners(inc), self._window)
                if not _quiet_apart(inc, self._open[i])
            }
        )
        if rollout:
            first = min((self._open[i] for i in rollout | {inc.id}), key=lambda o: self._opened(batch, o))
            if first is not inc:
                self._fold(batch, first, inc)
                return first.id
        takes: list[OpenIncident] = []
        spread = self._spread_in_rack(inc, batch.now) | rollout
        found = {o.id: o for o in self._open.merge_candidates(inc, spread)}
        if inc.root_path:  # stall-only incidents whose ranks' GPUs it may hold (``_holds_a_rank``)
            found.update((o.id, o) for o in self._open.rank_partners(inc) if not o.root_path)
        for other in found.values():
            if other.id == inc.id or not other.members or _quiet_apart(inc, other):
                continue
            inside = (
                bool(other.root_path)
                and contains(inc.root_path, other.root_path)
                and takes_in(inc.root_path, inc.facts, other.members.values())
            )
            symptom_only = not other.root_path and (
                shares_workload(other.workloads, inc.workloads) or _holds_a_rank(inc, other)
            )
            if not (inside or symptom_only or other.id in spread or _sibling_nodes_down(inc, other)):
                continue
            if inside and _before_the_heat(inc, other):
                continue
            takes.append(other)
        arrived = None if early else batch.arrived.get(inc.id)
        late = [] if arrived is None else came_after(inc, arrived, self._open, self.inventory, _NewIn(batch))
        takes.extend(
            o for o in late if all(o.id != t.id for t in takes)
        )  # posted before alerts it began after
        taker = self._rooted_taker(inc) or self._wider_taker(inc)
        if taker is not None and all(o.id != taker.id for o in takes):
            takes.append(taker)
        if not takes or (early and not all(batch.is_new(o.id) for o in takes)):
            return None  # one stored before is assessed first, and merged at the end (its priority told)
        # A late alert's incident may have begun first but opened last: one stored before survives (a clock
        # that stood still opened both at one instant, and the late one's onset broke the tie).
        first = min([inc, *takes], key=lambda o: (bool(late) and batch.is_new(o.id), self._opened(batch, o)))
        if first is not inc:
            # The incident opened first (announced already, perhaps) survives and takes this one in: its
            # page must not end "merged into" a newer one. Its root moves up as it recomputes, and it takes
            # the rest in then (the caller passes it on).
            self._fold(batch, first, inc)
            return first.id
        for other in takes:
            self._fold(batch, inc, other)
        return inc.id

    def _merge_early(self, batch: Batch, inc: OpenIncident) -> None:
        """The merge pass of ``inc`` at once, within one POST, where an alert opened it, moved its root or
        brought its first outage (``joining``): the rest of the POST sees what it merged with, as posted one
        by one after it. Only those alerts ask: joining a wide incident as more of it (a storm's thousands)
        asks nothing, and each merge folds an incident away for good. Only incidents this transaction
        opened merge here: one stored before is assessed (its priority told) and merged at the end, as before.
        What it takes in roots it where the recompute will (the transaction's pass still recomputes and
        merges every touched incident). Posted
        after the merge, a latency or an XID of a GPU that went into its rack's outage, heat or power brake
        joined another incident, the most specific then, or its own; in one POST it joined the GPU's and
        went into the rack's with it (batch fuzz seeds 1085, 1704, 2693, 2711, 3286, 3408, 3491)."""
        took = self._merge_into(batch, inc, early=True) if batch.is_new(inc.id) else None
        while took is not None:
            batch.touched.add(took)
            survivor = self._open[took]
            survivor.root_path = live_root_cause(survivor.members.values(), self.inventory)[0]
            took = self._merge_into(batch, survivor, early=True)

    def _rooted_taker(self, inc: OpenIncident) -> OpenIncident | None:
        """The incident with a root whose merge pass would take in the rootless ``inc`` (a workload's
        symptoms it shares a workload with, or stalls of a rank whose GPU its fault holds), the earliest
        onset first, as the merge pass comes to touched incidents; None when ``inc`` has a root or none
        would. Posted one per POST, only ``inc`` is touched, and that incident's merge pass never runs:
        ``inc`` stayed apart, where in one POST it went in (batch fuzz seeds 166, 168, 357, 1223)."""
        if inc.root_path or not inc.members:
            return None
        takers = [
            other
            for other in self._open.rooted_takers(inc)
            if other.root_path
            and other.members
            and (shares_workload(inc.workloads, other.workloads) or _holds_a_rank(other, inc))
            and not _quiet_apart(other, inc)
        ]
        return min(takers, key=lambda o: first_onset(o.members.values(), o.id), default=None)

    def _wider_taker(self, inc: OpenIncident) -> OpenIncident | None:
        """The incident rooted above ``inc`` whose merge pass would take it in now (its root explains one of
        its alerts, ``takes_in``): the most specific root, then the earliest onset. A GPU's incident that
        becomes an outage after its rack's partial outage formed went in where the rack's incident was
        touched too (one POST), and stayed apart where only the GPU's was (batch fuzz seeds 159, 1123)."""
        root = inc.root_path
        if not root or not inc.members:
            return None
        takers = [
            other
            for other in self._open.wider_takers(inc)
            if other.members
            and len(other.root_path) < len(root)
            and contains(other.root_path, root)
            and takes_in(other.root_path, other.facts, inc.members.values())
            and not _before_the_heat(other, inc)
            and not _quiet_apart(other, inc)
        ]
        return min(
            takers, key=lambda o: (-len(o.root_path), first_onset(o.members.values(), o.id)), default=None
        )

    def _opened(self, batch: Batch, inc: OpenIncident) -> tuple[datetime, tuple[datetime, str]]:
        """When ``inc`` opened; its earliest onset breaks a tie (one POST's incidents open at one instant)."""
        row = batch.session.get(IncidentRow, inc.id)
        assert row is not None
        return row.opened_at, first_onset(inc.members.values(), inc.id)

    def _fold(self, batch: Batch, inc: OpenIncident, other: OpenIncident) -> None:
        """Move ``other``'s alerts into ``inc``; ``other`` is resolved, ``merged_into`` naming ``inc``. A
        silence merges nothing apart (it mutes an incident, not how alerts group): where one holds ``inc`` and
        not ``other``, and ``other`` brings a fault beside the one it was set for (``beside_held``), it ends
        first, saying why, and the merge pages as the join of such an alert does
        (``joining.IncidentJoining._fault_joins``); ended by this transaction already (another incident
        merged in first), its end names this one too. A silence of ``other`` ends with it: it mutes nothing
        once its alerts are ``inc``'s, and the merge says whose it was."""
        if not self._held(other.id, batch.silence_time()):
            self._end_if_beside(
                batch,
                inc,
                other.members.values(),
                lambda: f"{_named(other)}, a fault beside the one the silence was set for",
            )
        batch.tell_added(other.id)  # what joined it in this transaction, told before it goes (an early merge)
        dropped = self._drop_absorbed_silences(batch, other.id)
        # Its alerts of its own earlier opening stay of an earlier one here; the rest are of this opening,
        # as the event says (a restart replays it: ``joining.earlier_members``).
        carried = other.earlier & other.members.keys()
        fresh = sorted(other.members.keys() - carried)
        inc.earlier = (inc.earlier - set(fresh)) | carried
        members = list(other.members.values())
        for fp, member in other.members.items():
            inc.members[fp] = member
            batch.refile(fp, inc.id)
        if other.id in batch.arrived:  # a late alert it took is ``inc``'s now (``alerting.strays``)
            batch.came(inc.id, batch.arrived[other.id])
        if not other.root_path or other.id in batch.rooted:
            batch.rooted.add(inc.id)
        if not other.workloads <= inc.workloads:  # until its recompute: what an early merge's POST sees
            inc.workloads = add_workloads(inc.workloads, other.workloads)
            inc.placed = inc.placed | other.placed
        other_row = batch.session.get(IncidentRow, other.id)
        row = batch.session.get(IncidentRow, inc.id)
        assert other_row is not None and row is not None
        row.first_onset_at = min(row.first_onset_at, other_row.first_onset_at)
        row.impact = with_absorbed_peak(row.impact, row.priority, other_row.impact, other_row.priority)
        # Taken in by the transaction that opened it, before its first assessment: it gets the title and
        # priority it would have had (after the peak above, which its first assessment does not start).
        self._assess_unshown(batch, other)
        other_row.merged_into = inc.id
        # Those ``other`` took in before now go on in ``inc`` too: no chain of merged incidents to follow.
        # Ingest runs without autoflush: flush first, or the UPDATE misses one ``other`` took in this POST
        # (its ``merged_into`` still unflushed) and the session then takes its value for stored.
        # ``fetch``: the session learns which rows changed from the UPDATE's RETURNING and refreshes only
        # those; the default (``evaluate``) tested every object the session holds, at every merge (a rollout
        # over 2,000 nodes: 2,000 merges over a session of thousands of rows, quadratic).
        batch.session.flush()
        batch.session.execute(
            update(IncidentRow).where(IncidentRow.merged_into == other.id).values(merged_into=inc.id),
            execution_options={"synchronize_session": "fetch"},
        )
        taken_up = other_row.state in _TAKEN_UP_STATES  # before it resolves
        other_row.state = IncidentState.RESOLVED.value
        other_row.resolved_at = batch.now
        # What its alerts recommended and which flapped, until now: told with its changes of this batch (and
        # of any a restart left untold), once it is no longer open (``IncidentAnnouncing._advice``).
        advice = {"recommended": list(recommended_by(members)), "flapping": list(flapping_in(members))}
        what = f" {shortened(other_row.title, ABSORBED_MAX)}" if other_row.title else ""  # what it was
        # Its silence ended with it (``_drop_absorbed_silences``): both sides say whose it was.
        ended = f"; its silence (by {', '.join(dropped)}) ended" if dropped else ""
        alerts = f"{len(other.members)} alert{'' if len(other.members) == 1 else 's'}"
        batch.event(
            other.id,
            "merged",
            f"merged into {inc.id}, {alerts} moved{ended}",
            {
                "into": inc.id,
                "fingerprints": sorted(other.members),  # what it shows as its alerts (``store.handed_over``)
                **advice,
                **({"silence_ended_by": dropped} if dropped else {}),
            },
            change=ChangeKind.RESOLVED,
        )
        batch.event(
            inc.id,
            "merged",
            f"absorbed {other.id}{what} ({alerts}{ended})",
            {"from": other.id, "fingerprints": fresh, "earlier": sorted(carried)},
        )
        if taken_up:
            _carry_take_up(batch, inc, row, other.id)
        # Stored with it: a restart reads it, and nothing else may write the row before then (one in its
        # quiet period is not assessed again; restart fuzz seed 1701).
        inc.last_alert_at = row.last_alert_at = max(inc.last_alert_at, other.last_alert_at)
        del self._open[other.id]
        # Its pages and take-ups are now ``inc``'s (``reminding.stored_pages``): one may make a reminder
        # of ``inc`` due sooner than its check said (a page after the acknowledgement it found).
        self._check_reminder_at(inc.id, batch.now)

    def _spread_in_rack(self, inc: OpenIncident, now: datetime) -> set[str]:
        """The other open incidents that, with ``inc``, hold one signal on ``SPREAD_NODES`` or more nodes of a
        known rack within the correlation window (``rack_spread``); empty when they do not."""
        since = now - self._window
        for signal in node_signals(inc, since):
            found = rack_spread(
                inc, self._open.under(inc.root_path[:RACK_DEPTH]), signal, since, self._node_taken_since
            )
            if found:
                rack = inc.root_path[:RACK_DEPTH]
                return found | {
                    o.id for o in self._open.values() if o.id != inc.id and _rootless_signal(o, rack, signal)
                }
        return set()

    def _node_taken_since(self, inc: OpenIncident) -> datetime | None:
        """When the faults on its node began of the node's incident whose merge pass takes ``inc`` in
        (``_wider_taker``); None when none does. Posted one by one, that incident took it in as its root
        became the node (its node down), and a spread reaching the rack after that did not count it: in one
        POST both wait for the merge pass (batch fuzz seed 4044)."""
        taker = self._wider_taker(inc)
        if taker is None or len(taker.root_path) != RACK_DEPTH + 1:
            return None
        node = taker.root_path
        return min(
            (m.onset for m in taker.members.values() if m.is_infra and contains(node, m.location.path)),
            default=None,
        )


_TAKEN_UP_STATES = frozenset({IncidentState.ACKNOWLEDGED.value, IncidentState.MITIGATING.value})


def _carry_take_up(batch: Batch, inc: OpenIncident, row: IncidentRow, other_id: str) -> None:
    """``inc`` takes in ``other_id``, which someone took up (acknowledged, marked mitigating, approved its
    remediation): that person is on the fault ``inc`` now holds, so a triggered ``inc`` is acknowledged too,
    by them, as its timeline says and listeners hear (an ack, not a mitigation: what they do may be of the
    other root cause). One acknowledged or mitigating already keeps its own state."""
    if row.state != IncidentState.TRIGGERED.value:
        return
    by, taken_at = _taken_up(batch.session, other_id)
    row.state = IncidentState.ACKNOWLEDGED.value
    inc.state = IncidentState.ACKNOWLEDGED
    row.acknowledged_at, row.acknowledged_by = batch.now, by or None
    row.updated_at = batch.now
    who = f" by {by}" if by else ""
    batch.event(
        inc.id,
        "acknowledged",
        f"acknowledged{who} on {other_id}, merged in since",
        # When they took it up: a repeated ack names that time, not the merge's.
        {"by": by, "carried_from": other_id, "taken_up_at": taken_at.isoformat() if taken_at else None},
        change=ChangeKind.ACKNOWLEDGED,
    )


def _taken_up(session: Session, incident_id: str) -> tuple[str, datetime | None]:
    """Who last took the incident up (``reminders.TAKEN_UP``) and when; empty and None when its timeline does
    not say."""
    query = select(TimelineRow).where(
        TimelineRow.incident_id == incident_id, TimelineRow.kind.in_(sorted(TAKEN_UP))
    )
    event = session.scalars(query.order_by(TimelineRow.seq.desc()).limit(1)).first()
    return (str(event.data.get("by", "")), event.at) if event is not None else ("", None)


NAMED_ALERTS = 3  # of an incident merged into a silenced one: the rest are counted


def _named(other: OpenIncident) -> str:
    """What a merge brought into a silenced incident, as a person reads it: its alerts (``other`` may have
    opened in this very transaction, never announced), the firing ones first."""
    members = sorted(other.members.values(), key=lambda m: (not m.firing, describe(m.labels)))
    named = [describe(m.labels) for m in members[:NAMED_ALERTS]]
    if len(members) > NAMED_ALERTS:
        named.append(f"{len(members) - NAMED_ALERTS} more")
    return f"{', '.join(named)} merged in (from {other.id})"


def _quiet_apart(inc: OpenIncident, other: OpenIncident) -> bool:
    """Whether one of the two waits out its quiet period (its alerts all resolved) and what fires in the
    other is not its fault coming back (``recurs``): then neither takes the other in, as the join path
    would not have joined the live one's alerts to the quiet one (``joining._may_take``). The quiet one's
    root explained what was on its node while it fired, not a new fault there now; the live one's root
    (an anomaly's node) does not make the quiet one's ended fault its own."""
    inc_live, other_live = live(inc.members), live(other.members)
    if inc_live is other_live:
        return False
    quiet, firing = (other, inc) if inc_live else (inc, other)
    return not any(
        (m.firing or m.flapping) and recurs(quiet.root_path, quiet.members.values(), quiet.facts, m)
        for m in firing.members.values()
    )


def _before_the_heat(inc: OpenIncident, other: OpenIncident) -> bool:
    """Whether ``inc`` is a rack's heat or power (no other fault in it) and ``other`` began before it: a node
    that went down before the rack ran hot is its own fault, not the heat's (after, it would be). A
    workload's symptom that joined the heat is no other fault (as in ``rack_spread.node_signals``): a
    service's latency that joined a GPU's power brake in one POST, before the rack's third node braked, let
    the rack's incident take a stale exporter of a fourth node from long before, which then named its root,
    where posted one by one the latency came after and it stayed apart (batch fuzz seed 2693)."""
    faults = [m for m in inc.members.values() if m.is_infra]
    if not faults or any(m.kind not in ENVIRONMENT for m in faults):
        return False
    began = min(m.onset for m in faults)
    return any(m.onset < began for m in other.members.values())


def _rootless_signal(other: OpenIncident, rack: Path, signal: Spread) -> bool:
    """Whether ``other`` is a workload's incident with no topology root whose faults are all ``signal`` in
    ``rack``."""
    infra = [m for m in other.members.values() if m.is_infra]
    return (
        not other.root_path
        and bool(infra)
        and all(
            m.location.path[:RACK_DEPTH] == rack and (m.labels.get("alertname", ""), m.kind) == signal
            for m in infra
        )
    )


def _holds_a_rank(inc: OpenIncident, other: OpenIncident) -> bool:
    """Whether ``other`` is a workload's symptoms alone (its job's stalls) and the fault of ``inc`` holds the
    GPU of one of its ranks: such a stall posted after ``inc``'s root moved there joins it
    (``correlation.join_rank``), though the fault takes nothing of the job (a rack's partial outage holds
    the rank's node, an XID there on another job's GPU); so does the incident it opened before."""
    if not inc.root_path or any(m.is_infra for m in other.members.values()):
        return False
    candidate = inc.candidate()
    return any(
        holds_gpu(inc.root_path, candidate, gpu) for m in other.members.values() for gpu in m.location.runs_on
    )


def _sibling_nodes_down(inc: OpenIncident, other: OpenIncident) -> bool:
    """Two incidents each with a whole node down, in one known rack (``rack_down_in``): one incident, the
    rack's."""
    rack = rack_down_in(inc.root_path, inc.members.values())
    return rack is not None and rack_down_in(other.root_path, other.members.values()) == rack


def rack_down_in(root: Path, members: Iterable[Member]) -> Path | None:
    """The known rack of an incident rooted at ``root`` below it whose ``members`` hold a whole node down;
    None when it holds none. Two incidents with the same such rack are one, the rack's: their alerts may
    have reached each node's incident first (a node's GPUs lost before the node). The merge pass makes
    them one at a transaction's end (``_sibling_nodes_down``); the join path heads a root there at once
    (``beside_sibling_down``): this is the rule both state."""
    if len(root) <= RACK_DEPTH or root[1] == UNKNOWN or not down_nodes(members):
        return None
    return root[:RACK_DEPTH]


def beside_sibling_down(inc: OpenIncident, new: Member, candidates: Iterable[Candidate]) -> bool:
    """Whether ``new``, a whole node down, joined ``inc`` (now rooted at that node) while another open
    incident holds a node of the same known rack down (``rack_down_in``): the merge pass makes them one,
    the rack's. One POST heads the root there at once, so that what comes after in that POST sees it as
    posted after (a stale exporter on a third node is the rack's, not a GPU fault's on its node, which it
    took into the rack's with it: batch fuzz seeds 1327, 2274)."""
    path = new.location.path
    if not (new.is_outage and len(path) == RACK_DEPTH + 1 and inc.root_path == path):
        return False
    rack = rack_down_in(path, (new,))  # ``new`` fires (only a firing alert joins): ``inc`` holds it down
    return rack is not None and any(
        c.id != inc.id and rack_down_in(c.root_path, c.members) == rack for c in candidates
    )


def took_earlier(session: Session, incident_ids: Sequence[str]) -> set[str]:
    """Those of the incidents that absorbed another with alerts of that one's earlier opening: one query
    per 512 incidents, not one each (a start with 24,000 open incidents spent half its minute there)."""
    took: set[str] = set()
    for chunk in in_lists(incident_ids):
        merges = session.execute(
            select(TimelineRow.incident_id, TimelineRow.data).where(
                TimelineRow.incident_id.in_(chunk), TimelineRow.kind == "merged"
            )
        )
        took.update(incident_id for incident_id, data in merges if data.get("earlier"))
    return took


class _NewIn:
    """The incidents a transaction opened, as a container (``lateness.came_after`` skips them)."""

    def __init__(self, batch: Batch) -> None:
        self._batch = batch

    def __contains__(self, incident_id: object) -> bool:
        return isinstance(incident_id, str) and self._batch.is_new(incident_id)
