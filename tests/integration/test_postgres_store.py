"""The incident store on a real, throwaway PostgreSQL 15: migrations, a storm, and a restart."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import orjson
import pytest
from sqlalchemy import event, func, inspect, select, text
from sqlalchemy.orm import Session

from alerting import scenarios
from alerting.applier import JournalApplier
from alerting.db import make_engine
from alerting.engine import IncidentEngine
from alerting.journal import KIND_POSTABLE, AcceptJournal, applied_offset
from alerting.migrate import upgrade
from alerting.notifiers.recorder import SlackRecorder
from alerting.outbox_tables import SENT, OutboxMessage, stored_names
from alerting.store_models import IncidentRow
from gpuwarden.clock import FakeClock
from gpuwarden.model import Alert, AlertStatus, IncidentState, RackRef, label_fingerprint
from tests.alerting.migrate_steps import (
    a_thread_stored_before_0023_was_posted_for_no_known_notification,
    an_opening_stored_before_0019_is_read_as_told_at_the_end_of_its_delay,
    downgrade,
    roots_stored_before_0020_get_their_key_and_a_fault_back_reopens_its_incident,
)
from tests.alerting.outbox_deliveries import webhook_edits_flipping_every_30_s
from tests.alerting.outbox_races import assert_each_message_went_one_way, one_inside_the_other
from tests.alerting.query_plans import (
    firing_alert_plans,
    incident_silence_query_plan,
    resolved_incident_indexes,
    resolved_incident_query_plans,
    retry_plans,
)
from tests.alerting.recurrence_shapes import near_both_ways
from tests.alerting.reminding_night import (
    a_restart_offers_the_outbox_no_opening_the_store_says_was_announced,
    an_incident_of_before_0019_is_stored_as_announced_at_the_end_of_its_delay,
)
from tests.alerting.store_scenarios import (
    a_held_update_is_counted_held_not_pending,
    a_merged_incident_shows_the_alerts_it_handed_over,
    a_rate_limit_pause_outlives_a_restart,
    history_then_back,
    requeued_job_named_after_restart,
)
from tests.integration.postgres import Postgres


@pytest.mark.integration
def test_storm_on_postgres_is_one_rack_incident_and_survives_a_restart(postgres_url: str) -> None:
    sql = make_engine(postgres_url)
    upgrade(sql)
    upgrade(sql)  # idempotent
    assert {"alerts", "incidents", "timeline", "silences"} <= set(inspect(sql).get_table_names())
    clock = FakeClock()
    inventory = scenarios.fleet_inventory()
    engine = IncidentEngine(sql, clock, inventory=inventory)
    storm = scenarios.rack_failure(7, clock.now()) + scenarios.node_failure(3, 2, clock.now())
    for i in range(0, 150, 25):
        engine.ingest(storm[i : i + 25])
    sql.dispose()

    second = make_engine(postgres_url)
    restarted = IncidentEngine(second, clock, inventory=inventory)
    for i in range(150, len(storm), 25):
        restarted.ingest(storm[i : i + 25])
    rows = [(r, n) for r, n in restarted.store.list_rows() if r.state != IncidentState.RESOLVED.value]
    assert sorted((r.root_kind, r.priority) for r, _ in rows) == [("node_down", "P2"), ("rack_down", "P0")]
    assert sum(n for _, n in rows) == len(storm)
    rack = next(r for r, _ in rows if r.root_kind == "rack_down")
    incident = restarted.store.get(rack.id)
    assert incident.root_cause.target == RackRef("c1", "r07")
    assert incident.opened_at.tzinfo is not None
    assert restarted.acknowledge(rack.id, "pg-user").state is IncidentState.ACKNOWLEDGED

    # Resolved, then forgotten after the retention period (90 days by default).
    resolved = [replace(a, status=AlertStatus.RESOLVED) for a in storm]
    for i in range(0, len(resolved), 100):
        restarted.ingest(resolved[i : i + 100])
    clock.advance(restarted.config.quiet_period_seconds + 1)
    restarted.tick()
    assert list(restarted.open_incident_ids()) == []
    clock.advance(91 * 86_400)
    with second.connect() as conn:  # with the incidents the storm merged away
        stored = conn.execute(select(func.count()).select_from(IncidentRow)).scalar_one()
    pruned = restarted.prune()
    assert (pruned.incidents, len(pruned.alerts)) == (stored, len(storm))
    assert (restarted.store.alert_count(), restarted.store.list_rows()) == (0, [])
    second.dispose()


@pytest.mark.integration
def test_on_postgres_repeats_keep_the_later_end_of_an_overlap_and_take_an_open_one(postgres_url: str) -> None:
    """The repeats' one UPDATE compares the stored endsAt with a bound one that may be null (a webhook
    alert's open end): PostgreSQL must type that parameter, as SQLite need not."""
    sql = make_engine(postgres_url)
    upgrade(sql)
    clock = FakeClock()
    engine = IncidentEngine(sql, clock)
    now, minute = clock.now(), timedelta(minutes=1)
    ha, hooked = {"alertname": "HA", "node": "n1"}, {"alertname": "Hooked", "node": "n1"}
    engine.ingest([Alert(ha, starts_at=now - minute, ends_at=now + 4 * minute), Alert(hooked)])
    engine.ingest([Alert(ha, starts_at=now - minute, ends_at=now + minute), Alert(hooked)])  # repeats
    ends = {a.labels["alertname"]: a.ends_at for a in engine.store.firing_alerts()}
    assert ends == {"HA": now + 4 * minute, "Hooked": None}
    sql.dispose()


@pytest.mark.integration
def test_on_postgres_the_resolve_timeout_mark_outlives_a_restart_and_0017_downgrades(
    postgres_url: str,
) -> None:
    """The repeats' UPDATE writes the mark (a boolean bound to PostgreSQL's type) and reads it in its CASE;
    a restarted engine lets an explicit earlier endsAt stand over a timeout; 0017 goes down and up again."""
    sql = make_engine(postgres_url)
    upgrade(sql)
    clock = FakeClock()
    now, minute = clock.now(), timedelta(minutes=1)
    labels = {"alertname": "Open", "node": "n1"}
    engine = IncidentEngine(sql, clock)
    engine.ingest([Alert(labels, ends_at=now + 15 * minute)])
    # Posted again without endsAt (a repeat: the fast path): the later explicit end stays, as a timeout.
    engine.ingest([Alert(labels, ends_at=now + 5 * minute, timeout=True)])
    engine = IncidentEngine(sql, clock)
    engine.ingest([Alert(labels, ends_at=now + minute)])
    assert [a.ends_at for a in engine.store.firing_alerts()] == [now + minute]
    downgrade(sql, "0016_untold_folded")
    assert "ends_by_timeout" not in {c["name"] for c in inspect(sql).get_columns("alerts")}
    upgrade(sql)
    assert "ends_by_timeout" in {c["name"] for c in inspect(sql).get_columns("alerts")}
    sql.dispose()


@pytest.mark.integration
def test_on_postgres_a_fault_back_through_another_alert_reopens_its_incident_and_another_fault_does_not(
    postgres_url: str,
) -> None:
    sql = make_engine(postgres_url)
    upgrade(sql)
    clock = FakeClock()
    engine = IncidentEngine(sql, clock, inventory=scenarios.fleet_inventory())
    storm = scenarios.rack_failure(7, clock.now(), stalled_job=None)
    for i in range(0, len(storm), 64):
        engine.ingest(storm[i : i + 64])
    [rack] = engine.open_incident_ids()
    engine.ingest([replace(a, status=AlertStatus.RESOLVED) for a in storm])
    clock.advance(engine.config.quiet_period_seconds + 1)
    engine.tick()
    assert list(engine.open_incident_ids()) == []
    clock.advance(600)
    # A bad driver on the repaired rack: a new fault, its own incident (the stored root read from JSON).
    xids = scenarios.driver_rollout_xids((7,), clock.now(), stalled_job=None)
    engine.ingest([a for a in xids if a.labels["Hostname"] == "r07-n01"])
    [rollout] = engine.open_incident_ids()
    assert rollout != rack
    # A node of it hangs: the rack's outage back through alerts it never had, so the rack's incident.
    hung = [Alert({**a.labels, "alertname": "GPUHung"}) for a in scenarios.node_failure(7, 5, clock.now())]
    engine.ingest([a for a in hung if "gpu" in a.labels])
    assert sorted(engine.open_incident_ids()) == sorted([rack, rollout])
    assert [e.kind for e in engine.store.get(rack).timeline].count("reopened") == 1
    sql.dispose()


@pytest.mark.integration
def test_accept_journal_commits_its_offset_in_postgres_and_replays_only_the_rest(
    postgres_url: str, tmp_path: Path
) -> None:
    sql = make_engine(postgres_url)
    upgrade(sql)
    directory = tmp_path / "journal"  # a PostgreSQL store keeps its journal in a local data directory
    journal = AcceptJournal(directory, lambda jid: applied_offset(sql, jid))
    applier = JournalApplier(journal, IncidentEngine(sql, FakeClock(), inventory=scenarios.fleet_inventory()))
    body = [{"labels": {"alertname": "NodeDown", "cluster": "c1", "node": "r01-n01"}}]
    journal.append(KIND_POSTABLE, orjson.dumps(body), 1)
    applier.apply_available()
    body[0]["labels"]["node"] = "r01-n02"
    end = journal.append(KIND_POSTABLE, orjson.dumps(body), 1)  # acknowledged, not applied: then a crash
    journal.close()

    engine = IncidentEngine(sql, FakeClock(), inventory=scenarios.fleet_inventory())
    replay = JournalApplier(AcceptJournal(directory, lambda jid: applied_offset(sql, jid)), engine)
    assert replay.apply_available() == 1
    assert applied_offset(sql, journal.journal_id) == end
    assert engine.store.alert_count() == 2
    assert len(engine.store.list_rows()) == 1
    sql.dispose()


@pytest.mark.integration
def test_a_record_postgres_refuses_is_quarantined_and_the_next_one_applied(
    postgres_url: str, tmp_path: Path
) -> None:
    # PostgreSQL text cannot hold NUL, which JSON and Prometheus label values can. Serve now refuses it
    # before the 200; a journal written by an earlier version that took it still holds such a record, which
    # must not stop the records behind it.
    sql = make_engine(postgres_url)
    upgrade(sql)
    journal = AcceptJournal(tmp_path / "journal", lambda jid: applied_offset(sql, jid))
    engine = IncidentEngine(sql, FakeClock(), inventory=scenarios.fleet_inventory())
    applier = JournalApplier(journal, engine, poison_after=2)
    bad = [{"labels": {"alertname": "NodeDown", "cluster": "c9", "node": "x1\u0000"}}]
    good = [{"labels": {"alertname": "NodeDown", "cluster": "c1", "node": "r01-n03"}}]
    journal.append(KIND_POSTABLE, orjson.dumps(bad), 1)
    end = journal.append(KIND_POSTABLE, orjson.dumps(good), 1)
    failures = 0
    for _ in range(10):
        try:
            if applier.apply_available() == 0:
                break
        except Exception:  # the applier's loop retries
            failures += 1
    assert applier.quarantined == 1
    assert applied_offset(sql, journal.journal_id) == end
    assert engine.store.alert(label_fingerprint(good[0]["labels"])) is not None
    assert len(list((tmp_path / "journal" / "quarantine").glob("*.json"))) == 1
    sql.dispose()


@pytest.mark.integration
@pytest.mark.parametrize("action", ["acknowledge", "resolve"])
def test_an_ack_or_resolve_waits_for_a_concurrent_one_in_flight_and_then_changes_nothing(
    postgres_url: str, action: str
) -> None:
    # A retry while the first attempt's COMMIT is still in flight: the check read the state without a row
    # lock and saw it unchanged, so the retry wrote a second event once the first committed.
    sql = make_engine(postgres_url)
    upgrade(sql)
    clock = FakeClock()
    engine = IncidentEngine(sql, clock)
    labels = {"alertname": "NodeDown", "cluster": "c1", "node": "x1"}
    engine.ingest([Alert(labels)])
    engine.ingest([Alert(labels, status=AlertStatus.RESOLVED)])  # resolvable by hand
    [incident_id] = engine.open_incident_ids()
    kind = "acknowledged" if action == "acknowledge" else "resolved"  # the state and its event
    with sql.connect() as first:  # the first attempt: written, its COMMIT not yet done
        first.execute(text("UPDATE incidents SET state = :s WHERE id = :i"), {"s": kind, "i": incident_id})
        first.execute(
            text(
                "INSERT INTO timeline (incident_id, at, kind, message, data)"
                " VALUES (:i, now(), :k, 'the first attempt', '{\"by\": \"alice\"}')"
            ),
            {"i": incident_id, "k": kind},
        )
        first_pid = first.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with ThreadPoolExecutor(1) as pool:
            retry = pool.submit(getattr(engine, f"{action}_outcome"), incident_id, "alice")
            while not first.execute(  # the retry waits for the first attempt's row lock
                text("SELECT count(*) FROM pg_locks WHERE NOT granted AND :p = ANY(pg_blocking_pids(pid))"),
                {"p": first_pid},
            ).scalar_one():
                assert not retry.done(), retry.result()
                time.sleep(0.01)
            first.commit()
            outcome = retry.result()
    assert not outcome.changed
    timeline = engine.store.get(incident_id).timeline
    assert [e.kind for e in timeline].count(kind) == 1, [e.message for e in timeline]
    sql.dispose()


@pytest.mark.integration
@pytest.mark.parametrize("first", ["retry", "discard"])
def test_on_postgres_a_retry_and_a_discard_at_the_same_moment_never_both_take_a_failed_message(
    postgres_url: str, first: str
) -> None:
    # READ COMMITTED: each read the failed messages, the later UPDATE waited for the other's row locks and
    # then wrote over it; messages `outbox discard` said would never be sent were sent.
    sql = make_engine(postgres_url)
    upgrade(sql)
    requeued, discarded, counts = one_inside_the_other(sql, first)
    assert_each_message_went_one_way(first, requeued, discarded, counts)
    sql.dispose()


@pytest.mark.integration
def test_on_postgres_resolved_incidents_are_read_through_the_state_resolved_at_and_root_key_indexes(
    postgres_url: str,
) -> None:
    sql = make_engine(postgres_url)
    upgrade(sql)
    indexes = {ix["name"]: ix["column_names"] for ix in inspect(sql).get_indexes("incidents")}
    assert indexes.get("ix_incidents_state_resolved_at") == ["state", "resolved_at"]
    root_key = indexes.get("ix_incidents_root_key_state_merged_into_resolved_at")
    assert root_key == ["root_key", "state", "merged_into", "resolved_at"]
    # A day's incidents resolved, with the table's statistics: the planner weighs the indexes by them (with
    # one incident, it takes either). A store this small is read whole; forbid that to see which index.
    setup = ("ANALYZE incidents", "SET enable_seqscan = off")
    plans = resolved_incident_indexes(resolved_incident_query_plans(sql, "EXPLAIN", *setup, beside=2000))
    assert len(plans) >= 3, plans  # recurrence: any at all, those near the node; retention
    assert any(index.startswith("ix_incidents_root_key") for index, _ in plans), plans
    assert all(f" {index} " in plan for index, plan in plans), "\n".join(p for _, p in plans)
    sql.dispose()


@pytest.mark.integration
def test_on_postgres_the_silences_of_incidents_are_read_through_the_incident_id_index_and_0018_downgrades(
    postgres_url: str,
) -> None:
    sql = make_engine(postgres_url)
    upgrade(sql)
    indexes = {ix["name"]: ix["column_names"] for ix in inspect(sql).get_indexes("silences")}
    assert indexes.get("ix_silences_incident_id") == ["incident_id"]
    # A store this small is read whole; forbid that to see which index the planner would pick.
    plan = incident_silence_query_plan(sql, "EXPLAIN", "SET enable_seqscan = off")
    assert "ix_silences_incident_id" in plan, plan
    downgrade(sql, "0017_alert_ends_by_timeout")
    assert "ix_silences_incident_id" not in {ix["name"] for ix in inspect(sql).get_indexes("silences")}
    upgrade(sql)
    assert "ix_silences_incident_id" in {ix["name"] for ix in inspect(sql).get_indexes("silences")}
    sql.dispose()


@pytest.mark.integration
def test_on_postgres_a_new_fault_asks_about_the_incidents_the_json_query_picked_for_every_shape(
    postgres_url: str,
) -> None:
    """As on SQLite (``tests/alerting/test_recurrence.py``): PostgreSQL's ``->>`` read the JSON then."""
    sql = make_engine(postgres_url)
    upgrade(sql)
    picked = near_both_ways(sql)
    assert [(path, after) for path, _, after in picked] == [(path, before) for path, before, _ in picked]
    assert sum(len(after) for _, _, after in picked) >= 20  # the shapes are asked about, not missed
    sql.dispose()


@pytest.mark.integration
def test_on_postgres_roots_stored_before_0020_get_their_key_and_a_fault_back_reopens_its_incident(
    postgres_url: str,
) -> None:
    sql = make_engine(postgres_url)
    upgrade(sql)
    roots_stored_before_0020_get_their_key_and_a_fault_back_reopens_its_incident(sql)
    sql.dispose()


@pytest.mark.integration
def test_on_postgres_an_opening_stored_before_0019_is_told_after_its_delay_and_0019_downgrades(
    postgres_url: str,
) -> None:
    sql = make_engine(postgres_url)
    upgrade(sql)
    an_opening_stored_before_0019_is_read_as_told_at_the_end_of_its_delay(sql)
    sql.dispose()


@pytest.mark.integration
def test_on_postgres_a_thread_stored_before_0023_was_posted_for_no_known_notification_and_0023_downgrades(
    postgres_url: str,
) -> None:
    sql = make_engine(postgres_url)
    upgrade(sql)
    a_thread_stored_before_0023_was_posted_for_no_known_notification(sql)
    sql.dispose()


@pytest.mark.integration
@pytest.mark.parametrize("delay", [10, 0], ids=["delay-10s", "no-delay"])
@pytest.mark.parametrize(
    "restart",
    [
        a_restart_offers_the_outbox_no_opening_the_store_says_was_announced,
        an_incident_of_before_0019_is_stored_as_announced_at_the_end_of_its_delay,
    ],
    ids=["announced", "stored-before-0019"],
)
def test_on_postgres_a_restart_offers_the_outbox_no_opening_the_store_says_was_announced(
    postgres_url: str, delay: float, restart: Callable[[str, float], None]
) -> None:
    sql = make_engine(postgres_url)
    upgrade(sql)
    sql.dispose()
    restart(postgres_url, delay)


@pytest.mark.integration
def test_a_requeued_job_and_a_rate_limit_pause_are_kept_in_postgres_across_a_serve_restart(
    postgres_url: str,
) -> None:
    # One server for both: each PostgreSQL started costs the suite seconds.
    sql = make_engine(postgres_url)
    upgrade(sql)
    requeued_job_named_after_restart(sql)
    with SlackRecorder() as recorder:
        a_rate_limit_pause_outlives_a_restart(sql, recorder)


@pytest.mark.integration
def test_on_postgres_an_incident_merged_into_another_shows_the_alerts_it_handed_over(
    postgres_url: str,
) -> None:
    a_merged_incident_shows_the_alerts_it_handed_over(postgres_url)


@pytest.mark.integration
@pytest.mark.parametrize("restarts", [False, True], ids=["one-serve", "restarted"])
def test_on_postgres_a_webhook_gets_a_flipping_recommendation_once_per_edit_interval(
    postgres_url: str, restarts: bool
) -> None:
    sql = make_engine(postgres_url)
    upgrade(sql)
    with SlackRecorder() as recorder:
        webhook_edits_flipping_every_30_s(sql, recorder, restarts)
    sql.dispose()


@pytest.mark.integration
def test_on_postgres_a_webhook_update_held_on_purpose_is_counted_held(postgres_url: str) -> None:
    sql = make_engine(postgres_url)
    upgrade(sql)
    with SlackRecorder() as recorder:
        a_held_update_is_counted_held_not_pending(sql, recorder)
    sql.dispose()


@pytest.mark.integration
def test_on_postgres_a_retry_reads_the_sent_messages_of_the_failed_ones_incidents_only(
    postgres_url: str,
) -> None:
    sql = make_engine(postgres_url)
    upgrade(sql)
    # A store this small is read whole; forbid that to see what the planner would read by.
    retried = retry_plans(sql, "EXPLAIN", "SET enable_seqscan = off")
    assert len(retried) == 2 and "incident_id" in retried[1].split("Index Cond", 1)[-1], retried
    sql.dispose()


@pytest.mark.integration
def test_on_postgres_the_firing_alerts_are_read_through_the_status_index_and_0022_downgrades(
    postgres_url: str,
) -> None:
    sql = make_engine(postgres_url)
    upgrade(sql)
    indexes = {ix["name"]: ix["column_names"] for ix in inspect(sql).get_indexes("alerts")}
    assert indexes.get("ix_alerts_status_ends_at") == ["status", "ends_at"]
    # A store this small is read whole; forbid that to see which index the planner would pick.
    plans = firing_alert_plans(sql, "EXPLAIN", "SET enable_seqscan = off")
    [listed] = plans["listed"]
    assert "ix_alerts_status_ends_at" in listed, listed
    assert any("ix_alerts_status_ends_at" in p and "ends_at <=" in p for p in plans["ticked"]), plans
    assert not any("Seq Scan on alerts" in p for p in plans["rebuilt"]), plans
    downgrade(sql, "0021_listing_indexes")
    assert "ix_alerts_status_ends_at" not in {ix["name"] for ix in inspect(sql).get_indexes("alerts")}
    upgrade(sql)
    assert "ix_alerts_status_ends_at" in {ix["name"] for ix in inspect(sql).get_indexes("alerts")}
    sql.dispose()


@pytest.mark.integration
def test_on_postgres_an_alert_of_the_history_back_after_a_restart_reads_as_if_serve_never_stopped(
    _module_postgres: Postgres,
) -> None:
    # A start reads the statuses of the firing alerts only; a resolved one is read when it comes again.
    urls = [_module_postgres.new_database(f"history_{restart}") for restart in ("yes", "no")]
    for url in urls:
        sql = make_engine(url)
        upgrade(sql)
        sql.dispose()
    assert history_then_back(urls[0], restart=True) == history_then_back(urls[1], restart=False)


@pytest.mark.integration
def test_on_postgres_the_outbox_notifiers_are_read_in_one_round_trip_through_the_index(
    postgres_url: str,
) -> None:
    # One statement per notifier and one more were one round trip each to the server (5-30 ms apiece on a
    # loaded client): most of `outbox list --incident` and its counts, twice in every retention slice.
    sql = make_engine(postgres_url)
    upgrade(sql)
    with Session(sql) as session, session.begin():
        for n, notifier in enumerate(("webhook:b", "slack", "webhook:a", "slack")):
            row = OutboxMessage(
                notifier=notifier, incident_id=f"inc-{n}", idempotency_key=str(n), payload="{}"
            )
            row.status, row.attempts, row.created_at, row.next_attempt_at = SENT, 1, 0.0, 0.0
            session.add(row)
    sent: list[str] = []
    event.listen(sql, "before_cursor_execute", lambda _c, _k, statement, *_: sent.append(statement))
    with Session(sql) as session:
        names = stored_names(session, OutboxMessage.notifier)
    assert names == ["slack", "webhook:a", "webhook:b"]
    assert len(sent) == 1, sent
    with sql.connect() as conn:
        conn.exec_driver_sql("SET enable_seqscan = off")  # four rows are read whole; see which index
        # ANALYZE: a plain EXPLAIN leaves out the plan of the recursive step's subquery.
        plan = "\n".join(str(row[0]) for row in conn.exec_driver_sql(f"EXPLAIN ANALYZE {sent[0]}"))
    assert plan.count("Index Only Scan using ix_outbox_notifier") == 2 and "Seq Scan" not in plan, plan
    sql.dispose()
