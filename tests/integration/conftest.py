"""Fixtures of the integration tests: a throwaway PostgreSQL (``tests/integration/postgres.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.postgres import PG_BIN, Postgres, throwaway_postgres
from tests.integration.servers import free_port


@pytest.fixture
def postgres() -> Iterator[Postgres]:
    if not (PG_BIN / "initdb").exists():
        pytest.fail("PostgreSQL 15 is not installed; run `make test` (it installs the Debian package)")
    with throwaway_postgres(free_port()) as server:
        yield server


@pytest.fixture
def postgres_url(postgres: Postgres) -> str:
    return postgres.url
