"""The wide-incident benchmark runs on the code as it is: one incident, every alert in it."""

from __future__ import annotations

from tests.benchmarks.harness import run_harness


def test_the_wide_incident_benchmark_puts_every_alert_in_one_incident() -> None:
    result = run_harness("bench_wide_incident.py", "--racks", "20", timeout=120)
    assert (result["alerts"], result["incidents"]) == (1600, 1)
    assert min(result["alerts_per_second"], result["last_thousand_per_second"]) > 0
