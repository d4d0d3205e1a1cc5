"""Workloads placed on simulated GPUs: inference services (replicas) and training jobs (ranks).

Each workload runs in one cluster, as a Deployment or a Slurm job does: a fleet of several clusters runs
its own ``llm-chat`` and ``llm-embed`` in each, and a training job spans nodes of one cluster only.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gpuwarden.model import GpuRef, WorkloadKind, WorkloadRef
from gpuwarden.sim.topology import SimNode

SpeedOf = Callable[[str, int], float]


@dataclass(slots=True)
class InferenceService:
    """An inference service: one replica per GPU."""

    name: str
    namespace: str
    gpus: list[GpuRef]
    # Mean utilisation of a replica under its usual traffic, and its model's memory footprint.
    base_util: float = 0.55
    memory_bytes: int = 62 * 1024**3
    cluster: str = ""  # the cluster of all its GPUs

    @property
    def ref(self) -> WorkloadRef:
        """This service as a core-model reference (its cluster left out: see ``cluster``)."""
        return WorkloadRef(WorkloadKind.INFERENCE_SERVICE, self.namespace, self.name)

    @property
    def replicas(self) -> int:
        """How many replicas (GPUs) the service has."""
        return len(self.gpus)

    def describe(self) -> dict[str, Any]:
        """The service as ``sim show`` prints it."""
        gpus = [str(g) for g in self.gpus]
        return {"name": self.name, "namespace": self.namespace, "cluster": self.cluster, "gpus": gpus}


@dataclass(slots=True)
class TrainingJob:
    """A synchronous data-parallel training job: every step waits for the slowest rank."""

    name: str
    namespace: str
    ranks: dict[int, GpuRef]
    base_step_seconds: float = 2.0
    samples_per_step: int = 512
    tokens_per_step: int = 512 * 4096
    memory_bytes: int = 72 * 1024**3
    cluster: str = ""  # the cluster of all its ranks
    progress: float = 0.0  # steps, fractional
    last_progress_at: float = 0.0
    _speed: dict[int, float] = field(default_factory=dict)
    # Set by the fleet: brings the simulation up to the clock before a read.
    _sync: Callable[[], None] = field(default=lambda: None, repr=False, compare=False)

    @property
    def ref(self) -> WorkloadRef:
        """This job as a core-model reference (its cluster left out: see ``cluster``)."""
        return WorkloadRef(WorkloadKind.TRAINING_JOB, self.namespace, self.name)

    @property
    def steps_completed(self) -> int:
        """Whole steps finished since the job started."""
        self._sync()
        return int(self.progress)

    @property
    def stalled(self) -> bool:
        """True when some rank cannot make progress (hung or lost GPU, node down or drained)."""
        self._sync()
        return any(s <= 0.0 for s in self._speed.values())

    def step_seconds(self, rank: int) -> float:
        """Wall time of the current step as ``rank`` sees it; ``math.inf`` while the job is stalled."""
        self._check_rank(rank)
        self._sync()
        slowest = min(self._speed.values(), default=1.0)
        if slowest <= 0.0:
            return math.inf
        return self.base_step_seconds / slowest

    def compute_seconds(self, rank: int) -> float:
        """Time ``rank`` spends computing in a step (the rest waits on the collective)."""
        self._check_rank(rank)
        self._sync()
        speed = self._speed.get(rank, 1.0)
        return math.inf if speed <= 0.0 else self.base_step_seconds * 0.8 / speed

    def last_progress_time(self, rank: int) -> float:
        """Epoch seconds of the last step progress; stops moving while the job is stalled."""
        self._check_rank(rank)
        self._sync()
        return self.last_progress_at

    def update(self, now: float, dt: float, speed_of: SpeedOf) -> None:
        """Advance the job by ``dt`` seconds ending at ``now``."""
        for rank, gpu in self.ranks.items():
            self._speed[rank] = speed_of(gpu.node, gpu.index)
        slowest = min(self._speed.values(), default=0.0)
        if slowest > 0.0:
            self.progress += dt * slowest / self.base_step_seconds
            self.last_progress_at = now

    def describe(self) -> dict[str, Any]:
        """The job as ``sim show`` prints it."""
        return {
            "name": self.name,
            "namespace": self.namespace,
            "cluster": self.cluster,
            "ranks": {str(r): str(g) for r, g in self.ranks.items()},
            "steps_completed": self.steps_completed,
        }

    def _check_rank(self, rank: int) -> None:
        if rank not in self.ranks:
            raise KeyError(f"job {self.name} has no rank {rank}; ranks are 0..{len(self.ranks) - 1}")


@dataclass(slots=True)
class Placement:
    """What runs where: the workloads and, per GPU, the workload on it."""

    services: list[InferenceService]
    jobs: list[TrainingJob]
    by_gpu: dict[tuple[str, int], InferenceService | TrainingJob]


def place_workloads(nodes: list[SimNode], start: float, *, job_nodes: int = 4) -> Placement:
    """Place workloads deterministically, cluster by cluster (no workload spans two clusters).

    On each node the first half of the GPUs train, the rest serve inference except the last GPU of
    nodes with 4+ GPUs, which stays idle as a spare. Training jobs span up to ``job_nodes`` consecutive
    nodes of a cluster and are numbered across the fleet; in each cluster two inference services share the
    serving GPUs two to one.
    """
    clusters: dict[str, list[SimNode]] = {}
    for node in nodes:
        clusters.setdefault(node.cluster, []).append(node)
    jobs: list[TrainingJob] = []
    services: list[InferenceService] = []
    for cluster, members in clusters.items():
        serving = _place_jobs(cluster, members, start, job_nodes, jobs)
        chat = InferenceService(
            "llm-chat", "inference", [g for i, g in enumerate(serving) if i % 3 != 2], cluster=cluster
        )
        embed = InferenceService(
            "llm-embed",
            "inference",
            [g for i, g in enumerate(serving) if i % 3 == 2],
            base_util=0.35,
            memory_bytes=24 * 1024**3,
            cluster=cluster,
        )
        services += [s for s in (chat, embed) if s.gpus]
    by_gpu: dict[tuple[str, int], InferenceService | TrainingJob] = {}
    for svc in services:
        for ref in svc.gpus:
            by_gpu[(ref.node, ref.index)] = svc
    for job in jobs:
        for ref in job.ranks.values():
            by_gpu[(ref.node, ref.index)] = job
    return Placement(services, jobs, by_gpu)


def _place_jobs(
    cluster: str, nodes: list[SimNode], start: float, job_nodes: int, jobs: list[TrainingJob]
) -> list[GpuRef]:
    """Append the training jobs of one cluster's ``nodes`` to ``jobs``; return the GPUs left to serve."""
    serving: list[GpuRef] = []
    for first in range(0, len(nodes), job_nodes):
        ranks: dict[int, GpuRef] = {}
        for node in nodes[first : first + job_nodes]:
            n = len(node.gpus)
            train = n // 2
            spare = 1 if n >= 4 else 0
            for gpu in node.gpus[:train]:
                ranks[len(ranks)] = gpu.ref
            serving.extend(gpu.ref for gpu in node.gpus[train : n - spare])
        if ranks:
            name = f"pretrain-{len(jobs) + 1:02d}"
            jobs.append(TrainingJob(name, "training", ranks, cluster=cluster, last_progress_at=start))
    return serving
