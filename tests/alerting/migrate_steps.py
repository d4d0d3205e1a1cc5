"""Taking a store down a revision, and the 0019 upgrade of an opening: shared with the PostgreSQL test."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alembic import command
from sqlalchemy import Engine, insert, inspect, select
from sqlalchemy.orm import Session

from alerting.migrate import alembic_config, upgrade
from alerting.reminders import TOLD_AT
from alerting.reminding import stored_pages
from alerting.store_models import IncidentRow, TimelineRow


def downgrade(engine: Engine, revision: str) -> None:
    """Take the store behind ``engine`` back to ``revision``, as ``alembic downgrade`` does."""
    cfg = alembic_config()
    with engine.begin() as connection:
        cfg.attributes["connection"] = connection
        command.downgrade(cfg, revision)


def an_opening_stored_before_0019_is_read_as_told_at_the_end_of_its_delay(engine: Engine) -> None:
    """Since 0019 the store says when an incident's opening was announced (``announced_at``), the page the
    reminders count from; an incident stored before gets its opening's time (not NULL: the first serve after
    the upgrade announces it again and would store that), and its opening is read as told at the end of its
    announce delay, as before. Downgraded, the column goes. ``engine``: a store at the newest revision
    (taken down to 0018 first, which is cheaper than migrating up to it); shared with the PostgreSQL test."""
    downgrade(engine, "0018_silences_incident_index")
    opened = datetime(2026, 1, 1, 23, 0, tzinfo=UTC)
    at = {"opened_at": opened, "updated_at": opened, "last_alert_at": opened, "first_onset_at": opened}
    with engine.begin() as conn:  # the columns 0018 has: no announced_at
        conn.execute(
            insert(IncidentRow.__table__).values(
                id="inc-a",
                title="",
                priority="P1",
                state="triggered",
                root_kind="xid",
                root_target={},
                impact={},
                **at,
            )
        )
        conn.execute(
            insert(TimelineRow.__table__).values(
                incident_id="inc-a", at=opened, kind="opened", message="", data={}
            )
        )
    upgrade(engine)
    with Session(engine) as session:
        assert session.scalar(select(IncidentRow.announced_at)) == opened  # no time a restart overwrites
        [(kind, _, data)] = stored_pages(session, ["inc-a"], 10)["inc-a"]
    assert (kind, data[TOLD_AT]) == ("opened", opened + timedelta(seconds=10))
    downgrade(engine, "0018_silences_incident_index")
    assert "announced_at" not in {c["name"] for c in inspect(engine).get_columns("incidents")}
