"""The `anomaly score` benchmark runs on the code as it is: every row scored, the burst found."""

from __future__ import annotations

from tests.benchmarks.harness import run_harness


def test_the_anomaly_score_benchmark_scores_every_row_and_finds_the_burst() -> None:
    result = run_harness("bench_anomaly_score.py", "--rows", "3000", timeout=120)
    assert result["rows"] == 3000
    assert result["alerts"] >= 1
    assert min(result["read_seconds"], result["score_seconds"], result["write_seconds"]) >= 0
