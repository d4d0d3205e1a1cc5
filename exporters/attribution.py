"""Attribution: which pod, container or Slurm job a GPU process belongs to, from ``/proc/<pid>/cgroup``.

Path shapes understood (cgroup v1 lines ``N:controllers:/path``, v2 line ``0::/path``):

- kubelet, cgroupfs driver: ``/kubepods/pod<uid>/<id>``, ``/kubepods/{burstable,besteffort}/pod<uid>/<id>``
- kubelet, systemd driver: ``/kubepods.slice/kubepods-{burstable,besteffort}.slice/
  kubepods-burstable-pod<uid_with_underscores>.slice/{cri-containerd,crio,docker}-<id>.scope``
  (guaranteed pods sit directly under ``kubepods.slice`` as ``kubepods-pod<uid>.slice``)
- Slurm, cgroup v1: ``/slurm/uid_<n>/job_<n>/step_<n|batch|extern>/...``;
  cgroup v2: ``/system.slice/slurmstepd.scope/job_<n>/step_<n>/...``

The /proc root is a constructor parameter so tests and the simulator use a fake tree.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

_POD_CGROUPFS = re.compile(
    r"/kubepods(?:/(?:burstable|besteffort|guaranteed))?/pod([0-9a-fA-F-]{36})(?:/([^/]+))?"
)
_POD_SYSTEMD = re.compile(
    r"kubepods(?:-(?:burstable|besteffort|guaranteed))?-pod([0-9a-fA-F_]{36})\.slice"
    r"(?:/(?:[a-z-]+-)?([0-9a-fA-F]{12,64})\.scope)?"
)
_SLURM_JOB = re.compile(r"/job_(\d+)(?:/step_([A-Za-z0-9_]+))?")
_CONTAINER_ID = re.compile(r"^(?:[a-z-]+-)?([0-9a-fA-F]{12,64})(?:\.scope)?$")


@dataclass(frozen=True, slots=True)
class ProcessIdentity:
    """Who owns a process: a Kubernetes pod/container or a Slurm job/step (empty when unknown)."""

    pod_uid: str = ""
    container_id: str = ""
    slurm_job: str = ""
    slurm_step: str = ""

    def __bool__(self) -> bool:
        return bool(self.pod_uid or self.slurm_job)


UNKNOWN = ProcessIdentity()


def parse_cgroup(text: str) -> ProcessIdentity:
    """Find the pod or Slurm job in the contents of a ``/proc/<pid>/cgroup`` file."""
    for line in text.splitlines():
        path = line.split(":", 2)[-1]
        found = _parse_path(path)
        if found:
            return found
    return UNKNOWN


def _parse_path(path: str) -> ProcessIdentity:
    match = _POD_SYSTEMD.search(path)
    if match:
        return ProcessIdentity(pod_uid=match.group(1).replace("_", "-"), container_id=match.group(2) or "")
    match = _POD_CGROUPFS.search(path)
    if match:
        container = ""
        if match.group(2):
            cid = _CONTAINER_ID.match(match.group(2))
            container = cid.group(1) if cid else ""
        return ProcessIdentity(pod_uid=match.group(1), container_id=container)
    if "slurm" in path:
        match = _SLURM_JOB.search(path)
        if match:
            return ProcessIdentity(slurm_job=match.group(1), slurm_step=match.group(2) or "")
    return UNKNOWN


class ProcCgroupResolver:
    """Resolves host PIDs through ``<proc_root>/<pid>/cgroup``; remembers PIDs that are still running."""

    def __init__(self, proc_root: Path | str = "/proc") -> None:
        self.proc_root = Path(proc_root)
        self._cache: dict[int, ProcessIdentity] = {}

    def resolve(self, pid: int) -> ProcessIdentity:
        """The identity of one process; UNKNOWN when it is gone or not in a pod or job."""
        hit = self._cache.get(pid)
        if hit is not None:
            return hit
        try:
            text = (self.proc_root / str(pid) / "cgroup").read_text(encoding="utf-8", errors="replace")
        except OSError:
            return UNKNOWN
        identity = parse_cgroup(text)
        self._cache[pid] = identity
        return identity

    def retain(self, pids: Iterable[int]) -> None:
        """Forget PIDs that no longer run on a GPU, so a reused PID is read afresh."""
        keep = set(pids)
        for pid in [p for p in self._cache if p not in keep]:
            del self._cache[pid]


@dataclass(frozen=True, slots=True)
class PodRef:
    """A container that the kubelet assigned a GPU to (from the pod-resources API)."""

    namespace: str
    pod: str
    container: str


def workload_labels(identities: Iterable[ProcessIdentity], pods: Iterable[PodRef] = ()) -> dict[str, str]:
    """Labels for a GPU's families when it runs exactly one pod (or one Slurm job); else none.

    ``namespace``/``pod``/``container`` come from the kubelet's assignment of the GPU; ``pod_uid`` from
    the cgroups of its processes; ``container`` falls back to the container ID when the kubelet is not
    configured.
    """
    labels: dict[str, str] = {}
    assigned = set(pods)
    if len(assigned) == 1:
        ref = next(iter(assigned))
        labels.update(namespace=ref.namespace, pod=ref.pod, container=ref.container)
    idents = [i for i in identities if i]
    pod_uids = {i.pod_uid for i in idents if i.pod_uid}
    if len(pod_uids) == 1:
        labels["pod_uid"] = next(iter(pod_uids))
        containers = {i.container_id for i in idents if i.pod_uid and i.container_id}
        if "container" not in labels and len(containers) == 1:
            labels["container"] = next(iter(containers))
    jobs = {i.slurm_job for i in idents if i.slurm_job}
    if len(jobs) == 1:
        labels["slurm_job"] = next(iter(jobs))
    return labels


def process_labels(identity: ProcessIdentity, pods: Mapping[str, str]) -> dict[str, str]:
    """Labels for one process's memory series: its pod/job, plus the GPU's pod names when unique."""
    labels = dict(pods)
    if identity.pod_uid:
        labels["pod_uid"] = identity.pod_uid
        if identity.container_id and "container" not in labels:
            labels["container"] = identity.container_id
    if identity.slurm_job:
        labels["slurm_job"] = identity.slurm_job
    return labels


def shared(identities: Iterable[ProcessIdentity], pods: Iterable[PodRef] = ()) -> bool:
    """True when more than one pod or Slurm job uses the GPU (``workload_labels`` then gives none)."""
    idents = [i for i in identities if i]
    return (
        len(set(pods)) > 1
        or len({i.pod_uid for i in idents if i.pod_uid}) > 1
        or len({i.slurm_job for i in idents if i.slurm_job}) > 1
    )


# How long a GPU keeps its workload labels after the last sign of its workload (a process, or the
# kubelet's assignment): long enough for a container restart, a CrashLoop back-off or the gap between
# two Slurm job steps, short enough that an idle GPU is not billed to a finished job for long.
WORKLOAD_LABEL_GRACE_SECONDS = 300.0


@dataclass
class _Remembered:
    labels: dict[str, str]
    seen_at: float = field(default=0.0)


class WorkloadMemory:
    """Keeps each GPU's workload labels stable while the processes they are read from come and go.

    ``pod_uid``, the container-ID fallback of ``container`` and ``slurm_job`` come from the cgroups of the
    GPU's processes and exist only while one runs; taken as they are, every restart, respawn or step gap
    would start new series for all of the GPU's families. The rule: labels seen now that agree with the
    remembered ones (no label with another value) are added to them; labels that disagree (another pod,
    container or job) replace them; with none seen, or only some, the remembered ones stay for
    ``grace_seconds`` after the workload was last seen, then go. A GPU shared by several workloads has none.
    """

    def __init__(self, grace_seconds: float = WORKLOAD_LABEL_GRACE_SECONDS) -> None:
        self.grace_seconds = grace_seconds
        self._by_gpu: dict[str, _Remembered] = {}

    def labels(
        self, gpu: str, current: Mapping[str, str], now: float, *, ambiguous: bool = False
    ) -> dict[str, str]:
        """The workload labels to put on GPU ``gpu``'s families now."""
        prev = self._by_gpu.get(gpu)
        if ambiguous:
            self._by_gpu.pop(gpu, None)
            return dict(current)
        if current:
            agrees = prev is not None and all(prev.labels.get(k, v) == v for k, v in current.items())
            merged = {**prev.labels, **current} if agrees and prev is not None else dict(current)
            if prev is not None and merged == prev.labels:
                # The same labels as last time: the same dict, so the collector can keep the GPU's label
                # set and a render find its text by identity (callers never change the dicts returned).
                prev.seen_at = now
                return prev.labels
            self._by_gpu[gpu] = _Remembered(merged, now)
            return merged
        if prev is not None and now - prev.seen_at <= self.grace_seconds:
            return prev.labels
        self._by_gpu.pop(gpu, None)
        return {}

    def forget(self, gpu: str) -> None:
        """Drop what is remembered of GPU ``gpu`` (one whose series name no workload, as a MIG GPU's)."""
        self._by_gpu.pop(gpu, None)
