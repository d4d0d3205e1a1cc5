"""Reading one ``squeue --json`` job: the GPUs its TRES ask, in every form Slurm releases write them."""

from __future__ import annotations

from typing import Any

import pytest

from alerting.slurm_jobs import parse_jobs
from gpuwarden.errors import SourceError
from tests.alerting.slurm_json import job_24_05, no_val


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


def test_jobs_of_slurm_23_and_24_read_as_those_of_22_05() -> None:
    # data_parser writes unset ids as {"set": false, ...}: read as a truthy value, every plain job became
    # one het job, and end_time as an object failed float().
    squeue = {
        "jobs": [
            job_24_05(41, ["RUNNING"], ["n1", "n2"]),
            job_24_05(42, ["FAILED"], ["n3"], end_time=no_val(1_700_000_500), gres_detail=[]),
            job_24_05(43, ["RUNNING"], ["n4"], array_job_id=no_val(40), array_task_id=no_val(3)),
            job_24_05(44, ["PENDING"], [], end_time=no_val(infinite=True), gres_detail=[]),
        ]
    }
    jobs = {job.job_id: job for job in parse_jobs(squeue, dict.fromkeys(["n1", "n2", "n3", "n4"], 4))}
    assert sorted(jobs) == ["41", "42", "43", "44"]
    assert jobs["41"].state == "RUNNING" and jobs["41"].info.held == 8
    assert jobs["41"].info.ref.name == "llm (41)"
    assert jobs["42"].ended_at == 1_700_000_500 and jobs["42"].info.held == 4  # placed by its TRES
    assert jobs["43"].info.ref.name == "llm (40_3)" and jobs["43"].info.group == "40"
    assert jobs["44"].ended_at == 0 and not jobs["44"].info.units


def test_a_het_job_of_slurm_24_is_still_one_job() -> None:
    parts = [
        job_24_05(8, ["RUNNING"], ["n1"], het_job_id=no_val(8), het_job_offset=no_val(0)),
        job_24_05(9, ["RUNNING"], ["n2"], het_job_id=no_val(8), het_job_offset=no_val(1)),
    ]
    (job,) = parse_jobs({"jobs": parts}, {"n1": 4, "n2": 4})
    assert (job.job_id, job.info.held) == ("8", 8)
    assert set(job.info.aliases) >= {"8", "8+0", "8+1", "9"}


@pytest.mark.parametrize(
    "end_time",
    ["soon", {"set": True, "number": "soon"}, [1]],
    ids=["a-string", "an-object-with-a-string", "a-list"],
)
def test_a_number_in_a_shape_no_slurm_release_writes_is_refused_naming_the_job_and_field(
    end_time: object,
) -> None:
    job = job_24_05(42, ["FAILED"], ["n3"], end_time=end_time, gres_detail=[])
    with pytest.raises(SourceError, match=r"job 42: end_time .*set, infinite, number"):
        parse_jobs({"jobs": [job]}, {"n3": 4})


def test_the_fewest_nodes_a_job_asks_come_from_its_requested_tres() -> None:
    # As a real slurmctld 22.05 lists sbatch --nodes=1-2 --gres=gpu:1 running on two nodes: node_count says
    # 2 (what it holds), max_nodes 0; only tres_req_str keeps the minimum it asked.
    job = {
        **running_job({"tres_per_node": "gres:gpu:1"}),
        "gres_detail": ["gpu:1(IDX:0)", "gpu:1(IDX:0)"],
        "node_count": 2,
        "max_nodes": 0,
        "tres_req_str": "cpu=1,mem=1000M,node=1,billing=1",
    }
    (ranged,) = parse_jobs({"jobs": [job]})
    (plain,) = parse_jobs({"jobs": [{**job, "tres_req_str": "cpu=2,mem=2000M,node=2,billing=2"}]})
    (unsaid,) = parse_jobs({"jobs": [{**job, "tres_req_str": ""}]})
    assert (ranged.info.min_nodes, plain.info.min_nodes, unsaid.info.min_nodes) == (1, 2, 0)
