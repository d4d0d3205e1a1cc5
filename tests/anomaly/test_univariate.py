from __future__ import annotations

import numpy as np
import pytest

from anomaly import univariate
from anomaly.univariate import Series, score_many


def uniform_noise_then(value: float, rows: int = 600, at: int = 500) -> Series:
    rng = np.random.default_rng(1)
    values = rng.uniform(0.0, 1.0, rows)
    values[at] = value
    return Series("s", np.arange(rows, dtype=float) * 300, values)


def test_a_value_just_beyond_the_whole_history_is_caught_by_the_range_breakout_not_the_band():
    series = uniform_noise_then(1.2)
    adaptive_only = score_many([series], breakout=None, novelty=None)[0]
    default = score_many([series], novelty=None)[0]
    assert not adaptive_only.raised[500]
    assert default.raised[500]
    assert default.score[500] > 1.0 >= adaptive_only.score[500]


def test_a_large_spike_is_raised_once_and_scores_are_causal():
    series = uniform_noise_then(50.0)
    scored = score_many([series], novelty=None)[0]
    assert np.flatnonzero(scored.raised).tolist() == [500]
    truncated = Series("s", series.timestamps[:501], series.values[:501])
    np.testing.assert_allclose(score_many([truncated], novelty=None)[0].score, scored.score[:501])


def test_the_default_detector_with_its_novelty_part_is_causal_too():
    series = uniform_noise_then(50.0)
    scored = score_many([series])[0]
    assert scored.raised[500]
    truncated = Series("s", series.timestamps[:501], series.values[:501])
    np.testing.assert_allclose(score_many([truncated])[0].score, scored.score[:501])


def test_a_new_shape_inside_the_known_range_is_caught_by_the_novelty_part():
    ramps = np.tile(np.arange(10.0), 110)  # 0, 1, .., 9 again and again: quiet for longer than the re-arm
    values = np.concatenate([ramps, np.array([0.0, 9.0, 0.0, 9.0]), ramps[:100]])
    series = Series("s", np.arange(values.size, dtype=float) * 300, values)
    without = score_many([series], novelty=None)[0]
    default = score_many([series])[0]
    assert not without.raised[1100:1104].any()
    assert default.raised[1100:1104].any()


def test_series_of_different_lengths_are_scored_together_like_alone():
    a, b = uniform_noise_then(50.0), uniform_noise_then(3.0, rows=520, at=510)
    together = score_many([a, b])
    assert np.array_equal(together[1].raised, score_many([b])[0].raised)
    assert len(together[1].score) == 520


def daily_spike_series(days: int = 6, per_day: int = 288) -> Series:
    rng = np.random.default_rng(2)
    rows = days * per_day
    values = 10 + rng.normal(0, 0.5, rows)
    for d in range(1, days):
        values[d * per_day + 100 : d * per_day + 104] += 8.0  # a nightly job, same time every day
    return Series("s", np.arange(rows, dtype=float) * 300, values)


def test_a_spike_at_the_same_time_every_day_alerts_on_its_first_day_only():
    series = daily_spike_series()
    without = score_many([series], recurrence=None)[0]
    default = score_many([series])[0]
    days_alerted = sorted({int(i) // 288 for i in np.flatnonzero(without.raised)})
    assert len(days_alerted) >= 3  # the adaptive band alone keeps re-alerting
    assert np.flatnonzero(default.raised).tolist()[:1] == np.flatnonzero(without.raised).tolist()[:1]
    assert default.raised.sum() < without.raised.sum()
    assert not default.raised[3 * 288 :].any()


def test_series_with_gaps_scored_together_score_as_they_do_alone() -> None:
    # Gaps leave a series out of the band's step (only finite values teach it) while the other parts still
    # see it: each part's answer must land on its own series, whichever are in the step.
    spiky = daily_spike_series(days=3)
    values = spiky.values.copy()
    values[50:60] = np.nan
    values[400] = np.nan
    gappy = Series("g", spiky.timestamps, values)
    short = uniform_noise_then(50.0, rows=700, at=650)
    together = score_many([short, gappy, spiky])
    for alone, scored in zip((short, gappy, spiky), together, strict=True):
        single = score_many([alone])[0]
        assert np.array_equal(scored.score, single.score)
        assert np.array_equal(scored.raised, single.raised)


def test_progress_is_reported_every_so_many_steps_and_once_at_the_end(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(univariate, "PROGRESS_EVERY", 100)
    calls: list[tuple[int, int]] = []
    score_many(
        [uniform_noise_then(5.0, rows=250, at=200)], progress=lambda done, total: calls.append((done, total))
    )
    assert calls == [(100, 250), (200, 250), (250, 250)]


@pytest.mark.parametrize("together", [False, True], ids=["one-series-scalar-path", "vectorised"])
def test_on_stationary_noise_only_the_labelled_rows_score_over_1(together: bool) -> None:
    # 2,000 rows of N(10, 1): 1,398 scored >= 1 (780 exactly 2.0, the novelty part's muted contexts) while
    # 4 were labelled; `anomaly_score` > 1 means anomalous (vmanomaly's meaning, drawn in Grafana).
    values = np.random.default_rng(7).normal(10.0, 1.0, 2000)
    series = Series("s", np.arange(values.size, dtype=float) * 60, values)
    scored = score_many([series, series] if together else [series])[0]
    assert scored.raised.any()
    assert np.array_equal(scored.score > 1.0, scored.raised)


@pytest.mark.parametrize("together", [False, True], ids=["one-series-scalar-path", "vectorised"])
def test_a_spike_muted_as_routine_scores_at_most_1(together: bool) -> None:
    series = daily_spike_series()
    scored = score_many([series, series] if together else [series])[0]
    without = score_many([series], recurrence=None)[0]
    muted_days = [d for d in range(3, 6) if not scored.raised[d * 288 : (d + 1) * 288].any()]
    assert muted_days  # the nightly job alerts on its first day(s) only
    for d in muted_days:
        day = slice(d * 288, (d + 1) * 288)
        assert without.score[day].max() > 1.0  # the band alone finds it anomalous every night
        assert scored.score[day].max() <= 1.0, d  # muted: not reported as anomalous
