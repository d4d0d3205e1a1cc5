"""The GPUs of Kubernetes nodes as the exporter labels them (``Hostname``, ``gpu``, ``UUID`` and the pod each
is assigned to), read from a PromQL query by the composition root for the Kubernetes inventory: the API says
how many GPUs a pod got, not which."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from gpuwarden.labelnumbers import label_number


@dataclass(frozen=True, slots=True)
class Assignment:
    """One GPU as the exporter labels it: node, index, UUID, and the pod it is assigned to (if any)."""

    node: str
    index: int
    uuid: str = ""
    namespace: str = ""
    pod: str = ""


def assignments_from_labels(
    rows: Iterable[Mapping[str, str]], node_label: str = "Hostname", gpu_label: str = "gpu"
) -> list[Assignment]:
    """Assignments from the label sets of a PromQL result (``Hostname``, ``gpu``, ``UUID``, ``namespace``,
    ``pod``; ``exported_pod``/``exported_namespace`` when Prometheus renamed the exporter's own because the
    scrape target had a pod label, as under the Prometheus Operator); rows without a node or a numeric index
    are skipped."""
    out = []
    for labels in rows:
        node, index = labels.get(node_label, ""), label_number(labels.get(gpu_label))
        if not node or index is None:
            continue
        if "exported_pod" in labels:
            namespace, pod = labels.get("exported_namespace", ""), labels["exported_pod"]
        else:
            namespace, pod = labels.get("namespace", ""), labels.get("pod", "")
        out.append(Assignment(node, index, labels.get("UUID", ""), namespace, pod))
    return out


def node_uuids(assigned: Sequence[Assignment]) -> dict[str, tuple[str, ...]]:
    """Per node, its GPU UUIDs by index, when every index up to the highest is known."""
    by_node: dict[str, dict[int, str]] = {}
    for a in assigned:
        if a.uuid:
            by_node.setdefault(a.node, {})[a.index] = a.uuid
    return {
        node: tuple(found[i] for i in range(len(found)))
        for node, found in by_node.items()
        if set(found) == set(range(len(found)))
    }
