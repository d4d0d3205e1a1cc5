"""Domain types shared by every stage: targets, alerts, incidents, remediation requests and results.

The model imports no stage. Types are small frozen dataclasses so they are hashable, cheap to build in
hot loops (the anomaly tick builds hundreds of thousands of values) and easy to compare in tests.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from types import MappingProxyType
from typing import Any

# --- targets ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ClusterRef:
    """A cluster: the scope of a scheduler (one Slurm controller, one Kubernetes API)."""

    name: str

    def __str__(self) -> str:
        return f"cluster/{self.name}"


@dataclass(frozen=True, slots=True)
class RackRef:
    """A rack inside a cluster: shares power and top-of-rack switching."""

    cluster: str
    name: str

    def __str__(self) -> str:
        return f"rack/{self.name}"


NODE_LABELS = ("node", "Hostname", "hostname", "nodename")
"""Labels that name a series' or an alert's node, the first one set winning (else the host of ``instance``):
Kubernetes' ``node``, dcgm-exporter's ``Hostname``, node-exporter's ``nodename`` and other exporters'
``hostname``. One list for alerting (where an alert is placed) and anomaly (which GPU a series is about)."""


@dataclass(frozen=True, slots=True)
class NodeRef:
    """A host with GPUs."""

    name: str
    cluster: str = ""
    rack: str = ""

    def __str__(self) -> str:
        return f"node/{self.name}"


@dataclass(frozen=True, slots=True)
class GpuRef:
    """One GPU (or MIG instance parent) on a node, by index and NVML UUID."""

    node: str
    index: int
    uuid: str = ""

    def __str__(self) -> str:
        return f"gpu/{self.node}/{self.index}"


class WorkloadKind(enum.StrEnum):
    """What kind of thing runs on GPUs."""

    INFERENCE_SERVICE = "inference_service"
    TRAINING_JOB = "training_job"
    POD = "pod"


@dataclass(frozen=True, slots=True)
class WorkloadRef:
    """An inference service, a training job or a single pod; ``cluster`` is empty when unknown.

    Two clusters may run workloads of the same kind, namespace and name (two Slurm clusters both reach job
    1234): the cluster keeps them apart. An empty cluster matches any (see ``same_cluster``)."""

    kind: WorkloadKind
    namespace: str
    name: str
    cluster: str = ""

    def __str__(self) -> str:
        return f"{self.kind.value}/{self.namespace}/{self.name}" + (
            f"@{self.cluster}" if self.cluster else ""
        )


Target = ClusterRef | RackRef | NodeRef | GpuRef | WorkloadRef


def same_cluster(known: str, wanted: str) -> bool:
    """Whether a workload of cluster ``known`` may be the one wanted in ``wanted`` (either may be unknown)."""
    return not known or not wanted or known == wanted


def shares_workload(a: Iterable[WorkloadRef], b: Iterable[WorkloadRef]) -> bool:
    """Whether a workload of ``a`` may be one of ``b``: the same kind, namespace and name, in the same
    cluster or where either cluster is unknown."""
    a, b = frozenset(a), frozenset(b)
    if not a.isdisjoint(b):
        return True
    if all(r.cluster for r in a) and all(r.cluster for r in b):
        return False  # the usual case: every cluster known, so only the same ref is the same workload
    clusters: dict[tuple[WorkloadKind, str, str], list[str]] = {}
    for ref in b:
        clusters.setdefault(_key(ref), []).append(ref.cluster)
    return any(same_cluster(ref.cluster, other) for ref in a for other in clusters.get(_key(ref), ()))


def add_workloads(held: frozenset[WorkloadRef], new: Iterable[WorkloadRef]) -> frozenset[WorkloadRef]:
    """``held`` plus the workloads of ``new``: one of a known cluster replaces a held one of the same name
    and no known cluster (it says which one that was); one of no known cluster joins only when nothing held
    may be it (see ``shares_workload``). The result does not depend on the order of ``new``."""
    new = list(new)
    if all(r.cluster for r in new) and all(h.cluster for h in held):
        return held.union(new)  # the usual case: nothing to replace, nothing that may be another
    out = set(held)
    for ref in sorted(new, key=lambda r: not r.cluster):  # the known clusters first
        if ref in out:
            continue
        if ref.cluster:
            out -= {h for h in out if not h.cluster and _key(h) == _key(ref)}
            out.add(ref)
        elif not shares_workload((ref,), out):
            out.add(ref)
    return frozenset(out)


def _key(ref: WorkloadRef) -> tuple[WorkloadKind, str, str]:
    return ref.kind, ref.namespace, ref.name


def workload_to_dict(ref: WorkloadRef) -> dict[str, str]:
    """A JSON shape for a workload (``cluster`` only when known, as stored before clusters were)."""
    data = {"kind": ref.kind.value, "namespace": ref.namespace, "name": ref.name}
    if ref.cluster:
        data["cluster"] = ref.cluster
    return data


def workload_from_dict(data: Mapping[str, object]) -> WorkloadRef:
    """Inverse of ``workload_to_dict``."""
    return WorkloadRef(
        WorkloadKind(str(data["kind"])),
        str(data["namespace"]),
        str(data["name"]),
        str(data.get("cluster", "")),
    )


# --- alerts ----------------------------------------------------------------------------------------

_FNV64_OFFSET = 14695981039346656037
_FNV64_PRIME = 1099511628211
_FNV64_MASK = (1 << 64) - 1
_LABEL_SEPARATOR = 0xFF


def _fnv1a_add(h: int, data: bytes) -> int:
    for byte in data:
        h ^= byte
        h = (h * _FNV64_PRIME) & _FNV64_MASK
    return h


def label_fingerprint(labels: Mapping[str, str]) -> str:
    """Alertmanager's label-set fingerprint (FNV-1a 64 over sorted name/value pairs), as 16 hex digits."""
    h = _FNV64_OFFSET
    for name in sorted(labels):
        h = _fnv1a_add(h, name.encode())
        h = _fnv1a_add(h, bytes([_LABEL_SEPARATOR]))
        h = _fnv1a_add(h, labels[name].encode())
        h = _fnv1a_add(h, bytes([_LABEL_SEPARATOR]))
    return f"{h:016x}"


class AlertStatus(enum.StrEnum):
    """Alertmanager's two states of an alert."""

    FIRING = "firing"
    RESOLVED = "resolved"


class AlertSource(enum.StrEnum):
    """Where an alert came from."""

    ANOMALY = "anomaly"
    RULE = "rule"
    WEBHOOK = "webhook"


# The anomaly service's write-back metrics (vmanomaly's shape): it writes them, Slack's charts read the band.
ANOMALY_SCORE = "gpuwarden_anomaly_score"
ANOMALY_YHAT = "gpuwarden_anomaly_yhat"
ANOMALY_YHAT_LOWER = "gpuwarden_anomaly_yhat_lower"
ANOMALY_YHAT_UPPER = "gpuwarden_anomaly_yhat_upper"


class RecommendedAction(enum.StrEnum):
    """What the evidence suggests doing; the XID catalog's action buckets plus remediation verbs."""

    NONE = "none"
    IGNORE = "ignore"
    RESTART_APP = "restart_app"
    RESET_GPU = "reset_gpu"
    DRAIN_AND_RESET = "drain_and_reset"
    RESTART_NODE = "restart_node"
    CORDON_AND_DRAIN = "cordon_and_drain"
    SCALE_OUT = "scale_out"
    INVESTIGATE = "investigate"
    CONTACT_SUPPORT = "contact_support"


@dataclass(frozen=True, slots=True)
class EvidencePoint:
    """One sample that supports an alert."""

    at: datetime
    value: float


@dataclass(frozen=True, slots=True)
class Alert:
    """An Alertmanager-compatible alert: identity is the fingerprint of its labels."""

    labels: Mapping[str, str]
    status: AlertStatus = AlertStatus.FIRING
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    annotations: Mapping[str, str] = field(default_factory=dict)
    source: AlertSource = AlertSource.RULE
    score: float | None = None
    evidence: tuple[EvidencePoint, ...] = ()
    recommended_action: RecommendedAction = RecommendedAction.NONE
    generator_url: str = ""
    # Its endsAt is the resolve timeout set when it was received (posted without one), not its sender's:
    # Alertmanager's ``Timeout``, which lets an earlier explicit endsAt posted next stand (``spans``).
    timeout: bool = False

    def __post_init__(self) -> None:
        # Freeze the mappings so an alert cannot change identity after it was fingerprinted.
        object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))
        object.__setattr__(self, "annotations", MappingProxyType(dict(self.annotations)))

    @property
    def fingerprint(self) -> str:
        """Alertmanager's fingerprint of the label set."""
        return label_fingerprint(self.labels)

    @property
    def name(self) -> str:
        """The `alertname` label, or an empty string."""
        return self.labels.get("alertname", "")


# --- incidents -------------------------------------------------------------------------------------


class Priority(enum.StrEnum):
    """P0 urgent .. P3 info, exactly as defined in DESIGN.md; P0 sorts first."""

    P0 = "P0"
    P1 = "P1"
    P2 = "P2"
    P3 = "P3"

    @property
    def rank(self) -> int:
        """0 for P0 (most urgent) to 3 for P3."""
        return int(self.value[1])

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Priority):
            return NotImplemented
        return self.rank < other.rank


class FaultKind(enum.StrEnum):
    """Root-cause fault classes the suite reasons about."""

    GPU_LOST = "gpu_lost"
    XID = "xid"
    ECC_DBE = "ecc_dbe"
    ECC_SBE_STORM = "ecc_sbe_storm"
    ROW_REMAP_PENDING = "row_remap_pending"
    ROW_REMAP_FAILURE = "row_remap_failure"
    THERMAL = "thermal"
    POWER_BRAKE = "power_brake"
    NVLINK = "nvlink"
    HUNG_GPU = "hung_gpu"
    STRAGGLER = "straggler"
    MEMORY_LEAK = "memory_leak"
    NODE_DOWN = "node_down"
    RACK_DOWN = "rack_down"
    SERVICE_DEGRADED = "service_degraded"
    JOB_STALLED = "job_stalled"
    EXPORTER_STALE = "exporter_stale"
    UNKNOWN = "unknown"


FAULT_NAMES = {
    FaultKind.GPU_LOST: "GPU lost",
    FaultKind.XID: "XID",
    FaultKind.ECC_DBE: "double-bit ECC error",
    FaultKind.ECC_SBE_STORM: "single-bit ECC storm",
    FaultKind.ROW_REMAP_PENDING: "row remap pending",
    FaultKind.ROW_REMAP_FAILURE: "row remap failure",
    FaultKind.THERMAL: "thermal",
    FaultKind.POWER_BRAKE: "power brake",
    FaultKind.NVLINK: "NVLink errors",
    FaultKind.HUNG_GPU: "hung GPU",
    FaultKind.STRAGGLER: "straggler",
    FaultKind.MEMORY_LEAK: "memory leak",
    FaultKind.NODE_DOWN: "node down",
    FaultKind.RACK_DOWN: "rack down",
    FaultKind.SERVICE_DEGRADED: "service degraded",
    FaultKind.JOB_STALLED: "job stalled",
    FaultKind.EXPORTER_STALE: "exporter stale",
    FaultKind.UNKNOWN: "unknown",
}
"""A fault kind in the words people read (titles, the timeline, CLI text, Slack); JSON keeps its value."""


def root_key(kind: str, target: str) -> str:
    """A short, stable name of a root cause (its kind and target, ``str(Target)``): what a Slack Approve
    button carries, so that a press approves the root cause its dialog named, not one that replaced it."""
    return hashlib.sha256(f"{kind}\n{target}".encode()).hexdigest()[:16]


def fault_name(kind: str) -> str:
    """``node down`` for ``node_down``; a kind this version does not know (a newer server's) with spaces."""
    try:
        return FAULT_NAMES[FaultKind(kind)]
    except ValueError:
        return kind.replace("_", " ")


class IncidentState(enum.StrEnum):
    """Lifecycle: triggered -> acknowledged -> mitigating -> resolved (and reopened to triggered)."""

    TRIGGERED = "triggered"
    ACKNOWLEDGED = "acknowledged"
    MITIGATING = "mitigating"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class RootCause:
    """The lowest common component whose fault explains an incident's alerts."""

    kind: FaultKind
    target: Target


@dataclass(frozen=True, slots=True)
class Impact:
    """What a fault costs the workloads it touches; priority is computed from this."""

    workloads: tuple[WorkloadRef, ...] = ()
    affected_share: float = 0.0
    error_ratio: float = 0.0
    slo_burn_rate: float = 0.0
    gpus_affected: int = 0
    nodes_affected: int = 0
    spare_capacity: bool = True
    # What it costs, one item each (``1 node``, ``8 GPUs``, ``training job etl, nightly stopped``): kept
    # apart, since a workload's name may hold ", " (a Slurm job's), so the joined text cannot be split back.
    parts: tuple[str, ...] = ()
    # Its workloads (or root) whose name another namespace shares: shown ``namespace/name``, in the title,
    # the parts and wherever people read its workloads (``alerting.impact.namesakes``).
    namespaced: frozenset[WorkloadRef] = frozenset()

    @property
    def summary(self) -> str:
        """The parts in one line: ``1 node, 8 GPUs, training job llm-70b stopped``."""
        return ", ".join(self.parts)


def impact_text(summary: str, gpus_affected: int) -> str:
    """An impact as Slack, ``incidents show`` and the postmortem say it: its summary, or what a fault that
    took no capacity degraded (``no capacity lost; 1 GPU degraded``); empty when nothing is known."""
    if summary or not gpus_affected:
        return summary
    return f"no capacity lost; {gpus_affected} GPU{'' if gpus_affected == 1 else 's'} degraded"


def percent(ratio: float) -> str:
    """A fraction as people read it: ``37%``; under 1 % with one decimal (``0.4%``), under 0.1 % ``<0.1%``,
    so that requests failing or capacity lost never reads ``0%``; within 1 % of all alike (``99.6%``,
    ``>99.9%``), so that a service some requests still reach never reads ``100%``. None, all, a negative or
    NaN as they are (NaN is no small ratio)."""
    if not 0 < ratio < 1 or 0.01 <= ratio <= 0.99:
        return f"{ratio:.0%}"
    near = min(ratio, 1 - ratio)  # how far from none or from all: the two ends read alike
    if near >= 0.001:
        return f"{ratio:.1%}"
    return "<0.1%" if ratio < 0.5 else ">99.9%"


@dataclass(frozen=True, slots=True)
class TimelineEvent:
    """One entry on an incident's timeline."""

    at: datetime
    kind: str
    message: str
    data: Mapping[str, Any] = field(default_factory=dict)
    # Its row in the store (``timeline.seq``), where it came from one: tells apart two events alike in all
    # else (a note said twice at one instant). Not part of equality: an event is what it says.
    seq: int | None = field(default=None, compare=False)


@dataclass(slots=True)
class Incident:
    """A group of alerts explained by one fault, with a priority and a lifecycle."""

    id: str
    title: str
    priority: Priority
    state: IncidentState
    root_cause: RootCause
    opened_at: datetime
    alert_fingerprints: list[str] = field(default_factory=list)
    impact: Impact = field(default_factory=Impact)
    timeline: list[TimelineEvent] = field(default_factory=list)
    actions: list[ActionResult] = field(default_factory=list)
    resolved_at: datetime | None = None
    last_opened_at: datetime | None = None  # the latest reopen (``opened_at`` when it never reopened)
    merged_into: str | None = None  # the incident that took its alerts (it is resolved then)


# --- remediation -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RemediationRequest:
    """Ask to run one named action against one target."""

    action: str
    target: Target
    params: Mapping[str, Any] = field(default_factory=dict)
    incident_id: str | None = None
    reason: str = ""
    dry_run: bool = True


class ActionOutcome(enum.StrEnum):
    """How an action ended."""

    SUCCEEDED = "succeeded"
    FAILED = "failed"
    REFUSED = "refused"
    DRY_RUN = "dry_run"


@dataclass(frozen=True, slots=True)
class ActionResult:
    """What happened when an action ran (or was refused)."""

    request: RemediationRequest
    outcome: ActionOutcome
    started_at: datetime
    ended_at: datetime
    message: str = ""
    details: Mapping[str, Any] = field(default_factory=dict)
