from __future__ import annotations

import math

import numpy as np
import pytest

from anomaly.breakout import BreakoutParams
from anomaly.novelty import NoveltyParams
from anomaly.recurrence import RecurrenceParams
from anomaly.scalar import ScalarDetector, fmax, fmin, quotient
from anomaly.thresholds import ThresholdParams
from anomaly.univariate import Series, Settings, score_many, score_together

ROWS = 420
T0 = 1_704_067_200.0


def varied_series() -> list[Series]:
    """Shapes that take each branch of the detector: a daily wave with spikes and a level shift, hourly
    samples with a daily and a weekly job (week buckets revisited), a flat line with steps, a heavy tail,
    zeros of both signs, gaps and infinities, unusable times, and magnitudes whose arithmetic overflows."""
    rng = np.random.default_rng(11)
    i = np.arange(ROWS)
    wave = 20 + 5 * np.sin(i * 2 * np.pi / 288) + rng.normal(0, 0.5, ROWS)
    wave[[250, 330]] += [60.0, -45.0]
    wave[360:] += 12.0
    hourly = 10 + rng.normal(0, 1, ROWS)
    hourly[i % 24 == 3] += 25.0
    hourly[i % 168 == 50] += 40.0
    flat = np.where(i < 210, 3.0, 4.0)
    flat[[150, 400]] = [3.5, -7.0]
    signed_zeros = np.where(i % 3 == 0, -0.0, 0.0)
    signed_zeros[[250, 380]] = [1.0, -1e-300]
    gappy = wave.copy()
    gappy[[10, 11, 305, 306]] = np.nan
    gappy[[40, 410]] = [np.inf, -np.inf]
    one_huge = wave.copy()
    one_huge[200] = 1e40  # past float32: the fast error the state keeps in it
    huge = np.clip(rng.standard_t(1.5, ROWS), -17.0, 17.0) * 1e307
    huge[[320, 330]] = [1.7e308, -1.7e308]
    fives, hours = T0 + i * 300.0, T0 + i * 3600.0
    odd_times = fives + rng.integers(0, 900, ROWS).cumsum()
    odd_times[[100, 101, 400]] = [np.nan, np.inf, np.nan]
    return [
        Series("wave", fives, wave),
        Series("hourly", hours, hourly),
        Series("flat", fives, flat),
        Series("heavy", fives, rng.standard_t(2, ROWS) * 1e6 - 5e6),
        Series("zeros", fives, signed_zeros),
        Series("gappy", odd_times, gappy),
        Series("huge", hours, huge),
        Series("one_huge", fives, one_huge),
        Series("repeats", np.repeat(fives[: ROWS // 2], 2), np.repeat(wave[: ROWS // 2], 2)),
    ]


SHORT = {
    "breakout": BreakoutParams(warmup=50, rearm=40),
    "novelty": NoveltyParams(levels=8, warmup=60, rearm=80),
}
CASES = {
    "defaults": (ThresholdParams.from_config(), {}),
    "up_with_floors": (
        ThresholdParams.from_config(direction="up", min_deviation=0.5, min_relative_deviation=0.05, warmup=5),
        {**SHORT, "recurrence": RecurrenceParams(weekly_seconds=None, same_direction=True)},
    ),
    "down_frozen_no_tail": (
        ThresholdParams.from_config(
            direction="down", seasonal_freeze=True, tail_quantile=0.0, volatility_k=0.0
        ),
        {**SHORT, "resolve_after": 3},
    ),
    "tested_seasons": (ThresholdParams.from_config(seasonal_tested=True), {}),
    "not_seasonal_parts_off": (
        ThresholdParams.from_config(seasonality=False, error_clip=3.0, warmup=0),
        {"breakout": None, "novelty": None, "recurrence": None},
    ),
}


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_one_series_alone_scores_as_the_vectorised_reference_to_the_bit(case: str) -> None:
    params, parts = CASES[case]
    series = varied_series()
    with np.errstate(over="ignore", invalid="ignore"):  # the huge series' arithmetic overflows, by design
        reference = score_together(series, Settings(params, **parts))
    for one, expected in zip(series, reference, strict=True):
        alone = score_many([one], params, **parts)[0]
        assert alone.score.tobytes() == expected.score.tobytes(), one.name
        assert np.array_equal(alone.raised, expected.raised), one.name
    assert any(scored.raised.any() for scored in reference)  # the alerts, too, were compared


def test_the_scalar_path_is_what_scores_one_series() -> None:
    # If score_many stopped taking the scalar path, the comparison above would compare the reference
    # with itself.
    one = varied_series()[0]
    params = ThresholdParams.from_config()
    detector = ScalarDetector(params, 24, BreakoutParams(), RecurrenceParams(), NoveltyParams())
    score, raised = detector.score(one.values, one.timestamps)
    scored = score_many([one], params, 24)[0]
    assert scored.score.flags.c_contiguous and score.tobytes() == scored.score.tobytes()
    assert np.array_equal(raised, scored.raised)


SPECIAL = [0.0, -0.0, 1.0, -2.5, math.inf, -math.inf, math.nan, 5e-324]


@pytest.mark.parametrize(("ours", "numpys"), [(fmax, np.maximum), (fmin, np.minimum), (quotient, np.divide)])
def test_the_float_helpers_answer_as_numpy_for_nan_infinities_and_signed_zeros(ours, numpys) -> None:
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        for a in SPECIAL:
            for b in SPECIAL:
                expected = numpys(np.array([a]), np.array([b]))[0]
                assert np.array([ours(a, b)]).tobytes() == np.array([expected]).tobytes(), (a, b)
