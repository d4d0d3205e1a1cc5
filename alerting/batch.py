"""What the incident engine holds while it works: open incidents in memory, and one transaction's effects.

``OpenIncident`` is the in-memory view of an incident that is not resolved (what correlation asks about for
every new alert); ``Batch`` gathers one transaction's timeline events and changes, which are stored with the
commit and told to listeners after it; ``Ticket`` is one ingest call waiting for the group commit.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from alerting.correlation import Candidate
from alerting.faults import SYMPTOM_KINDS
from alerting.handoff import watch
from alerting.incident_index import OpenIncidents
from alerting.incident_members import Members
from alerting.inventory import GpuKey
from alerting.member import Member
from alerting.pending import PendingAlert, StoredAlert
from alerting.root_facts import FactsBuilder, RootFacts, root_facts
from alerting.store_models import AlertRow, TimelineRow
from alerting.subscriptions import ChangeKind
from alerting.topology import Path
from gpuwarden.model import (
    Alert,
    IncidentState,
    Priority,
    WorkloadRef,
    workload_from_dict,
    workload_to_dict,
)

if TYPE_CHECKING:
    from alerting.recurrence import RecentlyResolved


@dataclass
class OpenIncident:
    """An open incident as the engine keeps it in memory."""

    id: str
    root_path: Path
    priority: Priority
    state: IncidentState
    last_alert_at: datetime
    members: dict[str, Member] = field(default_factory=dict)
    workloads: frozenset[WorkloadRef] = frozenset()
    placed: frozenset[GpuKey] = frozenset()  # GPUs of ``workloads`` per the inventory; set with them
    # Workloads the incident showed that an inventory listed as stopped abnormally (kept a while after a
    # node failure or crash): one that leaves the inventory later, its keep window over, does not lower the
    # incident's priority (see ``InventoryReassessment.replace_inventory``).
    stopped: set[WorkloadRef] = field(default_factory=set)
    # Since when inventory refreshes have assessed it less urgent than it is, its alerts not changing: it is
    # lowered once that held ``priority_settle_seconds`` (see ``IncidentGrouping._waits``).
    lower_since: datetime | None = None
    # The GPUs its live outages took, as last assessed: other incidents count them in the share of a
    # service they both take replicas from (see ``impact.assess``); empty once nothing fires.
    lost: frozenset[GpuKey] = frozenset()
    # Its root cause is to be found again, not kept as shown (``IncidentGrouping._shown_root``): it reopened
    # (what it showed was the fault that ended), or alerts left it (what it showed may be theirs).
    root_moved: bool = False
    # Members of an earlier opening that have not fired since it reopened: no part of this opening's
    # recovery ("; 1 of 2 GPUs recovered"), though they stay members (see ``earlier_members``).
    earlier: set[str] = field(default_factory=set)
    _gathered: _Gathered | None = field(default=None, repr=False, compare=False)  # see ``facts``
    # The open set that indexes it (``alerting.incident_index``), told when its root, workloads, placement
    # or members change; None while it is not in one.
    index: OpenIncidents | None = field(default=None, init=False, repr=False, compare=False)

    def __setattr__(self, name: str, value: object) -> None:
        if name == "members" and not isinstance(value, Members):
            value = Members(self, value)  # type: ignore[arg-type]
        object.__setattr__(self, name, value)
        if name in _FILED and self.index is not None:
            self.index.refile(self, name)

    def reassessment(self, opening: int) -> dict[str, object] | None:
        """What inventory refreshes left pending of it (``lower_since``, ``stopped``), as its row keeps it for
        a restart: of its ``opening`` (its row's ``reopen_count``: a reopening starts afresh, as live makes a
        new ``OpenIncident``); None when nothing is."""
        if self.lower_since is None and not self.stopped:
            return None
        return {
            "opening": opening,
            "lower_since": None if self.lower_since is None else self.lower_since.timestamp(),
            "stopped": sorted((workload_to_dict(w) for w in self.stopped), key=lambda w: sorted(w.items())),
        }

    def resume(self, stored: Mapping[str, Any] | None, opening: int) -> None:
        """Take back what ``reassessment`` stored of the same opening (at a restart)."""
        if not stored or stored.get("opening") != opening:
            return
        since = stored.get("lower_since")
        self.lower_since = None if since is None else datetime.fromtimestamp(float(since), UTC)
        self.stopped = {workload_from_dict(w) for w in stored.get("stopped", ())}

    def candidate(self) -> Candidate:
        """A live view of the members, not a copy: ingest asks every open incident for each new alert."""
        return Candidate(
            self.id,
            self.root_path,
            self.workloads,
            self.members.values(),
            self.last_alert_at,
            self.placed,
            self.facts,
        )

    def forget_facts(self) -> None:
        """Gather the facts again at the next ``facts``: members left, or changed place (a new inventory)."""
        self._gathered = None

    def facts(self) -> RootFacts:
        """``RootFacts`` of the members, brought up to date only when members came (see ``_gather``). Asked of
        every candidate at every alert: what is already gathered and made is returned without another call."""
        got = self._gathered
        if got is None or got.count != len(self.members):
            got = self._gather()
        made = got.builder.made
        return made if made is not None else got.builder.facts()

    def stalled_ranks(self) -> tuple[Sequence[str], AbstractSet[str]]:
        """The fingerprints of its workload symptoms whose rank's GPUs the inventory places (all that
        ``regroup_ranks`` may move), in join order, and the clusters of those GPUs."""
        got = self._gather()
        return got.ranks, got.clusters

    def _gather(self) -> _Gathered:
        """What is gathered of the members, brought up to date only when members came. A member's kind, place
        and name never change (``_remeasure`` replaces one by its like); members leave only through
        ``regrouping._move``, and a new inventory moves them: both call ``forget_facts``, and it starts over.
        New members are the dict's last ones."""
        count = len(self.members)
        got = self._gathered
        if got is not None and got.count == count:
            return got
        if got is None or got.count > count:
            got = _Gathered()
        # From the end: skipping the members gathered already walked them all (a 10,000-alert incident).
        # Usually one came (each alert joining asks): no list for it, every object made is collector work.
        builder, ranks, clusters = got.builder, got.ranks, got.clusters
        latest = reversed(self.members.values())
        fresh: Iterable[Member] = (
            (next(latest),)
            if count - got.count == 1
            else reversed(list(itertools.islice(latest, count - got.count)))
        )
        for member in fresh:
            builder.add(member)
            if member.kind in SYMPTOM_KINDS and member.location.runs_on:
                ranks.append(member.fingerprint)
                clusters.update(gpu[0] for gpu in member.location.runs_on)
        got.count = count
        self._gathered = got
        return got


_FILED = frozenset({"root_path", "workloads", "placed", "members", "lost"})
"""What the index of open incidents files an incident under (see ``OpenIncident.index``)."""


@dataclass(slots=True)
class _Gathered:
    """What an open incident gathered of its members, member by member (``OpenIncident._gather``)."""

    count: int = 0  # members gathered
    builder: FactsBuilder = field(default_factory=FactsBuilder)
    ranks: list[str] = field(default_factory=list)  # fingerprints of the placed stalled ranks, in join order
    clusters: set[str] = field(default_factory=set)  # the clusters of their GPUs


@dataclass
class IngestResult:
    """What one ingest call did."""

    accepted: int = 0
    opened: list[str] = field(default_factory=list)
    muted: int = 0


_HELD = "gpuwarden.held_rows"  # Session.info key: the rows the session loaded or stored, held (``hold_rows``)


def hold_rows(session: Session) -> None:
    """Keep every row ``session`` loads or stores alive until the session goes: its identity map holds rows
    weakly, so one released (say an incident's row, once its change is flushed) was read again at the next
    ``session.get`` in the same transaction, one query each (a rollout merging 1,000 incidents: 6,000 reads
    for some 2,000 rows). Within a transaction the row held is the row the store has: nothing changes it
    underneath (``merged_into``'s UPDATE refreshes those it changes)."""
    session.info.setdefault(_HELD, [])  # filled by ``_keep_held``


@event.listens_for(Session, "loaded_as_persistent")
@event.listens_for(Session, "pending_to_persistent")
def _keep_held(session: Session, instance: object) -> None:
    """``hold_rows``'s keeping, for every session that asked for it: listeners set up once on the class, not
    on each session (SQLAlchemy builds a session's own dispatch for those, ~0.1 ms a transaction, a sixth of
    a repeat's POST)."""
    held: list[object] | None = session.info.get(_HELD)
    if held is not None:
        held.append(instance)


@dataclass
class Ticket:
    """One ingest call waiting for the group commit."""

    alerts: list[Alert]
    result: IngestResult = field(default_factory=IngestResult)
    done: bool = False
    error: Exception | None = None
    at: datetime | None = None  # when the batch was accepted (journal replay); None: now


@dataclass(slots=True)
class Lifted:
    """A silence a transaction ended early (``MuteTracking._end_if_beside``): its ``silence_ended`` event,
    why (one entry per fault beside it), and the incident's root and alerts as the silence held them, so that
    what comes in later in the transaction is judged against what the silence was set for (not a root a
    merge it ended the silence for moved up: a rack's) and, beside it too, named in that event."""

    event: TimelineRow
    whys: list[str]
    root: Path
    members: list[Member]
    _facts: RootFacts | None = None

    def facts(self) -> RootFacts:
        """The facts of ``members``, gathered when first asked for."""
        if self._facts is None:
            self._facts = root_facts(self.members)
        return self._facts


_VERBS = {"alert_added": "joined", "alert_firing": "firing again", "alert_resolved": "resolved"}

ToldAs = tuple[tuple[object, ...], datetime | None]
"""What notifiers show of an incident's row (``showing.told_of``) with its ``quiet_since``: what a
change is weighed against."""


@dataclass
class Batch:
    """Pending effects of one transaction."""

    session: Session
    now: datetime
    # When the alerts it applies, and the incidents they come into, are checked against silences: when it
    # is applied, not when each was received (a journal record received before a silence ended and applied
    # after it is not muted by the ended silence, whose end the tick may have released its alerts at
    # already, as a restart has dropped it); None: ``now`` (see ``silence_time``).
    silences_at: datetime | None = None
    touched: set[str] = field(default_factory=set)
    changes: list[tuple[str, ChangeKind, TimelineRow]] = field(default_factory=list)
    events: list[TimelineRow] = field(default_factory=list)  # every timeline event it writes, in order
    last_event: dict[str, TimelineRow] = field(default_factory=dict)
    added: dict[str, list[tuple[str, str, str]]] = field(default_factory=dict)
    rows: dict[str, StoredAlert] = field(default_factory=dict)
    new: list[PendingAlert] = field(default_factory=list)
    # Per incident, the earliest onset of the alerts that opened or joined it in this transaction
    # (``alerting.lateness``: an alert posted after others that began later).
    arrived: dict[str, datetime] = field(default_factory=dict)
    # The alerts it took the slow path for (new, changed): none of them is moved as a stray
    # (``alerting.strays``), which were stored before it.
    posted: set[str] = field(default_factory=set)
    # Incidents without a root that a fault joined in it, or that took one in: their faults taken as
    # evidence may not be theirs in onset order (``alerting.strays``).
    rooted: set[str] = field(default_factory=set)
    # Incidents whose alerts' recommended actions a repeat changed, with what they recommended before the
    # transaction's first such change: their row does not show it, Slack's message and the webhooks do
    # (``IncidentGrouping._recompute`` tells it when it differs).
    remeasured: dict[str, tuple[str, ...]] = field(default_factory=dict)
    # The "alerts_moved" events (source's, target's) of this transaction by (source, target, what, why):
    # a later move between the same two extends them (``regrouping._move``).
    moved: dict[tuple[str, str, str, str], tuple[TimelineRow, TimelineRow]] = field(default_factory=dict)
    # The "root_cause_changed" event of each incident in this transaction, with the root (kind, target) it
    # showed before and what it was told as then: a later move rewrites it (one reply, saying where the root
    # cause ended), one back to that root takes it back (``showing.tell_root_moved``).
    root_said: dict[str, tuple[TimelineRow, tuple[str, dict[str, Any], ToldAs]]] = field(default_factory=dict)
    # The priority event each incident opened in this transaction last stated (``IncidentGrouping``).
    priority_said: dict[str, str] = field(default_factory=dict)
    # Whether a root holds the GPU of a member's rank, by (fingerprint, root): see ``regroup_ranks``.
    held: dict[tuple[str, Path], bool] = field(default_factory=dict)
    # startsAt, endsAt, annotations and recommendation of alerts firing again, as they were (see
    # ``IncidentJoining._reopen``)
    spans: dict[str, tuple[datetime, datetime | None, dict[str, str], str]] = field(default_factory=dict)
    # Incidents resolved within the reopen window, as the engine holds open ones: loaded once per
    # transaction, at its first alert that would open an incident (``IncidentJoining._reopen_recurring``).
    resolved: RecentlyResolved | None = None
    # Incidents whose silence this transaction ended early for a fault beside it (``Lifted``).
    lifted: dict[str, Lifted] = field(default_factory=dict)
    # The latest onset of the alerts it joined so far, while they came in onset order; None once one came
    # before it (``in_onset_order``).
    _onsets: datetime | None = field(default=datetime.min.replace(tzinfo=UTC), repr=False)
    # The kinds of ``changes`` per incident, read up to ``_kinds_seen`` of them: asking the list itself
    # for each incident a transaction opened was quadratic in a POST of a thousand separate faults.
    _kinds: dict[str, set[ChangeKind]] = field(default_factory=dict, repr=False)
    _kinds_seen: int = field(default=0, repr=False)
    # Called as the transaction works through its alerts and incidents: the journal applier's heartbeat, so
    # that one transaction longer than the liveness deadline (a POST of 100,000 alerts) is not taken for a
    # stuck applier.
    progress: Callable[[], object] = field(default=lambda: None, repr=False)

    def __post_init__(self) -> None:
        watch(
            self.session, self.changes, self.events
        )  # stored with the commit, told after it (``alerting.handoff``)
        hold_rows(self.session)

    def timeline(self, incident_id: str, kinds: Collection[str] | None = None) -> list[TimelineRow]:
        """The incident's timeline events (of ``kinds`` only, when given) in order: those stored, then those
        this transaction wrote of it and has not flushed yet (ingest runs without autoflush: an alert that
        joined earlier in the same POST is among them)."""
        query = select(TimelineRow).where(TimelineRow.incident_id == incident_id)
        if kinds is not None:
            query = query.where(TimelineRow.kind.in_(list(kinds)))
        stored = self.session.scalars(query.order_by(TimelineRow.seq)).all()
        flushed = {id(e) for e in stored}
        pending = [
            e
            for e in self.events
            if e.incident_id == incident_id and id(e) not in flushed and (kinds is None or e.kind in kinds)
        ]
        return [*stored, *pending]

    def refile(self, fingerprint: str, incident_id: str) -> None:
        """File a stored alert into another incident (a merge, a move). Its row, read here when the
        transaction had not read it, joins ``rows``: what the engine keeps of it after the commit follows
        (a muted one is released into the incident it is of now, as a restart reads it)."""
        row = self.rows.get(fingerprint)
        if row is None:
            row = self.session.get(AlertRow, fingerprint)
            if row is None:
                return
            self.rows[fingerprint] = row
        row.incident_id = incident_id

    def event(
        self,
        incident_id: str,
        kind: str,
        message: str,
        data: dict[str, object],
        *,
        change: ChangeKind | None = None,
    ) -> TimelineRow:
        """Add a timeline event; with ``change``, listeners hear of it after the commit."""
        event = TimelineRow(incident_id=incident_id, at=self.now, kind=kind, message=message, data=data)
        self.session.add(event)
        self.events.append(event)
        self.last_event[incident_id] = event
        if change is not None:
            self.changes.append((incident_id, change, event))
        return event

    def tell_added(self, incident_id: str | None = None) -> None:
        """The timeline events of the alerts that joined, fired or resolved (``added``), of every incident
        or of ``incident_id`` only (one merged away within the transaction: before its merge, as posted one
        by one): one event per incident, kind and transaction, listing every alert concerned."""
        for key in [k for k in self.added if incident_id is None or k.split("\0")[0] == incident_id]:
            added = self.added.pop(key)
            inc, kind = key.split("\0")
            fps = [fp for fp, _, _ in added]
            first = added[0][1]
            single = f"alert {first} {'resolved' if kind == 'alert_resolved' else 'firing'}"
            message = single if len(added) == 1 else f"{len(added)} alerts {_VERBS[kind]} (first: {first})"
            data: dict[str, object] = {"fingerprints": fps, "kinds": sorted({k for _, _, k in added})}
            if len(added) == 1:
                data["fingerprint"] = fps[0]
            self.event(inc, kind, message, data)

    def retract(self, event: TimelineRow) -> None:
        """Take back an event this transaction added, and the change that would tell it: what it said no
        longer holds when the transaction ends."""
        incident_id = event.incident_id
        self.events.remove(event)
        self.changes[:] = [c for c in self.changes if c[2] is not event]
        self._kinds.clear()  # read from ``changes`` again when next asked (``_change_kinds``)
        self._kinds_seen = 0
        if self.last_event.get(incident_id) is event:
            before = [e for e in self.events if e.incident_id == incident_id]
            if before:
                self.last_event[incident_id] = before[-1]
            else:
                del self.last_event[incident_id]
        if event in self.session.new:
            self.session.expunge(event)
        else:
            self.session.delete(event)

    def in_onset_order(self, onset: datetime) -> bool:
        """Whether the alerts this transaction joined so far, the latest of onset ``onset``, each came no
        earlier than those before it: then each saw what it would have seen posted alone after them
        (``joining``'s early merge). Each POST's alerts come in onset order (``spans.event_order``), but
        several POSTs in one transaction (the journal applier's) may go back in time from one to the next:
        those are merged once, at its end, with everything it holds: merged at each alert, what came first
        would have gone together before the faults posted after it that explain it came (a rack's stale
        exporters, one cluster's exporter fault, before the rack's nodes down)."""
        if self._onsets is not None:
            self._onsets = onset if onset >= self._onsets else None
        return self._onsets is not None

    def silence_time(self) -> datetime:
        """When this transaction checks silences, of alerts and of incidents alike, and ends an incident's
        silence early: ``silences_at`` where set (a journal record applied after it was received), else
        ``now``. Not the record's time: a silence that ended between the record's accept and its apply is
        still in a live engine's list and no longer in a restarted one's (``stored_silences``), so a check
        at the record's time would decide differently after a restart; at this time both find it ended."""
        return self.silences_at or self.now

    def came(self, incident_id: str, onset: datetime) -> None:
        """An alert of ``onset`` opened or joined the incident (``arrived``)."""
        arrived = self.arrived.get(incident_id)
        if arrived is None or onset < arrived:
            self.arrived[incident_id] = onset

    def is_new(self, incident_id: str) -> bool:
        """Whether the incident was opened in this transaction."""
        return ChangeKind.OPENED in self._change_kinds().get(incident_id, ())

    def has_change(self, incident_id: str) -> bool:
        """Whether listeners hear of the incident after this transaction."""
        return incident_id in self._change_kinds()

    def drop_changes(self, incident_id: str) -> None:
        """Tell listeners nothing of the incident after all."""
        self.changes[:] = [c for c in self.changes if c[0] != incident_id]
        self._kinds.pop(incident_id, None)
        self._kinds_seen = len(self.changes)

    def _change_kinds(self) -> dict[str, set[ChangeKind]]:
        """The kinds of ``changes`` per incident, brought up to date with those appended since."""
        kinds = self._kinds
        for incident_id, kind, _ in self.changes[self._kinds_seen :]:
            found = kinds.get(incident_id)
            if found is None:
                found = kinds[incident_id] = set()
            found.add(kind)
        self._kinds_seen = len(self.changes)
        return kinds

    def latest_event(self, incident_id: str) -> TimelineRow:
        """The incident's newest timeline event, this transaction's or the store's."""
        if incident_id in self.last_event:
            return self.last_event[incident_id]
        event = self.session.scalars(
            select(TimelineRow).where(TimelineRow.incident_id == incident_id).order_by(TimelineRow.seq.desc())
        ).first()
        assert event is not None
        return event
