"""A store on a real PostgreSQL 15 whose database sets its own TimeZone and DateStyle, as a server set up in
local time does: every session of the store still reads and writes timestamps in UTC and ISO."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import make_url, text

from alerting.advisory_lock import AdvisoryLock
from alerting.db import make_engine
from alerting.engine import IncidentEngine
from alerting.matchers import parse_matcher
from alerting.migrate import upgrade
from gpuwarden.clock import FakeClock

# The last second the API takes (README, Known gaps): in Asia/Kolkata (+05:30) it is 10000-01-01 05:29:59.
_FOREVER = datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC)


def _database_default(url: str, setting: str, value: str) -> str:
    """``url``, its database made to give every new session ``setting`` = ``value`` (ALTER DATABASE)."""
    name = make_url(url).database
    sql = make_engine(url)
    try:
        with sql.connect() as conn:
            conn.execute(text(f"ALTER DATABASE {name} SET {setting} TO '{value}'"))
            conn.commit()
    finally:
        sql.dispose()
    return url


@pytest.fixture
def east_of_utc_url(postgres_url: str) -> str:
    """A database whose sessions default to India's time zone (+05:30), as a server set up in local time."""
    return _database_default(postgres_url, "TimeZone", "Asia/Kolkata")


@pytest.fixture
def sql_datestyle_url(postgres_url: str) -> str:
    """A database whose sessions write dates as 'SQL, DMY' (07/12/2026 01:56:10.03 UTC), not ISO."""
    return _database_default(postgres_url, "DateStyle", "SQL, DMY")


@pytest.mark.integration
def test_a_silence_ending_in_year_9999_is_read_back_by_a_restart_on_a_database_east_of_utc(
    east_of_utc_url: str,
) -> None:
    clock = FakeClock()
    sql = make_engine(east_of_utc_url)
    try:
        upgrade(sql)
        engine = IncidentEngine(sql, clock)
        made = engine.add_silence([parse_matcher('node="n1"')], clock.now(), _FOREVER, "alice")
    finally:
        sql.dispose()

    again = make_engine(east_of_utc_url)
    try:
        restarted = IncidentEngine(again, clock)  # loads the silences: year 10000 in +05:30 did not parse
        assert [(s.id, s.ends_at) for s in restarted.silences()] == [(made, _FOREVER)]
        with again.connect() as conn:
            assert conn.execute(text("SHOW TimeZone")).scalar() == "UTC"
    finally:
        again.dispose()


@pytest.mark.integration
def test_the_store_lock_is_taken_on_a_database_whose_datestyle_is_not_iso(sql_datestyle_url: str) -> None:
    lock = AdvisoryLock(sql_datestyle_url, "store")
    try:
        assert lock.try_acquire()  # its backend_start, a timestamptz, did not parse in 'SQL, DMY'
        assert lock.backend is not None
        assert lock.backend[1].tzinfo is not None
        assert lock.held()
    finally:
        lock.release()
