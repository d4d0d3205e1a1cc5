"""Incident titles: what broke and what it costs, in one line short enough for every place it is shown.

``rack r07 lost power: 8 nodes, 64 GPUs, training job llm-70b stopped``. The title names at most
``TITLE_WORKLOADS`` workloads and counts the rest (``and 996 more services``): it is the API's and the CLI's
row, Slack's header and notification text, the webhook's summary and the postmortem's heading, and a fault
under 1,000 services once made a 71,000-character title that Slack refused (``msg_too_long``). Every
workload stays in the incident's impact (``impact.workloads``, ``impact.summary``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from alerting.impact import Assessment
from alerting.inventory import Inventory
from alerting.member import Member, onset_key
from alerting.topology import RACK_DEPTH, Path, contains, target_label
from gpuwarden.model import (
    FAULT_NAMES,
    ClusterRef,
    FaultKind,
    GpuRef,
    NodeRef,
    RackRef,
    RootCause,
    Target,
    WorkloadRef,
)
from gpuwarden.xid import xid_catalog

TITLE_WORKLOADS = 5
"""Workloads a title names; with more, it names the first ``TITLE_WORKLOADS - 1`` and counts the rest."""
TITLE_BUDGET = 300
"""Characters: workloads after the first are named only while the title stays within this."""
NAME_MAX = 200
"""Characters of one name in a title (a node's, an alert's, a job's); a longer one is cut with "…"."""
ABSORBED_MAX = 100
"""Characters of an absorbed incident's title where the incident that took it in says so."""
SERIES_SHOWN = 3
"""Series a degraded service's title names (``degraded_series``); with more, the first ones and a count."""
SERIES_MAX = 60
"""Characters of one series, model or route name there."""

_COUNT = re.compile(r"[0-9]+ (nodes?|GPUs?)")
_KINDS = (("inference service ", "service", "services"), ("training job ", "training job", "training jobs"))

_PROGRESS = re.compile(r"; [0-9]+ of [0-9]+ (GPUs|nodes) recovered\Z")

SOURCE_STALE = "GpuwardenSourceStale"
"""The anomaly service's alert on its own input (a Prometheus it cannot read, a query that fails): not a fault
anywhere in the fleet, so titled for the source (``own_source``), not as an alert of unknown location."""
_OWN_SOURCE = "gpuwarden anomaly "

_PHRASES = {
    FaultKind.RACK_DOWN: "lost power",
    FaultKind.NODE_DOWN: "is down",
    FaultKind.GPU_LOST: "lost (fell off the bus)",
    FaultKind.JOB_STALLED: "stalled",
    FaultKind.SERVICE_DEGRADED: "degraded",
}


def progress(members: Sequence[Member], root_path: Path) -> str:
    """``; 3 of 8 nodes recovered``: of the nodes that alerts under the root cause at ``root_path`` were on
    (GPUs, where none was on a whole node), how many none fires on any more; empty while none, and once
    nothing fires (the incident is over, not recovering)."""
    if not root_path:
        return ""
    under = [m for m in members if m.is_infra and contains(root_path, m.location.path)]
    whole = any(len(m.location.path) == RACK_DEPTH + 1 for m in under)
    depth, unit = (RACK_DEPTH + 1, "nodes") if whole else (RACK_DEPTH + 2, "GPUs")
    places = {m.location.path[:depth] for m in under if len(m.location.path) >= depth}
    firing = {
        m.location.path[:depth] for m in under if (m.firing or m.flapping) and len(m.location.path) >= depth
    }
    back = len(places - firing)
    return f"; {back} of {len(places)} {unit} recovered" if back and firing else ""


def without_progress(text: str) -> str:
    """A title without its ``progress``: what happened, once nothing fires any more."""
    return _PROGRESS.sub("", text)


def seen(members: Sequence[Member]) -> str:
    """What the earliest firing alert reports: ``GpuwardenAnomaly on DCGM_FI_DEV_POWER_USAGE``.

    Used when the fault kind is unknown, so the title names the observation instead of "unknown", and for
    an XID root, so the title names the XID: ``XID 119 (GSP RPC Timeout)``.
    """
    live = [m for m in members if m.firing] or list(members)
    if not live:
        return ""
    codes = {m.signal[2] for m in live if m.kind is FaultKind.XID}  # an XID alert's code (``alert_xid``)
    if len(codes) == 1 and None not in codes:
        (code,) = codes
        assert code is not None
        entry = xid_catalog().get(code)
        return (
            f"XID {code} ({entry.description})" if entry is not None and entry.description else f"XID {code}"
        )
    first = min(live, key=onset_key)
    name = first.labels.get("alertname", "alert")
    if not first.location.path and not first.location.workloads:
        if name == SOURCE_STALE:
            return own_source(first.labels)
        return f"{name} {_identifying(first.labels)}".rstrip()  # nothing else says which alert it is
    metric = first.labels.get("for") or first.labels.get("__name__") or first.labels.get("metric")
    return f"{name} on {metric}" if metric else name


def degraded_series(members: Sequence[Member]) -> str:
    """``inference_latency_p99 on /v1/chat/completions, inference_error_ratio on /v1/completions``: what the
    firing service-degraded ``members`` report, earliest first, at most ``SERIES_SHOWN`` (then how many
    more), so that a service's title says whether its latency, its errors or its throughput went wrong, and
    on which route and model. The series an anomaly alert scored (``for``), else the alert's name."""
    degraded = [m for m in members if m.kind is FaultKind.SERVICE_DEGRADED]
    said: list[str] = []
    for member in sorted([m for m in degraded if m.firing or m.flapping] or degraded, key=onset_key):
        text = _series_of(member.labels)
        if text and text not in said:
            said.append(text)
    if len(said) > SERIES_SHOWN:
        said[SERIES_SHOWN - 1 :] = [f"and {len(said) - SERIES_SHOWN + 1} more"]
    return ", ".join(said)


def _series_of(labels: Mapping[str, str]) -> str:
    """``inference_latency_p99 of model llama-70b on /v1/chat/completions``: one alert's series (or name),
    the model it serves and its route, from the labels the inference servers' metrics carry."""
    series = labels.get("for") or labels.get("metric") or labels.get("alertname", "")
    # An anomaly alert's `model` is its detector unless the series had one of its own (then `model_alias`).
    model = labels.get("model_name") or (labels.get("model", "") if labels.get("model_alias") else "")
    route = labels.get("route") or labels.get("http_route") or ""
    return (
        shortened(series, SERIES_MAX)
        + (f" of model {shortened(model, SERIES_MAX)}" if model else "")
        + (f" on {shortened(route, SERIES_MAX)}" if route else "")
    )


def carried(members: Iterable[Member]) -> frozenset[WorkloadRef]:
    """The workloads the firing (or flapping) ``members``' own labels name (``slurm_job``, a pod, a known
    ``job`` or ``service``, as ``topology.locate`` read them: not a scrape job's ``job``, nor a workload the
    inventory only puts on their GPUs, which may not hold the faulty one)."""
    return frozenset(w for m in members if m.firing or m.flapping for w in m.location.workloads)


def own_source(labels: Mapping[str, str]) -> str:
    """``gpuwarden anomaly source prometheus (http://prom:9090) stale``, or ``gpuwarden anomaly query temp
    of prometheus (http://prom:9090) stale``: what a ``SOURCE_STALE`` alert's labels say the anomaly service
    cannot read."""
    source = shortened(labels.get("source") or "?")
    server = labels.get("server")
    where = f"{source} ({shortened(server)})" if server else source
    query = labels.get("query")
    what = f"query {shortened(query)} of {where}" if query else f"source {where}"
    return f"{_OWN_SOURCE}{what} stale"


def _identifying(labels: Mapping[str, str], most: int = 4) -> str:
    """``{a="1", b="2"}``: the labels that tell an alert from others of its name (not its severity)."""
    shown = [f'{k}="{v}"' for k, v in sorted(labels.items()) if k not in ("alertname", "severity")]
    if not shown:
        return ""
    return "{" + ", ".join(shown[:most] + (["..."] if len(shown) > most else [])) + "}"


def title_cluster(target: Target, path: Path, inventory: Inventory | None) -> str:
    """The cluster a title (and the timeline's root cause) names its root cause in: only in a fleet of more
    than one cluster, where ``rack r07`` or ``inference service llama`` may be either's. The root's own
    cluster, else that of its place (``path``); empty when neither is known, or the root is a cluster."""
    if inventory is None or isinstance(target, ClusterRef) or len(inventory.clusters()) < 2:
        return ""
    own = target.cluster if isinstance(target, RackRef | NodeRef | WorkloadRef) else ""
    return own or (path[0] if path else "")


def root_cluster(target: Target, inventory: Inventory | None) -> str:
    """``title_cluster`` of a root cause as stored (no path): a GPU's cluster is its node's."""
    path: Path = ()
    if isinstance(target, GpuRef) and inventory is not None:
        node = inventory.node(target.node)
        key = inventory.gpu_by_uuid(target.uuid) if node is None and target.uuid else None
        path = (node.cluster,) if node is not None else (key[0],) if key is not None else ()
    return title_cluster(target, path, inventory)


def title(
    root: RootCause,
    assessment: Assessment,
    observed: str = "",
    *,
    placed: bool = False,
    cluster: str = "",
    workloads: Iterable[WorkloadRef] = (),
    series: str = "",
) -> str:
    """``rack r07 lost power: 8 nodes, 64 GPUs, training job llm-70b stopped``. ``placed``: the root has a
    place in the topology (a cluster without a name is still a place when its alerts name their nodes).
    ``cluster``: the root's, said after it (``title_cluster``). ``workloads``: those its alerts carry
    (``carried``), named after the root where the impact names none (a fault that stops nothing: ``gpu
    node-01/0 thermal (training job 8171)``). ``series``: what a degraded service's alerts report
    (``degraded_series``), said after it: ``inference service llama degraded (inference_latency_p99 on
    /v1/chat/completions)``."""
    if (root.kind is FaultKind.UNKNOWN and observed) or (
        root.kind is FaultKind.XID and observed.startswith("XID ")
    ):
        phrase = observed
    elif root.kind in (FaultKind.NODE_DOWN, FaultKind.GPU_LOST) and isinstance(
        root.target, RackRef | ClusterRef
    ):
        phrase = "partial outage"  # outages on several of its nodes, but not two whole nodes down
    elif root.kind is FaultKind.GPU_LOST and isinstance(root.target, NodeRef):
        phrase = "GPUs lost (fell off the bus)"  # some of its GPUs, not the node
    elif (
        root.kind is FaultKind.NODE_DOWN and isinstance(root.target, NodeRef) and not assessment.root_down_now
    ):
        phrase = "was down"  # back, while other alerts of it still fire (a GPU of it still lost)
    elif root.kind is FaultKind.RACK_DOWN and not assessment.root_down_now:
        phrase = "lost power, partly back"  # some of its nodes down now, or down again
    else:
        phrase = _PHRASES.get(root.kind, FAULT_NAMES[root.kind])
    namespaced = root.target in assessment.impact.namespaced
    label = target_label(root.target, namespaced=namespaced)
    if isinstance(root.target, ClusterRef) and not root.target.name and observed and not placed:
        # No label placed it (no cluster, node, GPU or workload): what it is, and that where is unknown;
        # the anomaly service's own source is not somewhere in the fleet.
        own = observed.startswith(_OWN_SOURCE)
        phrase, label = shortened(observed) + ("" if own else ", location unknown"), ""
    parts = list(assessment.impact.parts)
    if f"{label} unavailable" in parts:  # a service said down: said once, not "degraded: ... unavailable"
        parts.remove(f"{label} unavailable")
        phrase = "unavailable"
    if label and cluster:
        label = target_label(root.target, namespaced=namespaced, cluster=cluster)
    head = f"{shortened(label)} {shortened(phrase)}".lstrip()
    # Which of a service's series went wrong (its latency, errors, throughput; which route): "degraded" alone
    # sent the on-call to the dashboards to find out.
    degraded = root.kind is FaultKind.SERVICE_DEGRADED and phrase == _PHRASES[root.kind]  # not "unavailable"
    said = series if series and label and degraded else ""
    if all(_COUNT.fullmatch(p) for p in parts):
        # Heat, a power brake, ECC, NVLink: no workload stopped, but the alerts say whose GPU it is, as their
        # timeline descriptions do ("Slurm job 8171"). Not those the impact only may put on the GPU.
        named = sorted(
            target_label(w, namespaced=w in assessment.impact.namespaced)
            for w in set(workloads) - {root.target}
        )
        if named:
            said = f"{said}; {_listed(head, named)}" if said else _listed(head, named)
    head += f" ({said})" if said else ""
    return f"{head}: {_listed(head, parts)}" if parts else head


def shortened(name: str, most: int = NAME_MAX) -> str:
    """A name cut to ``most`` characters, the last one "…" (a 2,500-character host name label is not a
    title)."""
    return name if len(name) <= most else name[: most - 1] + "…"


def _listed(head: str, parts: list[str]) -> str:
    """The impact's counts, then its workloads: every one when they are few and short, else the first ones
    and how many more (``and 996 more services``), never a name cut in the middle of a list."""
    if sum(not _COUNT.fullmatch(p) for p in parts) <= TITLE_WORKLOADS and (
        len(head) + len(", ".join(parts)) + 2 <= TITLE_BUDGET
    ):
        return ", ".join(parts)
    counts = [p for p in parts if _COUNT.fullmatch(p)]
    named = [p for p in parts if not _COUNT.fullmatch(p)]
    shown = [shortened(named[0])] if named else []
    for part in named[1 : TITLE_WORKLOADS - 1]:
        if len(head) + len(", ".join([*counts, *shown, part])) + 2 > TITLE_BUDGET:
            break
        shown.append(part)
    rest = named[len(shown) :]
    return ", ".join([*counts, *shown, *([f"and {_more(rest)}"] if rest else [])])


def _more(rest: list[str]) -> str:
    """``996 more services``: the kind when every one left is of one kind, else workloads."""
    for prefix, one, many in _KINDS:
        if all(p.startswith(prefix) for p in rest):
            return f"{len(rest)} more {one if len(rest) == 1 else many}"
    return f"{len(rest)} more workload{'' if len(rest) == 1 else 's'}"
