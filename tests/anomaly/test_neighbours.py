from __future__ import annotations

import numpy as np
import pytest

from anomaly.neighbours import NeighbourParams, WindowNeighbours, alerts_of, raise_grid, raise_many

PARAMS = NeighbourParams(features="moments", window=12, factor=2.0, rearm=300)


def noise(n: int = 4000, seed: int = 0, spread: float = 1.0) -> np.ndarray:
    return np.random.default_rng(seed).normal(10.0, spread, n)


def onsets(values: np.ndarray, params: NeighbourParams = PARAMS) -> list[int]:
    return np.flatnonzero(raise_many([values], params)[0]).tolist()


def test_stationary_noise_raises_at_most_once_in_12000_samples_at_factor_3() -> None:
    # a new window can break the past's record (the largest nearest-neighbour distance): rarely by 3 times
    for features in ("moments", "blocks"):
        for window in (12, 48):
            params = NeighbourParams(features=features, window=window, factor=3.0, rearm=300)
            found = [onsets(noise(seed=seed), params) for seed in range(3)]
            assert sum(map(len, found)) <= 1, (features, window, found)


def test_a_noisy_series_that_goes_quiet_inside_its_old_spread_raises_soon_after() -> None:
    values = noise(spread=3.0)
    values[3000:] = noise(1000, seed=1, spread=0.2)  # every value inside the old band
    found = onsets(values)
    assert len(found) == 1 and 3000 <= found[0] < 3000 + PARAMS.window


def test_a_level_shift_of_one_spread_raises_once_with_wide_windows() -> None:
    values = noise()
    values[3000:] += 1.0  # one standard deviation: no value leaves a band of a few
    found = onsets(values, NeighbourParams(window=48, factor=2.0, rearm=1000))
    assert len(found) == 1 and 3000 <= found[0] < 3000 + 48


def test_bursts_that_recur_are_not_novel() -> None:
    values = noise(spread=0.2)
    for start in range(100, values.size, 150):
        values[start : start + 5] += 8.0
    assert onsets(values) == []


def test_nothing_is_scored_before_start_windows() -> None:
    values = noise()
    values[100:] += 50.0  # a change long before the first reference
    scores, raised = WindowNeighbours(PARAMS).extend(values)
    assert not scores[: PARAMS.first].any() and not raised.any()


def test_a_sample_is_scored_from_it_and_the_samples_before_it_only() -> None:
    values = noise(spread=3.0)
    values[3000:] = noise(1000, seed=1, spread=0.2)
    whole, alerts = WindowNeighbours(PARAMS).extend(values)
    for cut in (299, 300, 301, 589, 600, 2000, 3005):
        prefix, early = WindowNeighbours(PARAMS).extend(values[:cut])
        np.testing.assert_array_equal(prefix, whole[:cut])
        np.testing.assert_array_equal(early, alerts[:cut])


def test_chunks_of_any_size_give_what_the_whole_series_gives() -> None:
    values = noise(spread=3.0)
    values[3000:] = noise(1000, seed=1, spread=0.2)
    whole, alerts = WindowNeighbours(PARAMS).extend(values)
    detector = WindowNeighbours(PARAMS)
    cuts = np.unique(np.random.default_rng(5).integers(0, values.size, 60))
    parts = [detector.extend(chunk) for chunk in np.split(values, cuts)]
    np.testing.assert_array_equal(np.concatenate([p[0] for p in parts]), whole)
    np.testing.assert_array_equal(np.concatenate([p[1] for p in parts]), alerts)


def test_a_restored_state_goes_on_as_the_detector_it_came_from() -> None:
    values = noise(spread=3.0)
    values[3000:] = noise(1000, seed=1, spread=0.2)
    whole, alerts = WindowNeighbours(PARAMS).extend(values)
    for cut in (5, 700, 2990):
        detector = WindowNeighbours(PARAMS)
        detector.extend(values[:cut])
        restored = WindowNeighbours.restore(PARAMS, detector.state())
        detector.extend(noise(50, seed=9))  # the original goes on elsewhere: the copy must not move
        rest, later = restored.extend(values[cut:])
        np.testing.assert_array_equal(rest, whole[cut:])
        np.testing.assert_array_equal(later, alerts[cut:])


def test_non_finite_samples_are_skipped() -> None:
    values = noise(spread=3.0)
    values[3000:] = noise(1000, seed=1, spread=0.2)
    holed = np.insert(values, [10, 2000, 3001], [np.nan, np.inf, -np.inf])
    scores, raised = WindowNeighbours(PARAMS).extend(holed)
    finite = np.isfinite(holed)
    whole, alerts = WindowNeighbours(PARAMS).extend(values)
    np.testing.assert_array_equal(scores[finite], whole)
    np.testing.assert_array_equal(raised[finite], alerts)
    assert not scores[~finite].any() and not raised[~finite].any()


def test_a_flat_series_scores_nothing_until_it_moves() -> None:
    values = np.full(2000, 5.0)
    values[1500:] = 5.5
    scores, raised = WindowNeighbours(PARAMS).extend(values)
    assert not scores[:1500].any() and np.flatnonzero(raised).tolist() == [1500]


def test_the_re_arm_counts_samples_below_the_threshold() -> None:
    score = np.array([2.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.5, 1.0])
    raised, since = alerts_of(score, since=2**40, rearm=3)
    assert np.flatnonzero(raised).tolist() == [0, 6] and since == 0
    raised, since = alerts_of(np.zeros(4), since=1, rearm=3)
    assert not raised.any() and since == 5


def test_the_grid_shares_one_pass_and_judges_each_setting_apart() -> None:
    values = noise(spread=3.0)
    values[3000:] = noise(1000, seed=1, spread=0.2)
    grid = [
        NeighbourParams(features=features, window=12, factor=factor, rearm=rearm)
        for factor in (1.5, 3.0)
        for rearm in (300, 1000)
        for features in ("moments", "blocks")
    ]
    series = [values, noise(seed=3)]
    for params, found in zip(grid, raise_grid(series, grid), strict=True):
        for alone, shared in zip(raise_many(series, params), found, strict=True):
            np.testing.assert_array_equal(alone, shared)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"features": "shape"},
        {"window": 10},
        {"factor": 0.0},
        {"rearm": 0},
        {"memory": 20},
        {"start": 3},
    ],
    ids=["features", "window", "factor", "rearm", "memory", "start"],
)
def test_bad_settings_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        NeighbourParams(**kwargs)  # type: ignore[arg-type]
