"""Incidents, changes and series for the notifier and outbox tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alerting.notifiers.base import ChartSeries
from alerting.subscriptions import ChangeKind, IncidentChange
from gpuwarden.model import (
    ActionOutcome,
    ActionResult,
    FaultKind,
    Impact,
    Incident,
    IncidentState,
    NodeRef,
    Priority,
    RackRef,
    RemediationRequest,
    RootCause,
    TimelineEvent,
    WorkloadKind,
    WorkloadRef,
)

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def make_incident(
    incident_id: str = "inc-r07",
    *,
    priority: Priority = Priority.P0,
    state: IncidentState = IncidentState.TRIGGERED,
    title: str = "rack r07 lost power: 8 nodes, 64 GPUs",
) -> Incident:
    """A rack-down incident touching a training job."""
    job = WorkloadRef(WorkloadKind.TRAINING_JOB, "research", "llm-70b")
    return Incident(
        id=incident_id,
        title=title,
        priority=priority,
        state=state,
        root_cause=RootCause(FaultKind.RACK_DOWN, RackRef("c1", "r07")),
        opened_at=T0,
        impact=Impact(
            workloads=(job,),
            affected_share=1.0,
            gpus_affected=64,
            nodes_affected=8,
            spare_capacity=False,
            summary="training job llm-70b stopped, no spare capacity",
        ),
    )


def change(
    incident: Incident,
    kind: ChangeKind,
    minutes: float,
    message: str,
    event_kind: str | None = None,
    data: dict[str, str] | None = None,
) -> IncidentChange:
    """A change of ``incident`` ``minutes`` after T0."""
    event = TimelineEvent(
        at=T0 + timedelta(minutes=minutes), kind=event_kind or kind.value, message=message, data=data or {}
    )
    incident.timeline.append(event)
    return IncidentChange(kind=kind, incident=incident, event=event)


def lifecycle(incident_id: str = "inc-r07") -> list[IncidentChange]:
    """Opened, priority lowered, acknowledged, a drain, resolved: snapshots taken at each change."""
    out = []
    inc = make_incident(incident_id)
    out.append(change(inc, ChangeKind.OPENED, 0, "opened with 412 alerts"))
    inc = make_incident(incident_id, priority=Priority.P1)
    out.append(change(inc, ChangeKind.PRIORITY_CHANGED, 3, "P0 -> P1: spare capacity found"))
    inc = make_incident(incident_id, priority=Priority.P1, state=IncidentState.ACKNOWLEDGED)
    out.append(change(inc, ChangeKind.ACKNOWLEDGED, 5, "acknowledged by slack:alice"))
    inc = make_incident(incident_id, priority=Priority.P1, state=IncidentState.MITIGATING)
    request = RemediationRequest(action="drain_node", target=NodeRef("n0701", "c1", "r07"), dry_run=False)
    drained = ActionResult(
        request, ActionOutcome.SUCCEEDED, T0 + timedelta(minutes=6), T0 + timedelta(minutes=7), "drained"
    )
    inc.actions.append(drained)
    out.append(change(inc, ChangeKind.MITIGATING, 7, "drain_node n0701 succeeded"))
    inc = make_incident(incident_id, priority=Priority.P1, state=IncidentState.RESOLVED)
    inc.actions.append(drained)
    inc.resolved_at = T0 + timedelta(minutes=95)
    out.append(change(inc, ChangeKind.RESOLVED, 95, "all alerts resolved for 10 min"))
    return out


def gpu_temperature(anomalous: bool = True) -> ChartSeries:
    """Thirty samples of a GPU temperature with an expected band; the last five break out when anomalous."""
    times = tuple(T0 + timedelta(seconds=30 * i) for i in range(30))
    values = tuple(70.0 + (25.0 if anomalous and i >= 25 else 0.0) + (i % 3) for i in range(30))
    return ChartSeries(
        name="DCGM_FI_DEV_GPU_TEMP{gpu=3}",
        times=times,
        values=values,
        lower=tuple(65.0 for _ in times),
        upper=tuple(80.0 for _ in times),
        unit="°C",
    )
