"""The recurrence benchmark runs on the code as it is: the faults it resolves resolve, the new ones open."""

from __future__ import annotations

from tests.benchmarks.harness import run_harness


def test_the_recurrence_benchmark_resolves_faults_within_and_before_the_window() -> None:
    result = run_harness(
        "bench_recurrence.py", "--resolved", "5", "--older", "5", "--faults", "3", timeout=120
    )
    assert (result["resolved_in_window"], result["resolved_before_window"], result["new_faults"]) == (5, 5, 3)
