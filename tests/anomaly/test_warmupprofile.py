from __future__ import annotations

import functools
from dataclasses import replace

import numpy as np
import pytest

from anomaly.univariate import ScoredSeries, Series, Settings, score_together
from anomaly.warmupprofile import (
    WHITE_NOISE_ROUGHNESS,
    ProfileRule,
    choose_settings,
    score_profiled,
    warmup_profile,
)

STAMPS = 1.7e9 + 300.0 * np.arange(1_400)


def returning_spikes(seed: int = 1) -> Series:
    """White noise around 10 (a noisy warm-up) with a spike of 12 every 40 samples from sample 1,000."""
    values = np.random.default_rng(seed).normal(10.0, 1.0, STAMPS.size)
    values[1_000::40] += 12.0
    return Series(name="noisy", timestamps=STAMPS, values=values)


def smooth(seed: int = 2) -> Series:
    """A slow daily wave with little noise (a smooth warm-up), with the same returning spikes."""
    noise = np.random.default_rng(seed).normal(0.0, 0.05, STAMPS.size)
    values = 10.0 + 3.0 * np.sin(2 * np.pi * np.arange(STAMPS.size) / 288) + noise
    values[1_000::40] += 12.0
    return Series(name="smooth", timestamps=STAMPS, values=values)


@functools.cache
def _default_scores(both: bool) -> list[ScoredSeries]:
    """``score_together`` of ``returning_spikes()`` (and ``smooth()`` when ``both``) under the base settings:
    run once for the tests that compare against it (they only read it)."""
    return score_together([returning_spikes(), smooth()] if both else [returning_spikes()])


def test_white_noise_is_about_as_rough_as_its_differences_and_a_smooth_wave_is_not() -> None:
    noise = warmup_profile(np.random.default_rng(0).normal(size=5_000))
    assert noise.roughness == pytest.approx(WHITE_NOISE_ROUGHNESS, rel=0.1)
    assert noise.kurtosis == pytest.approx(0.0, abs=0.3)
    assert abs(noise.lag1) < 0.05
    assert noise.beyond < 0.01  # a Gaussian has 0.27 % beyond 3 standard deviations
    wave = warmup_profile(smooth().values[:300])
    assert wave.roughness < 0.3
    assert wave.lag1 > 0.9


def test_rare_big_spikes_show_as_kurtosis_and_as_values_beyond_three_mads() -> None:
    values = np.random.default_rng(4).normal(size=1_000)
    values[::100] += 20.0
    profile = warmup_profile(values)
    assert profile.kurtosis > 20
    assert profile.beyond == pytest.approx(0.01, abs=0.003)


def test_a_mostly_constant_warm_up_has_no_roughness_and_gaps_are_left_out() -> None:
    values = np.full(30, 20.0)
    values[[5, 17]] = 80.0  # spikes on a flat line: the values' MAD is 0
    values[[8, 9]] = np.nan
    profile = warmup_profile(values)
    assert profile.samples == 28
    assert (profile.roughness, profile.beyond) == (0.0, 0.0)
    assert warmup_profile(np.array([1.0, np.nan])).samples == 1


def test_only_a_rough_warm_up_gets_the_rules_re_arm() -> None:
    base = Settings()
    chosen = choose_settings([returning_spikes(), smooth()], ProfileRule(resolve_after=150), base)
    assert chosen == [replace(base, resolve_after=150), base]


def test_the_choice_reads_only_the_first_samples() -> None:
    rule = ProfileRule(samples=30)
    noisy = returning_spikes()
    later_smooth = replace(noisy, values=np.concatenate([noisy.values[:30], smooth().values[30:]]))
    flat_start = replace(noisy, values=np.concatenate([smooth().values[:30], noisy.values[30:]]))
    base = Settings()
    assert choose_settings([later_smooth], rule, base) == choose_settings([noisy], rule, base)
    assert choose_settings([flat_start], rule, base) == [base]


def test_a_noisy_series_raises_its_returning_spikes_once_and_a_smooth_one_as_the_default_does() -> None:
    series = [returning_spikes(), smooth()]
    default = _default_scores(both=True)
    profiled = score_profiled(series, ProfileRule())
    spikes = set(range(1_040, 1_280, 40))  # the returning spikes after the first
    assert spikes <= set(np.flatnonzero(default[0].raised).tolist())  # re-armed after 24 quiet samples
    assert not spikes & set(np.flatnonzero(profiled[0].raised).tolist())
    assert profiled[0].raised[1_000]  # the first one is still raised
    np.testing.assert_array_equal(profiled[1].raised, default[1].raised)
    np.testing.assert_array_equal(profiled[1].score, default[1].score)


def test_before_the_profile_is_complete_the_output_is_the_base_settings() -> None:
    series = [returning_spikes()]
    rule = ProfileRule(samples=1_100)  # complete after the first spikes
    default, profiled = _default_scores(both=False)[0], score_profiled(series, rule)[0]
    np.testing.assert_array_equal(profiled.raised[:1_100], default.raised[:1_100])
    assert profiled.raised[1_000] and profiled.raised[1_040]  # the base's re-arm raised both
    assert not profiled.raised[
        1_100:1_250
    ].any()  # the chosen re-arm is still waiting (spikes 1,120 to 1,240)


def test_scoring_a_prefix_gives_the_prefix_of_the_scores() -> None:
    whole = [returning_spikes(), smooth()]
    cut = [replace(s, timestamps=s.timestamps[:1_150], values=s.values[:1_150]) for s in whole]
    rule = ProfileRule(samples=200, resolve_after=100)  # the chosen settings' output from sample 200 on
    full, part = score_profiled(whole, rule), score_profiled(cut, rule)
    for a, b in zip(full, part, strict=True):
        np.testing.assert_array_equal(a.raised[:1_150], b.raised)
        np.testing.assert_array_equal(a.score[:1_150], b.score)
    assert not np.array_equal(full[0].raised, _default_scores(both=False)[0].raised)  # the rule acted


def test_a_rule_that_matches_no_series_scores_as_the_default() -> None:
    series = [returning_spikes(), smooth()]
    profiled = score_profiled(series, ProfileRule(roughness=np.inf))
    for a, b in zip(profiled, _default_scores(both=True), strict=True):
        np.testing.assert_array_equal(a.raised, b.raised)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"samples": 2}, "samples"), ({"resolve_after": 0}, "resolve_after")],
    ids=["too-few-samples", "no-re-arm"],
)
def test_a_rule_that_cannot_work_is_refused(kwargs: dict[str, int], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ProfileRule(**kwargs)
