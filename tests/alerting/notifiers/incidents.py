"""Incidents, changes and series for the notifier and outbox tests."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from alerting.notifiers.base import ChartSeries, Notification, build_notification
from alerting.subscriptions import REASSESSED, ChangeKind, IncidentChange
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
            parts=("training job llm-70b stopped", "no spare capacity"),
        ),
    )


def change(
    incident: Incident,
    kind: ChangeKind,
    minutes: float,
    message: str,
    event_kind: str | None = None,
    data: dict[str, object] | None = None,
) -> IncidentChange:
    """A change of ``incident`` ``minutes`` after T0."""
    event = TimelineEvent(
        at=T0 + timedelta(minutes=minutes), kind=event_kind or kind.value, message=message, data=data or {}
    )
    incident.timeline.append(event)
    return IncidentChange(kind=kind, incident=incident, event=event)


def reassessed(recommended: str, minutes: float) -> IncidentChange:
    """inc-r07 after a repeat of one of its alerts changed what they recommend: an edit of its message."""
    told = change(make_incident(), ChangeKind.UPDATED, minutes, f"reassessed: {recommended}", REASSESSED)
    return replace(told, recommended=(recommended,))


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


def hostile_notification() -> Notification:
    """A Slurm job named to ping everyone, on a host whose label pings here, with a note that pings a user."""
    inc = make_incident(
        title="gpu lab-n2 <!here>/3 lost (fell off the bus): 1 node, 1 GPU, training job <!channel>"
        " ping-everyone stopped"
    )
    return build_notification(
        change(inc, ChangeKind.UPDATED, 1, "note by <@U0BOB>: see <!subteam^S1>", "note")
    )


LONG_NODE = "ip-10-123-45-67." + "very-long-subdomain-segment-" * 8 + "compute.internal"


def huge_notification() -> Notification:
    """Everything as long as labels and inventories make it: a 256-character node, a 2,500-character one
    among the targets, 1,000 services in the impact, 40 actions, a 5,000-character note with escapes."""
    impact = (
        "1 node",
        "8 GPUs",
        *(f"inference service svc-{i:04d} 100% of replicas lost" for i in range(1000)),
    )
    n = build_notification(change(make_incident(), ChangeKind.UPDATED, 1, "& <x> " * 900, "note"))
    return n.model_copy(
        update={
            "title": "node " + "h" * 2500,
            "root_cause_target": LONG_NODE,
            "impact_summary": ", ".join(impact),
            "impact_parts": impact,
            "affected_targets": ("h" * 2500, *(f"inference_service/prod/svc-{i:04d}" for i in range(1000))),
            "actions_taken": tuple(f"drain_node node/{LONG_NODE}: succeeded ({'&' * 50})" for i in range(40)),
            "recommended_actions": tuple(f"custom_action_{i}" * 20 for i in range(100)),
        }
    )
