from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.orm import sessionmaker

import alerting.store_models  # noqa: F401 - the tables under test
from alerting.db import Base, make_engine
from alerting.handoff import Telling, UntoldChange, untold
from alerting.migrate import NewerSchema, alembic_config, open_store, store_error, upgrade
from alerting.store import IncidentStore
from alerting.subscriptions import ChangeKind
from gpuwarden.errors import ConfigError
from tests.alerting.migrate_steps import (
    a_thread_stored_before_0023_was_posted_for_no_known_notification,
    an_opening_stored_before_0019_is_read_as_told_at_the_end_of_its_delay,
    downgrade,
    roots_stored_before_0020_get_their_key_and_a_fault_back_reopens_its_incident,
    the_kept_inventory_of_0026_downgrades_and_upgrades_again,
)
from tests.alerting.query_plans import (
    incident_silence_query,
    incident_silence_query_plan,
    resolved_incident_indexes,
    resolved_incident_query_plans,
)
from tests.migrated_store import migrated_sqlite


def test_upgrade_creates_the_store_tables_and_is_idempotent(tmp_path: Path) -> None:
    engine = make_engine(str(tmp_path / "s.db"))
    upgrade(engine)
    upgrade(engine)
    names = set(inspect(engine).get_table_names())
    assert {"alerts", "incidents", "timeline", "silences", "alembic_version"} <= names


def test_migrated_schema_matches_the_store_models(tmp_path: Path) -> None:
    engine = make_engine(str(tmp_path / "s.db"))
    upgrade(engine)
    ours = {"alerts", "incidents", "timeline", "silences", "kept_jobs"}
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


# Run as a server would: SIGKILL at the first statement of 0004's backfill, after its ALTER TABLE.
_KILLED_DURING_BACKFILL = """
import os, signal, sys
from sqlalchemy import event
from alerting.db import make_engine
from alerting.migrate import upgrade

engine = make_engine(sys.argv[1])

@event.listens_for(engine, "before_cursor_execute")
def kill_at_backfill(conn, cursor, statement, parameters, context, executemany):
    if statement.startswith("UPDATE incidents SET last_opened_at"):
        os.kill(os.getpid(), signal.SIGKILL)

upgrade(engine)
"""


def _store_at_0003_with_an_incident(path: Path) -> None:
    engine = make_engine(str(path))
    upgrade(engine, "0003_ingest_journal")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO incidents (id, title, priority, state, root_kind, root_target, opened_at,"
                " updated_at, last_alert_at, first_onset_at, impact, actions, reopen_count) VALUES ('inc-1',"
                " 't', 'P2', 'triggered', 'node_down', '{}', :at, :at, :at, :at, '{}', '[]', 0)"
            ),
            {"at": "2026-01-01 00:00:00"},
        )
    engine.dispose()


def _revision_and_columns(path: Path) -> tuple[list[str], set[str]]:
    engine = make_engine(str(path))
    with engine.connect() as conn:
        heads = list(MigrationContext.configure(conn).get_current_heads())
    columns = {column["name"] for column in inspect(engine).get_columns("incidents")}
    engine.dispose()
    return heads, columns


def test_a_server_killed_during_a_migration_leaves_the_store_as_it_was_and_the_next_start_migrates_it(
    tmp_path: Path,
) -> None:
    """pysqlite sent 0004's ALTER TABLE in autocommit, outside the backfill's transaction: the kill left
    the column at 0003, and every start after it failed with "duplicate column name"."""
    db = tmp_path / "s.db"
    _store_at_0003_with_an_incident(db)
    root = Path(__file__).resolve().parents[2]  # the tree under test, not an installed copy
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")])}
    argv = [sys.executable, "-c", _KILLED_DURING_BACKFILL, str(db)]
    killed = subprocess.run(argv, check=False, env=env, capture_output=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()
    assert _revision_and_columns(db) == (["0003_ingest_journal"], _COLUMNS_AT_0003)
    upgrade(make_engine(str(db)))
    rows = IncidentStore(make_engine(str(db))).list_rows()
    assert [(r.id, str(r.last_opened_at)) for r, _ in rows] == [("inc-1", "2026-01-01 00:00:00+00:00")]


_COLUMNS_AT_0003 = {
    "id", "title", "priority", "state", "root_kind", "root_target", "opened_at", "updated_at",
    "last_alert_at", "first_onset_at", "quiet_since", "acknowledged_at", "acknowledged_by", "resolved_at",
    "merged_into", "impact", "actions", "reopen_count",
}  # fmt: skip


def test_a_store_left_at_0003_with_the_column_added_by_a_killed_upgrade_is_migrated(tmp_path: Path) -> None:
    """The state an earlier gpuwarden left when it was killed during 0004's backfill (the probe's 200,000
    incidents): the column, empty, and no index, at revision 0003."""
    db = tmp_path / "s.db"
    _store_at_0003_with_an_incident(db)
    engine = make_engine(str(db))
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE incidents ADD COLUMN last_opened_at DATETIME"))
    upgrade(engine)
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert _revision_and_columns(db)[0] == [head]
    assert "ix_incidents_last_opened_at" in {ix["name"] for ix in inspect(engine).get_indexes("incidents")}
    rows = IncidentStore(engine).list_rows()
    assert [(r.id, str(r.last_opened_at)) for r, _ in rows] == [("inc-1", "2026-01-01 00:00:00+00:00")]


_REVISIONS = [s.revision for s in ScriptDirectory.from_config(alembic_config()).walk_revisions()][::-1]


@pytest.mark.parametrize("revision", _REVISIONS, ids=_REVISIONS)
def test_a_migration_runs_again_over_what_an_interrupted_earlier_run_of_it_left(
    tmp_path: Path, revision: str
) -> None:
    """Any migration's DDL may have committed without its version bump under an earlier gpuwarden."""
    engine = make_engine(str(tmp_path / "s.db"))
    upgrade(engine, revision)
    before = ScriptDirectory.from_config(alembic_config()).get_revision(revision).down_revision
    with engine.begin() as conn:  # every change of `revision` is there; its version bump is not
        if before is None:
            conn.execute(text("DELETE FROM alembic_version"))
        else:
            conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": before})
    upgrade(engine)
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert _revision_and_columns(tmp_path / "s.db")[0] == [head]


def test_a_store_error_blames_the_directory_only_when_it_is_missing(tmp_path: Path) -> None:
    """Every error at open said "(does its directory exist?)", a failed migration's too."""
    (tmp_path / "garbage.db").write_bytes(b"not a database, " * 1024)
    with pytest.raises(ConfigError) as err:
        open_store(str(tmp_path / "garbage.db"))
    assert "file is not a database" in str(err.value) and "directory" not in str(err.value)
    with pytest.raises(ConfigError) as err:
        open_store(str(tmp_path / "missing" / "x.db"))
    assert str(err.value).endswith(f"(its directory {tmp_path / 'missing'} does not exist)")


def test_resolved_incidents_are_read_through_the_state_resolved_at_and_root_key_indexes(
    tmp_path: Path,
) -> None:
    """Recurrence (every new fault asks) and retention read resolved incidents by ``(state, resolved_at)``;
    with only ``state`` indexed each read every resolved incident the store keeps (90 days of them). Those
    near a new fault's node are read by their root's place too (``root_key``, 0020): by ``(state,
    resolved_at)`` alone each new node read every incident resolved within the window."""
    engine = make_engine(str(tmp_path / "s.db"))
    upgrade(engine)
    plans = resolved_incident_indexes(resolved_incident_query_plans(engine, "EXPLAIN QUERY PLAN"))
    assert len(plans) >= 3, plans  # recurrence: any at all, those near the node; retention
    assert any(index.startswith("ix_incidents_root_key") for index, _ in plans), plans
    assert all(f"USING INDEX {index} " in plan for index, plan in plans), plans


def test_messages_waiting_at_the_upgrade_to_0013_take_their_priority_from_their_notification(
    tmp_path: Path,
) -> None:
    """A backlog stored by an earlier gpuwarden is ordered by urgency too; what was sent keeps none."""
    engine = make_engine(str(tmp_path / "s.db"))
    upgrade(engine, "0012_silence_order")
    rows = [
        (1, "pending", '{"priority": "P1", "title": "t"}'),
        (2, "failed", '{"priority": "P0"}'),
        (3, "sent", '{"priority": "P0"}'),
        (4, "pending", "not json"),
    ]
    with engine.begin() as conn:
        for row_id, status, payload in rows:
            conn.execute(
                text(
                    "INSERT INTO notification_outbox (id, notifier, incident_id, idempotency_key, payload,"
                    " status, attempts, created_at, next_attempt_at) VALUES (:i, 'slack', 'inc-1', :k, :p,"
                    " :s, 0, 0, 0)"
                ),
                {"i": row_id, "k": f"k{row_id}", "p": payload, "s": status},
            )
    upgrade(engine, "0013_outbox_priority")
    with engine.connect() as conn:
        got = conn.execute(text("SELECT id, priority FROM notification_outbox ORDER BY id")).all()
    assert [tuple(r) for r in got] == [(1, "P1"), (2, "P0"), (3, None), (4, None)]


def test_a_change_stored_untold_before_0015_is_told_with_nothing_besides_and_pages_as_before(
    tmp_path: Path,
) -> None:
    """What a transaction decides a change is told with is stored with it since 0015; a change an earlier
    gpuwarden stored untold is told as it would have been: not held, with no "also"."""
    stored = _untold_stored_before(
        tmp_path,
        "0014_silence_updated_at",
        "INSERT INTO untold_changes (incident_id, change, at, event_kind, event_seq)"
        " VALUES ('inc-1', 'priority_changed', '2026-01-01 00:00:00.000000', 'priority', NULL)",
    )
    assert stored.change[:2] == ("inc-1", ChangeKind.PRIORITY_CHANGED)
    assert stored.telling == Telling(merging=False, also=())


def test_a_change_stored_untold_before_0016_is_not_folded(tmp_path: Path) -> None:
    """Since 0016 a change that repeats its incident's cycle is stored folded; one stored before is told as
    it would have been (a reply of its own)."""
    stored = _untold_stored_before(
        tmp_path,
        "0015_untold_telling",
        "INSERT INTO untold_changes (incident_id, change, at, event_kind, event_seq, also)"
        " VALUES ('inc-1', 'updated', '2026-01-01 00:00:00.000000', 'quiet', NULL, '[\"x\"]')",
    )
    assert stored.telling == Telling(also=("x",), folded=None)


def _untold_stored_before(tmp_path: Path, revision: str, insert: str) -> UntoldChange:
    """The one untold change ``insert`` stored at ``revision``, as read after upgrading to the head."""
    engine = make_engine(str(tmp_path / "s.db"))
    upgrade(engine, revision)
    with engine.begin() as conn:
        conn.execute(text(insert))
    upgrade(engine)
    (stored,) = untold(sessionmaker(engine), 10)
    return stored


def test_an_alert_stored_before_0017_is_no_resolve_timeout_and_0017_downgrades(tmp_path: Path) -> None:
    """Since 0017 the store says whether an alert's endsAt is a resolve timeout (it was posted without one);
    one stored before is read as its sender's end, as the version before read it (its next post marks it).
    Downgraded, the column goes; upgraded again, it is back."""
    engine = make_engine(str(tmp_path / "s.db"))
    upgrade(engine, "0016_untold_folded")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO alerts (fingerprint, labels, annotations, status, starts_at, ends_at, source,"
                " generator_url, recommended_action, first_seen, last_seen, receive_count, flapping,"
                " transitions) VALUES ('f1', '{}', '{}', 'firing', '2026-01-01 00:00:00.000000',"
                " '2026-01-01 00:05:00.000000', 'alertmanager', '', 'none', '2026-01-01 00:00:00.000000',"
                " '2026-01-01 00:00:00.000000', 1, 0, '[]')"
            )
        )
    upgrade(engine, "0017_alert_ends_by_timeout")
    with engine.connect() as conn:
        assert conn.execute(text("SELECT ends_by_timeout FROM alerts")).all() == [(False,)]
    downgrade(engine, "0016_untold_folded")
    assert "ends_by_timeout" not in {c["name"] for c in inspect(engine).get_columns("alerts")}
    upgrade(engine)
    assert "ends_by_timeout" in {c["name"] for c in inspect(engine).get_columns("alerts")}


def test_a_thread_stored_before_0023_was_posted_for_no_known_notification_and_0023_downgrades(
    tmp_path: Path,
) -> None:
    a_thread_stored_before_0023_was_posted_for_no_known_notification(migrated_sqlite(tmp_path / "s.db"))


def test_the_silences_of_the_incidents_due_a_reminder_are_read_through_the_incident_id_index(
    tmp_path: Path,
) -> None:
    """The reminders read the silences of the incidents due (``reminding.stored_pages``) by ``incident_id``;
    without an index each such tick read every silence the store keeps (expired ones too, for the
    retention period). 0018 adds it; downgraded, it goes."""
    engine = make_engine(str(tmp_path / "s.db"))
    upgrade(engine)
    query = incident_silence_query(engine)  # as sent to the newest schema (0019's column is read too)
    plan = incident_silence_query_plan(engine, "EXPLAIN QUERY PLAN", query=query)
    assert "USING INDEX ix_silences_incident_id" in plan, plan
    downgrade(engine, "0017_alert_ends_by_timeout")
    engine.dispose()  # a pooled SQLite connection keeps planning with the schema it read
    assert "ix_silences_incident_id" not in {ix["name"] for ix in inspect(engine).get_indexes("silences")}
    assert "SCAN silences" in incident_silence_query_plan(engine, "EXPLAIN QUERY PLAN", query=query)
    upgrade(engine)
    assert "ix_silences_incident_id" in {ix["name"] for ix in inspect(engine).get_indexes("silences")}


def test_an_opening_stored_before_0019_is_read_as_told_at_the_end_of_its_delay_and_0019_downgrades(
    tmp_path: Path,
) -> None:
    an_opening_stored_before_0019_is_read_as_told_at_the_end_of_its_delay(migrated_sqlite(tmp_path / "s.db"))


def test_roots_stored_before_0020_get_their_key_and_a_fault_back_reopens_its_incident(tmp_path: Path) -> None:
    roots_stored_before_0020_get_their_key_and_a_fault_back_reopens_its_incident(
        migrated_sqlite(tmp_path / "s.db")
    )


def test_the_kept_inventory_of_0026_downgrades_and_upgrades_again(tmp_path: Path) -> None:
    the_kept_inventory_of_0026_downgrades_and_upgrades_again(migrated_sqlite(tmp_path / "s.db"))


def test_an_upgrade_says_from_which_revision_to_which_and_how_many_migrations(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    engine = make_engine(str(tmp_path / "s.db"))
    upgrade(engine)
    downgrade(engine, "0017_alert_ends_by_timeout")
    with caplog.at_level(logging.INFO, logger="alerting.migrate"):
        upgrade(engine)
        upgrade(engine)  # at its head already: nothing said
    said = [r.getMessage() for r in caplog.records if r.name == "alerting.migrate"]
    assert said[0] == (
        "store schema: migrating 0017_alert_ends_by_timeout to 0026_kept_inventory (9 migrations, in"
        " one transaction)"
    )
    assert said[1].startswith("store schema: now at 0026_kept_inventory (") and len(said) == 2


_AT = 'connection failed: connection to server at "127.0.0.1", port 5432 failed: '


@pytest.mark.parametrize(
    ("said", "outside"),
    [
        (
            f"{_AT}Connection refused\n\tIs the server running on that host and accepting TCP/IP?",
            "down",
        ),
        (f"{_AT}timeout expired", "down"),
        (f"{_AT}FATAL:  the database system is starting up", "down"),
        (f"{_AT}FATAL:  sorry, too many clients already", "down"),
        (f'{_AT}FATAL:  password authentication failed for user "gw"', None),
        (f'{_AT}FATAL:  database "nosuchdb" does not exist', None),
    ],
    ids=["refused", "timed-out", "starting-up", "too-many-clients", "password-refused", "no-such-database"],
)
def test_a_store_server_that_did_not_answer_is_down_and_one_that_refused_the_setting_is_not(
    said: str, outside: str | None
) -> None:
    # What psycopg raises at connect (measured against PostgreSQL 15: no SQLSTATE, the server's words):
    # serve's exit status says from it whether a restart can help (69) or the setting is wrong (78).
    import psycopg  # noqa: PLC0415 - a PostgreSQL store's driver, loaded by its engine only

    error = store_error("postgresql+psycopg://gw:pw@127.0.0.1/gw", psycopg.OperationalError(said))
    assert error.outside == outside


def test_a_sqlite_store_another_process_holds_locked_is_busy_and_a_missing_directory_is_not(
    tmp_path: Path,
) -> None:
    import sqlite3  # noqa: PLC0415

    locked = store_error(str(tmp_path / "s.db"), sqlite3.OperationalError("database is locked"))
    assert locked.outside == "busy"
    missing = store_error(
        str(tmp_path / "no" / "s.db"), sqlite3.OperationalError("unable to open database file")
    )
    assert missing.outside is None
