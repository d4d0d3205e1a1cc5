"""The correlation-shapes benchmark runs on the code as it is: the storm shapes group as they should, and a
GPU's second alert is ranked against its own incident only."""

from __future__ import annotations

from tests.benchmarks.harness import run_harness


def test_the_correlation_shapes_benchmark_groups_each_shape_and_counts_one_rank_per_second_alert() -> None:
    result = run_harness("bench_correlation_shapes.py", "--sizes", "20", timeout=120)
    incidents = [result[f"{shape}_20_second_incidents"] for shape in ("link", "process", "rollout")]
    assert incidents == [20, 20, 1]
    assert result["node_down_20_first_incidents"] == 20
    # Each second alert is ranked against its own GPU's incident only (was 1 + 2 + ... + 20).
    assert result["link_20_second_join_rank_calls"] == result["process_20_second_join_rank_calls"] == 20
