"""What a PromQL read says of the sizes of its requests: a count of one is said as one."""

from __future__ import annotations

import logging

import pytest

from anomaly.read_said import say_parts


@pytest.mark.parametrize(
    ("found", "grown", "said"),
    [
        (
            [("q1", 2, "422", 1)],
            [],
            "promql: query q1: a read of 2 steps was refused (422); it is read in parts of at most 1 step",
        ),
        (
            [("q1", 1, "422", 1), ("q2", 2, "422", 1)],
            [],
            "promql: 2 queries: a read was refused (422); each is read in parts: q1 (1 step refused, parts of"
            " at most 1), q2 (2 steps refused, parts of at most 1)",
        ),
        (
            [],
            [("q1", 1)],
            "promql: query q1: parts of 1 step were answered; it is read in parts that long from now on",
        ),
        (
            [],
            [("q1", 1), ("q2", 3)],
            "promql: 2 queries: longer parts were answered; each is read in parts that long from now on: q1"
            " (1 step), q2 (3 steps)",
        ),
    ],
    ids=["one-query-refused", "queries-refused", "one-query-grown", "queries-grown"],
)
def test_a_part_of_one_step_is_said_as_one_step_not_one_steps(
    caplog: pytest.LogCaptureFixture,
    found: list[tuple[str, int, str, int]],
    grown: list[tuple[str, int]],
    said: str,
) -> None:
    with caplog.at_level(logging.INFO, logger="anomaly.promhttp"):
        say_parts("prometheus", found, grown)
    assert [record.getMessage() for record in caplog.records] == [said]
