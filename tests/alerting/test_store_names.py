"""A store error as a reader without a token sees it: the store's own names kept, who connects hidden."""

from __future__ import annotations

import psycopg.errors
import pytest
from sqlalchemy.exc import DBAPIError

from alerting.store_names import public_failure

HIDDEN = " (names hidden: serve's log has them)"


def _failed(error: Exception) -> DBAPIError:
    return DBAPIError("SELECT 1", {}, error)


@pytest.mark.parametrize(
    "said",
    [
        psycopg.errors.UndefinedTable('relation "notification_outbox" does not exist'),
        psycopg.errors.UndefinedColumn('column "announced_at" of relation "incidents" does not exist'),
        psycopg.errors.UniqueViolation('duplicate key value violates unique constraint "alerts_pkey"'),
        psycopg.errors.ForeignKeyViolation(
            'insert or update on table "timeline" violates foreign key constraint "timeline_incident_id_fkey"'
        ),
        psycopg.errors.UndefinedTable('relation "alembic_version" does not exist'),
    ],
    ids=["table", "column-of-table", "primary-key", "foreign-key", "alembic"],
)
def test_the_names_of_the_stores_own_schema_stay_readable(said: Exception) -> None:
    assert public_failure(_failed(said)) == f"{type(said).__name__}: {said}"


@pytest.mark.parametrize(
    ("said", "shown"),
    [
        (  # a table name, but here the name of a database: the operator's, hidden
            psycopg.errors.InvalidCatalogName('database "alerts" does not exist'),
            'InvalidCatalogName: database "***" does not exist' + HIDDEN,
        ),
        (
            psycopg.errors.InvalidPassword('password authentication failed for user "incidents"'),
            'InvalidPassword: password authentication failed for user "***"' + HIDDEN,
        ),
        (  # not a table of ours: another schema's names are not the store's to show
            psycopg.errors.UndefinedTable('relation "payroll" does not exist'),
            'UndefinedTable: relation "***" does not exist' + HIDDEN,
        ),
        (  # a value PostgreSQL quotes (an alert label's) is hidden
            psycopg.errors.InvalidTextRepresentation('invalid input syntax for type json: "gpu-7 secret"'),
            'InvalidTextRepresentation: invalid input syntax for type json: "***"' + HIDDEN,
        ),
    ],
    ids=["database", "user", "foreign-table", "value"],
)
def test_names_of_where_and_as_whom_the_store_connects_stay_hidden(said: Exception, shown: str) -> None:
    assert public_failure(_failed(said)) == shown


def test_an_error_of_no_connection_names_none_even_when_its_causes_come_back_to_it() -> None:
    from alerting.db import connection_names  # noqa: PLC0415

    first, second = ValueError("x"), KeyError("y")
    first.__cause__, second.__cause__ = second, first
    assert connection_names(first) == ()
