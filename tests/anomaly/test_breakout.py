from __future__ import annotations

import numpy as np

from anomaly.breakout import BreakoutParams, RangeBreakout
from tests.anomaly.stepping import feed_one


def history(n: int = 50) -> list[float]:
    return [float(i % 10) for i in range(n)]  # range 0..9


def test_nothing_fires_during_the_warm_up():
    _, raised = feed_one(RangeBreakout(BreakoutParams(warmup=50)), [0.0, 1.0, 100.0, -100.0, *history(40)])
    assert raised == []


def test_a_value_beyond_the_range_plus_margin_raises_and_one_inside_the_margin_does_not():
    params = BreakoutParams(margin=0.1, warmup=50, rearm=5)
    scores, raised = feed_one(RangeBreakout(params), [*history(), 9.5])  # margin is 0.9: 9.5 is inside
    assert raised == []
    assert scores[-1] < 1.0
    scores, raised = feed_one(RangeBreakout(params), [*history(), 10.0])
    assert raised == [50]
    assert scores[-1] > 1.0
    _, raised = feed_one(RangeBreakout(params), [*history(), -1.0])
    assert raised == [50]


def test_a_breakout_soon_after_another_does_not_raise_again_until_re_armed():
    params = BreakoutParams(margin=0.0, warmup=50, rearm=10)
    values = [*history(), 20.0, 5.0, 30.0, *([5.0] * 10), 40.0]
    _, raised = feed_one(RangeBreakout(params), values)
    assert raised == [50, 63]


def test_a_new_level_joins_the_range_and_stops_being_novel():
    params = BreakoutParams(margin=0.0, warmup=50, rearm=1)
    _, raised = feed_one(RangeBreakout(params), [*history(), 20.0, 20.0, 20.0, 15.0])
    assert raised == [50]


def test_nan_samples_are_skipped_without_changing_the_range():
    params = BreakoutParams(margin=0.0, warmup=50, rearm=1)
    scores, raised = feed_one(RangeBreakout(params), [*history(), float("nan"), 9.0, 12.0])
    assert scores[50] == 0.0
    assert raised == [52]


def test_series_are_independent_and_ids_beyond_the_capacity_grow_the_state():
    detector = RangeBreakout(BreakoutParams(margin=0.0, warmup=3, rearm=1), capacity=1)
    ids = np.array([0, 5], dtype=np.int64)
    for v in (1.0, 2.0, 3.0):
        detector.update(ids, np.array([v, 10 * v]))
    out = detector.update(ids, np.array([4.0, 25.0]))
    assert out.raised.tolist() == [True, False]
    detector.reset(np.array([0], dtype=np.int64))
    assert not detector.update(ids, np.array([100.0, 25.0])).raised.any()
