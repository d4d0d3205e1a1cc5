"""The pods of the Kubernetes inventory and the workloads they make: a unit (replica or worker) per group of
running pods, plus the units of pods lost with their node (``KubernetesInventory`` says which are kept)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from alerting.inventory import RUNNING, GpuKey, WorkloadInfo
from gpuwarden.model import WorkloadRef, workload_from_dict, workload_to_dict


@dataclass(slots=True)
class ListedPod:
    """A pod bound to a GPU node, as one read listed it."""

    key: tuple[str, str]  # namespace, name
    node: str
    count: int
    workload: WorkloadRef
    unit: str  # pods with the same unit serve one replica together
    aliases: tuple[str, ...]
    running: bool = True  # False: bound, but Pending (pulling its image, say): not serving yet
    gpus: frozenset[GpuKey] = frozenset()
    size: int = 0  # how many of ``gpus`` it surely holds (``count``, unless its GPUs are MIG slices)
    slices: int = 0  # how many of its ``count`` are MIG slices
    # Failed on a healthy node (its own crash, a GPU fault it died of): when, if its status says
    failed_at: float | None = None
    failed_here: bool = False
    ready: bool = True  # its Ready condition (not False where the pod does not say): serving traffic
    uid: str = ""  # metadata.uid: a pod deleted and created again under its name (a StatefulSet's) is another

    @property
    def ident(self) -> tuple[str, str, str]:
        """Which pod this is: its namespace, name and uid (its node where the API gave no uid, as a pod
        never changes node); a pod created again under the same name is another pod."""
        return (*self.key, self.uid or f"node:{self.node}")


@dataclass(frozen=True, slots=True)
class KeptPod:
    """A pod lost with its node, or failed, kept placed a while (``KubernetesInventory``)."""

    since: float
    pod: ListedPod
    units_before: int  # how many units its workload served when it was lost


def unit_workloads(placed: Sequence[ListedPod], kept: Sequence[KeptPod]) -> list[WorkloadInfo]:
    """Workloads of the placed pods: one unit per group of Running pods (a Pending pod is known by name but
    serves nothing yet), plus units lost with their node while the workload serves fewer units than it did
    before the loss (until its replacements run)."""
    grouped: dict[WorkloadRef, dict[str, list[ListedPod]]] = {}
    pending: dict[WorkloadRef, list[ListedPod]] = {}
    for pod in sorted(placed, key=lambda p: p.key):
        if pod.running:
            grouped.setdefault(pod.workload, {}).setdefault(pod.unit, []).append(pod)
        else:
            pending.setdefault(pod.workload, []).append(pod)
            grouped.setdefault(pod.workload, {})
    stopped: set[tuple[str, str, str]] = set()  # the kept pods placed as units
    for k in sorted(kept, key=lambda k: (-k.since, k.pod.key)):  # the latest losses are the missing units
        units = grouped.setdefault(k.pod.workload, {})
        if k.pod.unit in units or len(units) < k.units_before:
            units.setdefault(k.pod.unit, []).append(k.pod)
            stopped.add(k.pod.ident)
    out = []
    for ref, units in grouped.items():
        members = [p for unit in units.values() for p in unit] + pending.get(ref, [])
        aliases = tuple(dict.fromkeys(a for p in members for a in p.aliases if a != ref.name))
        lost = sum(1 for unit in units.values() if any(p.ident in stopped for p in unit))
        keys = tuple(frozenset().union(*(p.gpus for p in unit)) for unit in units.values())
        sizes = tuple(sum(p.size for p in unit) for unit in units.values())
        exact = all(size >= len(gpus) for size, gpus in zip(sizes, keys, strict=True))
        out.append(
            WorkloadInfo(
                ref,
                keys,
                aliases=aliases,
                pods=tuple(dict.fromkeys(p.key[1] for p in members)),  # a replacement of a kept pod's name
                state=_state(units.values(), stopped, bool(pending.get(ref))),
                kept=lost,
                unready=tuple(
                    i
                    for i, unit in enumerate(units.values())
                    if any(not p.ready and p.ident not in stopped for p in unit)
                ),
                # pods sharing a node whose indices are unknown: on some of their keys (see ``capacity``)
                sizes=() if exact else sizes,
                unit_pods=() if exact else tuple(tuple(p.key[1] for p in unit) for unit in units.values()),
            )
        )
    return out


def _state(units: Iterable[list[ListedPod]], stopped: set[tuple[str, str, str]], pending: bool) -> str:
    """``running`` while a pod of the workload runs, else ``pending`` (bound, not started), else
    ``stopped`` (only pods kept after they were lost)."""
    pods = [p for unit in units for p in unit]
    if any(p.ident not in stopped for p in pods):
        return RUNNING
    return "pending" if pending else "stopped"


def kept_pod_data(kept: KeptPod) -> dict[str, Any]:
    """A kept pod as the store keeps it (``alerting.kept_inventory``), for a reader started later."""
    pod = kept.pod
    return {
        "namespace": pod.key[0],
        "name": pod.key[1],
        "uid": pod.uid,
        "node": pod.node,
        "count": pod.count,
        "workload": workload_to_dict(pod.workload),
        "unit": pod.unit,
        "aliases": list(pod.aliases),
        "running": pod.running,
        "gpus": sorted([cluster, node, index] for cluster, node, index in pod.gpus),
        "size": pod.size,
        "slices": pod.slices,
        "failed_at": pod.failed_at,
        "failed_here": pod.failed_here,
        "ready": pod.ready,
        "units_before": kept.units_before,
    }


def kept_pod_from_data(since: float, data: Mapping[str, Any]) -> KeptPod:
    """A pod ``kept_pod_data`` wrote, kept since ``since``; ``ValueError`` when it does not read."""
    try:
        failed_at = data.get("failed_at")
        pod = ListedPod(
            (str(data["namespace"]), str(data["name"])),
            str(data["node"]),
            int(data["count"]),
            workload_from_dict(data["workload"]),
            str(data["unit"]),
            tuple(str(a) for a in data.get("aliases", ())),
            running=bool(data.get("running", True)),
            gpus=frozenset((str(c), str(n), int(i)) for c, n, i in data.get("gpus", ())),
            size=int(data.get("size", 0)),
            slices=int(data.get("slices", 0)),
            failed_at=None if failed_at is None else float(failed_at),
            failed_here=bool(data.get("failed_here", False)),
            ready=bool(data.get("ready", True)),
            uid=str(data.get("uid", "")),
        )
        return KeptPod(float(since), pod, int(data["units_before"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"a kept pod does not read: {exc!r}") from exc
