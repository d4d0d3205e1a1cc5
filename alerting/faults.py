"""Fault classification of an alert from its labels: what kind of fault it reports."""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping

from gpuwarden.labelnumbers import label_number
from gpuwarden.model import NODE_LABELS, FaultKind
from gpuwarden.xid import out_of_service

# Faults that take capacity away; alerts of these kinds on sibling components escalate to their parent.
OUTAGE_KINDS = frozenset({FaultKind.NODE_DOWN, FaultKind.GPU_LOST, FaultKind.RACK_DOWN, FaultKind.HUNG_GPU})
# Faults seen on a workload: symptoms, never the root cause when an infrastructure fault explains them.
SYMPTOM_KINDS = frozenset({FaultKind.JOB_STALLED, FaultKind.SERVICE_DEGRADED, FaultKind.STRAGGLER})
JOB_FAULTS = SYMPTOM_KINDS - {FaultKind.SERVICE_DEGRADED}
"""Faults of a job itself (stalled, a straggler): an alert's ``job`` label names the job, not a scrape job."""
ENVIRONMENT = frozenset({FaultKind.THERMAL, FaultKind.POWER_BRAKE})
"""Faults that can take a node or GPU down where they spread: heat, power. An XID before a node went down
is not the node's cause (the node is)."""
RACK_CAUSED = ENVIRONMENT | {FaultKind.EXPORTER_STALE}
"""What a rack's shared parts cause on several of its nodes at once: heat and power (cooling, a PDU), and
exporters cut off (its switch). Not an XID: the same application error on three nodes is one job's bug,
rolled up only as the same signal spreads (``correlation.same_signal_spread``), never to a rack fault."""

_XID_KINDS = {79: FaultKind.GPU_LOST, 48: FaultKind.ECC_DBE, 74: FaultKind.NVLINK, 95: FaultKind.ECC_DBE}

# Order matters: the first pattern found in the normalised alert name wins.
_NAME_PATTERNS: tuple[tuple[str, FaultKind], ...] = (
    ("rackdown|rackpower|powerloss|pdu", FaultKind.RACK_DOWN),
    ("nodedown|nodeunreachable|nodenotready|hostdown|instancedown|nodelost", FaultKind.NODE_DOWN),
    (
        "gpulost|gpumissing|fall(s|en)?offthebus|falloffbus|felloff(the)?bus|gpuunavailable|gpudown",
        FaultKind.GPU_LOST,
    ),
    ("rowremapfail", FaultKind.ROW_REMAP_FAILURE),
    ("rowremap|retire", FaultKind.ROW_REMAP_PENDING),
    ("jobstall|jobstuck|jobhang|trainingstall|jobstopped", FaultKind.JOB_STALLED),
    ("straggler|steptime", FaultKind.STRAGGLER),
    ("hung|gpustuck", FaultKind.HUNG_GPU),
    ("nvlink", FaultKind.NVLINK),
    ("dbe|doublebit|uncorrectable", FaultKind.ECC_DBE),
    ("sbe|singlebit|correctable|ecc", FaultKind.ECC_SBE_STORM),
    ("thermal|temperature|overheat", FaultKind.THERMAL),
    ("powerbrake|powercap|throttl|slowdown|clocksreduced|clockevent", FaultKind.POWER_BRAKE),
    ("memoryleak|memleak", FaultKind.MEMORY_LEAK),
    (
        "slo|errorrate|errors|latency|5xx|servicedown|endpointdown|burn|unavailable",
        FaultKind.SERVICE_DEGRADED,
    ),
    ("stale|exporter|scrape", FaultKind.EXPORTER_STALE),
    # The driver's request to reset the GPU or reboot its node (NVML's GPU recovery action), which follows an
    # XID: gpuwarden's own GpuRecoveryActionPending was an incident of unknown cause.
    ("xid|recoveryaction", FaultKind.XID),
)
_COMPILED = tuple((re.compile(p), k) for p, k in _NAME_PATTERNS)
_SCRAPE_DOWN = re.compile("instancedown|targetdown")
_RECOVERY_NAME = re.compile("recoveryaction")
# NVML_GPU_RECOVERY_ACTION_* codes that leave the GPU in service: none (0), drain P2P (3), recover the IMEX
# domain (5).
_IN_SERVICE_ACTIONS = frozenset({0, 3, 5})
# Scrape jobs whose target is the node itself: node exporter's, the kubelet's (and its cAdvisor).
_NODE_JOB = re.compile(r"^(node|node[-_]exporter|kubelet|cadvisor|kubernetes-nodes(-cadvisor)?)$")

# A generic anomaly alert (gpuwarden's ``GpuwardenAnomaly``, vmanomaly-style rules) names the series it
# scored in ``for`` (or ``metric``/``__name__``) and the detector in ``model``: the series says what broke.
_METRIC_PATTERNS: tuple[tuple[str, FaultKind], ...] = (
    ("temp", FaultKind.THERMAL),
    ("nvlink", FaultKind.NVLINK),
    ("eccdbe|uncorrectable", FaultKind.ECC_DBE),
    ("eccsbe", FaultKind.ECC_SBE_STORM),
    # A training step's time or duration (the training exporter's
    # ``gpuwarden_training_step_duration_seconds``, which the level-shift detector scores): its shift up was
    # an incident of unknown cause. Only a rise: steps that got faster are no straggler.
    ("steptime|stepduration", FaultKind.STRAGGLER),
    # A request's latency or error share (the inference server's span metrics, a query named after them):
    # an 8x rise of an inference server's P95 was an incident of unknown cause at P3, where an alert named
    # so is a service degraded (P2). Only a rise: a latency or error share that fell is no fault.
    (
        "latency|requestduration|timetofirsttoken|timeperoutputtoken|ttft|tpot|errorratio|errorrate|5xx",
        FaultKind.SERVICE_DEGRADED,
    ),
)
_METRIC_COMPILED = tuple((re.compile(p), k) for p, k in _METRIC_PATTERNS)
_RISE_ONLY = frozenset({FaultKind.THERMAL, FaultKind.SERVICE_DEGRADED, FaultKind.STRAGGLER})
_MODEL_KINDS = {"thermal": FaultKind.THERMAL}


def xid_code(labels: Mapping[str, str], names: tuple[str, ...] = ("xid", "xid_code", "code")) -> int | None:
    """The XID code an alert carries (``xid``, ``xid_code`` or ``code`` label: the first of ``names``), if
    any."""
    for name in names:
        raw = labels.get(name)
        code = None if raw is None else label_number(raw)  # most alerts carry none of these
        if code is not None:
            return code
    return None


def anomaly_subject(labels: Mapping[str, str]) -> str:
    """``DCGM_FI_DEV_GPU_TEMP [fleet]``: the series and the detector of a generic anomaly alert, which alone
    tell it from its like on the same GPU; empty for an alert whose name says what broke (``GpuLost``)."""
    metric = labels.get("for") or labels.get("metric") or labels.get("__name__")
    detector = detector_of(labels)
    name = normalised(labels.get("alertname", ""))
    if not metric or not detector or any(pattern.search(name) for pattern, _ in _COMPILED):
        return ""
    return f"{metric} [{detector}]"


def is_outage(kind: FaultKind, labels: Mapping[str, str]) -> bool:
    """True when the fault takes the GPU's capacity away: an outage kind, a double-bit ECC error, an XID
    whose catalog action
    is a GPU reset or a reboot (XID 119 GSP timeout, 46, 62, ...: the GPU does no work until then),
    whatever kind the XID is classified as (XID 48 and 95, double-bit ECC, are ``ecc_dbe`` and out of
    service), or the driver's pending recovery action (``awaits_recovery``)."""
    return takes_capacity(kind, alert_xid(kind, labels)) or awaits_recovery(kind, labels)


def awaits_recovery(kind: FaultKind, labels: Mapping[str, str]) -> bool:
    """Whether the alert is the driver's request to reset the GPU or reboot its node (NVML's GPU recovery
    action, gpuwarden's ``GpuRecoveryActionPending``): the GPU does no work until then. It fires as long as
    the request stands, after the XID that caused it (48: a double-bit ECC error) has resolved as an event:
    without it, a DBE's incident fell from P2 (P0 with a job stopped) to P3 while the GPU still awaited its
    reset. An alert whose ``recovery_action`` label is 3 (``NVML_GPU_RECOVERY_ACTION_DRAIN_P2P``) is not one:
    NVIDIA asks only that the processes doing peer-to-peer traffic end, after which the driver names the
    next action (a reset, 4, or none), so the GPU itself is not out of service; counted as one, it made a
    P0 of a training job that a reset would not have stopped. Nor is 5
    (``NVML_GPU_RECOVERY_ACTION_RECOVER_IMEX_DOMAIN``): the IMEX domain (memory shared over multi-node NVLink)
    is to be recovered, not the GPU reset or its node rebooted. Without the label (a rule of one's own), any
    pending action counts."""
    if kind is not FaultKind.XID or _RECOVERY_NAME.search(normalised(labels.get("alertname", ""))) is None:
        return False
    return label_number(labels.get("recovery_action")) not in _IN_SERVICE_ACTIONS


def takes_capacity(kind: FaultKind, code: int | None) -> bool:
    """``is_outage`` of an alert of ``kind`` whose XID code (``alert_xid``) is ``code``."""
    if kind in OUTAGE_KINDS or kind is FaultKind.ECC_DBE:
        return True  # a double-bit ECC error needs the GPU reset (XID 48), however the alert is named
    return code is not None and out_of_service(code)


def alert_xid(kind: FaultKind, labels: Mapping[str, str]) -> int | None:
    """The XID code an alert of ``kind`` reports: an XID alert's may be in ``code``; another kind's ``code``
    may be anything (an exit code), so only its ``xid`` or ``xid_code`` counts."""
    return xid_code(labels) if kind is FaultKind.XID else xid_code(labels, ("xid", "xid_code"))


def classify(labels: Mapping[str, str]) -> FaultKind:
    """The fault kind: an explicit ``fault_kind`` label wins, then the XID code of an alert named for XIDs,
    the alert name, the XID code in an ``xid``/``xid_code`` label of an alert named otherwise
    (``GpuHardwareError{xid="79"}``), the series (a temperature's only when it rose: ``deviation`` not
    ``down``)."""
    explicit = labels.get("fault_kind") or labels.get("fault") or ""
    metric = labels.get("for") or labels.get("metric") or labels.get("__name__") or ""
    alertname, job = labels.get("alertname", ""), labels.get("job", "")
    if not any(labels.get(k) for k in ("instance", *NODE_LABELS)):
        job = ""  # a scrape job's alert about no one target (kube-prometheus' TargetDown): not a node's
    code, own = xid_code(labels), xid_code(labels, ("xid", "xid_code"))
    deviation = labels.get("deviation", "")
    return _classify(
        explicit, alertname, code, detector_of(labels), metric, job=job, own_xid=own, deviation=deviation
    )


def detector_of(labels: Mapping[str, str]) -> str:
    """The anomaly detector that raised an alert (its ``model`` label), empty for another alert."""
    # The anomaly service moves its detector to ``model_alias`` when the series has a ``model`` of its own.
    return labels.get("model_alias") or labels.get("model", "")


def normalised(name: str) -> str:
    """A name as the patterns compare it: lower case, letters and digits only (``chat_service_down`` and
    ``ChatServiceDown`` alike)."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


@functools.lru_cache(maxsize=4096)
def _classify(
    explicit: str,
    alertname: str,
    code: int | None,
    model: str,
    metric: str,
    *,
    job: str = "",
    own_xid: int | None = None,
    deviation: str = "",
) -> FaultKind:
    # Cached: a storm repeats a few alert names thousands of times, each would run the patterns.
    if explicit in FaultKind.__members__.values():
        return FaultKind(explicit)
    name = normalised(alertname)
    if job and _SCRAPE_DOWN.search(name):
        # Prometheus' `up == 0`: node exporter's and the kubelet's targets are their node, so it is down
        # (or cut off); a GPU or application exporter's target is only that exporter.
        return FaultKind.NODE_DOWN if _NODE_JOB.search(job.lower()) else FaultKind.EXPORTER_STALE
    if "xid" in name and code is not None:
        return _XID_KINDS.get(code, FaultKind.XID)
    for pattern, kind in _COMPILED:
        if pattern.search(name):
            return kind
    if own_xid is not None:  # ``code`` alone may be anything (an exit code); ``xid`` is an XID
        return _XID_KINDS.get(own_xid, FaultKind.XID)
    if model in _MODEL_KINDS:
        return _MODEL_KINDS[model]
    metric = normalised(metric)
    for pattern, kind in _METRIC_COMPILED:
        if pattern.search(metric):
            # A temperature below its band is a GPU cooling (idle after a reset, a job that ended), not
            # heat: only a rise is thermal; so are faster answers, fewer errors and faster steps no fault.
            return FaultKind.UNKNOWN if kind in _RISE_ONLY and deviation == "down" else kind
    return FaultKind.UNKNOWN
