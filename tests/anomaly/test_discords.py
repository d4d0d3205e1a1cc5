from __future__ import annotations

import numpy as np
import pytest

from anomaly.discords import DiscordParams, LeftDiscord, first_peak, judge_profile, profile, raise_many


def periodic(n: int, period: int = 24, noise: float = 0.05, seed: int = 0) -> np.ndarray:
    """A daily-like cycle with a little noise: every shape recurs."""
    rng = np.random.default_rng(seed)
    return 10.0 + np.sin(2 * np.pi * np.arange(n) / period) + noise * rng.standard_normal(n)


def brute_force(values: np.ndarray, params: DiscordParams, m: int) -> np.ndarray:
    """The left matrix profile computed directly: every window z-normalised (deviation floored as the part
    floors it), its distance to every earlier window outside the exclusion zone, the nearest / sqrt(m)."""
    warm = values[: params.warmup]
    y = (values - warm.mean()) / warm.std()
    windows = np.lib.stride_tricks.sliding_window_view(y, m)
    sd = np.maximum(windows.std(axis=1), params.floor)
    z = (windows - windows.mean(axis=1)[:, None]) / sd[:, None]
    out = np.zeros(values.size)
    for t in range(params.warmup, values.size):
        k = t - m + 1
        lo = 0 if params.history is None else max(0, k + 1 - params.history)
        earlier = z[lo : k - m // 2]
        out[t] = np.sqrt(((earlier - z[k]) ** 2).sum(axis=1).min() / m)
    return out


@pytest.mark.parametrize("history", [None, 150], ids=["all-history", "capped-history"])
def test_the_running_profile_equals_the_nearest_neighbour_distance_computed_directly(
    history: int | None,
) -> None:
    values = periodic(900, noise=0.2, seed=1)
    values[600:620] += 2.0
    params = DiscordParams(m=16, warmup=300, learn=300, history=history)
    scores, _, m = profile(values, params)
    np.testing.assert_allclose(scores[300:], brute_force(values, params, m)[300:], atol=1e-9)


def test_a_shape_never_seen_before_raises_where_a_recurring_one_does_not() -> None:
    values = periodic(1500)
    values[1200:1212] = 10.0 + np.linspace(-1.0, 1.0, 12)  # a ramp where the cycle's crest should be
    _, raised, _ = profile(values, DiscordParams(m=24))
    assert np.flatnonzero(raised).tolist() and 1200 <= np.flatnonzero(raised)[0] < 1200 + 24
    _, quiet, _ = profile(periodic(1500), DiscordParams(m=24))
    assert not quiet.any()


def test_a_flat_segment_gives_no_discord_inside_it() -> None:
    # A constant window has no deviation: unfloored, z-normalising it divides by zero (or blows rounding
    # up to unit variance) and every sample of the flat stretch would look new.
    values = periodic(2400)
    values[900:1500] = 10.0
    values[1800:2100] = 10.0
    scores, raised, _ = profile(values, DiscordParams(m=24, rest=1))
    assert np.all(scores[900 + 24 + 12 : 1500] == 0.0)  # every flat window matches an earlier flat one
    assert np.all(scores[1800 + 24 : 2100] == 0.0)
    assert not raised[900 + 24 + 1 : 1500].any() and not raised[1800:2100].any()


def test_a_series_flat_through_its_warm_up_and_after_raises_nothing() -> None:
    scores, raised, _ = profile(np.full(1200, 3.0), DiscordParams())
    assert not raised.any() and not scores.any()


def test_a_missing_sample_changes_nothing() -> None:
    values = periodic(1000, seed=2)
    holes = values.copy()
    holes[700] = np.nan
    detector = LeftDiscord(DiscordParams(m=12))
    with_nan = [detector.update(v) for v in holes.tolist()]
    again = LeftDiscord(DiscordParams(m=12))
    without = [again.update(v) for v in np.delete(holes, 700).tolist()]
    assert with_nan[700] == (0.0, False)
    assert with_nan[:700] + with_nan[701:] == without


def test_the_answer_at_each_sample_does_not_depend_on_later_samples() -> None:
    before = periodic(1400, seed=3)
    after = before.copy()
    after[1000:] = np.random.default_rng(9).normal(50.0, 10.0, 400)
    first, raised_first, _ = profile(before, DiscordParams(m=None, memory=300, rest=50))
    second, raised_second, _ = profile(after, DiscordParams(m=None, memory=300, rest=50))
    np.testing.assert_array_equal(first[:1000], second[:1000])
    np.testing.assert_array_equal(raised_first[:1000], raised_second[:1000])
    assert raised_second[1000:].any()


@pytest.mark.parametrize(
    "params",
    [DiscordParams(m=12), DiscordParams(m=None, memory=200, factor=0.9, rest=100)],
    ids=["never-forgetting", "windowed-reference"],
)
def test_the_rule_replayed_over_a_profile_gives_the_streaming_answers(params: DiscordParams) -> None:
    values = np.cumsum(np.random.default_rng(4).standard_normal(2500)) * 0.1 + periodic(2500, 31)
    scores, raised, _ = profile(values, params)
    np.testing.assert_array_equal(judge_profile(scores, params), raised)
    assert raise_many([values], params)[0].tolist() == raised.tolist()


def test_the_subsequence_length_is_the_warm_ups_period() -> None:
    assert first_peak(periodic(300, period=24), 8, 96) == 24
    assert first_peak(np.random.default_rng(5).standard_normal(300), 8, 96) in range(8, 97)
    assert first_peak(np.full(300, 1.0), 8, 96) == 96


@pytest.mark.parametrize(
    "kwargs",
    [{"m": 2}, {"floor": 0.0}, {"warmup": 100}, {"seed": 0, "learn": 0}, {"memory": 0}, {"history": 50}],
    ids=["m", "floor", "warmup", "no-reference", "memory", "history"],
)
def test_bad_settings_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        DiscordParams(**kwargs)  # type: ignore[arg-type]
