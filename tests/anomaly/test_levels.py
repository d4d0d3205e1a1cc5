from __future__ import annotations

import numpy as np
import pytest

from anomaly.breakout import RangeBreakout
from anomaly.levels import LevelBreakout, LevelParams, raise_many
from tests.anomaly.stepping import feed_one, feed_rows

PARAMS = LevelParams(scales=(12,), margin=0.05, warmup=300, rearm=1000)
QUICK = LevelParams(scales=(12,), margin=0.05, warmup=300, rearm=200)  # re-armed well before a shift


def noisy(n: int, seed: int = 0, shift_at: int | None = None, shift: float = 0.0) -> np.ndarray:
    """A noisy series around 10 that hits its ceiling (40, like a CPU at 100%) every 37 samples: its raw
    range is wide, its level narrow; from ``shift_at`` on it runs ``shift`` higher (its ceiling does not)."""
    values = 10.0 + np.random.default_rng(seed).normal(0.0, 1.0, n)
    if shift_at is not None:
        values[shift_at:] += shift
    values[::37] = 40.0
    return values


def test_a_level_shift_inside_the_raw_range_raises_where_the_raw_range_sees_nothing() -> None:
    values = noisy(1500, shift_at=1000, shift=4.0)  # well inside the raw range, outside the hourly level's
    _, raised = feed_rows(LevelBreakout(QUICK), values[:, None])
    onsets = np.flatnonzero(raised[1000:, 0])
    assert onsets.size and onsets[0] < 4 * 12  # within a few hours of 5-minute samples
    _, raw = feed_rows(RangeBreakout(), values[:, None])
    assert not raw[1000:, 0].any()


def test_the_score_is_the_levels_distance_from_its_ranges_centre_over_half_the_widened_range() -> None:
    # By hand: scale 1 makes the level the value itself; with settle=1 the range is tracked from sample 1
    # and judged from sample 3 (warmup=3). Samples 1 and 2 (0 and 10) make the range [0, 10]: centre 5,
    # half-width with margin 0.25 is (0.5 + 0.25) * 10 = 7.5. Sample 3 (20) is 15 from the centre, so its
    # score is 15 / 7.5 = 2 (a sample 0 of 5 is not tracked yet: it widens nothing).
    params = LevelParams(scales=(1,), margin=0.25, settle=1, warmup=3, rearm=1)
    scores, raised = feed_one(LevelBreakout(params), [5.0, 0.0, 10.0, 20.0])
    assert scores[:3] == [0.0] * 3  # the range is not judged yet
    assert scores[3] == pytest.approx(2.0, rel=1e-12)
    assert raised == [3]


def test_nothing_raises_as_a_scales_range_starts_to_be_judged() -> None:
    # Judging a scale's range from the sample it started (a range of one level) raised on the next sample
    # on every series, by construction; now the range has been learned for as long again first.
    for seed in range(10):
        _, raised = feed_rows(LevelBreakout(PARAMS), noisy(400, seed)[:, None])
        assert not raised[: PARAMS.warmup + 10].any(), seed


def test_the_score_at_each_sample_does_not_change_when_later_samples_change() -> None:
    before = noisy(1200, 3)
    after = before.copy()
    after[800:] = np.random.default_rng(9).normal(50.0, 10.0, 400)  # a different future
    detector = LevelBreakout(LevelParams(scales=(6, 24, 96), warmup=100, rearm=50))
    scores, raised = feed_rows(detector, np.stack([before, after], axis=1))
    np.testing.assert_array_equal(scores[:800, 0], scores[:800, 1])
    np.testing.assert_array_equal(raised[:800, 0], raised[:800, 1])
    assert raised[800:, 1].any()  # the futures did differ where it matters


def test_the_same_input_gives_the_same_alerts_and_series_do_not_affect_each_other() -> None:
    shifted = noisy(1500, 1, shift_at=900, shift=-5.0)
    columns = np.stack([noisy(1500, 0), shifted], axis=1)
    first = raise_many([columns[:, 0], columns[:, 1]], QUICK)
    again = raise_many([columns[:, 0], columns[:, 1]], QUICK)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    for j in range(2):
        np.testing.assert_array_equal(first[j], raise_many([columns[:, j]], QUICK)[0])
    assert first[1][900:930].any()  # the shifted series raised at its shift


def test_a_gap_scores_zero_and_changes_nothing() -> None:
    values = noisy(1500, 2)
    gappy = values.copy()
    gappy[600:610] = np.nan
    scores, raised = feed_rows(LevelBreakout(PARAMS), np.stack([values, gappy], axis=1))
    assert (scores[600:610, 1] == 0.0).all()
    np.testing.assert_array_equal(raised[:, 0], raised[:, 1])


@pytest.mark.parametrize(
    "kwargs", [{"scales": ()}, {"scales": (0,)}, {"margin": -0.1}, {"settle": 0}], ids=str
)
def test_impossible_settings_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        LevelParams(**kwargs)  # type: ignore[arg-type]
