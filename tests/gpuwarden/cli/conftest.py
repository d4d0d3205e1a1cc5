"""Fixtures of every CLI test."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    """serve (and anomaly run, exporter) set up logging to the stderr CliRunner captured, which is closed
    after the command; later tests must not log to it (a test of the anomaly service's HTTP server, run
    after test_preflight's serve in one process, found "--- Logging error ---" on its stderr)."""
    handlers, level = logging.root.handlers[:], logging.root.level
    yield
    logging.root.handlers[:] = handlers
    logging.root.setLevel(level)
