"""The batch-order fuzz harness: one JSON line, its counts consistent with the seeds it ran."""

from __future__ import annotations

import importlib
import random
import sys

from tests.benchmarks.harness import BENCHMARKS, run_harness


def test_it_counts_the_storms_whose_incidents_differ_by_batching_among_those_it_ran() -> None:
    result = run_harness("batch_order_fuzz.py", "--seeds", "150-159", timeout=120)
    assert result["benchmark"] == "batch_order_fuzz" and result["storms"] == 10
    assert result["disagree"] == len(result["disagree_seeds"])
    assert set(result["disagree_seeds"]) <= set(range(150, 160))


def test_a_storm_keeps_one_alert_per_label_set_and_draws_the_same_for_a_seed() -> None:
    sys.path.insert(0, str(BENCHMARKS))
    try:
        fuzz = importlib.import_module("batch_order_fuzz")
    finally:
        sys.path.remove(str(BENCHMARKS))
    first, again = fuzz.storm(random.Random(7), 40), fuzz.storm(random.Random(7), 40)
    assert [a.fingerprint for a in first] == [a.fingerprint for a in again]
    assert len({frozenset(a.labels.items()) for a in first}) == len(first) < 40
