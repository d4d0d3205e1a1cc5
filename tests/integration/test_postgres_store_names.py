"""A store error read without a token, from a real PostgreSQL 15: the store's own schema named as it is."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError, ProgrammingError

from alerting.db import make_engine, store_failure
from alerting.health import ServiceHealth
from alerting.migrate import upgrade
from alerting.store_names import STORE_NAMES, public_failure

# Every name PostgreSQL gives a relation (table, index, sequence), a table's column or a constraint.
_SCHEMA_NAMES = """
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public'
UNION SELECT a.attname FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'public' AND c.relkind = 'r' AND a.attnum > 0 AND NOT a.attisdropped
UNION SELECT conname FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
    WHERE n.nspname = 'public'
"""


@pytest.mark.integration
def test_an_unmigrated_store_is_named_by_its_table_to_a_reader_without_a_token(postgres_url: str) -> None:
    sql = make_engine(postgres_url)
    try:
        with pytest.raises(ProgrammingError) as failed, sql.connect() as conn:
            conn.execute(text("SELECT fingerprint FROM alerts"))
        assert public_failure(failed.value) == 'UndefinedTable: relation "alerts" does not exist'
    finally:
        sql.dispose()


@pytest.mark.integration
def test_every_name_of_a_migrated_store_is_one_an_error_may_show(postgres_url: str) -> None:
    sql = make_engine(postgres_url)
    try:
        upgrade(sql)
        with sql.connect() as conn:
            names = set(conn.execute(text(_SCHEMA_NAMES)).scalars())
    finally:
        sql.dispose()
    assert "alerts_pkey" in names  # the catalog was read, and named what PostgreSQL made up
    assert names - STORE_NAMES == set()


@pytest.mark.integration
@pytest.mark.parametrize(
    "name", ['gw" ops_team', 'gw" x "y', 'gw", "y'], ids=["one-quote", "words-between", "comma-between"]
)
def test_a_user_whose_name_holds_quotes_is_hidden_whole_by_a_real_postgres(
    postgres_url: str, name: str
) -> None:
    # PostgreSQL quotes a user's name as it is, a " inside left single: one pair ended inside the name and
    # its rest showed (role "***" ops_team" does not exist); two " in it pair up as two names, and the words
    # between showed (role "***" x "***", and so in PostgreSQL 15's Japanese, Chinese, Korean, Ukrainian and
    # Russian translations): the connection's own user, database and host are hidden wherever said.
    sql = make_engine(postgres_url.replace("://postgres@", f"://{quote(name)}@", 1))
    try:
        with pytest.raises(OperationalError) as failed, sql.connect():
            pass
    finally:
        sql.dispose()
    assert name in store_failure(failed.value)  # the server named the user as it is
    health = ServiceHealth()
    assert health.store_failed(failed.value)
    for shown in (public_failure(failed.value), health.not_ready() or ""):
        assert shown.endswith('role "***" does not exist (names hidden: serve\'s log has them)'), shown
