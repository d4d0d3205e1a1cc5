from __future__ import annotations

import numpy as np
import pytest

from anomaly.recurrence import DailyRecurrence, RecurrenceParams

DAY = 86_400.0
ONE = np.array([0], dtype=np.int64)


def onset(detector: DailyRecurrence, t: float, series: np.ndarray = ONE) -> bool:
    return bool(detector.filter(series, np.array([True]), np.array([t]))[0])


def test_the_first_onset_is_kept_and_the_same_time_next_day_is_muted():
    detector = DailyRecurrence()
    assert onset(detector, 1000.0)
    assert not onset(detector, 1000.0 + DAY + 1800)
    assert not onset(detector, 1000.0 + 2 * DAY - 600)  # yesterday's muted onset still counts as seen


def test_an_onset_at_another_hour_or_after_a_skipped_day_is_kept():
    detector = DailyRecurrence(RecurrenceParams(tolerance_seconds=3600))
    assert onset(detector, 0.0)
    assert onset(detector, DAY + 2 * 3600)
    assert onset(detector, 3 * DAY)


def test_samples_without_an_onset_are_never_turned_into_one():
    detector = DailyRecurrence()
    out = detector.filter(np.array([0, 1], dtype=np.int64), np.array([False, False]), np.array([0.0, 0.0]))
    assert not out.any()


def test_series_are_remembered_apart_and_reset_forgets():
    detector = DailyRecurrence()
    other = np.array([7], dtype=np.int64)
    assert onset(detector, 0.0)
    assert onset(detector, DAY, other)
    assert not onset(detector, DAY)
    detector.reset(ONE)
    assert onset(detector, 2 * DAY)


def test_an_onset_at_the_same_time_a_week_later_is_muted_unless_weekly_is_off():
    weekly = DailyRecurrence()
    assert onset(weekly, 5000.0)
    assert onset(weekly, 5000.0 + 3 * DAY)  # three days later is not routine
    assert not onset(weekly, 5000.0 + 7 * DAY - 1200)
    daily_only = DailyRecurrence(RecurrenceParams(weekly_seconds=None))
    assert onset(daily_only, 5000.0)
    assert onset(daily_only, 5000.0 + 7 * DAY - 1200)


def test_onsets_older_than_a_week_are_forgotten():
    detector = DailyRecurrence()
    assert onset(detector, 0.0)
    assert onset(detector, 14 * DAY)  # two weeks later: neither yesterday nor last week


def sided(detector: DailyRecurrence, t: float, side: float) -> bool:
    return bool(detector.filter(ONE, np.array([True]), np.array([t]), np.array([side]))[0])


def test_same_direction_mutes_only_an_onset_on_the_side_of_the_one_it_matches():
    detector = DailyRecurrence(RecurrenceParams(same_direction=True))
    assert sided(detector, 1000.0, 1.0)  # a spike
    assert sided(detector, 1000.0 + DAY, -1.0)  # a drop at the same time next day: not routine
    assert not sided(detector, 1000.0 + 2 * DAY, -1.0)  # yesterday's drop makes today's routine
    assert sided(detector, 1000.0 + 2 * DAY + 60, 1.0)  # yesterday was a drop; the spike two days ago
    # is not a period away
    plain = DailyRecurrence()
    assert sided(plain, 1000.0, 1.0)
    assert not sided(plain, 1000.0 + DAY, -1.0)  # off: the side is not looked at


def test_same_direction_without_sides_is_refused():
    detector = DailyRecurrence(RecurrenceParams(same_direction=True))
    with pytest.raises(ValueError, match="sides"):
        detector.filter(ONE, np.array([True]), np.array([0.0]))
