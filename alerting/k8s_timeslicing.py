"""Time-sliced GPUs on Kubernetes nodes: how many physical GPUs such a node has, how many of them are free,
and what the inventory can know about which GPU a pod's replica is on.

With time-slicing (or MPS) the NVIDIA device plugin hands out each GPU as ``replicas`` shares of one
resource: a node of 2 GPUs and 4 replicas advertises ``nvidia.com/gpu: 8`` (``nvidia.com/gpu.shared`` when
``renameByDefault`` is set), and a pod asking for ``nvidia.com/gpu: 1`` gets a quarter of a GPU's time,
beside the pods holding its other replicas. GPU feature discovery labels the node with
``nvidia.com/gpu.replicas`` (the replicas per GPU, 1 without sharing), ``nvidia.com/gpu.count`` (the physical
GPUs; the label keys keep ``nvidia.com/gpu`` when the resource is renamed) and a ``nvidia.com/gpu.product``
ending in ``-SHARED`` (not when renamed). So a node whose replicas label says more than 1 is time-sliced:

* its GPUs are its physical ones: the count label, else its capacity over the replicas;
* a pod's GPUs are replicas of GPUs the API does not name, shared with other pods: those the exporter's
  series say (``gpu_assignment_url``; dcgm-exporter labels every pod of a shared GPU with
  ``--kubernetes-virtual-gpus``, at most one of them without it), else the node as a whole, as a MIG pod's
  slices (``k8s_mig``): a fault on any GPU of the node counts against every pod there;
* its free GPUs are whole GPUs no replica is on, what a stopped job asking for GPUs could have to itself:
  the allocatable GPUs less one per replica pods ask. The device plugin gives each replica from the GPU
  with the fewest taken (its default ``distributed`` allocation policy), so replicas on a node with GPUs
  to spare are each on a GPU of their own; free replicas over the replicas per GPU would count a GPU whose
  other replicas are taken as free. Under the ``packed`` policy this counts fewer than there are, never
  more.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from alerting.k8s_mig import GPU_COUNT_LABEL, Notices, node_names
from alerting.k8s_resources import quantity

REPLICAS_LABEL = "nvidia.com/gpu.replicas"
SHARED_RESOURCE = "nvidia.com/gpu.shared"  # the replicas' resource under ``renameByDefault``


def shared_uncounted(node: Mapping[str, Any], counted: Sequence[str]) -> bool:
    """Whether the node hands its GPUs out as ``nvidia.com/gpu.shared`` replicas, which ``counted``
    (``gpu_resources``) lacks: such a node has no GPU the inventory counts, and was left out unsaid."""
    capacity = (node.get("status") or {}).get("capacity") or {}
    return SHARED_RESOURCE not in counted and quantity(capacity.get(SHARED_RESOURCE)) > 0


def gpu_replicas(node: Mapping[str, Any]) -> int:
    """The replicas each GPU of the node is handed out as (GPU feature discovery's label); 1 where the node
    does not share its GPUs (no label, 0 or 1, or a malformed one)."""
    labels = (node.get("metadata") or {}).get("labels") or {}
    return max(1, quantity(labels.get(REPLICAS_LABEL)))


def physical_gpus(node: Mapping[str, Any], capacity: int, replicas: int) -> int:
    """A time-sliced node's physical GPUs: the count label, else its capacity over the replicas (rounded up:
    a capacity read while the device plugin takes a new replica count still has a GPU)."""
    labels = (node.get("metadata") or {}).get("labels") or {}
    return quantity(labels.get(GPU_COUNT_LABEL)) or -(-capacity // replicas)


def whole_free(allocatable: int, requested: int, replicas: int) -> int:
    """Whole GPUs no replica is on, ``allocatable`` and ``requested`` being replicas (see the module text)."""
    return max(0, allocatable // replicas - requested)


class TimeSliceNotices(Notices):
    """Warnings about time-sliced nodes."""

    def left_out(self, nodes: Sequence[str]) -> None:
        """Nodes left out because their GPUs are ``nvidia.com/gpu.shared`` replicas ``gpu_resources`` does
        not list: their GPUs and pods are not in the inventory, so a fault there hits no workload."""
        about = tuple(sorted(nodes))
        self._say(
            "left_out",
            about,
            "kubernetes inventory: %d nodes left out, their GPUs are time-sliced replicas of %s, which"
            " gpu_resources does not count (nodes %s): add %s to alerting.kubernetes_inventory.gpu_resources",
            len(about),
            SHARED_RESOURCE,
            node_names(about),
            SHARED_RESOURCE,
        )

    def unmapped(self, nodes: Sequence[str]) -> None:
        """Pods on time-sliced GPUs of these nodes whose GPU is unknown: each is placed on every GPU of its
        node."""
        about = tuple(sorted(nodes))
        self._say(
            "unmapped",
            about,
            "kubernetes inventory: which GPU holds the time-sliced replicas of pods on %d nodes (%s) is"
            " not known: the Kubernetes API says how many replicas a pod got, not of which GPU, so a"
            " fault on any GPU of such a node counts against every pod there; configure"
            " gpu_assignment_url (dcgm-exporter's series with --kubernetes-virtual-gpus carry the gpu"
            " and every pod sharing it) to place a GPU's fault on the pods holding its replicas",
            len(about),
            node_names(about),
        )
