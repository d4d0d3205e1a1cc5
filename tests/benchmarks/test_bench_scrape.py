"""The scrape benchmark runs on the code as it is: /metrics' scores and bands as the handler writes them are
the bytes prometheus_client's encoder writes of the collector's samples."""

from __future__ import annotations

from tests.benchmarks.harness import run_harness


def test_the_scrape_benchmark_writes_what_the_library_writes_and_times_each_scrape() -> None:
    result = run_harness("bench_scrape.py", "--gpus", "32", timeout=180)
    assert result["identical"] is True
    assert result["samples"] > 32 * 25 and 0 < result["gzip_bytes"] < result["bytes"]
    assert (
        result["scrape_seconds"] > 0 and result["scrape_text_seconds"] > 0 and result["library_seconds"] > 0
    )
