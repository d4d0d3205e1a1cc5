from __future__ import annotations

import sqlite3

import pytest
from sqlalchemy.exc import DataError, IntegrityError, OperationalError

from alerting.health import ServiceHealth, store_unreachable


def _wrapped() -> Exception:
    try:
        try:
            raise OperationalError("SELECT 1", {}, sqlite3.OperationalError("unable to open database file"))
        except OperationalError as exc:
            raise RuntimeError("apply failed") from exc
    except RuntimeError as outer:
        return outer


@pytest.mark.parametrize(
    ("exc", "unreachable"),
    [
        (OperationalError("SELECT 1", {}, Exception("connection refused")), True),
        (_wrapped(), True),
        (IntegrityError("INSERT", {}, Exception("duplicate key")), False),
        (DataError("INSERT", {}, Exception("invalid byte sequence")), False),
        (ValueError("a bug"), False),
    ],
    ids=["connection-refused", "caused-by-an-outage", "integrity", "bad-data", "bug"],
)
def test_only_errors_that_say_the_store_cannot_be_reached_count_as_an_outage(
    exc: Exception, unreachable: bool
) -> None:
    assert store_unreachable(exc) is unreachable
    health = ServiceHealth()
    health.replayed.set()
    assert health.store_failed(exc) is unreachable
    assert health.store_up is not unreachable
    assert (health.not_ready() is not None) is unreachable


def test_the_store_is_up_again_after_a_transaction_succeeds() -> None:
    health = ServiceHealth()
    health.replayed.set()
    health.store_failed(OperationalError("SELECT 1", {}, Exception("server closed the connection")))
    assert health.not_ready() == "the store is unreachable: server closed the connection"
    health.store_ok()
    assert (health.store_up, health.not_ready()) == (True, None)
