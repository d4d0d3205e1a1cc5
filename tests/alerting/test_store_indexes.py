"""The reads that grow with a long history go by an index (migration 0021): ``/metrics``' outbox counts and
the newest incidents of one state (``incidents list --state resolved``)."""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Engine, event, inspect

from alerting.migrate import upgrade
from alerting.outbox import Outbox
from alerting.store import IncidentStore
from gpuwarden.clock import FakeClock
from tests.alerting.migrate_steps import downgrade


def _plans(sql: Engine, read: Callable[[], object], table: str) -> list[str]:
    """SQLite's plan of each statement ``read`` ran that reads ``table``."""
    sent: list[tuple[str, object]] = []

    def record(_conn: object, _cursor: object, statement: str, parameters: object, *_: object) -> None:
        if f"FROM {table}" in statement:
            sent.append((statement, parameters))

    event.listen(sql, "before_cursor_execute", record)
    try:
        read()
    finally:
        event.remove(sql, "before_cursor_execute", record)
    with sql.connect() as conn:
        return [
            " / ".join(str(row[-1]) for row in conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {s}", p))  # type: ignore[arg-type]
            for s, p in sent
        ]


def test_the_outbox_counts_by_notifier_read_an_index_not_every_message(sql: Engine) -> None:
    # Every /metrics scrape counts each notifier's messages by status: one CASE over every row read each
    # stored message, 600,000 sent ones of a long history (2.6 s a scrape: benchmarks/README.md).
    outbox = Outbox(sql, [], FakeClock())
    plans = _plans(sql, outbox.counts_by_notifier, "notification_outbox")
    assert len(plans) == 1, plans
    assert "SCAN notification_outbox USING COVERING INDEX ix_outbox_notifier_status_incident" in plans[0], (
        plans
    )
    assert "SEARCH notification_outbox USING INDEX ix_outbox_status_id (status=?)" in plans[0], plans
    assert "SCAN notification_outbox /" not in f"{plans[0]} /", plans


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
