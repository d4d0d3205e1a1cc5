"""Fixtures shared by the incident engine's tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from tests.migrated_store import migrated_sqlite


@pytest.fixture
def sql(tmp_path: Path) -> Engine:
    """A migrated SQLite store in the test's temp directory."""
    return migrated_sqlite(tmp_path / "gpuwarden.db")
