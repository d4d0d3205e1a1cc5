"""Operators acting on the outbox at the same moment (PostgreSQL: ``tests/integration``)."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from tests.alerting.outbox_races import assert_each_message_went_one_way, one_inside_the_other


@pytest.mark.parametrize("first", ["retry", "discard"])
def test_a_retry_and_a_discard_at_the_same_moment_never_both_take_a_failed_message(
    sql: Engine, first: str
) -> None:
    # Both read the failed messages before either wrote: the retry answered "requeued 5" and the discard
    # "discarded 5" for the same five, and the later write won: discarded ones ("never sent") were sent.
    requeued, discarded, counts = one_inside_the_other(sql, first)
    assert_each_message_went_one_way(first, requeued, discarded, counts)
