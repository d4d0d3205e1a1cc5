from __future__ import annotations

import functools

import numpy as np
import pytest

from anomaly.art import ArtNovelty, ArtParams, Categories, raise_many

PARAMS = ArtParams(window=8, blocks=8, vigilance=0.9, margin=0.02, warmup=300, rearm=300)


def feed(detector: ArtNovelty, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """rows: one row of values per step, one column per id (0..k-1); returns scores and raised, step x id."""
    ids = np.arange(rows.shape[1], dtype=np.int64)
    out = [detector.update(ids, row) for row in rows]
    return np.array([o.score for o in out]), np.array([o.raised for o in out])


def triangles(n: int, period: int = 24) -> np.ndarray:
    """A triangle wave between 0 and 10: every window of it has been seen after a period or two."""
    phase = np.arange(n) % period
    return 10.0 * np.minimum(phase, period - phase) / (period / 2)


def with_square_bump(n: int, at: int) -> np.ndarray:
    """The triangle wave held at 5 for 16 samples from ``at``: values inside the range, a new shape."""
    values = triangles(n)
    values[at : at + 16] = 5.0
    return values


@functools.cache
def _bump_scored() -> tuple[np.ndarray, np.ndarray]:
    """``feed`` of a new detector on ``with_square_bump(3000, 2000)``: run once for the tests that read it."""
    return feed(ArtNovelty(PARAMS), with_square_bump(3000, 2000)[:, None])


@functools.cache
def _bump_raised() -> np.ndarray:
    """``raise_many`` on ``with_square_bump(3000, 2000)`` alone, run once for the tests that read it."""
    return raise_many([with_square_bump(3000, 2000)], PARAMS)[0]


def test_a_repeated_shape_is_learned_and_raises_nothing_after_the_warm_up() -> None:
    scores, raised = feed(ArtNovelty(PARAMS), triangles(3000)[:, None])
    assert not raised.any()
    assert (scores[: PARAMS.warmup] == 0.0).all()
    assert (scores[PARAMS.warmup :] <= 1.0).all()


def test_a_new_shape_inside_the_range_raises_where_it_starts() -> None:
    values = with_square_bump(3000, 2000)
    assert values[:2000].min() <= 5.0 <= values[:2000].max()  # no breakout to lean on
    scores, raised = (a.copy() for a in _bump_scored())
    onsets = np.flatnonzero(raised[:, 0]).tolist()
    assert len(onsets) == 1 and 2000 <= onsets[0] < 2000 + PARAMS.window
    assert scores[onsets[0], 0] > 1.0


def test_the_same_new_shape_again_after_it_was_learned_does_not_raise() -> None:
    values = with_square_bump(4000, 2000)
    values[3008:3024] = 5.0  # the same bump at the same phase of the wave (3008 - 2000 = 42 periods)
    _, raised = feed(ArtNovelty(PARAMS), values[:, None])
    assert np.flatnonzero(raised[:, 0]).tolist()[0] >= 2000
    assert not raised[2100:, 0].any()  # the second bump (1,000 quiet samples later) is known now


def test_a_new_shape_soon_after_an_onset_is_masked_by_the_rearm() -> None:
    values = with_square_bump(3000, 2000)
    values[2100:2104] = [0.0, 10.0, 0.0, 10.0]  # novel again, 100 samples after the first onset
    scores, raised = feed(ArtNovelty(PARAMS), values[:, None])
    assert (scores[2100 : 2100 + PARAMS.window, 0] > 1.0).any()
    assert np.flatnonzero(raised[:, 0]).size == 1


def test_the_score_at_each_sample_does_not_change_when_later_samples_change() -> None:
    before = triangles(2500)
    after = with_square_bump(2500, 1500)
    after[2000:] = np.linspace(10.0, 0.0, 500)
    scores, raised = feed(ArtNovelty(PARAMS), np.stack([before, after], axis=1))
    np.testing.assert_array_equal(scores[:1500, 0], scores[:1500, 1])
    np.testing.assert_array_equal(raised[:1500, 0], raised[:1500, 1])
    assert raised[1500:, 1].any()  # the futures did differ where it matters


def test_appending_samples_never_changes_the_alerts_before_them() -> None:
    values = with_square_bump(3000, 2000)
    full = _bump_raised().copy()
    for end in (1000, 2005, 2500):
        np.testing.assert_array_equal(raise_many([values[:end]], PARAMS)[0], full[:end])


def test_gaps_are_skipped_as_if_the_sample_had_not_come() -> None:
    values = with_square_bump(3000, 2000)
    gappy = np.insert(values, [500, 500, 1700, 2300], np.nan)
    kept = ~np.isnan(gappy)
    scores, raised = feed(ArtNovelty(PARAMS), gappy[:, None])
    plain_scores, plain_raised = (a.copy() for a in _bump_scored())
    assert (scores[~kept, 0] == 0.0).all() and not raised[~kept, 0].any()
    np.testing.assert_array_equal(scores[kept, 0], plain_scores[:, 0])
    np.testing.assert_array_equal(raised[kept, 0], plain_raised[:, 0])


def test_series_do_not_affect_each_other_and_a_reset_series_starts_again() -> None:
    columns = [triangles(3000), with_square_bump(3000, 2000)]
    together = raise_many(columns, PARAMS)
    alone = [raise_many([columns[0]], PARAMS)[0], _bump_raised()]  # each column raised on its own
    for j in range(2):
        np.testing.assert_array_equal(together[j], alone[j])
    detector = ArtNovelty(PARAMS, capacity=1)
    fresh = ArtNovelty(PARAMS, capacity=1)
    feed(detector, triangles(1000)[:, None])
    detector.reset(np.array([0]))
    np.testing.assert_array_equal(feed(detector, columns[1][:, None])[0], feed(fresh, columns[1][:, None])[0])


def test_a_flat_series_and_huge_values_score_without_warnings() -> None:
    flat = np.full(400, 3.0)
    huge = np.where(np.arange(400) % 2, 1e308, -1e308)
    with np.errstate(all="raise"):
        scores, raised = feed(ArtNovelty(PARAMS), np.stack([flat, huge], axis=1))
    assert np.isfinite(scores).all() and not raised.any()


def test_a_category_learns_towards_what_it_resonates_with_and_the_capacity_holds() -> None:
    params = ArtParams(window=2, blocks=2, vigilance=0.9, capacity=2, beta=1.0)
    known = Categories(params)
    assert known.resonate(np.array([0.5, 0.5, 0.5, 0.5])) == 0.0  # none yet: a new category
    assert known.resonate(np.array([0.55, 0.5, 0.45, 0.5])) == pytest.approx(0.975)
    np.testing.assert_allclose(known.weights[0], [0.5, 0.5, 0.45, 0.5])  # the box grew to hold it
    assert known.resonate(np.array([0.0, 0.0, 1.0, 1.0])) == pytest.approx(0.475)
    known.resonate(np.array([1.0, 1.0, 0.0, 0.0]))
    assert known.used == 2


def test_a_window_is_learned_as_its_block_means_scaled_by_the_range_before_it_clipped() -> None:
    params = ArtParams(window=4, blocks=2, warmup=0)
    detector = ArtNovelty(params)
    feed(detector, np.array([[0.0], [10.0], [5.0], [20.0]]))  # 20: beyond the range 0..10 seen before it
    # scaled 0, 1, 0.5 and 1 (clipped, the range not yet widened by it); block means 0.5 and 0.75
    np.testing.assert_allclose(detector._categories[0].weights[0], [0.5, 0.75, 0.5, 0.25])


def test_of_the_categories_that_resonate_the_best_choice_learns_not_the_best_match() -> None:
    # fuzzy ART's choice |I ^ w| / (alpha + |w|) prefers the box that holds the input with least change
    params = ArtParams(window=2, blocks=2, vigilance=0.8, beta=1.0)
    known = Categories(params)
    point = [0.52, 0.52, 0.48, 0.48]  # the box of one window, (0.52, 0.52)
    box = [0.45, 0.45, 0.4, 0.4]  # the box (0.45..0.6, 0.45..0.6)
    known.weights[:2] = [point, box]
    known.used = 2
    pattern = np.array([0.5, 0.5, 0.5, 0.38])  # (0.5, 0.62): match 0.93 with the point, 0.84 with the box
    assert known.resonate(pattern) == pytest.approx(0.93)
    np.testing.assert_allclose(known.weights[0], point)
    np.testing.assert_allclose(known.weights[1], [0.45, 0.45, 0.4, 0.38])  # the box grew to 0.62


def test_dual_vigilance_a_new_category_close_to_a_known_one_is_not_novel() -> None:
    noisy = triangles(3000) + np.random.default_rng(7).normal(0.0, 1.0, 3000)
    single = ArtParams(window=8, blocks=8, vigilance=0.9, margin=0.0)
    dual = ArtParams(window=8, blocks=8, vigilance=0.9, margin=0.02)
    single_scores, _ = feed(ArtNovelty(single), noisy[:, None])
    dual_scores, _ = feed(ArtNovelty(dual), noisy[:, None])
    # the same categories are learnt (margin only judges): the scores differ by the floor alone
    np.testing.assert_allclose(dual_scores * (1.0 - dual.floor), single_scores * (1.0 - single.floor))
    novel_single, novel_dual = single_scores[:, 0] > 1.0, dual_scores[:, 0] > 1.0
    assert not (novel_dual & ~novel_single).any()
    assert (novel_single & ~novel_dual).any()  # a new category, but within the margin of a known one


@pytest.mark.parametrize(
    "bad",
    [
        {"window": 12, "blocks": 8},
        {"window": 1, "blocks": 1},
        {"vigilance": 0.0},
        {"vigilance": 0.9, "margin": 0.9},
        {"margin": -0.1},
        {"beta": 0.0},
        {"capacity": 0},
        {"vigilance": 1.0, "margin": 0.0},
        {"alpha": float("nan")},
    ],
    ids=[
        "window-not-blocks",
        "window-1",
        "vigilance-0",
        "margin-whole",
        "margin-negative",
        "beta",
        "cap",
        "floor-1",
        "alpha-nan",
    ],
)
def test_impossible_settings_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        ArtParams(**bad)  # type: ignore[arg-type]
