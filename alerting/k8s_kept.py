"""What the Kubernetes inventory keeps in the store (``alerting.kept_inventory``) and takes back when a reader
starts: the pods it keeps after their loss with the places of their nodes, and each node as last listed with
the GPU pods placed on it.

The nodes as last listed are what a restarted reader judges the first list against: a node deleted while no
``serve`` ran (the autoscaler scaled it in, ``kubectl delete node`` during an upgrade) is not listed at the
first read, and its pods are gone with it. Without them the restarted reader never knew the node: the
incident open on it lost its cluster and rack at its next alert, and the replicas it stopped; now such a
node's pods are lost at that read, as they would have been had serve run, and the node is ``deleted``
while they are kept.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from alerting.inventory import NodeInfo
from alerting.k8s_units import KeptPod, ListedPod, kept_pod_data, kept_pod_from_data
from alerting.kept_inventory import LISTED, POD, kept_nodes, node_data, node_from_data, node_places

logger = logging.getLogger(__name__)

Rows = dict[tuple[str, str], tuple[float, Mapping[str, Any]]]
Ident = tuple[str, str, str]


@dataclass(slots=True)
class TakenBack:
    """What a reader before this one kept: its kept pods, the places of nodes, the GPU pods placed on each
    node it last listed, since when it listed each, and its uid then."""

    kept: dict[Ident, KeptPod] = field(default_factory=dict)
    nodes: dict[str, NodeInfo] = field(default_factory=dict)
    placed: dict[Ident, ListedPod] = field(default_factory=dict)
    listed: dict[str, float] = field(default_factory=dict)
    uids: dict[str, str] = field(default_factory=dict)


def take_back(stored: Mapping[tuple[str, str], tuple[float, Mapping[str, Any]]]) -> TakenBack:
    """The rows ``kept_rows`` wrote, as a reader takes them back; one that does not read is left out with a
    warning."""
    out = TakenBack(nodes=kept_nodes(stored, "kubernetes"))
    for (kind, name), (since, data) in stored.items():
        try:
            if kind == POD:
                kept = kept_pod_from_data(since, data)
                out.kept[kept.pod.ident] = kept
            elif kind == LISTED:
                node = node_from_data(data)
                pods = [kept_pod_from_data(since, p).pod for p in data.get("pods", ())]
                out.nodes.setdefault(name, node)
                out.listed[name] = float(since)
                out.uids[name] = str(data.get("uid", ""))
                out.placed.update((p.ident, p) for p in pods if p.node == name)
        except (TypeError, ValueError) as exc:
            logger.warning("kubernetes inventory: kept %s %s left out: %s", kind, name, exc)
    return out


class ListedRows:
    """The rows a reader keeps (``kept_rows``), with each node's ``LISTED`` row made again only where its
    place, uid or pods changed: a large cluster's read changes few, and a row made again is compared in full
    with the one saved (``KeptSync.persist``), a row kept as it was by identity."""

    def __init__(self) -> None:
        self._made: dict[str, tuple[tuple[Any, ...], tuple[float, Mapping[str, Any]]]] = {}

    def rows(
        self,
        kept: Mapping[Ident, KeptPod],
        nodes: Mapping[str, NodeInfo],
        listed: Mapping[str, float],
        placed: Iterable[ListedPod],
        uids: Mapping[str, str],
    ) -> Rows:
        """The kept pods and the places of the nodes they were on; and each node listed now (``listed``:
        since when) with its uid and the GPU pods ``placed`` on it."""
        ran: dict[str, float] = {}
        for k in kept.values():
            ran[k.pod.node] = min(k.since, ran.get(k.pod.node, k.since))
        rows: Rows = {(POD, "/".join(ident)): (k.since, kept_pod_data(k)) for ident, k in kept.items()}
        rows.update(node_places(nodes, ran))
        on: dict[str, list[ListedPod]] = {}
        for pod in placed:
            on.setdefault(pod.node, []).append(pod)
        made = {}
        for name, since in listed.items():
            if name not in nodes:
                continue
            pods = sorted(on.get(name, ()), key=lambda p: p.ident)
            key = (since, _place(nodes[name]), uids.get(name, ""), tuple(_pod_key(p) for p in pods))
            known = self._made.get(name)
            if known is None or known[0] != key:
                data = [kept_pod_data(KeptPod(0.0, p, 0)) for p in pods]
                known = (key, (since, {**node_data(nodes[name]), "uid": uids.get(name, ""), "pods": data}))
            made[name] = known
            rows[LISTED, name] = known[1]
        self._made = made
        return rows


def _place(node: NodeInfo) -> tuple[Any, ...]:
    """What ``node_data`` keeps of a node."""
    return (
        node.name, node.cluster, node.rack, node.gpu_count, node.gpu_uuids, node.partitions, node.addresses,
        node.features,
    )  # fmt: skip


def _pod_key(pod: ListedPod) -> tuple[Any, ...]:
    """What ``kept_pod_data`` keeps of a pod."""
    return (
        pod.ident, pod.node, pod.count, pod.workload, pod.unit, pod.aliases, pod.running, pod.gpus, pod.size,
        pod.slices, pod.failed_at, pod.failed_here, pod.ready,
    )  # fmt: skip
