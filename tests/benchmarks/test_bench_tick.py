"""The tick benchmark runs on the code as it is: each node's fault is its own open incident."""

from __future__ import annotations

from tests.benchmarks.harness import run_harness


def test_the_tick_benchmark_ticks_with_one_open_incident_per_node() -> None:
    result = run_harness("bench_tick.py", "--incidents", "40", "--quiet", "5", "--ticks", "2", timeout=120)
    assert (result["open_incidents"], result["quiet_incidents"], result["ticks"]) == (40, 5, 2)


def test_the_tick_benchmark_makes_every_open_incident_flap_when_asked() -> None:
    result = run_harness("bench_tick.py", "--incidents", "40", "--quiet", "5", "--ticks", "2", "--flapping")
    assert (result["open_incidents"], result["flapping_incidents"]) == (40, 40)


def test_the_tick_benchmark_times_a_restart_that_offers_no_announced_opening_again() -> None:
    result = run_harness("bench_tick.py", "--incidents", "40", "--restart", timeout=120)
    assert (result["open_incidents"], result["offered_again"]) == (40, 0)
