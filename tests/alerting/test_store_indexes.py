"""The reads that grow with a long history go by an index (migrations 0021 and 0022) or a table of counts
(0024, 0025): ``/metrics``' and ``outbox list``'s outbox counts, the newest incidents of one state
(``incidents list --state resolved``), the firing alerts; and ``outbox retry`` reads the sent messages of
the failed ones' incidents alone."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from sqlalchemy import Engine, inspect

from alerting.migrate import upgrade
from alerting.notifiers.base import Notifier
from alerting.outbox import Outbox
from alerting.store import IncidentStore
from gpuwarden.clock import FakeClock
from tests.alerting.migrate_steps import downgrade
from tests.alerting.query_plans import NamedNotifier, firing_alert_plans, retry_plans, statement_plans


def _plans(sql: Engine, read: Callable[[], object], table: str) -> list[str]:
    """SQLite's plan of each statement ``read`` ran that reads ``table``."""
    return statement_plans(sql, read, table)


def test_the_outbox_counts_by_notifier_read_the_kept_counts_not_every_message(sql: Engine) -> None:
    # Every /metrics scrape counts each notifier's messages by status: one CASE over every row read each
    # stored message, 600,000 sent ones of a long history (2.6 s a scrape: benchmarks/README.md); a count of
    # the (notifier, status) index still read each entry of it (86-330 ms on PostgreSQL). The counts are
    # kept in outbox_counts (0024); of the messages only the few pending are read, for the held ones.
    outbox = Outbox(sql, [], FakeClock())
    plans = _plans(sql, outbox.counts_by_notifier, "notification_outbox")
    assert len(plans) == 1, plans
    assert "SCAN outbox_counts" in plans[0], plans
    assert "SEARCH notification_outbox USING INDEX ix_outbox_status_id (status=?)" in plans[0], plans
    assert "SCAN notification_outbox" not in plans[0], plans


def test_the_outbox_counts_of_every_incident_read_the_kept_counts_not_every_message(sql: Engine) -> None:
    # `outbox list` with no incident (its counts by status and how many are held) grouped every stored
    # message by status: 136 ms beside 600,000 sent messages on PostgreSQL (benchmarks/README.md), while
    # the counts it sums are kept in outbox_counts (0024, 0025), as /metrics reads them.
    outbox = Outbox(sql, [], FakeClock())
    for read in (outbox.depths, outbox.counts):
        plans = _plans(sql, read, "notification_outbox")
        assert len(plans) == 1, plans
        assert "SCAN outbox_counts" in plans[0], plans
        assert "SCAN notification_outbox" not in plans[0], plans


def test_the_newest_incidents_of_one_state_are_read_in_the_order_of_an_index(sql: Engine) -> None:
    # `incidents list --state resolved` (limit 50): SQLite sorted every resolved incident, (state,
    # resolved_at) not being the list's order (1.4 s beside 100,000 resolved incidents).
    store = IncidentStore(sql)
    plans = _plans(sql, lambda: store.list_rows("resolved", include_merged=True, limit=50), "incidents")
    assert len(plans) == 1, plans
    assert "SEARCH incidents USING INDEX ix_incidents_state_last_opened_at (state=?)" in plans[0], plans
    assert "USE TEMP B-TREE FOR ORDER BY" not in plans[0], plans


def test_0021_goes_down_to_0020_and_up_again(sql: Engine) -> None:
    def indexes() -> set[str]:
        found = {i["name"] for t in ("notification_outbox", "incidents") for i in inspect(sql).get_indexes(t)}
        return found & {"ix_outbox_notifier_status_incident", "ix_incidents_state_last_opened_at"}

    assert indexes() == {"ix_outbox_notifier_status_incident", "ix_incidents_state_last_opened_at"}
    downgrade(sql, "0020_incidents_root_key")
    assert indexes() == set()
    upgrade(sql)
    assert indexes() == {"ix_outbox_notifier_status_incident", "ix_incidents_state_last_opened_at"}


def test_a_next_page_of_one_state_starts_at_its_key_in_the_index(sql: Engine) -> None:
    # `incidents list --state resolved --continue TOKEN`: the page after a key reads from the key on in
    # (state, last_opened_at, opened_at), not from the newest incident on, nor sorting every resolved one.
    store = IncidentStore(sql)
    at = FakeClock().now()
    plans = _plans(
        sql,
        lambda: store.list_rows("resolved", include_merged=True, limit=51, after=(at, at, "inc-1")),
        "incidents",
    )
    assert len(plans) == 2, plans  # the page, then (it is short) those without a last_opened_at, sorted last
    assert (
        "SEARCH incidents USING INDEX ix_incidents_state_last_opened_at (state=? AND last_opened_at<?)"
        in (plans[0])
    ), plans
    assert "(state=? AND last_opened_at=?)" in plans[1], plans  # IS NULL
    assert not any("USE TEMP B-TREE FOR ORDER BY" in p for p in plans), plans


def test_the_firing_alerts_are_read_through_the_status_index_not_the_whole_history(sql: Engine) -> None:
    # The alerts table keeps the resolved alerts of the retention period; with no index on the status, the
    # list of GET /api/v2/alerts, each tick's read of the firing alerts past their endsAt and the engine's
    # rebuild read every alert (300,000 beside 100,000 resolved incidents: 0.14 s each). Migration 0022.
    plans = firing_alert_plans(sql, "EXPLAIN QUERY PLAN")
    [listed] = plans["listed"]
    assert "SEARCH alerts USING INDEX ix_alerts_status_ends_at (status=?)" in listed, listed
    ticked = [p for p in plans["ticked"] if "ix_alerts_status_ends_at" in p]
    assert ticked == ["SEARCH alerts USING INDEX ix_alerts_status_ends_at (status=? AND ends_at<?)"], plans
    assert plans["rebuilt"] and not any(p.startswith("SCAN alerts") for p in plans["rebuilt"]), plans


def test_0022_goes_down_to_0021_and_up_again(sql: Engine) -> None:
    def indexes() -> set[str]:
        return {i["name"] for i in inspect(sql).get_indexes("alerts")} & {"ix_alerts_status_ends_at"}

    assert indexes() == {"ix_alerts_status_ends_at"}
    downgrade(sql, "0021_listing_indexes")
    assert indexes() == set()
    upgrade(sql)
    assert indexes() == {"ix_alerts_status_ends_at"}


def test_a_retry_reads_the_sent_messages_of_the_failed_ones_incidents_only(sql: Engine) -> None:
    # `outbox retry` asks, for each failed message, whether a later one of its incident went out already:
    # it grouped every sent message of the history for that, read by status alone (600,000 messages: 2.3 s
    # with none failed, 5 s with one).
    outbox = Outbox(sql, [cast(Notifier, NamedNotifier("slack"))], FakeClock())
    assert len(_plans(sql, outbox.requeue_failed, "notification_outbox")) == 1  # none failed: none read
    plans = retry_plans(sql, "EXPLAIN QUERY PLAN")
    assert len(plans) == 2, plans  # the failed ones, then the newest sent of their incidents
    assert "incident_id=?" in plans[1], plans
    statuses = [m.status for m in sorted(outbox.messages(limit=10), key=lambda m: m.id)]
    assert statuses == ["sent", "failed", "sent", "pending", "sent"]  # inc-b's overtaken; inc-c's queued
