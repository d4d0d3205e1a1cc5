"""An incident as it was at one of its timeline events, read back from the timeline.

Listeners are told each change with the incident as the store has it when they are told: after the whole
transaction (one applier batch applies many POSTs at once), or after every commit a crash or an outage left
untold. A "priority_changed" told together with the "resolved" that followed it would say ``resolved`` too,
and a receiver would close its ticket twice. The timeline holds what such a receiver needs to tell them
apart: its lifecycle events set the state, its priority events say from what and to what, and each event
after the one told is undone here. The title, root cause and impact are the incident's latest: the timeline
does not keep what they were.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from gpuwarden.model import Incident, IncidentState, Priority, TimelineEvent

# Timeline kinds that set the state (``alerting.lifecycle``, ``alerting.joining``, ``alerting.merging``); a
# "merged" event sets it only on the incident taken in (``into``), not on the one that took it.
_STATE_OF = {
    "opened": IncidentState.TRIGGERED,
    "reopened": IncidentState.TRIGGERED,
    "acknowledged": IncidentState.ACKNOWLEDGED,
    "remediation_approved": IncidentState.MITIGATING,
    "mitigating": IncidentState.MITIGATING,
    "resolved": IncidentState.RESOLVED,
}


def incident_as_of(incident: Incident, event: TimelineEvent) -> Incident:
    """``incident`` as it was right after ``event`` (one of its timeline's): state, priority, when it
    resolved, reopened and what it was merged into, and its timeline up to there. The incident itself when
    ``event`` is its latest or not on its timeline."""
    index = next((i for i, e in enumerate(incident.timeline) if e is event), None)
    if index is None or index == len(incident.timeline) - 1:
        return incident
    before, after = incident.timeline[: index + 1], incident.timeline[index + 1 :]
    state = next((s for e in reversed(before) if (s := _state_set(e)) is not None), incident.state)
    resolved = state is IncidentState.RESOLVED
    reopened = [e.at for e in before if e.kind == "reopened"]
    end = next((e for e in reversed(before) if _state_set(e) is IncidentState.RESOLVED), None)
    return replace(
        incident,
        state=state,
        priority=_priority_before(after, incident.priority),
        timeline=before,
        resolved_at=end.at if resolved and end is not None else None,
        last_opened_at=reopened[-1] if reopened else incident.opened_at,
        merged_into=incident.merged_into if resolved and end is not None and end.kind == "merged" else None,
    )


_PRIORITIES = frozenset(p.value for p in Priority)


def _state_set(event: TimelineEvent) -> IncidentState | None:
    if event.kind == "merged":
        return IncidentState.RESOLVED if "into" in event.data else None
    return _STATE_OF.get(event.kind)


def _priority_before(later: Sequence[TimelineEvent], latest: Priority) -> Priority:
    """The priority before ``later`` events: what the first of them that changed it changed it from."""
    for event in later:
        was = event.data.get("from") if event.kind == "priority" else None
        if isinstance(was, str) and was in _PRIORITIES:
            return Priority(was)
    return latest
