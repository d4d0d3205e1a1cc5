"""The Slack storm benchmark runs on the code as it is: every incident told, each thread in order."""

from __future__ import annotations

from tests.benchmarks.harness import run_harness


def test_the_slack_storm_benchmark_tells_every_incident_in_order_under_slacks_rate_limits() -> None:
    result = run_harness("bench_slack_storm.py", "--incidents", "3", timeout=120)
    assert (result["parents"], result["posts"], result["updates"]) == (3, 9, 3)
    assert result["every_thread_in_order"] is True
