"""Attribution for the simulated fleet: cgroup paths and kubelet assignments made from its workloads.

The simulator runs no real processes, so there is no ``/proc/<pid>/cgroup`` to read. These stand-ins
write the cgroup path each simulated process would have on a real node (inference replicas are pods of
a systemd-driven kubelet, training ranks are Slurm job steps) and hand it to the same parser
(``exporters.attribution.parse_cgroup``) that reads real nodes; the kubelet stand-in answers what the
pod-resources API would. Pod UIDs and job ids are derived from names, so they are stable across runs.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import uuid
import zlib
from collections.abc import Sequence
from dataclasses import dataclass

from exporters.attribution import PodRef, ProcessIdentity, parse_cgroup
from exporters.nvml_collector import NvmlCollector
from exporters.xid import XidLedger, XidWatcher
from gpuwarden.clock import Clock
from gpuwarden.sim import Fleet, InferenceService, SimNvml, TrainingJob

logger = logging.getLogger(__name__)


def _pod_name(service: InferenceService, node: str, index: int) -> str:
    replica = next((i for i, ref in enumerate(service.gpus) if ref.node == node and ref.index == index), 0)
    return f"{service.name}-{replica}"


# A pure function of its names, cached: uuid5 and the container's sha256 were 5 % of a simulated collection
# (every process of every GPU, every collection), where a real node reads a small /proc file.
@functools.lru_cache(maxsize=4096)
def sim_pod_uid(namespace: str, pod: str) -> str:
    """The stable UID of a simulated pod."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"gpuwarden-sim/{namespace}/{pod}"))


@functools.lru_cache(maxsize=4096)
def _pod_cgroup(namespace: str, pod: str) -> str:
    uid = sim_pod_uid(namespace, pod)
    container = hashlib.sha256(uid.encode()).hexdigest()
    pod_slice = f"kubepods-burstable-pod{uid.replace('-', '_')}.slice"
    return f"0::/kubepods.slice/kubepods-burstable.slice/{pod_slice}/cri-containerd-{container}.scope\n"


# The same text always parses to the same (frozen) identity: parsed once per distinct cgroup text.
_parsed_cgroup = functools.lru_cache(maxsize=4096)(parse_cgroup)


def sim_job_id(job: TrainingJob) -> int:
    """The stable Slurm job id of a simulated training job."""
    return 1000 + zlib.crc32(f"{job.namespace}/{job.name}".encode()) % 9000


def sim_cgroup(fleet: Fleet, node: str, index: int) -> str:
    """The ``/proc/<pid>/cgroup`` text of the process running on a simulated GPU."""
    work = fleet.workload_on(node, index)
    if isinstance(work, InferenceService):
        return _pod_cgroup(work.namespace, _pod_name(work, node, index))
    if isinstance(work, TrainingJob):
        rank = next((r for r, ref in work.ranks.items() if ref.node == node and ref.index == index), 0)
        return f"0::/system.slice/slurmstepd.scope/job_{sim_job_id(work)}/step_0/user/task_{rank}\n"
    return "0::/user.slice/user-1000.slice/session-1.scope\n"


class SimCgroupResolver:
    """``ProcessResolver`` for one simulated node: PID -> GPU -> workload -> cgroup path -> identity."""

    def __init__(self, fleet: Fleet, node: str) -> None:
        self._fleet = fleet
        self._node = node

    def resolve(self, pid: int) -> ProcessIdentity:
        """The identity of a simulated process (unknown when no GPU runs that PID)."""
        for gpu in self._fleet.node(self._node).gpus:
            if pid in gpu.pids:
                return _parsed_cgroup(sim_cgroup(self._fleet, self._node, gpu.index))
        return ProcessIdentity()

    def retain(self, pids: Sequence[int]) -> None:
        """Nothing is cached."""


class SimPodAssignments:
    """``PodAssignments`` for the simulated fleet: what the kubelet's pod-resources API would say."""

    def __init__(self, fleet: Fleet) -> None:
        self._by_uuid: dict[str, PodRef] = {}
        for service in fleet.inference_services():
            for ref in service.gpus:
                pod = _pod_name(service, ref.node, ref.index)
                self._by_uuid[fleet.gpu(ref.node, ref.index).uuid] = PodRef(service.namespace, pod, "server")

    def pods_for(self, uuid: str) -> Sequence[PodRef]:
        """The container holding this GPU, if an inference replica does."""
        ref = self._by_uuid.get(uuid)
        return (ref,) if ref is not None else ()


@dataclass(frozen=True, slots=True)
class SimCollectors:
    """One NVML collector and XID watcher per node of a simulated fleet, driven by the caller (no threads).

    The in-process pipelines (the demo, the GPU-fault evaluation) call ``pump_xids`` before each
    collection, where the exporter's own watcher threads would have been waiting on the event set.
    """

    collectors: list[NvmlCollector]
    watchers: list[XidWatcher]

    def pump_xids(self) -> None:
        """Record every pending XID event of every node."""
        for watcher in self.watchers:
            try:
                while watcher.poll():
                    pass
            except Exception:  # loop boundary: a node whose NVML is gone must not stop the others
                watcher.errors += 1
                logger.debug("xid watcher poll failed", exc_info=True)


def sim_collectors(fleet: Fleet, clock: Clock) -> SimCollectors:
    """Collectors for every node of ``fleet``, attributing processes as a real node would."""
    kubelet = SimPodAssignments(fleet)
    collectors: list[NvmlCollector] = []
    watchers: list[XidWatcher] = []
    for node in fleet.nodes:
        nvml = SimNvml(fleet, node.name)
        nvml.nvmlInit()
        ledger = XidLedger()
        watcher = XidWatcher(nvml, ledger, clock, wait_ms=0)
        watcher.register()
        watchers.append(watcher)
        resolver = SimCgroupResolver(fleet, node.name)
        collectors.append(
            NvmlCollector(
                nvml,
                hostname=node.name,
                xids=ledger,
                resolver=resolver,
                pods=kubelet,
                watcher=watcher,
                clock=clock,
            )
        )
    return SimCollectors(collectors, watchers)
