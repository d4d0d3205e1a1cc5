"""Set-up for every test."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator

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


def _loggers() -> list[logging.Logger]:
    """The root logger and every named one made so far."""
    named = logging.root.manager.loggerDict.values()
    return [logging.root, *(logger for logger in named if isinstance(logger, logging.Logger))]


def _writes_to_a_closed_stream(handler: logging.Handler) -> bool:
    return bool(getattr(getattr(handler, "stream", None), "closed", False))


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """Every logger's handlers, level and propagation as before the test; a logger made in it keeps no handler
    on a closed stream. serve (and anomaly run, the exporter, demo) set up the root logger, and the exporter's
    and inference-server's uvicorn its own, with the stderr that click's CliRunner gave the command and closed
    after it: later tests must not log there ("--- Logging error ---", their lines lost). Every test, not only
    tests/gpuwarden/cli's: test_config_validate.py runs serve too (tests/test_conftest.py)."""
    before = [(logger, logger.handlers[:], logger.level, logger.propagate) for logger in _loggers()]
    yield
    for logger, handlers, level, propagate in before:
        logger.handlers[:] = handlers
        logger.propagate = propagate
        if logger.level != level:  # setLevel clears every logger's cache: only where it changed
            logger.setLevel(level)
    kept = {id(logger) for logger, *_ in before}
    for logger in _loggers():  # made in the test: what its library gave it at import stays
        if id(logger) not in kept:
            logger.handlers[:] = [h for h in logger.handlers if not _writes_to_a_closed_stream(h)]


# The slowest modules, slowest first: their summed test time (junit) in a three-worker run of the suite
# (2026-12-04, main at e961c82a, the machine shared), every module of 15 s or more.
# `make test` hands whole modules to pytest-xdist's workers in collection order (`--dist loadscope
# --no-loadscope-reorder`). xdist's default order, most tests first, put these few-test modules last, and one
# worker ran them alone while the others idled. Starting the longest first is the usual greedy balance; a
# module missing here runs in file order after them. test_thermal.py (76 s) was split in four on 2026-12-05;
# its two parts of 15 s or more are placed by their share of its time. Split by subject on 2026-12-05 too,
# each part timed alone (junit) and placed by that beside test_muting.py's 15.5 s alone: test_reminding.py,
# anomaly/test_cli.py and test_serve_cmd.py (no part of 15 s or more; they left the list),
# test_incidents_cmd.py (its connection part, 17.6 s; the rest under 15 s).
# So were (fix/split2) test_faulteval.py, which keeps its place (32 s: its module-scoped report stays in
# it), test_postgres_store.py, whose locks part (25-26 s) takes its place and the rest (14-22 s in three
# runs) sits before the connection part, and anomaly/test_promql.py (14.5 and 15.5 s), now before muting.
# Split by subject (fix/split3a), each part timed alone (junit): alerting/test_engine.py (37.8 s alone;
# eight parts, the longest 11.8 s), alerting/test_outbox.py (11.8 s alone; four parts, 2.4-4.0 s),
# alerting/test_joining.py (13.5 s alone; its reopening part 10.1 s, the others under 2 s) and
# alerting/test_restart_equivalence.py (19.8 s alone; three parts, 4.8-10.1 s) left the list;
# alerting/test_incident_index.py keeps its place (its random streams stay in it, 67.1 s alone; its reads
# part 2.5 s).
# So was (fix/split3b) anomaly/test_snapshot.py: its restart part keeps its place (44 s alone: the module-
# scoped three days stay in it), test_snapshot_refused.py (33 s alone, test_snapshot_reads.py 30 s in the next
# run) sits before test_snapshot_reads.py, test_snapshot_saving.py (9 s) is not listed.
# fix/suitecpu (session 52) cut test_snapshot_refused.py, test_snapshot_reads.py, cli/test_commands.py and
# cli/test_incidents_cmd_connection.py to a few seconds each (benchmarks/README.md "Suite CPU"): they left
# the list.
_SLOWEST_FIRST = (
    "tests/gpuwarden/cli/test_demo_cmd.py",
    "tests/alerting/test_arrival_order.py",
    "tests/benchmarks/test_nab_cv.py",
    "tests/benchmarks/test_crash_fuzz.py",
    "tests/anomaly/test_faulteval.py",
    "tests/integration/test_slurm_inventory.py",
    "tests/integration/test_postgres_store_locks.py",
    "tests/anomaly/test_snapshot.py",
    "tests/integration/test_kubernetes_inventory.py",
    "tests/alerting/test_incident_index.py",
    "tests/anomaly/test_thermal_outage.py",
    "tests/integration/test_serve_instances.py",
    "tests/integration/test_crash_serve.py",
    "tests/gpuwarden/test_api_fuzz.py",
    "tests/anomaly/test_nab.py",
    "tests/integration/test_anomaly_pipeline.py",
    "tests/anomaly/test_thermal_firstjob.py",
    "tests/integration/test_serve_webhook.py",
    "tests/anomaly/test_service_reescalation.py",
    "tests/integration/test_inference_prometheus.py",
    "tests/integration/test_victoriametrics.py",
    "tests/benchmarks/test_nab_art.py",
    "tests/benchmarks/test_anomaly_restart_fuzz.py",
    "tests/benchmarks/test_restart_fuzz.py",
    "tests/benchmarks/test_nab_inputs.py",
    "tests/anomaly/test_art.py",
    "tests/anomaly/test_thermal_flap.py",
    "tests/integration/test_am_diff.py",
    "tests/integration/test_training_pushgateway.py",
    "tests/integration/test_postgres_store.py",
    "tests/anomaly/test_promql.py",
    "tests/alerting/test_muting.py",
    "tests/anomaly/test_run_signals.py",
    "tests/integration/test_exporter_prometheus.py",
    "tests/gpuwarden/test_httpprotocol.py",
    "tests/anomaly/test_thermal_clock.py",
    "tests/alerting/test_migrate.py",
    "tests/anomaly/test_thresholds.py",
    "tests/benchmarks/test_bench_applier.py",
    "tests/anomaly/test_snapshot_stale.py",
)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Put the slowest modules first; the sort is stable, so tests keep their order within a module."""
    rank = {path: place for place, path in enumerate(_SLOWEST_FIRST)}
    root = config.rootpath
    items.sort(key=lambda item: rank.get(item.path.relative_to(root).as_posix(), len(rank)))
