"""Members: what correlation knows of each alert of an incident (its kind, place, onset and signal), the
order of onsets that breaks ties between incidents, and what members advise (the actions their alerts
recommend, which of them flap) as merges record it and announcements tell it."""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from alerting.faults import (
    JOB_FAULTS,
    SYMPTOM_KINDS,
    alert_xid,
    anomaly_subject,
    awaits_recovery,
    classify,
    takes_capacity,
    xid_code,
)
from alerting.topology import WORKLOAD_LABELS, Location, alert_pod
from gpuwarden.model import NODE_LABELS, FaultKind, RecommendedAction
from gpuwarden.xid import follow_up_for_xid

_NEVER = datetime.max.replace(tzinfo=UTC)
# Recommended actions, the most drastic first: the order a person reads them in.
_URGENCY = tuple(
    a.value
    for a in (
        RecommendedAction.RESTART_NODE,
        RecommendedAction.DRAIN_AND_RESET,
        RecommendedAction.RESET_GPU,
        RecommendedAction.CORDON_AND_DRAIN,
        RecommendedAction.RESTART_APP,
        RecommendedAction.SCALE_OUT,
        RecommendedAction.CONTACT_SUPPORT,
        RecommendedAction.INVESTIGATE,
    )
)

Signal = tuple[str, FaultKind, int | None]
"""An alert's name, fault kind and XID code: alerts alike in all three are one signal, which may spread."""


@dataclass(slots=True)
class Member:
    """What correlation needs to know about one alert of an incident."""

    fingerprint: str
    kind: FaultKind
    location: Location
    onset: datetime
    firing: bool
    labels: Mapping[str, str]
    flapping: bool = False
    settles_at: float = field(default=float("-inf"), compare=False)
    """When a flapping member's flag may clear with no new change (``flapping.settles_after``), as a POSIX
    timestamp: the tick has nothing to settle before."""
    recommended_action: str = "none"  # what the evidence suggests (the XID catalog, the anomaly service)
    annotations: Mapping[str, str] = field(default_factory=dict)
    is_outage: bool = field(init=False)
    """The fault takes capacity away: an outage kind, an XID after which the GPU needs a reset, or the
    driver's request for that reset (``awaits_recovery``) (kind and labels never change for a member: worked
    out once, correlation asks for every pair it compares)."""
    signal: Signal = field(init=False)
    """What makes two alerts one signal spreading (a driver rollout): the name, the kind and the XID code.
    XID 119 on sixteen nodes and an XID 48 on another are two faults, though both alerts are ``GPUXid``."""
    is_infra: bool = field(init=False)
    """An infrastructure fault with a place in the topology (not a workload symptom)."""
    # What impact last read of the annotations (``measures.read_measures``): which, the error ratio, the burn.
    measured_of: Mapping[str, str] | None = field(default=None, init=False, compare=False)
    error_ratio: float = field(default=0.0, init=False, compare=False)
    burn_rate: float = field(default=0.0, init=False, compare=False)

    def __post_init__(self) -> None:
        code = alert_xid(self.kind, self.labels)
        self.is_outage = takes_capacity(self.kind, code) or awaits_recovery(self.kind, self.labels)
        self.signal = (self.labels.get("alertname", ""), self.kind, code)
        self.is_infra = bool(self.location.path) and self.kind not in SYMPTOM_KINDS


onset_key = operator.attrgetter("onset", "fingerprint")
"""A member's place in onset order, its fingerprint breaking a tie (a C key: recomputes sort them all)."""


def first_onset(members: Iterable[Member], incident_id: str) -> tuple[datetime, str]:
    """An incident's earliest alert onset, then that alert's fingerprint: the tie-break between incidents.

    Not the incident id (a random draw) nor when it was opened (alerts of one POST share that instant):
    the same alerts break the tie the same way in every run and whatever order they arrived in."""
    first = min(members, key=onset_key, default=None)
    return (_NEVER, incident_id) if first is None else (first.onset, first.fingerprint)


def recommended_by(members: Iterable[Member]) -> tuple[str, ...]:
    """What the firing ``members`` recommend, the most drastic first ("ignore" is no advice), with the XID
    catalog's follow-up of a firing XID alert (79: contact NVIDIA support, after the reboot), unless the alert
    itself is to be ignored (its rule's ``recommended_action`` annotation says so)."""
    return _recommended((m.recommended_action, m.kind, m.signal[2]) for m in members if m.firing)


def recommended_by_alerts(alerts: Iterable[tuple[Mapping[str, str], str]]) -> tuple[str, ...]:
    """``recommended_by`` for firing alerts given as their labels and recommended action (the API's
    incident detail, which reads the store, not correlation's members)."""
    kinds = ((labels, action, classify(labels)) for labels, action in alerts)
    return _recommended((action, kind, alert_xid(kind, labels)) for labels, action, kind in kinds)


_KIND_ADVICE = {FaultKind.NODE_DOWN: RecommendedAction.RESTART_NODE.value}
"""What a fault calls for where its alert advises nothing itself: a node down, what the anomaly service's
``NodeDown`` recommends (cordon and drain it, then reboot it), whether a Prometheus rule raised it instead
(node-exporter's, with no ``recommended_action`` annotation: a dead node's incident recommended nothing)."""


def _recommended(advice: Iterable[tuple[str, FaultKind, int | None]]) -> tuple[str, ...]:
    """Each firing alert's recommended action, fault kind and XID code, as ``recommended_by`` orders what
    they advise."""
    ignore, none = RecommendedAction.IGNORE.value, RecommendedAction.NONE.value
    pairs = [
        (_KIND_ADVICE.get(kind, none) if action == none else action, code) for action, kind, code in advice
    ]
    follow_ups = (follow_up_for_xid(code) for action, code in pairs if code is not None and action != ignore)
    actions = {action for action, _ in pairs} | {a.value for a in follow_ups if a is not None}
    actions -= {
        RecommendedAction.NONE.value,
        RecommendedAction.IGNORE.value,
    }
    return tuple(sorted(actions, key=lambda a: (_URGENCY.index(a) if a in _URGENCY else len(_URGENCY), a)))


def flapping_in(members: Iterable[Member]) -> tuple[str, ...]:
    """The alert names of the flapping ``members``."""
    return tuple(sorted({m.labels.get("alertname", "") for m in members if m.flapping}))


def live(members: dict[str, Member]) -> bool:
    """Whether one of ``members`` fires or flaps: else their incident waits out its quiet period. The
    latest first: in a storm the alert that joined last fires, not one of the first (asked at each alert)."""
    return any(m.firing or m.flapping for m in reversed(members.values()))


_PLACING = (*NODE_LABELS, "gpu", "UUID", "uuid", *WORKLOAD_LABELS, "service")
"""Labels that say which GPU, node or workload an alert is about, as ``alerting.topology`` places it (``job``
aside; ``instance`` too, the scrape target's address: a ``TargetDown`` is named by its scrape job)."""


def _scrape_job(labels: Mapping[str, str]) -> bool:
    """Whether ``job`` is only Prometheus' scrape job (``dcgm-exporter``, ``vllm``): the alert names its GPU,
    node or workload otherwise and is no job's stall (a training job's own alert names it in ``job``). A
    scrape job's alert about no other target (``TargetDown``) keeps it: it is all that says which. A node's
    outage names its node in ``instance`` (``NodeDown{instance="r07-n01:9100", job="node"}``): its scrape
    job read as a job of the node's, "(r07-n01:9100, job node)"."""
    kind = classify(labels)
    placed = any(labels.get(k) for k in _PLACING) or (
        kind is FaultKind.NODE_DOWN and bool(labels.get("instance"))
    )
    return placed and kind not in JOB_FAULTS


def describe(labels: Mapping[str, str]) -> str:
    """An alert as the timeline names it: ``GPUXid XID 79 (r07-n01, 5)`` (its XID code where it carries one);
    a generic anomaly alert with the series and the detector that scored it, ``GpuwardenAnomaly on
    DCGM_FI_DEV_GPU_TEMP [fleet] (r07-n01, 5)``: named alike, the several such alerts of one GPU were told
    apart by no one, and one's "resolved" was folded as a repeat of another's (the incident said to be
    cycling). A job, pod or service is named as such, a pod or service with its namespace as kubectl names
    it: ``(r07-n01, 5, Slurm job 8171)``, ``(training job llm-70b)``, ``(service prod/llama)``; a bare
    ``8171`` or ``llama`` said nothing. ``job`` only where it is what the alert is about (``_scrape_job``)."""
    # The machine's names each once: two labels may name one node (``node``, node_uname_info's ``nodename``).
    where = list(dict.fromkeys(labels[k] for k in (*NODE_LABELS, "instance") if labels.get(k)))
    if labels.get("gpu"):
        where.append(labels["gpu"])
    uuid = labels.get("UUID") or labels.get("uuid")
    if uuid and not labels.get("gpu"):
        where.append(uuid)  # the GPU, where no index names it
    if labels.get("slurm_job"):
        where.append(f"Slurm job {labels['slurm_job']}")
    training = labels.get("training_job")
    if training and training != labels.get("job"):  # it places the alert: named, or nothing may be
        where.append(f"training job {training}")
    if labels.get("job") and not _scrape_job(labels):
        where.append(f"job {labels['job']}")
    pod = alert_pod(labels)
    if pod is not None:
        where.append(f"pod {pod[0]}/{pod[1]}")
    if labels.get("service"):
        namespace = labels.get("namespace")
        where.append(
            f"service {namespace}/{labels['service']}" if namespace else f"service {labels['service']}"
        )
    name = labels.get("alertname", "alert")
    subject = anomaly_subject(labels)
    name += f" on {subject}" if subject else ""
    code = xid_code(labels, ("xid", "xid_code"))
    if code is not None and str(code) not in name:
        name += f" XID {code}"  # which XID, not only that one came: 13 is the app's, 79 the GPU's loss
    return f"{name} ({', '.join(where)})" if where else name
