"""The reopen-scan benchmark runs on the code as it is: the faults it resolves resolve, the new ones open."""

from __future__ import annotations

from tests.benchmarks.harness import run_harness


def test_the_reopen_scan_benchmark_times_batches_of_new_faults_beside_none_and_some_resolved() -> None:
    result = run_harness(
        "bench_reopen_scan.py", "--resolved", "20", "--alerts", "10", "--batches", "2", timeout=120
    )
    assert result["alerts_per_batch"] == 10
    assert len(result["resolved_0_batch_seconds"]) == len(result["resolved_20_batch_seconds"]) == 2
    assert result["resolved_20_median_seconds"] >= 0
