"""The single-ingest benchmark runs on the code as it is: every case's figures, on the store it names."""

from __future__ import annotations

from tests.benchmarks.harness import run_harness

CASES = ("empty", "open", "repeat")
FIGURES = ("median_ms", "p95_ms", "cpu_median_ms")


def test_the_single_ingest_benchmark_reports_every_case_on_a_store_holding_the_open_incidents() -> None:
    result = run_harness("bench_single_ingest.py", "--quick", timeout=120)
    assert (result["benchmark"], result["posts"], result["passes"]) == ("single_ingest", 10, 1)
    assert result["open_incidents"] == 20  # one incident per alert: none merged, the case is the one named
    for case in CASES:
        figures = [result[f"{case}_{name}"] for name in FIGURES]
        assert all(f > 0 for f in figures), (case, figures)
        assert result[f"{case}_median_ms"] <= result[f"{case}_p95_ms"], case
