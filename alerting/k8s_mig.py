"""MIG on Kubernetes nodes: which nodes hand out MIG slices, how many physical GPUs they have, and what the
inventory can and cannot know about which GPU a pod's slices are on.

The NVIDIA GPU operator exposes MIG devices in one of two ways (its device plugin's ``mig.strategy``, which
GPU feature discovery writes to the node label ``nvidia.com/mig.strategy``):

* ``mixed``: one resource per MIG profile (``nvidia.com/mig-1g.10gb``), counted per profile in
  ``nvidia.com/mig-1g.10gb.count``; ``nvidia.com/gpu`` is left to GPUs not in MIG mode, and the label
  ``nvidia.com/gpu.count`` still counts every physical GPU of the node;
* ``single``: every GPU is split alike and ``nvidia.com/gpu`` counts MIG devices; GPU feature discovery then
  overrides ``nvidia.com/gpu.count`` with the number of MIG devices and ``nvidia.com/gpu.product`` with the
  model plus the profile (``A100-SXM4-40GB-MIG-1g.5gb``), so no label gives the physical count.

Alerts (dcgm-exporter's ``gpu``, an XID's GPU) name the physical GPU. The Kubernetes API never says which
physical GPU a pod's MIG slice is on: a pod asks for ``nvidia.com/mig-1g.10gb: 1``, the device plugin picks a
MIG device, and only the kubelet (its pod-resources API, which dcgm-exporter reads to put ``pod`` and
``namespace`` on each MIG device's series, beside ``gpu``, ``GPU_I_ID`` and ``GPU_I_PROFILE``) knows which.
So a slice's GPU is known from the exporter's series (``gpu_assignment_url``), and otherwise not at all:
such a pod is placed on every GPU of its node, and a fault on any of them counts against it (the node as a
whole), never against one pod picked by its slice number.

A MIG node's free GPUs (what a stopped job could start again on) are whole GPUs only: a pod asking for
``nvidia.com/gpu`` cannot use a MIG slice, so 56 idle 1g.10gb slices of an 8-GPU node are no room for an
8-GPU job. Under the mixed strategy they are the allocatable GPUs not in MIG mode less what pods ask of them;
under the single strategy none.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from alerting.k8s_resources import MIG_PREFIX, pod_gpus, quantity

logger = logging.getLogger("alerting.k8s_inventory")  # said where the inventory's other notices are

STRATEGY_LABEL = "nvidia.com/mig.strategy"
GPU_COUNT_LABEL = "nvidia.com/gpu.count"
PRODUCT_LABEL = "nvidia.com/gpu.product"
FULL_GPU = "nvidia.com/gpu"


@dataclass(frozen=True, slots=True)
class MigNode:
    """A node whose counted GPU resources include MIG slices: its strategy, and its physical GPUs when a label
    says (``None``: unknown, its GPUs are then numbered by resource, slices included)."""

    strategy: str
    physical: int | None


def mig_node(node: Mapping[str, Any], resources: Sequence[str]) -> MigNode | None:
    """The node's MIG profile, or None when none of its counted resources is a MIG slice."""
    labels = (node.get("metadata") or {}).get("labels") or {}
    capacity = (node.get("status") or {}).get("capacity") or {}
    strategy = str(labels.get(STRATEGY_LABEL, ""))
    slices = [r for r in resources if r.startswith(MIG_PREFIX) and quantity(capacity.get(r)) > 0]
    single = strategy == "single" and "-MIG-" in str(labels.get(PRODUCT_LABEL, "")) and FULL_GPU in resources
    if not slices and not single:
        return None
    physical = quantity(labels.get(GPU_COUNT_LABEL)) if strategy == "mixed" else 0
    return MigNode(strategy or "mixed", physical or None)


def whole_gpu_resources(resources: Sequence[str], mig: MigNode) -> tuple[str, ...]:
    """The counted resources of a MIG node that hand out whole GPUs, what a pod asking ``nvidia.com/gpu: 8``
    can get there: under the mixed strategy those that are not MIG profiles (``nvidia.com/gpu`` counts the
    GPUs not in MIG mode), under the single strategy none (every GPU is split, ``nvidia.com/gpu`` counts
    slices)."""
    if mig.strategy == "single":
        return ()
    return tuple(r for r in resources if not r.startswith(MIG_PREFIX))


def pod_slices(pod: Mapping[str, Any], resources: Sequence[str], mig: MigNode) -> int:
    """How many of the GPUs a pod requests are MIG slices on a node of this profile."""
    if mig.strategy == "single":
        return pod_gpus(pod, resources)
    return pod_gpus(pod, [r for r in resources if r.startswith(MIG_PREFIX)])


class Notices:
    """Warnings of the Kubernetes inventory, each kind said once and again only when what it is about
    changes (``about``: empty, nothing to say)."""

    def __init__(self) -> None:
        self._said: dict[str, object] = {}

    def _say(self, kind: str, about: object, message: str, *args: object) -> None:
        if about and about != self._said.get(kind):
            logger.warning(message, *args)
        self._said[kind] = about


class MigNotices(Notices):
    """Warnings about MIG nodes."""

    def left_out(self, nodes: dict[str, tuple[str, ...]]) -> None:
        """Nodes left out because their GPUs are MIG devices (the "mixed" strategy) of resources
        ``gpu_resources`` does not list, with those resources."""
        self._say_nodes(
            "left_out",
            nodes,
            "kubernetes inventory: %d nodes left out, their GPUs are MIG devices that gpu_resources does not"
            " count (%s; nodes %s): add those resources to alerting.kubernetes_inventory.gpu_resources to"
            " count each MIG device as a GPU of its node",
        )

    def partly_left_out(self, nodes: dict[str, tuple[str, ...]]) -> None:
        """Nodes counted by their full GPUs whose other GPUs are MIG devices of resources ``gpu_resources``
        does not list: those GPUs, and the pods on their slices, are not in the inventory."""
        self._say_nodes(
            "partly_left_out",
            nodes,
            "kubernetes inventory: %d nodes have GPUs in MIG mode that gpu_resources does not count (%s;"
            " nodes %s): only their full GPUs are counted and the pods on their MIG slices are not placed,"
            " so a fault there misses those pods; add those resources to"
            " alerting.kubernetes_inventory.gpu_resources",
        )

    def _say_nodes(self, kind: str, nodes: dict[str, tuple[str, ...]], message: str) -> None:
        """Say ``message`` about ``nodes`` (node -> its MIG resources left out): its count, those resources
        and the nodes' names fill its three placeholders."""
        self._say(
            kind,
            nodes,
            message,
            len(nodes),
            ", ".join(sorted({r for mig in nodes.values() for r in mig})),
            node_names(sorted(nodes)),
        )

    def unmapped(self, nodes: Sequence[str]) -> None:
        """Pods on MIG slices of these nodes whose GPU is unknown: each is placed on every GPU of its node."""
        self._say(
            "unmapped",
            tuple(sorted(nodes)),
            "kubernetes inventory: which GPU holds the MIG slices of pods on %d nodes (%s) is not known: the"
            " Kubernetes API says how many MIG devices a pod got, not on which GPU, so a fault on any GPU of"
            " such a node counts against every pod with slices there, never one picked by slice number;"
            " configure gpu_assignment_url (dcgm-exporter's MIG series carry the physical gpu and the pod)"
            " to place a GPU's fault on the pods that hold its slices",
            len(nodes),
            node_names(sorted(nodes)),
        )

    def uncounted(self, nodes: Sequence[str]) -> None:
        """MIG nodes whose physical GPU count no label gives: their GPUs are numbered by resource."""
        self._say(
            "uncounted",
            tuple(sorted(nodes)),
            "kubernetes inventory: %d MIG nodes (%s) have no physical GPU count (the label %s, which GPU"
            " feature discovery writes under the mixed MIG strategy and overrides under the single one):"
            " their GPUs are numbered as their MIG devices and GPU resources, more than they have",
            len(nodes),
            node_names(sorted(nodes)),
            GPU_COUNT_LABEL,
        )


def node_names(nodes: Sequence[str], most: int = 10) -> str:
    """The first ``most`` of ``nodes``, and ``...`` for the rest."""
    return ", ".join(nodes[:most]) + (", ..." if len(nodes) > most else "")
