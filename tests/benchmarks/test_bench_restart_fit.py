"""The restart-fit benchmark runs on the code as it is, and its jobs do fit (the joint check is what runs)."""

from __future__ import annotations

from tests.benchmarks.harness import run_harness


def test_the_restart_fit_benchmark_checks_jobs_that_fit_together() -> None:
    result = run_harness("bench_restart_fit.py", "--nodes", "60", "--jobs", "6", "--checks", "1", timeout=120)
    assert (result["nodes"], result["jobs"], result["fits"]) == (60, 6, True)
