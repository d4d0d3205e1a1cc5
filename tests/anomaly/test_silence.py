from __future__ import annotations

import numpy as np
import pytest

from anomaly.silence import BurstSilence, SilenceParams
from anomaly.univariate import Series, score_many

ONE = np.array([0], dtype=np.int64)


def raised_at(detector: BurstSilence, onsets: list[int], length: int) -> list[int]:
    """Feed one series ``length`` samples with excursions beginning at ``onsets``; where it raised."""
    marks = set(onsets)
    return [i for i in range(length) if detector.update(ONE, np.array([i in marks])).raised[0]]


def test_a_steady_burst_pace_that_stops_raises_once_after_factor_gaps() -> None:
    onsets = [0, 100, 200, 300, 400]  # gap 100, five bursts: the pace is known at 400
    assert raised_at(BurstSilence(SilenceParams(factor=3.0)), onsets, 1500) == [700]


def test_the_next_burst_rearms_it() -> None:
    onsets = [0, 100, 200, 300, 400, 750, 850]  # a late burst at 750 (gaps 100,100,100,350: not steady)
    at = raised_at(BurstSilence(SilenceParams(factor=3.0)), onsets, 2000)
    assert at == [700]  # the pace after 750 is irregular, so the next silence is not judged
    steady = [0, 100, 200, 300, 400, 600, 700, 800, 900, 1000]  # 600 re-arms; 200 is within spread 2
    assert raised_at(BurstSilence(SilenceParams(factor=3.0)), steady, 2000) == [1300]


def test_an_irregular_pace_or_too_few_bursts_never_raise() -> None:
    irregular = [0, 20, 200, 230, 600, 610]
    assert raised_at(BurstSilence(), irregular, 3000) == []
    assert raised_at(BurstSilence(SilenceParams(bursts=5)), [0, 100, 200, 300], 3000) == []


def test_the_floor_keeps_a_fast_pace_from_raising_on_a_short_pause() -> None:
    onsets = list(range(0, 10, 2))  # gap 2: three gaps is 6 samples, under the floor of 12
    assert raised_at(BurstSilence(SilenceParams(factor=3.0, floor=12)), onsets, 40) == [20]


def test_series_are_kept_apart_and_reset_forgets() -> None:
    detector = BurstSilence(SilenceParams(factor=2.0), capacity=1)
    ids = np.array([0, 5], dtype=np.int64)
    fired = []
    for i in range(700):
        burst = np.array([i % 100 == 0 and i <= 400, False])
        fired.append(detector.update(ids, burst).raised.copy())
    fired_arr = np.array(fired)
    assert np.flatnonzero(fired_arr[:, 0]).tolist() == [600]
    assert not fired_arr[:, 1].any()
    detector.reset(ONE)
    assert not detector.update(ONE, np.array([False])).raised[0]
    assert not detector.regular[0]


@pytest.mark.parametrize(
    "kwargs",
    [{"factor": 1.0}, {"bursts": 2}, {"spread": 0.5}, {"floor": 0}],
    ids=["factor-not-above-one", "too-few-bursts", "spread-below-one", "floor-zero"],
)
def test_bad_parameters_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        SilenceParams(**kwargs)  # type: ignore[arg-type]


def test_score_many_raises_when_a_steady_burst_series_goes_quiet_only_with_the_part() -> None:
    n = 3000
    values = 10.0 + np.random.default_rng(1).normal(0.0, 0.5, n)
    for start in range(50, 1500, 150):  # a burst of 5 samples every 150, then nothing
        values[start : start + 5] = 200.0
    series = Series("bursty", np.arange(n) * 300.0 + 7 * 3600.0, values)
    plain = score_many([series], recurrence=None)[0].raised
    joined = score_many([series], recurrence=None, silence=SilenceParams(factor=3.0))[0].raised
    extra = np.flatnonzero(joined & ~plain)
    assert extra.size == 1 and 1850 <= extra[0] <= 1950  # the last burst at 1400, three gaps of 150 later
