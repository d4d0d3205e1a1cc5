"""The seasonal baselines of the adaptive thresholds: hour-of-day and hour-of-week buckets per series.

``AdaptiveThresholds`` keeps the buckets (``day``, ``week``) and their errors (``dev_day``, ``dev_week``);
``Season`` reads them for one batch, picks the model each series uses (a seasonal one only when it is
clearly better than the level), and teaches the visited buckets (``anomaly.thresholds`` says why).

With ``seasonal_offsets`` (the service's seasonal bands; off in ``anomaly score`` and the NAB evaluation) a
bucket holds its hour's offset from a per-series ``base``, not the hour's value, and learns nothing from a
sample past the band nor while a raised fault is kept (``anomaly.faultbands``). The base learns as the level
does (an EWMA at ``alpha``, winsorised at ``clip`` bands) from the seasonal model's residual, so it is the
series without its seasons, and it is kept before a raised fault and given back at its repair with the level.
Holding the values, the buckets learnt whatever their hours read (at ``seasonal_alpha`` 0.1 a sample: within
half an hour at a 30-second step), so (``benchmarks/seasonal_faults.py``, 10 GPUs)

* a 3-hour fault on a daily wave (40 down on an amplitude of 30) became those hours' normal: the next day
  each of its hours alerted at the healthy value, and the same fault again was not raised (10 of 10 GPUs);
* a change that lasted was learnt hour by hour, and each next hour's bucket met it anew: an alert every hour
  for 8 hours (4 on a flat series), where the level alone raises one and then takes the new level.

As offsets, the base takes a lasting change once for every hour (one alert), and a repaired fault's base given
back gives every hour its value back. The level alone still tracks a daily wave (its EWMA lags it by under an
hour at 30 s): the base is not the level, or a fault's kept level, 3 hours old at its repair, would be read
with the repair's hour offset (28 from the value), and a level that became the base once the seasonal model
won left the offsets learnt before it wrong.
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
        # Offsets from the base read as values (NaN, a bucket never seeded, stays NaN); a new base is the
        # series' first sample.
        self.offsets = m.params.seasonal_offsets
        self.base = np.zeros(x.size)
        if self.offsets:
            base = m.base[ids].astype(np.float64)
            self.base = np.where(np.isnan(base), x, base)
            self.s_day += self.base
            self.s_week += self.base
        self.seeded = seeded(m, ids, hours, self.s_day, self.s_week) if m.params.seasonal_tested else None
        self.e_day = m.dev_day[ids].astype(np.float64)
        self.e_week = m.dev_week[ids].astype(np.float64)
        self.yhat, self.scale = chosen(gain, (self.s_day, self.s_week, level), (self.e_day, self.e_week, dev))

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

        With ``seasonal_freeze`` or ``seasonal_offsets`` a ``frozen`` sample does not teach the buckets: an
        incident at 14:00 must not become tomorrow's 14:00 normal (with offsets it seeds no bucket either).
        """
        p = m.params
        sa = (
            np.where(frozen, 0.0, p.seasonal_alpha) if p.seasonal_freeze or self.offsets else p.seasonal_alpha
        )
        r_day = np.where(np.isnan(self.s_day), r_level, x - self.s_day)
        r_week = np.where(np.isnan(self.s_week), r_level, x - self.s_week)
        day = np.where(np.isnan(self.s_day), x, self.s_day + sa * clipped(r_day, cap))
        week = np.where(np.isnan(self.s_week), x, self.s_week + sa * clipped(r_week, cap))
        if self.offsets:  # back to offsets from the base the sample was scored against, which learns too
            day = np.where(frozen & np.isnan(self.s_day), np.nan, day - self.base)
            week = np.where(frozen & np.isnan(self.s_week), np.nan, week - self.base)
            fresh = m.count[ids] == 0
            r_base = np.where(np.isnan(self.s_day), x - self.base, r_day)
            m.base[ids] = self.base + np.where(fresh, 0.0, p.alpha) * clipped(r_base, cap)
        m.day[ids, self.h_day] = day
        m.week[ids, self.h_week] = week
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


def chosen(
    gain: float, models: tuple[FloatArray, FloatArray, FloatArray], errors: tuple[FloatArray, ...]
) -> tuple[FloatArray, FloatArray]:
    """The prediction and error scale of the model each series uses, of the hour-of-day, hour-of-week and
    level ``models`` and their ``errors``: a seasonal one only when its bucket has a value and its error is
    under ``gain`` times the others'."""
    (s_day, s_week, level), (e_day, e_week, dev) = models, errors
    use_day = (e_day < gain * dev) & ~np.isnan(s_day)
    use_week = (e_week < gain * np.minimum(dev, e_day)) & ~np.isnan(s_week)
    yhat: FloatArray = np.where(use_week, s_week, np.where(use_day, s_day, level))
    scale: FloatArray = np.where(use_week, e_week, np.where(use_day, e_day, dev))
    return yhat, scale


def kept_model(
    m: AdaptiveThresholds, ids: IntArray, hours: tuple[IntArray, IntArray]
) -> tuple[FloatArray, ...]:
    """The prediction and error scale of the state kept before the raised faults of ``ids`` (``FaultBands``),
    with ``seasonal_offsets`` at their hour-of-day and hour-of-week ``hours``: the kept base plus the hour's
    offset where the kept errors choose a seasonal model, else the kept level."""
    f = m.fault
    assert f is not None
    level, dev = f.level[ids], f.dev[ids].astype(np.float64)
    if not (m.params.seasonality and m.params.seasonal_offsets):
        return level, dev
    base = f.base[ids].astype(np.float64)
    s_day = m.day[ids, hours[0]] + base
    s_week = m.week[ids, hours[1]] + base
    errors = (f.dev_day[ids].astype(np.float64), f.dev_week[ids].astype(np.float64), dev)
    return chosen(m.params.seasonal_gain, (s_day, s_week, level), errors)


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


def held(m: AdaptiveThresholds, ids: IntArray, score: FloatArray, anomalous: BoolArray) -> BoolArray:
    """Which samples of ``ids`` teach their buckets nothing: with ``seasonal_offsets`` those past the band
    (``anomalous``) and those of a series whose raised fault is kept (``anomaly.faultbands``), else those
    that score above 1 (read only with ``seasonal_freeze``)."""
    if not m.params.seasonal_offsets:
        above: BoolArray = score > 1.0
        return above
    if m.fault is None:
        return anomalous
    kept: BoolArray = anomalous | (m.fault.age[ids] > 0)
    return kept
