"""What the Kubernetes API says a node has and a pod requests: GPU counts from ``status.capacity`` and
``allocatable``, a node's ``Ready`` condition, and a pod's GPU request by the scheduler's rule."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

MIG_PREFIX = "nvidia.com/mig-"  # the GPU operator's "mixed" strategy: one resource per MIG profile


def quantity(value: Any) -> int:
    """A GPU count (``"8"``, ``8``); anything else (a malformed quantity) counts 0."""
    try:
        return max(0, int(str(value)))
    except ValueError:
        return 0


def node_gpus(node: Mapping[str, Any], resources: Sequence[str], field: str = "capacity") -> int:
    """GPUs a node has (``capacity``), or can give to pods (``allocatable``: less the GPUs the device plugin
    marks unhealthy; the capacity when the node does not say)."""
    status = node.get("status") or {}
    amounts = status.get(field) or status.get("capacity") or {}
    return sum(quantity(amounts.get(r, 0)) for r in resources)


def mig_devices(node: Mapping[str, Any], counted: Sequence[str]) -> tuple[str, ...]:
    """The MIG device resources (``nvidia.com/mig-1g.10gb``) a node has that are not among ``counted``."""
    amounts = (node.get("status") or {}).get("capacity") or {}
    return tuple(
        sorted(r for r in amounts if r.startswith(MIG_PREFIX) and r not in counted and quantity(amounts[r]))
    )


def node_ready(node: Mapping[str, Any]) -> bool:
    """Whether the node's ``Ready`` condition is ``True``."""
    for condition in (node.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return bool(condition.get("status") == "True")
    return False


def pod_gpus(pod: Mapping[str, Any], resources: Sequence[str]) -> int:
    """GPUs a pod requests, by the scheduler's rule: its containers plus its sidecars (init containers that
    keep running, ``restartPolicy: Always``), or an init container plus the sidecars started before it if
    that is more. Extended resources are set in limits (requests, if given, must equal them)."""

    def wanted(container: Mapping[str, Any]) -> int:
        spec = container.get("resources") or {}
        amounts = {**(spec.get("requests") or {}), **(spec.get("limits") or {})}
        return sum(quantity(amounts.get(r, 0)) for r in resources)

    pod_spec = pod.get("spec") or {}
    sidecars, peak = 0, 0
    for init in pod_spec.get("initContainers") or []:
        if init.get("restartPolicy") == "Always":
            sidecars += wanted(init)
        else:
            peak = max(peak, sidecars + wanted(init))
    return max(sum(wanted(c) for c in pod_spec.get("containers") or []) + sidecars, peak)


def pod_ready(status: Mapping[str, Any]) -> bool:
    """Whether a pod serves: its ``Ready`` condition, True where it has none (a pod's status always has one
    once it runs; a stand-in's may not)."""
    for condition in status.get("conditions") or []:
        if condition.get("type") == "Ready":
            return bool(condition.get("status") == "True")
    return True


def pod_finished_at(status: Mapping[str, Any]) -> float | None:
    """When the last of a pod's containers terminated (``state.terminated.finishedAt``), if it says."""
    times = []
    for container in status.get("containerStatuses") or []:
        finished = ((container.get("state") or {}).get("terminated") or {}).get("finishedAt")
        if finished:
            try:
                times.append(datetime.fromisoformat(str(finished).replace("Z", "+00:00")).timestamp())
            except ValueError:
                continue
    return max(times) if times else None


def object_key(obj: Mapping[str, Any]) -> tuple[str, str]:
    """An object's namespace (``default`` where it names none) and name."""
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or "default"), str(meta.get("name", ""))
