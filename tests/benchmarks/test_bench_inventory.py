"""The inventory benchmark's synthetic cluster reads as intended: every pod placed, one JSON line."""

from __future__ import annotations

from tests.benchmarks.harness import run_harness


def test_a_small_run_prints_one_json_line_with_every_gpu_pod_placed() -> None:
    args = ("--nodes", "8", "--cpu-pods", "20", "--repeat", "1", "--assigned")
    result = run_harness("bench_inventory.py", *args, timeout=60)
    # Two 4-GPU replicas per 8-GPU node, 16 replicas per service: 16 GPU pods in one service.
    assert (result["gpus"], result["gpu_pods"], result["workloads"], result["pods"]) == (64, 16, 1, 36)
    assert result["ambiguous_pods"] == 0 and result["read_seconds"] > 0


def test_the_slurm_mode_reads_every_running_job() -> None:
    result = run_harness(
        "bench_inventory.py", "--slurm", "--nodes", "8", "--jobs", "5", "--repeat", "1", timeout=60
    )
    assert (result["jobs_listed"], result["running_jobs"]) == (10, 5)  # the 5 COMPLETED ones are not kept
