"""``outbox_counts`` (migrations 0024 and 0025), what ``/metrics`` and ``outbox list`` read: equal to a fresh
count of the messages after every path that changes the outbox; filled from the stored messages by the
upgrade, dropped by the downgrade (0025's: kept in 0024's shape)."""

from __future__ import annotations

from sqlalchemy import Engine

from tests.alerting.outbox_count_paths import (
    discard_changes_the_counts_rows_in_their_order,
    orphans_change_the_counts_rows_in_their_order,
    requeue_changes_several_notifiers_messages_by_one_statement,
    the_0025_upgrade_keeps_the_counts_and_its_downgrade_too,
    the_counts_follow_deliveries_beside_new_messages,
    the_counts_follow_every_path,
    the_upgrade_counts_the_stored_messages_and_the_downgrade_drops_them,
)


def test_the_kept_outbox_counts_equal_a_fresh_count_after_every_path_that_changes_the_outbox(
    sql: Engine,
) -> None:
    the_counts_follow_every_path(sql)


def test_the_kept_outbox_counts_follow_deliveries_beside_new_messages(sql: Engine) -> None:
    the_counts_follow_deliveries_beside_new_messages(sql)


def test_the_upgrade_to_0024_counts_the_stored_messages_and_the_downgrade_drops_the_counts(
    sql: Engine,
) -> None:
    the_upgrade_counts_the_stored_messages_and_the_downgrade_drops_them(sql)


def test_the_upgrade_to_0025_and_its_downgrade_keep_the_outbox_counts(sql: Engine) -> None:
    the_0025_upgrade_keeps_the_counts_and_its_downgrade_too(sql)


def test_outbox_retry_changes_several_notifiers_messages_by_one_statement(sql: Engine) -> None:
    requeue_changes_several_notifiers_messages_by_one_statement(sql)


def test_outbox_discard_writes_failed_messages_before_orphaned_ones(sql: Engine) -> None:
    discard_changes_the_counts_rows_in_their_order(sql)


def test_orphans_set_aside_and_taken_back_are_written_in_the_counts_rows_order(sql: Engine) -> None:
    orphans_change_the_counts_rows_in_their_order(sql)
