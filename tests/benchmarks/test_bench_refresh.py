"""The refresh benchmark runs on the code as it is: each XID stops its own node's job, one incident each, and
both kinds of refresh are timed."""

from __future__ import annotations

from tests.benchmarks.harness import run_harness, run_script


def test_the_refresh_benchmark_opens_one_incident_per_fault_and_times_both_refreshes() -> None:
    result = run_harness("bench_refresh.py", "--sizes", "20", "--nodes", "40", "--repeat", "1", timeout=120)
    assert result["incidents_20"] == 20
    assert result["changed_s_20"] > 0 and result["unchanged_s_20"] > 0


def test_the_refresh_benchmark_refuses_fewer_nodes_than_faults() -> None:
    done = run_script("bench_refresh.py", "--sizes", "50", "--nodes", "50")
    assert done.returncode != 0 and done.stdout == ""
    assert "--nodes 50: give more nodes than the largest size (50)" in done.stderr
