"""The applier benchmark runs on the code as it is and prints its one JSON line (a harness that cannot run
measures nothing: a signature change once broke it unnoticed)."""

from __future__ import annotations

from tests.benchmarks.harness import run_harness


def test_the_applier_benchmark_applies_the_whole_stream_and_reports_each_pass() -> None:
    result = run_harness("bench_applier.py", timeout=120)
    assert result["alerts"] == 6336
    assert min(result["open_per_second"], result["join_per_second"], result["repeat_per_second"]) > 0
