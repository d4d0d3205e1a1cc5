"""What an operator action on an incident says when it changes nothing, or why it is refused."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from alerting.store import Conflict
from alerting.store_models import AlertRow
from gpuwarden.clock import shown
from gpuwarden.durations import UNIT_SECONDS
from gpuwarden.model import Incident, IncidentState, TimelineEvent


@dataclass(frozen=True, slots=True)
class ActionOutcome:
    """What an operator action did: the incident as it is now, and ``already``, what says why nothing changed
    (empty when the action changed the incident)."""

    incident: Incident
    already: str = ""

    @property
    def changed(self) -> bool:
        """Whether the action changed the incident."""
        return not self.already


def already_acted(incident: Incident) -> str:
    """Why acknowledging the incident changes nothing: who acknowledged it and when, or who is mitigating
    it (and what with); empty while it is triggered."""
    ack = _last(incident.timeline, ("acknowledged",))
    acked = _acked_by(ack) if ack is not None else ""
    if incident.state is IncidentState.ACKNOWLEDGED:
        return f"already {acked or 'acknowledged'}"
    if incident.state is IncidentState.MITIGATING:
        work = _last(incident.timeline, ("mitigating", "remediation_approved"))
        if work is None:
            return "already mitigating"
        what = work.data.get("action") or "remediation approved"
        since = f"already mitigating ({what}) by {work.data.get('by', '?')} since {shown(work.at)}"
        return f"{since}; {acked}" if acked else since
    return ""


def _acked_by(ack: TimelineEvent) -> str:
    """The "acknowledged by X at T" of ``ack``; of an ack a merge carried over, T is when X took up the
    incident merged in (the merge's own time is no time X did anything)."""
    by = ack.data.get("by", "?")
    other, taken_at = ack.data.get("carried_from"), ack.data.get("taken_up_at")
    if other and isinstance(taken_at, str):
        at = shown(datetime.fromisoformat(taken_at))
        return f"acknowledged by {by} at {at} (on {other}, merged in since)"
    return f"acknowledged by {by} at {shown(ack.at)}"


def already_mitigating(incident: Incident, action: str) -> str:
    """Why marking the incident mitigating with ``action`` changes nothing: who marked it so, and when."""
    work = _last(incident.timeline, ("mitigating",))
    if work is None:
        return f"already mitigating ({action})"
    return f"already mitigating ({action}) by {work.data.get('by', '?')} since {shown(work.at)}"


def already_approved(incident: Incident) -> str:
    """Why approving the incident's remediation changes nothing: who approved it, and when."""
    approval = _last(incident.timeline, ("remediation_approved",))
    if approval is None:
        return "remediation already approved"
    return f"remediation already approved by {approval.data.get('by', '?')} at {shown(approval.at)}"


def already_resolved(incident: Incident) -> str:
    """Why resolving the resolved incident changes nothing: who resolved it and when, or that its quiet
    period did."""
    at = shown(incident.resolved_at) if incident.resolved_at is not None else "?"
    event = _last(incident.timeline, ("resolved",))
    by = event.data.get("by") if event is not None else None
    if by:
        return f"already resolved by {by} at {at}"
    return f"already resolved at {at}, its alerts quiet for the quiet period"


def already_silenced(until: datetime, by: str) -> str:
    """Why silencing the incident changes nothing: the silence that holds it, until when and whose."""
    return f"already silenced until {shown(until)} by {by}"


def _last(timeline: Sequence[TimelineEvent], kinds: tuple[str, ...]) -> TimelineEvent | None:
    return next((e for e in reversed(timeline) if e.kind in kinds), None)


def still_firing(
    incident_id: str, firing: Sequence[AlertRow], silenced_until: datetime | None = None
) -> Conflict:
    """The refusal of a resolve while alerts fire: how many, which, and what to do instead (a silence, unless
    one already holds the incident until ``silenced_until``)."""
    names = sorted({a.labels.get("alertname", "") or a.fingerprint for a in firing})
    listed = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
    fire = (
        "1 of its alerts still fires (or flaps)"
        if len(firing) == 1
        else f"{len(firing)} of its alerts still fire (or flap)"
    )
    return Conflict(
        f"incident {incident_id} cannot be resolved while its alerts fire: {fire} ({listed}); resolve them at"
        " the source (then it resolves after the quiet period, or by hand at once)"
        + (
            f"; it is silenced until {shown(silenced_until)}, so nobody hears of it meanwhile"
            if silenced_until is not None
            else f", or silence them (`gpuwarden incidents silence {incident_id} --for 1h`) to hear no more"
            " of it while they fire"
        ),
        field="incident",
    )


def resolved_conflict(incident_id: str, merged_into: str | None = None) -> Conflict:
    # Said after the field: "incident: inc-1 is resolved; ...", not "incident: incident inc-1 ...".
    if merged_into:  # its fault goes on in the other: that is where to act
        return Conflict(
            f"{incident_id} was merged into {merged_into}; act on {merged_into}", field="incident"
        )
    return Conflict(f"{incident_id} is resolved; only notes can be added", field="incident")


_UNITS = tuple((unit, round(seconds)) for unit, seconds in UNIT_SECONDS.items() if seconds >= 1)


def duration_text(seconds: float) -> str:
    """A duration as Prometheus and amtool write it: ``1h30m``, ``2d``, ``45s``, ``1500ms``."""
    ms = round(seconds * 1000)
    if ms % 1000:
        return f"{ms}ms"
    rest, parts = ms // 1000, []
    for unit, size in _UNITS:
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts) or "0s"
