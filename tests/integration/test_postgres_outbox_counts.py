"""``outbox_counts`` (migrations 0024 and 0025) on a real, throwaway PostgreSQL 15: kept by statement
triggers, equal to a fresh count of the messages after every path that changes the outbox, and with writers
at once; the outbox marks a message sent while a retention slice deleting sent ones is open."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import Engine

from alerting.db import make_engine
from alerting.migrate import upgrade
from tests.alerting.outbox_count_paths import (
    a_message_is_marked_sent_beside_a_retention_slice,
    discard_changes_the_counts_rows_in_their_order,
    orphans_change_the_counts_rows_in_their_order,
    requeue_changes_several_notifiers_messages_by_one_statement,
    the_0025_upgrade_keeps_the_counts_and_its_downgrade_too,
    the_counts_follow_deliveries_beside_new_messages,
    the_counts_follow_every_path,
    the_upgrade_counts_the_stored_messages_and_the_downgrade_drops_them,
)


@pytest.mark.integration
@pytest.mark.parametrize(
    "scenario",
    [
        the_counts_follow_every_path,
        the_counts_follow_deliveries_beside_new_messages,
        the_upgrade_counts_the_stored_messages_and_the_downgrade_drops_them,
        the_0025_upgrade_keeps_the_counts_and_its_downgrade_too,
        requeue_changes_several_notifiers_messages_by_one_statement,
        discard_changes_the_counts_rows_in_their_order,
        orphans_change_the_counts_rows_in_their_order,
    ],
    ids=[
        "every-path",
        "writers-at-once",
        "upgrade-and-downgrade",
        "0025-and-back",
        "requeue-in-one-statement",
        "discard-in-order",
        "orphans-in-order",
    ],
)
def test_on_postgres_the_kept_outbox_counts_equal_a_fresh_count(
    postgres_url: str, scenario: Callable[[Engine], None]
) -> None:
    sql = make_engine(postgres_url)
    upgrade(sql)
    scenario(sql)
    sql.dispose()


@pytest.mark.integration
def test_on_postgres_marking_a_message_sent_does_not_wait_for_a_retention_slice(postgres_url: str) -> None:
    # The slice's delete of a notifier's sent messages held that notifier's `sent` counts row until its
    # commit (0024), and marking its next message sent changed that row: it waited for the whole slice. A
    # connection that gives up on a lock after 10 s shows a wait as an error, not as a time.
    sql = make_engine(postgres_url)
    upgrade(sql)
    impatient = make_engine(f"{postgres_url}?options=-c%20lock_timeout%3D10000")
    a_message_is_marked_sent_beside_a_retention_slice(sql, impatient)
    impatient.dispose()
    sql.dispose()
