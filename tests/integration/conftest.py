"""Fixtures of the integration tests: a throwaway PostgreSQL (``tests/integration/postgres.py``)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest

from tests.integration.postgres import PG_BIN, Postgres, throwaway_postgres
from tests.integration.servers import free_port


def _require_postgres() -> None:
    if not (PG_BIN / "initdb").exists():
        pytest.fail("PostgreSQL 15 is not installed; run `make test` (it installs the Debian package)")


@pytest.fixture
def postgres() -> Iterator[Postgres]:
    """A server of the test's own: one it may stop, start or cut off."""
    _require_postgres()
    with throwaway_postgres(free_port()) as server:
        yield server


@pytest.fixture(scope="module")
def _module_postgres() -> Iterator[Postgres]:
    """One server for a module's tests of ``postgres_url``: initdb and a start cost seconds each."""
    _require_postgres()
    with throwaway_postgres(free_port()) as server:
        yield server


_DATABASES = itertools.count(1)


@pytest.fixture
def postgres_url(_module_postgres: Postgres) -> str:
    """A new, empty database on the module's server: each test still starts from nothing (no schema, no
    rows, no advisory lock held: those are per database), without a server of its own."""
    return _module_postgres.new_database(f"test_{next(_DATABASES)}")
