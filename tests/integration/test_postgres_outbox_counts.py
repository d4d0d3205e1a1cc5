"""``outbox_counts`` (migration 0024) on a real, throwaway PostgreSQL 15: kept by statement triggers, equal
to a fresh count of the messages after every path that changes the outbox, and with writers at once."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import Engine

from alerting.db import make_engine
from alerting.migrate import upgrade
from tests.alerting.outbox_count_paths import (
    discard_changes_the_counts_rows_in_their_order,
    orphans_change_the_counts_rows_in_their_order,
    requeue_changes_several_notifiers_messages_by_one_statement,
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
        requeue_changes_several_notifiers_messages_by_one_statement,
        discard_changes_the_counts_rows_in_their_order,
        orphans_change_the_counts_rows_in_their_order,
    ],
    ids=[
        "every-path",
        "writers-at-once",
        "upgrade-and-downgrade",
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
