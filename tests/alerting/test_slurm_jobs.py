"""Reading one ``squeue --json`` job: the GPUs its TRES ask, in every form Slurm releases write them."""

from __future__ import annotations

from typing import Any

import pytest

from alerting.slurm_jobs import parse_jobs


def running_job(tres: dict[str, Any]) -> dict[str, Any]:
    """A job running on n1 and n2 whose GPU indices Slurm did not give (``gres_detail: []``)."""
    return {
        "job_id": 41,
        "name": "llm",
        "job_state": "RUNNING",
        "job_resources": {"allocated_nodes": [{"nodename": "n1"}, {"nodename": "n2"}]},
        "gres_detail": [],
        **tres,
    }


@pytest.mark.parametrize(
    ("tres", "per_node", "held"),
    [
        ({"tres_per_node": "gres:gpu:4"}, 4, 8),
        ({"tres_per_node": "gres/gpu:4"}, 4, 8),
        ({"tres_per_node": "gres/gpu:h100:4"}, 4, 8),
        ({"tres_per_node": "gpu:4"}, 4, 8),
        ({"tres_per_node": "gpu:a100:2,gres/shard:1"}, 2, 4),
        ({"tres_per_node": "gres/gpu:a100:2,gres/gpu:h100:1"}, 3, 6),
        ({"tres_per_node": "gres/gpu"}, 1, 2),
        ({"tres_per_node": "gres/gpu:h100"}, 1, 2),
        ({"tres_per_node": "gres/gpumem:40G,gres/shard:2"}, 0, 0),
        ({"tres_per_job": "gpu:6"}, 0, 6),
        ({"tres_per_job": "gres/gpu:6", "tres_alloc_str": "cpu=2,gres/gpu:a100=6,gres/gpu=6"}, 0, 6),
        # as a real slurmctld 22.05 lists -N2 -n2 --gpus-per-task=2 (no gres/gpu in tres_alloc_str)
        ({"tres_per_task": "gres:gpu:2", "tasks": 2, "tres_alloc_str": "cpu=2,node=2,billing=2"}, 0, 4),
        ({"tres_per_task": "gres/gpu:h100:1", "tasks": {"set": True, "infinite": False, "number": 3}}, 0, 3),
    ],
    ids=[
        "22.05",
        "23.02",
        "typed",
        "no-gres-prefix",
        "no-prefix-typed-with-shard",
        "two-types",
        "count-left-out",
        "typed-count-left-out",
        "no-gpu",
        "per-job-no-prefix",
        "allocated",
        "per-task",
        "per-task-typed",
    ],
)
def test_the_gpus_a_job_asks_are_read_in_every_form_slurm_writes_its_tres(
    tres: dict[str, Any], per_node: int, held: int
) -> None:
    (job,) = parse_jobs({"jobs": [running_job(tres)]}, {"n1": 8, "n2": 8})
    assert (job.info.per_node, job.info.held) == (per_node, held)


def test_a_het_job_with_a_cpu_only_component_restarts_where_its_gpu_component_may() -> None:
    # The usual heterogeneous job: a launcher without GPUs (8+0) and workers on whole GPU nodes (8+1). Where
    # the job may start again for its GPUs is where its workers may: their GPUs per node, partition and
    # constraint, not the launcher's (which asks none, and may run on any node of its partition).
    launcher = {
        "job_id": 8,
        "het_job_id": 8,
        "het_job_offset": 0,
        "name": "train",
        "job_state": "RUNNING",
        "partition": "cpu",
        "job_resources": {"allocated_nodes": [{"nodename": "cpu1"}]},
        "gres_detail": [],
    }
    workers = {
        **launcher,
        "job_id": 9,
        "het_job_offset": 1,
        "partition": "gpu",
        "features": "a100&ib",
        "excluded_nodes": "n9",
        "job_resources": {"allocated_nodes": [{"nodename": "n1"}, {"nodename": "n2"}]},
        "gres_detail": ["gpu:8(IDX:0-7)", "gpu:8(IDX:0-7)"],
        "tres_per_node": "gres:gpu:8",
    }
    for state in ("RUNNING", "PENDING"):  # pending: requeued, its GPUs not held yet
        parts = [{**launcher, "job_state": state}, {**workers, "job_state": state}]
        if state == "PENDING":
            parts = [{**part, "job_resources": {}, "gres_detail": []} for part in parts]
        (job,) = parse_jobs({"jobs": parts}, {"cpu1": 0, "n1": 8, "n2": 8})
        info = job.info
        assert (info.per_node, info.partitions, info.constraint, info.excluded_nodes) == (
            8,
            ("gpu",),
            "a100&ib",
            ("n9",),
        ), state
