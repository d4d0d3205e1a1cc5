"""Taking a store down a revision, the 0019 upgrade of an opening, the 0020 one of roots, the 0023 one of
Slack threads and 0026's kept inventory: shared with the PostgreSQL test."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from alembic import command
from sqlalchemy import Engine, insert, inspect, select, text
from sqlalchemy.orm import Session

from alerting.engine import IncidentEngine
from alerting.kept_inventory import NODE, KeptInventoryStore
from alerting.migrate import alembic_config, upgrade
from alerting.outbox import Outbox
from alerting.reminders import TOLD_AT
from alerting.reminding import stored_pages
from alerting.root_places import root_key
from alerting.store_models import IncidentRow, TimelineRow
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert, AlertStatus, IncidentState


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


# Roots as stored before 0020 (``topology.target_to_dict``), and some no version wrote, away from the fault
# below (rows with no alert): each row's key after the upgrade is the one the ORM sets now
# (``root_places.root_key``), None where the root has no place.
ROOTS_BEFORE_0020 = {
    "inc-cluster": {"type": "cluster", "name": "c2"},
    "inc-rack": {"type": "rack", "cluster": "c2", "name": "r07"},
    "inc-node": {"type": "node", "cluster": "c2", "rack": "r07", "name": "n2"},
    "inc-gpu": {"type": "gpu", "node": "n2", "index": 3, "uuid": ""},
    "inc-job": {"type": "workload", "kind": "training_job", "name": "llm"},
    "inc-nameless": {"type": "node", "cluster": "c2"},
    "inc-number": {"type": "gpu", "node": 7, "index": 0},
    "inc-empty": {},
}


def roots_stored_before_0020_get_their_key_and_a_fault_back_reopens_its_incident(engine: Engine) -> None:
    """Since 0020 each incident row carries the digest of its root's place (``root_key``), which recurrence
    reads resolved incidents by; the upgrade computes it for the rows stored before, as the ORM sets it for
    new ones, and a fault back within the reopen window reopens an incident resolved before the upgrade.
    Downgraded, the column and its index go. ``engine``: a store at the newest revision; shared with the
    PostgreSQL test."""
    clock = FakeClock()
    config = AlertingConfig(announce_delay_seconds=0, quiet_period_seconds=3)
    first = IncidentEngine(engine, clock, config)
    base = {"cluster": "c1", "severity": "critical"}
    down = [
        Alert({**base, "alertname": "NodeDown", "instance": "n1:9100", "job": "node"}),
        Alert({**base, "alertname": "GPULost", "Hostname": "n1", "gpu": "0"}),
    ]
    first.ingest(down)
    [resolved] = first.open_incident_ids()
    clock.advance(1)
    first.ingest([Alert(a.labels, status=AlertStatus.RESOLVED) for a in down])
    clock.advance(4)
    first.tick()
    assert first.store.get(resolved).state is IncidentState.RESOLVED
    downgrade(engine, "0019_incident_announced_at")
    assert "root_key" not in {c["name"] for c in inspect(engine).get_columns("incidents")}
    at = clock.now()
    times = {"opened_at": at, "updated_at": at, "last_alert_at": at, "first_onset_at": at}
    with engine.begin() as conn:  # the columns 0019 has: no root_key
        for incident_id, target in ROOTS_BEFORE_0020.items():
            conn.execute(
                insert(IncidentRow.__table__).values(
                    id=incident_id,
                    title="",
                    priority="P3",
                    state="resolved",
                    root_kind="unknown",
                    root_target=target,
                    impact={},
                    resolved_at=at,
                    **times,
                )
            )
    upgrade(engine)
    with Session(engine) as session:
        keys = {i: key for i, key in session.execute(select(IncidentRow.id, IncidentRow.root_key))}
    assert keys[resolved] == root_key({"type": "node", "cluster": "c1", "rack": "?", "name": "n1"})
    assert {i: keys[i] for i in ROOTS_BEFORE_0020} == {i: root_key(t) for i, t in ROOTS_BEFORE_0020.items()}
    assert [i for i, key in keys.items() if key is None] == [
        "inc-job",
        "inc-nameless",
        "inc-number",
        "inc-empty",
    ]
    clock.advance(60)
    again = IncidentEngine(engine, clock, config)  # as serve after the upgrade
    again.ingest([Alert({**base, "alertname": "GPULost", "Hostname": "n1", "gpu": "5"})])
    assert again.store.get(resolved).state is IncidentState.TRIGGERED
    downgrade(engine, "0019_incident_announced_at")
    assert "root_key" not in {c["name"] for c in inspect(engine).get_columns("incidents")}
    assert "ix_incidents_root_key_state_merged_into_resolved_at" not in {
        ix["name"] for ix in inspect(engine).get_indexes("incidents")
    }


def a_thread_stored_before_0023_was_posted_for_no_known_notification(engine: Engine) -> None:
    """Since 0023 a thread says which notification its Slack message was posted for (its delivery does not
    edit it again); one stored before is not known to show any, so its next delivery edits it, as before.
    Downgraded, the column goes; upgraded again, it is back. ``engine``: a store at the newest revision."""
    downgrade(engine, "0022_alerts_status_index")
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO notification_threads (notifier, incident_id, channel, ts, chart_posted,"
                " updated_at) VALUES ('slack', 'inc-1', 'C1', '1.000100', false, 0.0)"
            )
        )
    assert "posted_for" not in {c["name"] for c in inspect(engine).get_columns("notification_threads")}
    upgrade(engine)
    thread = Outbox(engine, [], FakeClock()).thread("slack", "inc-1")
    assert thread is not None and (thread.channel, thread.ts, thread.posted_for) == ("C1", "1.000100", None)


def the_kept_inventory_of_0026_downgrades_and_upgrades_again(engine: Engine) -> None:
    """0026 adds ``kept_inventory`` (nodes gone from their source, Kubernetes pods lost with them, kept across
    restarts); downgraded to 0025 it goes, and what the version before never wrote goes with it; upgraded
    again it is back, empty, and keeps. ``engine``: a store at the newest revision."""
    store = KeptInventoryStore(engine, "slurm")
    store.save("c1", {(NODE, "n2"): (1.5, {"name": "n2", "cluster": "c1", "rack": "r07", "gpus": 8})})
    assert store.load("c1") == {
        (NODE, "n2"): (1.5, {"name": "n2", "cluster": "c1", "rack": "r07", "gpus": 8})
    }
    downgrade(engine, "0025_outbox_count_sides")
    engine.dispose()  # a pooled SQLite connection keeps the schema it read
    assert "kept_inventory" not in inspect(engine).get_table_names()
    upgrade(engine)
    assert "kept_inventory" in inspect(engine).get_table_names() and store.load("c1") == {}
    store.save("c1", {(NODE, "n1"): (2.0, {"name": "n1"})})
    assert list(store.load("c1")) == [(NODE, "n1")]
