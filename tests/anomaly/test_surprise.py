from __future__ import annotations

from statistics import NormalDist

import numpy as np
import pytest

from anomaly.surprise import PredictionSurprise, SurpriseParams, raise_many
from tests.anomaly.stepping import feed_one, feed_rows

PARAMS = SurpriseParams(warmup=300, rearm=1000)


def smooth_then_ragged(n: int, change: int, seed: int = 0) -> np.ndarray:
    """Noise about 10 that grows tenfold at ``change``, touching 15 and 5 every 50 samples: the values
    stay inside the range the series has shown; what changes is how well the last value predicts the next."""
    rng = np.random.default_rng(seed)
    values = 10.0 + np.where(np.arange(n) < change, 0.05, 0.5) * rng.uniform(-1.0, 1.0, n)
    values[::50] = 15.0
    values[25::50] = 5.0
    return values


def test_a_series_that_turns_ragged_inside_its_range_raises_soon_after() -> None:
    values = smooth_then_ragged(1500, 1000)
    low, high = values[:1000].min(), values[:1000].max()
    assert ((values[1000:] >= low) & (values[1000:] <= high)).all()  # no breakout to lean on
    _, raised = feed_rows(PredictionSurprise(PARAMS), values[:, None])
    onsets = np.flatnonzero(raised[:, 0]).tolist()
    assert onsets and 1000 <= onsets[0] < 1000 + 3 * PARAMS.short


def test_the_score_is_the_short_means_excess_over_its_usual_spread_in_units_of_the_tails_z() -> None:
    # By hand: with predict=1 and scale=1 a sample's error is its step from the last value and its size that
    # same error, so the raw score is 0 where the value repeats and c = 1 - 1/e where it moves. Values
    # 0, 1, 1, 2 give raw 0, c, 0, c (the first sample has no error): their mean c/2 and standard deviation
    # c/2 are the long run's before sample 4 (long=1000, so a plain mean and population variance). Sample 4
    # (3) moves again, its short mean (short=1) is c: surprise = (c - c/2) / (z * c/2) = 1/z, and a tail of
    # 1 - Phi(0.5) makes z = 0.5, so the score is 2 whatever c is.
    params = SurpriseParams(
        predict=1.0, scale=1, short=1, long=1000, tail=1.0 - NormalDist().cdf(0.5), warmup=4
    )
    scores, raised = feed_one(PredictionSurprise(params), [0.0, 1.0, 1.0, 2.0, 3.0])
    assert scores[:4] == [0.0] * 4  # warming up
    assert scores[4] == pytest.approx(2.0, rel=1e-9)
    assert raised == [4]


def test_a_steady_series_raises_nothing_after_its_warm_up() -> None:
    for seed in range(5):
        scores, raised = feed_rows(PredictionSurprise(PARAMS), smooth_then_ragged(3000, 3000, seed)[:, None])
        assert (scores[: PARAMS.warmup] == 0.0).all()
        assert not raised.any(), seed


def test_the_score_at_each_sample_does_not_change_when_later_samples_change() -> None:
    before = smooth_then_ragged(1200, 1200, 3)
    after = before.copy()
    after[800:] = smooth_then_ragged(1200, 0, 4)[800:]
    scores, raised = feed_rows(PredictionSurprise(PARAMS), np.stack([before, after], axis=1))
    np.testing.assert_array_equal(scores[:800, 0], scores[:800, 1])
    np.testing.assert_array_equal(raised[:800, 0], raised[:800, 1])
    assert raised[800:, 1].any()  # the futures did differ where it matters


def test_the_same_input_gives_the_same_alerts_and_series_do_not_affect_each_other() -> None:
    columns = [smooth_then_ragged(1500, 1500, 0), smooth_then_ragged(1500, 900, 1)]
    first = raise_many(columns, PARAMS)
    again = raise_many(columns, PARAMS)
    for j in range(2):
        np.testing.assert_array_equal(first[j], again[j])
        np.testing.assert_array_equal(first[j], raise_many([columns[j]], PARAMS)[0])
    assert not first[0].any() and first[1][900:930].any()


def test_a_gap_scores_zero_and_changes_nothing() -> None:
    values = smooth_then_ragged(1500, 1000, 2)
    gappy = values.copy()
    gappy[600:610] = np.nan
    scores, raised = feed_rows(PredictionSurprise(PARAMS), np.stack([values, gappy], axis=1))
    assert (scores[600:610, 1] == 0.0).all()
    np.testing.assert_array_equal(raised[:, 0], raised[:, 1])


@pytest.mark.parametrize(
    "kwargs",
    [{"predict": 0.0}, {"scale": 0}, {"short": 20, "long": 10}, {"tail": 0.5}, {"warmup": 5}],
    ids=str,
)
def test_impossible_settings_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        SurpriseParams(**kwargs)  # type: ignore[arg-type]
