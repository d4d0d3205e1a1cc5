"""Set-up for every test."""

from __future__ import annotations

import os

import pytest

# Tests of what a pipe or file receives expect no ``COLUMNS``/``LINES``: an exported ``COLUMNS`` (and
# pytest-xdist's workers set ``COLUMNS=80``) narrows the tables they read, and the CLI's module-level Rich
# consoles take it when they are made, at import: so it goes before any test module imports them.
for _name in ("COLUMNS", "LINES"):
    os.environ.pop(_name, None)


@pytest.fixture(autouse=True)
def _no_terminal_size_from_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same for consoles made during a test; a test that wants a width sets it itself."""
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.delenv("LINES", raising=False)


# The slowest modules, slowest first: their summed test time in a two-worker run of the suite (2026-11-30,
# main at 4238bbb), less what fix/trim took off test_nab_cv, test_arrival_order and test_nab_errors.
# `make test` hands whole modules to pytest-xdist's workers in collection order (`--dist loadscope
# --no-loadscope-reorder`). xdist's default order, most tests first, put these few-test modules last, and one
# worker ran them alone while the other idled. Starting the longest first is the usual greedy balance; a
# module missing here runs in file order after them, so none of 7 s or more is left out: tests/integration
# sorts last, and its unlisted 30-s modules ran at the very end while the other worker had nothing left.
_SLOWEST_FIRST = (
    "tests/integration/test_slurm_inventory.py",
    "tests/gpuwarden/cli/test_demo_cmd.py",
    "tests/anomaly/test_faulteval.py",
    "tests/integration/test_postgres_store.py",
    "tests/integration/test_kubernetes_inventory.py",
    "tests/integration/test_serve_instances.py",
    "tests/integration/test_anomaly_pipeline.py",
    "tests/integration/test_inference_prometheus.py",
    "tests/integration/test_victoriametrics.py",
    "tests/integration/test_crash_serve.py",
    "tests/benchmarks/test_crash_fuzz.py",
    "tests/alerting/test_arrival_order.py",
    "tests/benchmarks/test_nab_cv.py",
    "tests/integration/test_serve_webhook.py",
    "tests/integration/test_am_diff.py",
    "tests/gpuwarden/test_api_fuzz.py",
    "tests/integration/test_exporter_prometheus.py",
    "tests/integration/test_training_pushgateway.py",
    "tests/anomaly/test_nab.py",
    "tests/benchmarks/test_nab_inputs.py",
    "tests/gpuwarden/cli/test_incidents_cmd.py",
    "tests/alerting/test_incident_index.py",
    "tests/gpuwarden/cli/test_outbox_cmd.py",
    "tests/gpuwarden/cli/test_standby.py",
    "tests/integration/test_serve_liveness.py",
    "tests/benchmarks/test_nab_errors.py",
    "tests/benchmarks/test_bench_applier.py",
    "tests/integration/test_postgres_standby.py",
    "tests/integration/test_prometheus_to_gpuwarden.py",
    "tests/gpuwarden/cli/test_startup_imports.py",
    "tests/anomaly/test_promql.py",
    "tests/alerting/notifiers/test_series.py",
    "tests/integration/test_amtool.py",
    "tests/benchmarks/test_restart_fuzz.py",
    "tests/benchmarks/test_nab_vs_htm.py",
    "tests/benchmarks/test_bench_tick.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Put the slowest modules first; the sort is stable, so tests keep their order within a module."""
    rank = {path: place for place, path in enumerate(_SLOWEST_FIRST)}
    root = config.rootpath
    items.sort(key=lambda item: rank.get(item.path.relative_to(root).as_posix(), len(rank)))
