"""Pending jobs ahead of a stopped job in Slurm's queue, whose GPUs Slurm hands out first."""

from __future__ import annotations

import random
from typing import Any

import pytest

from alerting.slurm_inventory import SlurmInventory
from alerting.slurm_queue import Queued, QueueIndex, gpus_ahead, parse_queue
from gpuwarden.clock import FakeClock
from tests.alerting.slurm_json import job_24_05, no_val
from tests.alerting.slurm_recorded import RecordedSlurm


def test_each_job_of_a_real_22_05_queue_knows_the_gpus_queued_ahead_of_it() -> None:
    # Capture A: pending in gpu are arr 5_2 (Resources, the priority of arr 5_0 and 5_1), het 8+1 (lower) and
    # slow (Priority, lower), one GPU each; het 8+0 pends in other, below mixtype.
    inventory = SlurmInventory(FakeClock(start=1_795_988_760), RecordedSlurm("A")).read()
    ahead = {w.ref.name: w.queued_ahead for w in inventory.workload_list}
    assert ahead == {
        "arr (5_0)": 1,  # 5_2: equal priority, which starts first is not known: counted
        "arr (5_1)": 1,
        "span5 (7)": 1,  # higher than het 8+1 and slow: only 5_2 is ahead
        "mixtype (6)": 0,  # 8+0 is lower
        "crash (3)": 3,  # FAILED: a resubmission queues behind every eligible job of its partition
    }


def pending(job_id: int, priority: int, reason: str, **fields: Any) -> dict[str, Any]:
    """A pending job of partition gpu as Slurm 24.05 lists it, asking 2 GPUs on one node."""
    asked: dict[str, Any] = {"tres_per_node": "gres/gpu:2", "node_count": no_val(1), "gres_detail": []}
    return job_24_05(
        job_id, ["PENDING"], [], priority=no_val(priority), state_reason=reason, **(asked | fields)
    )


def test_only_eligible_pending_jobs_ahead_in_a_shared_partition_are_counted_with_all_they_ask() -> None:
    squeue = {
        "jobs": [
            job_24_05(41, ["PENDING", "REQUEUED"], [], priority=no_val(50), state_reason="BeginTime"),
            pending(51, 60, "Priority"),
            pending(52, 70, "Resources", node_count=no_val(3)),  # 2 on each of 3 nodes
            pending(53, 80, "Resources", array_task_string="0-3%2"),  # 4 tasks left, 2 at a time
            pending(54, 90, "Dependency"),
            pending(55, 0, "JobHeldUser"),
            pending(56, 99, "Resources", partition="other"),
            pending(57, 10, "Priority"),  # behind the requeued job
        ]
    }
    queue, standing = parse_queue(squeue)
    assert standing["41"] == 50  # requeued (PENDING): it keeps its priority
    assert gpus_ahead(queue, "41", ("gpu",), standing["41"]) == 2 + 6 + 8
    assert gpus_ahead(queue, "41", ("gpu", "other"), standing["41"]) == 2 + 6 + 8 + 2
    # a job that failed for good restarts by resubmission, behind every eligible job of its partition
    assert gpus_ahead(queue, "41", ("gpu",), None) == 2 + 6 + 8 + 2


def test_a_het_job_stands_behind_the_whole_queue_when_one_component_is_not_requeued() -> None:
    parts = [
        job_24_05(8, ["RUNNING"], ["n1"], het_job_id=no_val(8), priority=no_val(40), requeue=True),
        job_24_05(9, ["RUNNING"], ["n2"], het_job_id=no_val(8), priority=no_val(30), requeue=False),
    ]
    for order in (parts, parts[::-1]):
        assert parse_queue({"jobs": order})[1] == {"8": None}
    (launcher, _) = parts
    assert parse_queue({"jobs": [launcher, {**launcher, "job_id": 9, "priority": no_val(45)}]})[1] == {
        "8": 45
    }


@pytest.mark.parametrize("seed", range(5))
def test_the_indexed_queue_counts_what_a_scan_of_the_whole_queue_counts(seed: int) -> None:
    # The reader asks once per running or kept job; it used to scan the whole queue each time (5,000 running
    # and 5,000 pending jobs: 25 million checks, seconds per read). The index must count the same: equal
    # priorities ahead, the job's own pending records not, a job or record without partitions shared by all.
    rng = random.Random(seed)
    parts = [frozenset(), frozenset({"gpu"}), frozenset({"gpu", "debug"}), frozenset({"other"})]
    queue = [
        Queued(str(rng.randrange(40)), rng.choice(parts), float(rng.randrange(10)), rng.randrange(1, 9))
        for _ in range(200)
    ]

    def scanned(job_id: str, mine: frozenset[str], priority: float | None) -> int:
        return sum(
            q.gpus
            for q in queue
            if q.job_id != job_id
            and (not mine or not q.partitions or not mine.isdisjoint(q.partitions))
            and (priority is None or q.priority >= priority)
        )

    index = QueueIndex(queue)
    for _ in range(300):
        job_id, mine = str(rng.randrange(50)), rng.choice(parts)
        priority = rng.choice([None, float(rng.randrange(11)), rng.randrange(10) + 0.5])
        assert index.ahead(job_id, tuple(mine), priority) == scanned(job_id, mine, priority)
