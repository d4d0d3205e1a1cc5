"""Every harness of benchmarks/ reads its command line with argparse: ``--help`` says what it measures and
an option it does not take is refused (exit 2), rather than ignored while the whole run goes on."""

from __future__ import annotations

import pytest

from tests.benchmarks.harness import run_harness, run_script

# What the README and benchmarks/README.md tell an operator to type; each read its options from sys.argv
# by hand (or not at all), so `bench_incidents.py --throughput_only` ran both halves (minutes) and
# `bench_cli.py --help` started a serve and timed it.
HARNESSES = {
    "am_diff.py": "--verbose",
    "batch_order_fuzz.py": "--seeds",
    "bench_anomaly.py": None,
    "bench_applier.py": "--profile",
    "bench_cli.py": None,
    "bench_demo_reader_gone.py": "--runs",
    "bench_handover.py": "--postgres",
    "bench_incidents.py": "--throughput-only",
    "bench_range_edges.py": "--gpus",
    "bench_refresh.py": "--sizes",
    "bench_scrape.py": "--skip-library",
    "bench_serve_traffic.py": "--tracemalloc",
    "bench_single_ingest.py": "--quick",
    "bench_slack_storm.py": "--incidents",
    "bench_sim_nvml.py": None,
    "bench_tracing.py": "--quick",
    "bench_warmup.py": None,
    "bench_wide_incident.py": "--racks",
    "nab_ablation.py": "--only",
    "nab_confirm.py": "--timing",
    "nab_htm.py": "--raw-cache",
}


@pytest.mark.parametrize("script", sorted(HARNESSES))
def test_a_harness_refuses_an_option_it_does_not_take_before_measuring(script: str) -> None:
    done = run_script(script, "--no-such-option")
    assert done.returncode == 2 and done.stdout == "", (done.stdout, done.stderr[-500:])
    assert "unrecognized arguments: --no-such-option" in done.stderr


@pytest.mark.parametrize("script", sorted(HARNESSES))
def test_a_harness_help_names_its_options_and_runs_nothing(script: str) -> None:
    done = run_script(script, "--help")
    assert done.returncode == 0 and done.stdout.startswith("usage:"), (done.stdout, done.stderr[-500:])
    option = HARNESSES[script]
    assert option is None or option in done.stdout


def test_the_restart_fuzz_refuses_prometheus_faults_with_mid_tick_restarts() -> None:
    # Its outage is drawn on whole ticks: with --mid-tick 5 of 40 seeds diverged by the draw alone.
    done = run_script("anomaly_restart_fuzz.py", "--seeds", "1", "--promql", "--prom-faults", "--mid-tick")
    assert done.returncode == 2 and done.stdout == "", (done.stdout, done.stderr[-500:])
    assert "--prom-faults: its outage is drawn on whole ticks; not with --mid-tick" in done.stderr


def test_the_range_edge_harness_counts_every_run_it_saves_and_reads_back() -> None:
    result = run_harness("bench_range_edges.py", "--gpus", "10", "--queries", "3", "--repeats", "1")
    assert result["runs"] == 30 and result["bytes"] == result["meta_bytes"] + result["array_bytes"]
    assert result["array_bytes"] == 30 * 3 * 8  # each run's label set, start and last point
