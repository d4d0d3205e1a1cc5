"""Wants met at once from shared pools, each drawing only on the pools open to it."""

from __future__ import annotations

import pytest

from alerting.sharing import all_met


@pytest.mark.parametrize(
    ("wants", "pools", "met"),
    [
        ([4, 4], {frozenset({0, 1}): 8}, True),
        ([4, 4], {frozenset({0, 1}): 4, frozenset({1}): 3}, False),
        # the first must leave the shared pool to the second: a greedy first-come fill would not
        ([4, 4], {frozenset({0, 1}): 4, frozenset({0}): 4}, True),
        ([3, 3, 3], {frozenset({0, 1}): 4, frozenset({1, 2}): 4, frozenset({0, 2}): 1}, True),
        ([3, 3, 3], {frozenset({0, 1}): 4, frozenset({1, 2}): 4}, False),
        ([0, 5], {frozenset({1}): 5}, True),
        ([1], {frozenset(): 9}, False),
    ],
    ids=["one-pool", "short", "leave-shared", "ring", "ring-short", "nothing-wanted", "pool-for-no-one"],
)
def test_wants_are_met_only_from_pools_open_to_them(
    wants: list[int], pools: dict[frozenset[int], int], met: bool
) -> None:
    assert all_met(wants, pools) is met
