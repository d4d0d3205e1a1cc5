"""Reading and writing the incident store: rows to model types and back, and the queries the API needs."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Engine, Select, and_, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from alerting.db import in_lists
from alerting.matchers import stored_matcher
from alerting.silences import Silence, SilenceKind
from alerting.store_models import AlertRow, IncidentRow, SilenceRow, TimelineRow
from alerting.topology import target_from_dict
from gpuwarden.errors import InputError
from gpuwarden.model import (
    Alert,
    AlertSource,
    AlertStatus,
    FaultKind,
    Impact,
    Incident,
    IncidentState,
    Priority,
    RecommendedAction,
    RootCause,
    TimelineEvent,
    workload_from_dict,
    workload_to_dict,
)


class NotFound(InputError):
    """Nothing stored under that id (the API answers 404)."""


class Conflict(InputError):
    """The request is well formed but the thing it acts on is not in a state that allows it (409)."""


class IncidentNotFound(NotFound):
    """No incident with that id."""

    def __init__(self, incident_id: str) -> None:
        super().__init__(f"no incident {incident_id!r}", field="id")
        self.incident_id = incident_id


class SilenceNotFound(NotFound):
    """No silence with that id."""

    def __init__(self, silence_id: str) -> None:
        super().__init__(f"no silence {silence_id!r}", field="silenceID")
        self.silence_id = silence_id


def impact_to_dict(impact: Impact, **extra: Any) -> dict[str, Any]:
    """JSON shape of an impact (plus engine extras such as per-workload shares)."""
    return {
        "workloads": [workload_to_dict(w) for w in impact.workloads],
        "affected_share": impact.affected_share,
        "error_ratio": impact.error_ratio,
        "slo_burn_rate": impact.slo_burn_rate,
        "gpus_affected": impact.gpus_affected,
        "nodes_affected": impact.nodes_affected,
        "spare_capacity": impact.spare_capacity,
        "summary": impact.summary,
        "parts": list(impact.parts),
        "namespaced": [workload_to_dict(w) for w in sorted(impact.namespaced, key=str)],
        **extra,
    }


def impact_from_dict(data: dict[str, Any]) -> Impact:
    """Inverse of ``impact_to_dict`` (extras dropped)."""
    return Impact(
        workloads=tuple(workload_from_dict(w) for w in data.get("workloads", [])),
        affected_share=float(data.get("affected_share", 0.0)),
        error_ratio=float(data.get("error_ratio", 0.0)),
        slo_burn_rate=float(data.get("slo_burn_rate", 0.0)),
        gpus_affected=int(data.get("gpus_affected", 0)),
        nodes_affected=int(data.get("nodes_affected", 0)),
        spare_capacity=bool(data.get("spare_capacity", True)),
        parts=_impact_parts(data),
        namespaced=frozenset(workload_from_dict(w) for w in data.get("namespaced", [])),
    )


PEAK = "peak"
"""Key of an impact's JSON that keeps the worst impact the incident had, with its priority: the impact falls
as an incident recovers (and a reopen starts it small again); a postmortem reports the worst."""


def with_peak(
    new: dict[str, Any], old: dict[str, Any] | None, old_priority: str, priority: str
) -> dict[str, Any]:
    """``new`` (``impact_to_dict``'s, at ``priority``) with the worst impact so far under ``PEAK``: the
    more urgent priority's, between equal ones the most GPUs, nodes and share. ``old``: the impact stored
    before at ``old_priority`` (None while the incident has none yet); one stored before peaks were kept
    counts as its own peak."""
    candidates = [{**{k: v for k, v in new.items() if k != PEAK}, "priority": priority}]
    kept = _peak_of(old, old_priority)
    if kept is not None:
        candidates.append(kept)
    worst = min(candidates, key=_severity)
    return {**new, PEAK: worst}


def with_absorbed_peak(
    kept: dict[str, Any], kept_priority: str, absorbed: dict[str, Any] | None, absorbed_priority: str
) -> dict[str, Any]:
    """``kept`` (the stored impact of an incident that takes another in, at ``kept_priority``) with the worse
    of its own peak and that of ``absorbed`` (the other's, at ``absorbed_priority``) under ``PEAK``, so a
    merge does not lose the worst impact the absorbed incident had. ``kept`` unchanged while it has none of
    its own yet (an incident not assessed yet: its first assessment starts its peak)."""
    own = _peak_of(kept, kept_priority)
    if own is None:
        return kept
    other = _peak_of(absorbed, absorbed_priority)
    return {**kept, PEAK: own if other is None else min(own, other, key=_severity)}


def _peak_of(data: dict[str, Any] | None, priority: str) -> dict[str, Any] | None:
    """The worst impact kept in a stored impact; one stored before peaks were kept is its own peak (at
    ``priority``); None for none stored."""
    if not data or "gpus_affected" not in data:
        return None
    kept = data.get(PEAK)
    return kept if isinstance(kept, dict) else {**data, "priority": priority}


def _severity(data: dict[str, Any]) -> tuple[str, int, int, float]:
    """Sorts the worst impact first: "P0" < "P1", then more GPUs, nodes, share."""
    return (
        str(data.get("priority", "P3")),
        -int(data.get("gpus_affected", 0)),
        -int(data.get("nodes_affected", 0)),
        -float(data.get("affected_share", 0.0)),
    )


def peak_impact(data: dict[str, Any]) -> tuple[Priority, Impact] | None:
    """The worst impact an incident had and its priority, from its stored impact (None: none kept)."""
    kept = data.get(PEAK)
    if not isinstance(kept, dict) or str(kept.get("priority")) not in Priority.__members__:
        return None
    return Priority(str(kept["priority"])), impact_from_dict(kept)


def _impact_parts(data: dict[str, Any]) -> tuple[str, ...]:
    """The stored parts; an impact stored before they were kept has only its summary, which is not split
    again (a name may hold ", "): it stays one part until the incident is assessed again."""
    parts = data.get("parts")
    if isinstance(parts, list):
        return tuple(str(p) for p in parts)
    summary = str(data.get("summary", ""))
    return (summary,) if summary else ()


def alert_from_row(row: AlertRow, status: AlertStatus | None = None, timeout: bool = False) -> Alert:
    """The stored alert as a model value (with another ``status``, to send it through ingest again; with
    ``timeout``, its endsAt is a resolve timeout: ``row.ends_by_timeout`` when sent again as firing)."""
    return Alert(
        labels=row.labels,
        status=status or AlertStatus(row.status),
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        annotations=row.annotations,
        source=AlertSource(row.source),
        score=row.score,
        recommended_action=RecommendedAction(row.recommended_action),
        generator_url=row.generator_url,
        timeout=timeout,
    )


def incident_from_rows(
    row: IncidentRow, timeline: Sequence[TimelineRow], fingerprints: list[str]
) -> Incident:
    """The stored incident as a model value."""
    return Incident(
        id=row.id,
        title=row.title,
        priority=Priority(row.priority),
        state=IncidentState(row.state),
        root_cause=RootCause(FaultKind(row.root_kind), target_from_dict(row.root_target)),
        opened_at=row.opened_at,
        alert_fingerprints=fingerprints,
        impact=impact_from_dict(row.impact),
        timeline=[TimelineEvent(t.at, t.kind, t.message, t.data, t.seq) for t in timeline],
        resolved_at=row.resolved_at,
        last_opened_at=row.last_opened_at or row.opened_at,
        merged_into=row.merged_into,
    )


def silence_from_row(row: SilenceRow) -> Silence:
    """A stored silence as a value."""
    return Silence(
        id=row.id,
        matchers=tuple(stored_matcher(m) for m in row.matchers),
        starts_at=row.starts_at,
        ends_at=row.ends_at,
        created_by=row.created_by,
        comment=row.comment,
        kind=SilenceKind(row.kind),
        incident_id=row.incident_id,
        updated_at=row.updated_at,
    )


ALERT_MOVED = "alert_moved"
"""Timeline event of a resolved incident whose alert fired again after the reopen window: the alert's row
now belongs to the new incident, and the event keeps what the old one showed of it (its labels, startsAt
and endsAt then), so the resolved incident's alerts and postmortem stay as they were."""


MERGED = "merged"
"""Timeline event of a merge, on both sides: the incident merged away (``into`` the one that goes on, and,
since this release, the ``fingerprints`` of the alerts it handed over) and the one that took it (``from``)."""


def handed_over(timeline: Iterable[TimelineRow]) -> list[str]:
    """The alerts an incident merged into another handed over (their rows are that one's now), as its
    ``merged`` event names them; none for any other incident, or a merge stored before the event named
    them."""
    found: list[str] = []
    for event in timeline:
        data = event.data or {}
        if event.kind == MERGED and "into" in data:  # once: a merged incident is resolved for good
            found += [str(fp) for fp in data.get("fingerprints", ())]
    return found


def member_alerts(session: Session, incident_id: str) -> list[AlertRow]:
    """An incident's alert rows, those that moved on to a later incident as it saw them, and those it handed
    over when it was merged into another (as they are now), by startsAt, then fingerprint: alerts of one
    POST share a startsAt, and a tie left to the database listed them as they arrived (SQLite) or as rows
    last moved (PostgreSQL rewrites a row on each update), not the same each time."""
    rows = list(
        session.scalars(
            select(AlertRow)
            .where(AlertRow.incident_id == incident_id)
            .order_by(AlertRow.starts_at, AlertRow.fingerprint)
        )
    )
    row = session.get(IncidentRow, incident_id)
    # Of one merged into another, its merge too (not the merges of one that took others in: thousands).
    kinds = (ALERT_MOVED, MERGED) if row is not None and row.merged_into else (ALERT_MOVED,)
    moved = session.scalars(
        select(TimelineRow)
        .where(TimelineRow.incident_id == incident_id, TimelineRow.kind.in_(kinds))
        .order_by(TimelineRow.seq)
    ).all()
    if not moved:
        return rows
    own = {r.fingerprint for r in rows}
    handed = [fp for fp in handed_over(moved) if fp not in own]
    for chunk in in_lists(handed):
        rows += session.scalars(select(AlertRow).where(AlertRow.fingerprint.in_(chunk)))
    return sorted(rows + moved_alerts(moved, own), key=lambda a: (a.starts_at, a.fingerprint))


def moved_alerts(timeline: Sequence[TimelineRow], keep: set[str] | None = None) -> list[AlertRow]:
    """The alerts an incident had that moved on to a later incident, as the incident last saw them
    (unsaved rows; those whose fingerprint is in ``keep``, still its own, are left out)."""
    found: dict[str, AlertRow] = {}
    for event in timeline:
        data = event.data or {}
        fp = data.get("fingerprint")
        if event.kind != ALERT_MOVED or not isinstance(fp, str) or (keep and fp in keep):
            continue
        ends = data.get("ends_at")
        found[fp] = AlertRow(
            fingerprint=fp,
            labels=dict(data.get("labels") or {}),
            annotations=dict(data.get("annotations") or {}),
            status="resolved",
            starts_at=datetime.fromisoformat(str(data.get("starts_at"))),
            ends_at=datetime.fromisoformat(str(ends)) if ends else None,
            source="",
            generator_url="",
            score=None,
            recommended_action=str(data.get("recommended_action") or "none"),
            first_seen=event.at,
            last_seen=event.at,
            receive_count=0,
            incident_id=None,
            muted_by=None,
            flapping=False,
            transitions=[],
        )
    return list(found.values())


# Where an incident stands in ``IncidentStore.list_rows``' order: its last_opened_at, opened_at and id.
ListKey = tuple[datetime | None, datetime, str]


def listed_after(key: ListKey) -> tuple[ColumnElement[bool], ...]:
    """The conditions of the incidents ``list_rows`` lists after the one at ``key`` (newest first by
    last_opened_at, then opened_at; by id where both tie). ``last_opened_at <= ?`` on its own, so that the
    read starts at the key in ``(state, last_opened_at, opened_at)`` (0021), not at the newest incident."""
    last, opened, incident_id = key
    later = or_(
        IncidentRow.opened_at < opened, and_(IncidentRow.opened_at == opened, IncidentRow.id > incident_id)
    )
    if last is None:  # those without one sort last: only they are after it
        return (IncidentRow.last_opened_at.is_(None), later)
    return (IncidentRow.last_opened_at <= last, or_(IncidentRow.last_opened_at < last, later))


class IncidentStore:
    """Read side of the store, used by the API and the CLI."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.sessions = sessionmaker(engine, expire_on_commit=False)

    def load_incident(self, session: Session, incident_id: str) -> Incident:
        """One incident with its timeline and member fingerprints."""
        row = session.get(IncidentRow, incident_id)
        if row is None:
            raise IncidentNotFound(incident_id)
        timeline = session.scalars(
            select(TimelineRow).where(TimelineRow.incident_id == incident_id).order_by(TimelineRow.seq)
        ).all()
        fps = list(
            session.scalars(
                select(AlertRow.fingerprint)
                .where(AlertRow.incident_id == incident_id)
                .order_by(AlertRow.first_seen, AlertRow.fingerprint)  # a tie: see ``member_alerts``
            )
        )
        fps += [a.fingerprint for a in moved_alerts(timeline, set(fps))]
        fps += [fp for fp in handed_over(timeline) if fp not in fps]  # merged into another: went on there
        return incident_from_rows(row, timeline, fps)

    def get(self, incident_id: str) -> Incident:
        """One incident by id."""
        with self.sessions() as session:
            return self.load_incident(session, incident_id)

    def list_rows(
        self,
        state: str | None = None,
        include_merged: bool = False,
        *,
        priority: str | None = None,
        limit: int | None = None,
        after: ListKey | None = None,
    ) -> list[tuple[IncidentRow, int]]:
        """Incidents (newest first by when they last opened or reopened, at most ``limit``) with their alert
        counts; ``after``: only those listed after the incident of that ``list_key`` (the next page)."""
        with self.sessions() as session:
            base = self._filtered(select(IncidentRow), state, include_merged, priority)
            order = (IncidentRow.last_opened_at.desc(), IncidentRow.opened_at.desc(), IncidentRow.id)
            query = (base if after is None else base.where(*listed_after(after))).order_by(*order)
            rows = list(session.scalars(query if limit is None else query.limit(limit)))
            if after is not None and after[0] is not None and (limit is None or len(rows) < limit):
                # Those without a last_opened_at sort last, after every page. None exist: 0004 filled every
                # row, and every incident is stored with one (PostgreSQL would put them first on page one).
                nulls = base.where(IncidentRow.last_opened_at.is_(None)).order_by(*order)
                more = nulls if limit is None else nulls.limit(limit - len(rows))
                rows += session.scalars(more)
            # Counted for the listed incidents only (by the incident_id index), not the whole table.
            counts: dict[str | None, int] = {}
            for ids in in_lists([r.id for r in rows]):
                grouped = (
                    select(AlertRow.incident_id, func.count())
                    .where(AlertRow.incident_id.in_(ids))
                    .group_by(AlertRow.incident_id)
                )
                counts.update({k: int(n) for k, n in session.execute(grouped)})
                moved = select(TimelineRow.incident_id).where(
                    TimelineRow.incident_id.in_(ids), TimelineRow.kind == ALERT_MOVED
                )
                for incident_id in session.scalars(moved):  # as ``show`` counts them
                    counts[incident_id] = counts.get(incident_id, 0) + 1
            for ids in in_lists([r.id for r in rows if r.merged_into]):
                merges = select(TimelineRow).where(
                    TimelineRow.incident_id.in_(ids), TimelineRow.kind == MERGED
                )
                for event in session.scalars(merges):
                    counts[event.incident_id] = counts.get(event.incident_id, 0) + len(handed_over([event]))
            return [(row, counts.get(row.id, 0)) for row in rows]

    @staticmethod
    def list_key(row: IncidentRow) -> ListKey:
        """Where ``row`` stands in ``list_rows``' order: what ``after`` takes to list those after it."""
        return (row.last_opened_at, row.opened_at, row.id)

    def rows_by_id(self, ids: Sequence[str]) -> dict[str, IncidentRow]:
        """Incident rows by id (those that exist)."""
        out: dict[str, IncidentRow] = {}
        with self.sessions() as session:
            for chunk in in_lists(ids):
                out.update(
                    {r.id: r for r in session.scalars(select(IncidentRow).where(IncidentRow.id.in_(chunk)))}
                )
        return out

    def count_rows(
        self, state: str | None = None, include_merged: bool = False, *, priority: str | None = None
    ) -> int:
        """How many incidents ``list_rows`` would return without a limit."""
        with self.sessions() as session:
            query = self._filtered(
                select(func.count()).select_from(IncidentRow), state, include_merged, priority
            )
            return int(session.execute(query).scalar_one())

    @staticmethod
    def _filtered(
        query: Select[Any], state: str | None, include_merged: bool, priority: str | None
    ) -> Select[Any]:
        if state is not None:
            query = query.where(IncidentRow.state == state)
        if priority is not None:
            query = query.where(IncidentRow.priority == priority)
        if not include_merged:
            query = query.where(IncidentRow.merged_into.is_(None))
        return query

    def alerts_of(self, incident_id: str) -> list[AlertRow]:
        """The member alert rows of an incident, with those that moved on to a later one as it saw them."""
        with self.sessions() as session:
            return member_alerts(session, incident_id)

    def alert(self, fingerprint: str) -> AlertRow | None:
        """One stored alert by fingerprint."""
        with self.sessions() as session:
            return session.get(AlertRow, fingerprint)

    def firing_alerts(self) -> list[AlertRow]:
        """Every firing alert, oldest first (what Alertmanager's ``GET /api/v2/alerts`` lists)."""
        with self.sessions() as session:
            query = select(AlertRow).where(AlertRow.status == AlertStatus.FIRING.value)
            return list(session.scalars(query.order_by(AlertRow.starts_at, AlertRow.fingerprint)))

    def alert_count(self) -> int:
        """How many distinct alerts are stored."""
        with self.sessions() as session:
            return int(session.scalar(select(func.count()).select_from(AlertRow)) or 0)
