"""Fixtures of the API tests (see ``api_client``)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from alerting.engine import IncidentEngine
from tests.gpuwarden.api_client import TestClient, api_client, fleet_engine


@pytest.fixture
def engine(tmp_path: Path) -> IncidentEngine:
    return fleet_engine(tmp_path)


@pytest.fixture
def client(engine: IncidentEngine) -> Iterator[TestClient]:
    with api_client(engine) as c:
        yield c
