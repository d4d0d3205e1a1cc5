"""Fixtures shared by the incident engine's tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from alerting.db import make_engine
from alerting.migrate import upgrade


@pytest.fixture
def sql(tmp_path: Path) -> Engine:
    """A migrated SQLite store in the test's temp directory."""
    engine = make_engine(str(tmp_path / "gpuwarden.db"))
    upgrade(engine)
    return engine
