"""The seasonal baselines of the adaptive thresholds: hour-of-day and hour-of-week buckets per series.

``AdaptiveThresholds`` keeps the buckets (``day``, ``week``) and their errors (``dev_day``, ``dev_week``);
``Season`` reads them for one batch, picks the model each series uses (a seasonal one only when it is
clearly better than the level), and teaches the visited buckets (``anomaly.thresholds`` says why).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from anomaly.thresholds import AdaptiveThresholds, BoolArray, FloatArray, IntArray

HOURS_PER_DAY = 24
HOURS_PER_WEEK = 168
# The Unix epoch fell on a Thursday; shifting by 3 days makes bucket 0 Monday 00:00 UTC.
EPOCH_WEEKDAY_SHIFT_HOURS = 72
# ``AdaptiveThresholds.seeded``'s bits: the series' hour-of-day, hour-of-week bucket was seeded this hour.
SEEDED_DAY, SEEDED_WEEK = 1, 2


def clipped(x: FloatArray, cap: FloatArray) -> FloatArray:
    """``x`` within ``[-cap, cap]``, as ``np.clip`` gives it (NaN stays NaN) without its wrapper's cost, which
    per sample was several times the two ufuncs'."""
    clipped: FloatArray = np.minimum(np.maximum(x, -cap), cap)
    return clipped


class Season:
    """The seasonal baselines of one batch: which model each series uses, and how they learn."""

    def __init__(
        self,
        m: AdaptiveThresholds,
        ids: IntArray,
        x: FloatArray,
        timestamps: FloatArray,
        *,
        level: FloatArray,
        dev: FloatArray,
    ) -> None:
        gain = m.params.seasonal_gain
        hours = (timestamps // 3600.0).astype(np.int64)
        self.h_day = hours % HOURS_PER_DAY
        self.h_week = (hours + EPOCH_WEEKDAY_SHIFT_HOURS) % HOURS_PER_WEEK
        self.s_day = m.day[ids, self.h_day].astype(np.float64)
        self.s_week = m.week[ids, self.h_week].astype(np.float64)
        self.seeded = seeded(m, ids, hours, self.s_day, self.s_week) if m.params.seasonal_tested else None
        self.e_day = m.dev_day[ids].astype(np.float64)
        self.e_week = m.dev_week[ids].astype(np.float64)
        use_day = (self.e_day < gain * dev) & ~np.isnan(self.s_day)
        use_week = (self.e_week < gain * np.minimum(dev, self.e_day)) & ~np.isnan(self.s_week)
        self.yhat = np.where(use_week, self.s_week, np.where(use_day, self.s_day, level))
        self.scale = np.where(use_week, self.e_week, np.where(use_day, self.e_day, dev))

    def learn(
        self,
        m: AdaptiveThresholds,
        ids: IntArray,
        x: FloatArray,
        *,
        r_level: FloatArray,
        cap: FloatArray,
        slow: FloatArray,
        err_cap: FloatArray,
        frozen: BoolArray,
    ) -> None:
        """Update the visited buckets and each seasonal model's error.

        With ``seasonal_freeze`` an anomalous sample does not teach the buckets: an incident at 14:00 must
        not become tomorrow's 14:00 normal.
        """
        sa = (
            np.where(frozen, 0.0, m.params.seasonal_alpha)
            if m.params.seasonal_freeze
            else m.params.seasonal_alpha
        )
        r_day = np.where(np.isnan(self.s_day), r_level, x - self.s_day)
        r_week = np.where(np.isnan(self.s_week), r_level, x - self.s_week)
        m.day[ids, self.h_day] = np.where(np.isnan(self.s_day), x, self.s_day + sa * clipped(r_day, cap))
        m.week[ids, self.h_week] = np.where(np.isnan(self.s_week), x, self.s_week + sa * clipped(r_week, cap))
        # A bucket's error only counts once the bucket has a value: before that it is the level's error. With
        # ``seasonal_tested``, only once it has one from an earlier day or week (``seeded``).
        if self.seeded is not None:
            m.seeded[ids] = self.seeded
            r_day = np.where(self.seeded & SEEDED_DAY, r_level, r_day)
            r_week = np.where(self.seeded & SEEDED_WEEK, r_level, r_week)
        e_day = np.where(np.isinf(self.e_day), np.abs(r_level), self.e_day)
        e_week = np.where(np.isinf(self.e_week), np.abs(r_level), self.e_week)
        m.dev_day[ids] = e_day + slow * (np.minimum(np.abs(r_day), err_cap) - e_day)
        m.dev_week[ids] = e_week + slow * (np.minimum(np.abs(r_week), err_cap) - e_week)


def seeded(
    m: AdaptiveThresholds, ids: IntArray, hours: IntArray, s_day: FloatArray, s_week: FloatArray
) -> IntArray:
    """Which buckets of ``ids`` (``SEEDED_DAY``, ``SEEDED_WEEK``) were empty when the hour they are in began.

    The hour's first sample seeds an empty bucket, and until the hour ends the bucket only repeats the hour's
    latest samples: it has predicted nothing. Counted as the bucket's, those small errors made the week's
    model win on a series under a week old (its buckets all seeded), and when the week came round its
    buckets held the level of a week before: a drop held since, which the baseline had taken as the new
    normal, alerted again (at a 5-minute step, six days of N(100, 2), then half).
    """
    new_hour = m.last_seen[ids] // 3600.0 != hours  # NaN (a series' first sample): a new hour too
    was: IntArray = np.where(new_hour, 0, m.seeded[ids])
    return was | np.where(np.isnan(s_day), SEEDED_DAY, 0) | np.where(np.isnan(s_week), SEEDED_WEEK, 0)
