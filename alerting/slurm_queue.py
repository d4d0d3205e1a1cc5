"""The pending jobs ahead of a stopped job in Slurm's queue: the free GPUs they ask go to them first.

Slurm's main scheduler starts pending jobs in priority order, partition by partition, and stops at the first
job of a partition that does not fit; backfill starts a lower-priority job only where that delays no
higher one, which needs time limits this reader does not weigh. So a stopped job gets free GPUs only after
the eligible pending jobs ahead of it in its partitions, and what they ask is taken from the free GPUs it
is counted (``WorkloadInfo.queued_ahead``, ``alerting.capacity``). Ahead of it are:

- for a job Slurm requeues (``requeue`` true, the default) or has requeued (PENDING again): pending jobs of
  at least its priority (equal: which goes first is not known here, so they are counted);
- for any other (FAILED, NODE_FAIL without requeue, gone from squeue): every eligible pending job, as its
  resubmission queues behind them.

Eligible: pending with the reason ``Priority``, ``Resources`` or ``None`` (not evaluated yet), not held
(priority 0). A job held back by a dependency, a begin time, a limit or a down partition takes nothing now.
What each asks: ``tres_per_node`` GPUs on each of its nodes (``node_count``, which Slurm estimates for a
pending job, or the nodes it asked), else its total (``tres_per_job``; ``tres_per_task`` times its tasks),
times the tasks a pending array record still stands for (``array_task_string``). Which nodes a queued job
may use (constraints, node lists) is not read: it is charged against every free GPU of the partitions it
shares with the stopped job, which never counts a GPU the stopped job would not get, and may leave out one
it would.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from alerting.slurm_hostlist import numbers
from alerting.slurm_jobs import (
    RUNNING_STATES,
    asked_nodes,
    job_key,
    job_number,
    job_state,
    slurm_text,
    tres_count,
)

_WAITING = {"priority", "resources", "none"}  # state_reason of a job the scheduler would start now
_TASKS = re.compile(r"^([0-9,\-]+)")  # array_task_string: 2-99%4 (the throttle after % left out)


@dataclass(frozen=True, slots=True)
class Queued:
    """A pending job that waits for GPUs: its key, partitions, priority and the GPUs it asks."""

    job_id: str
    partitions: frozenset[str]
    priority: float
    gpus: int


def parse_queue(squeue: Mapping[str, Any]) -> tuple[list[Queued], dict[str, float | None]]:
    """The eligible pending jobs asking GPUs, and each job's standing for a restart: its priority where
    Slurm requeues it or did (PENDING), None where a restart is a resubmission behind the whole queue."""
    queue: list[Queued] = []
    standing: dict[str, float | None] = {}
    for job in squeue.get("jobs") or ():
        key, state = job_key(job), job_state(job)
        priority = job_number(job, "priority")
        requeued = state == "PENDING" or (state in RUNNING_STATES and job.get("requeue", True) is not False)
        if not requeued:  # a het job: resubmitted if any component is
            standing[key] = None
        elif key not in standing or standing[key] is not None:
            standing[key] = max(priority, standing.get(key) or 0)
        reason = slurm_text(job.get("state_reason")).lower()
        gpus = _asked_gpus(job) if state == "PENDING" and priority > 0 and reason in _WAITING else 0
        if gpus:
            partitions = frozenset(p for p in slurm_text(job.get("partition")).split(",") if p)
            queue.append(Queued(key, partitions, priority, gpus))
    return queue, standing


class QueueIndex:
    """The pending queue arranged for ``ahead``, asked once per running or kept job at every read: per set of
    partitions, the priorities in order with the GPUs asked at or above each, so a job costs a binary search
    per set, not a scan of the queue (5,000 running and 5,000 pending jobs: 25 million checks a read)."""

    def __init__(self, queue: Sequence[Queued]) -> None:
        grouped: dict[frozenset[str], list[Queued]] = {}
        self._own: dict[str, list[Queued]] = {}
        for q in queue:
            grouped.setdefault(q.partitions, []).append(q)
            self._own.setdefault(q.job_id, []).append(q)
        # partitions -> (priorities ascending, GPUs asked by the jobs from each position on, a 0 at the end)
        self._groups: list[tuple[frozenset[str], list[float], list[int]]] = []
        for parts, jobs in grouped.items():
            jobs.sort(key=lambda q: q.priority)
            asked = [0] * (len(jobs) + 1)
            for i in range(len(jobs) - 1, -1, -1):
                asked[i] = asked[i + 1] + jobs[i].gpus
            self._groups.append((parts, [q.priority for q in jobs], asked))

    def ahead(self, job_id: str, partitions: Sequence[str], priority: float | None) -> int:
        """GPUs the pending jobs ahead of job ``job_id`` (of this standing, see ``parse_queue``) ask in the
        partitions it may use (none: any)."""
        mine = frozenset(partitions)

        def shared(parts: frozenset[str]) -> bool:
            return not mine or not parts or not mine.isdisjoint(parts)

        total = sum(
            asked[0 if priority is None else bisect_left(priorities, priority)]
            for parts, priorities, asked in self._groups
            if shared(parts)
        )
        # the job's own pending records (a requeued job is in the queue) are not ahead of it
        return total - sum(
            q.gpus
            for q in self._own.get(job_id, ())
            if shared(q.partitions) and (priority is None or q.priority >= priority)
        )


def gpus_ahead(
    queue: Sequence[Queued], job_id: str, partitions: Sequence[str], priority: float | None
) -> int:
    """GPUs the pending jobs ahead of job ``job_id`` (of this standing, see ``parse_queue``) ask in the
    partitions it may use (none: any); for many jobs, build one ``QueueIndex``."""
    return QueueIndex(queue).ahead(job_id, partitions, priority)


def _asked_gpus(job: Mapping[str, Any]) -> int:
    """GPUs a pending job (record) asks: per node times its nodes, else its total; times its array tasks."""
    per_node = tres_count(slurm_text(job.get("tres_per_node")))
    if per_node:
        nodes = job_number(job, "node_count")
        total = per_node * int(max(nodes, asked_nodes(slurm_text(job.get("tres_req_str"))), 1))
    else:
        total = tres_count(slurm_text(job.get("tres_per_job")))
        if not total:
            tasks = job_number(job, "tasks") or 1
            total = tres_count(slurm_text(job.get("tres_per_task"))) * int(tasks)
    listed = _TASKS.match(slurm_text(job.get("array_task_string")))
    return total * (len(numbers(listed.group(1))) if listed else 1)
