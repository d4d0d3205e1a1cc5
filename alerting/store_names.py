"""The names of the store's own schema, and a store error as a reader without a token is shown it.

Those names (tables, columns, indexes, constraints, also those PostgreSQL makes up: ``alerts_pkey``) say
what went wrong (``relation "notification_outbox" does not exist``: the store was not migrated) and nothing
of where the store is or who connects to it, so ``hidden_names`` keeps them; a host, user, database name,
password or a quoted value is hidden as before.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import MetaData

import alerting.outbox_tables
import alerting.store_models  # noqa: F401 - with outbox_tables, every table of the store is on Base.metadata
from alerting.db import Base, connection_names, store_failure
from gpuwarden.redaction import hidden_names

MAX_PUBLIC_FAILURE = 300  # characters of public_failure: a line, not a dump
# alembic's own table, which every migrated store has too.
_ALEMBIC = frozenset({"alembic_version", "version_num", "alembic_version_pkc"})
# What PostgreSQL calls a constraint or sequence it names itself: ``<table>_<column>_<suffix>``.
_MADE_UP = ("fkey", "key", "seq", "check")


def schema_names(metadata: MetaData) -> frozenset[str]:
    """Every table, column, index and constraint name of ``metadata``, and those PostgreSQL gives the
    constraints and sequences it leaves unnamed (``alerts_pkey``, ``timeline_incident_id_fkey``)."""
    names: set[str] = set()
    for table in metadata.tables.values():
        names.update((table.name, f"{table.name}_pkey"))
        for column in table.columns:
            names.add(column.name)
            names.update(f"{table.name}_{column.name}_{suffix}" for suffix in _MADE_UP)
        names.update(str(index.name) for index in table.indexes if index.name)
        names.update(str(constraint.name) for constraint in table.constraints if constraint.name)
    return frozenset(names)


STORE_NAMES = schema_names(Base.metadata) | _ALEMBIC


def shown_reason(reason: str, known: Collection[str] = ()) -> str:
    """``reason`` (a store error's line) without host, user, database or secrets: ``hidden_names``, keeping
    the names of the store's own schema; ``known``: the failed connection's (``connection_names``)."""
    return hidden_names(reason, STORE_NAMES, known)


def public_failure(exc: BaseException) -> str:
    """Why a transaction failed, for a reader without a token (``GET /api/v1/ingest/status``): the driver's
    error class and ``store_failure``'s line, its names hidden (``shown_reason``), cut short. Never the
    statement, nor PostgreSQL's DETAIL and CONTEXT lines, which quote the values refused (an alert's
    labels): serve's log has the whole error."""
    cause = getattr(exc, "orig", None) or exc
    said = f"{type(cause).__name__}: {shown_reason(store_failure(exc), connection_names(exc))}"
    return said if len(said) <= MAX_PUBLIC_FAILURE else said[: MAX_PUBLIC_FAILURE - 1] + "…"
