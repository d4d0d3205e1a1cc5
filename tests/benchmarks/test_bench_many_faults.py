"""The many-faults benchmark runs on the code as it is: each distinct-node fault is its own incident."""

from __future__ import annotations

from tests.benchmarks.harness import run_harness


def test_the_many_faults_benchmark_opens_one_incident_per_node_with_and_without_a_cluster() -> None:
    result = run_harness("bench_many_faults.py", "--sizes", "30", timeout=120)
    assert (result["no_cluster_30_incidents"], result["cluster_30_incidents"]) == (30, 30)
    assert min(result["no_cluster_30_per_second"], result["cluster_30_per_second"]) > 0
