"""The tick-beats benchmark runs on the code as it is: its alerts time out and their incidents resolve, and
the ticks beat the loop waiting behind them."""

from __future__ import annotations

from tests.benchmarks.harness import run_harness


def test_the_tick_beats_benchmark_times_both_ticks_and_counts_their_beats() -> None:
    result = run_harness("bench_tick_beats.py", "--alerts", "20", timeout=120)
    assert result["alerts"] == 20
    for tick in ("timeout_tick", "resolving_tick"):
        assert result[tick]["beats"] >= 20, result  # an alert or an incident each, at least
        assert 0 <= result[tick]["longest_unbeaten_seconds"] <= result[tick]["seconds"] + 0.01
