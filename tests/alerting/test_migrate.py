from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text

import alerting.store_models  # noqa: F401 - the tables under test
from alerting.db import Base, make_engine
from alerting.migrate import NewerSchema, alembic_config, open_store, upgrade
from alerting.store import IncidentStore
from gpuwarden.errors import ConfigError


def test_upgrade_creates_the_store_tables_and_is_idempotent(tmp_path: Path) -> None:
    engine = make_engine(str(tmp_path / "s.db"))
    upgrade(engine)
    upgrade(engine)
    names = set(inspect(engine).get_table_names())
    assert {"alerts", "incidents", "timeline", "silences", "alembic_version"} <= names


def test_migrated_schema_matches_the_store_models(tmp_path: Path) -> None:
    engine = make_engine(str(tmp_path / "s.db"))
    upgrade(engine)
    ours = {"alerts", "incidents", "timeline", "silences"}
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)

    def table_of(entry: object) -> str:
        item = entry[0] if isinstance(entry, list) else entry
        for part in item[1:]:  # type: ignore[index]
            name = getattr(part, "name", None)
            table = getattr(part, "table", None)
            if table is not None:
                return str(table.name)
            if isinstance(part, str):
                return part
            if name is not None:
                return str(name)
        return ""

    assert [d for d in diff if table_of(d) in ours] == []


def test_a_database_migrated_by_a_newer_version_is_refused_naming_both_revisions(tmp_path: Path) -> None:
    engine = make_engine(str(tmp_path / "s.db"))
    upgrade(engine)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099_future'"))
    with pytest.raises(NewerSchema) as err:
        upgrade(engine)
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert (err.value.revision, err.value.head) == ("0099_future", head)


def test_a_store_url_that_does_not_parse_is_a_config_error_with_its_password_hidden() -> None:
    url = "postgresql+psycopg://u:hunter2@[::1/x"
    with pytest.raises(ConfigError) as err:
        open_store(url)
    said = str(err.value)
    assert err.value.field == "api.db" and "not a valid URL" in said, said
    assert "hunter2" not in said and "u:***@[::1/x" in said


def test_incidents_stored_before_last_opened_at_sort_by_their_latest_reopen(tmp_path: Path) -> None:
    engine = make_engine(str(tmp_path / "s.db"))
    upgrade(engine, "0003_ingest_journal")
    columns = (
        "id, title, priority, state, root_kind, root_target, opened_at, updated_at, last_alert_at,"
        " first_onset_at, impact, actions, reopen_count"
    )
    with engine.begin() as conn:
        for incident, opened in (("inc-old", "2026-01-01 00:00:00"), ("inc-new", "2026-01-02 00:00:00")):
            conn.execute(
                text(
                    f"INSERT INTO incidents ({columns}) VALUES (:id, 't', 'P2', 'triggered', 'node_down',"
                    " '{}', :at, :at, :at, :at, '{}', '[]', 0)"
                ),
                {"id": incident, "at": opened},
            )
        for at in ("2026-01-03 00:00:00", "2026-01-04 00:00:00"):
            conn.execute(
                text(
                    "INSERT INTO timeline (incident_id, at, kind, message, data)"
                    " VALUES ('inc-old', :at, 'reopened', 'reopened', '{}')"
                ),
                {"at": at},
            )
    upgrade(engine)
    rows = IncidentStore(engine).list_rows()
    assert [(r.id, r.last_opened_at.isoformat() if r.last_opened_at else None) for r, _ in rows] == [
        ("inc-old", "2026-01-04T00:00:00+00:00"),
        ("inc-new", "2026-01-02T00:00:00+00:00"),
    ]
