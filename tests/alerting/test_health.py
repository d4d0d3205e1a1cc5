from __future__ import annotations

import errno
import logging
import sqlite3

import psycopg.errors
import pytest
from sqlalchemy.exc import DataError, IntegrityError, OperationalError

from alerting.health import ServiceHealth, store_file_fault, store_unreachable


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


# What psycopg 3 (libpq 18) says when a PostgreSQL store cannot be used: each names where and as whom it
# connects, and /-/ready, which needs no token, showed it whole.
DRIVER_SAYS = [
    'connection failed: connection to server at "db.internal" (10.20.30.40), port 5432 failed: FATAL: '
    ' password authentication failed for user "gw_admin"',
    'connection failed: connection to server at "fd00::17", port 5432 failed: Connection refused',
    'connection failed: could not translate host name "db.internal" to address: Name or service not known',
    "failed to resolve host 'db.internal': [Errno -2] Name or service not known",
    'connection failed: FATAL:  no pg_hba.conf entry for host "10.20.30.41", user "gw_admin", database "gw"',
    "invalid dsn: invalid connection option in host=db.internal user=gw_admin password=S3cret dbname=gw",
    "could not connect to postgresql+psycopg://gw_admin:S3cret@db.internal:5432/gw",
]


@pytest.mark.parametrize(
    "said", DRIVER_SAYS, ids=["auth", "ipv6", "dns", "resolve", "hba", "conninfo", "url"]
)
def test_readiness_names_no_host_user_or_password_of_the_store_and_the_log_has_them(
    said: str, caplog: pytest.LogCaptureFixture
) -> None:
    health = ServiceHealth()
    health.replayed.set()
    caplog.set_level(logging.ERROR, logger="alerting.health")
    assert health.store_failed(OperationalError("SELECT 1", {}, Exception(said)))
    reason = health.not_ready()
    assert reason is not None and reason.startswith("the store is unreachable: ")
    for secret in ("db.internal", "10.20.30.4", "fd00::17", "gw_admin", "S3cret"):
        assert secret not in reason, reason
    assert reason.endswith("(names hidden: serve's log has them)"), reason
    assert said in caplog.text  # the operator reading serve's log sees it whole


def test_readiness_keeps_what_went_wrong_and_the_port() -> None:
    health = ServiceHealth()
    health.replayed.set()
    health.store_failed(OperationalError("SELECT 1", {}, Exception(DRIVER_SAYS[0])))
    assert health.not_ready() == (
        'the store is unreachable: connection failed: connection to server at "***" (***), port 5432 failed:'
        ' FATAL:  password authentication failed for user "***" (names hidden: serve\'s log has them)'
    )


def _sqlite(message: str, code: int) -> sqlite3.OperationalError:
    exc = sqlite3.OperationalError(message)
    exc.sqlite_errorcode = code  # as sqlite3 sets it
    return exc


@pytest.mark.parametrize(
    ("exc", "fault"),
    [
        (OperationalError("INSERT", {}, _sqlite("database or disk is full", sqlite3.SQLITE_FULL)), True),
        (OperationalError("COMMIT", {}, _sqlite("disk I/O error", sqlite3.SQLITE_IOERR_WRITE)), True),
        (OperationalError("INSERT", {}, _sqlite("attempt to write a readonly database", 8)), True),
        (OperationalError("COMMIT", {}, psycopg.errors.IoError("could not write block")), True),
        (OperationalError("COMMIT", {}, psycopg.errors.DiskFull("could not extend file")), True),
        (OSError(errno.ENOSPC, "No space left on device"), True),
        (OperationalError("INSERT", {}, _sqlite("database is locked", sqlite3.SQLITE_BUSY)), False),
        (IntegrityError("INSERT", {}, sqlite3.IntegrityError("value refused")), False),
        (DataError("INSERT", {}, psycopg.errors.DataError("database or disk is full")), False),
    ],
    ids=[
        "sqlite-full",
        "sqlite-io-error",
        "sqlite-read-only",
        "postgresql-io-error",
        "postgresql-disk-full",
        "enospc",
        "sqlite-locked",
        "refused-value",
        "said-in-a-value",
    ],
)
def test_a_store_that_cannot_write_its_files_is_told_apart_from_a_refused_value(
    exc: BaseException, fault: bool
) -> None:
    assert store_file_fault(exc) is fault


@pytest.mark.parametrize(
    ("exc", "said"),
    [
        (
            OperationalError("INSERT", {}, _sqlite("database or disk is full", sqlite3.SQLITE_FULL)),
            "the store cannot write its files: database or disk is full",
        ),
        (
            OperationalError("INSERT", {}, _sqlite("attempt to write a readonly database", 8)),
            "the store cannot write its files: attempt to write a readonly database",
        ),
        (
            OperationalError("SELECT 1", {}, Exception("connection refused")),
            "the store is unreachable: connection refused",
        ),
    ],
    ids=["sqlite-full", "sqlite-read-only", "connection-refused"],
)
def test_readiness_and_the_log_say_a_store_that_cannot_write_its_files_is_not_unreachable(
    exc: Exception, said: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A SQLite store on a full disk, or whose file was made read-only, was said "the store is unreachable:
    database or disk is full", sending operators to a network or server that were fine."""
    health = ServiceHealth()
    health.replayed.set()
    with caplog.at_level(logging.ERROR, logger="alerting.health"):
        assert health.store_failed(exc)
    assert health.not_ready() == said
    logged = said.replace("the store is ", "store: ").replace("the store ", "store: ")
    assert [r.getMessage() for r in caplog.records] == [f"{logged}; not ready until a transaction succeeds"]
