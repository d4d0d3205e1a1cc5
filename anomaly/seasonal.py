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

As offsets, a bucket is the offset at its hour's centre, and a sample is scored against the profile running
straight between the centres of its hour's bucket and the nearest other (``knots``, ``between``). A bucket
learns its first hour's mean offset, and from then on ``OFFSET_GAIN`` of its error each day (hour-of-week:
week), split with the other bucket as the sample's prediction was; the base learns no hour whose bucket is in
its first hour, so a new series' first day is read against one base. Learning each hour anew (at
``seasonal_alpha`` a sample, 0.1: the last few minutes' offset), a bucket was a second, fast level during its
hour, and the base and the bucket both learnt a change (at 30 s, a daily wave of amplitude 30, noise 2):

* a drop of 10 held from 10:00 was not raised (the hour's bucket took it within minutes), but the base took it
  over the day as well, so the next day the hour's bucket read it twice: its first hours alerted on every GPU
  (a drop of 6: on 5 GPUs of 10; 15 for 6 hours: 1 to 3 alerts a day for 2 to 5 days);
* a drop of 16 for 20 minutes was learnt as it went (each sample within the band), not raised, and the
  healthy value at its end alerted (9 GPUs of 10);
* each hour began with the bucket at the previous day's last minutes of the hour (on the wave, up to 8 from
  the value), which widened the band (about 14.5 against 13 now).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from anomaly.thresholds import AdaptiveThresholds, BoolArray, FloatArray, IntArray

HOURS_PER_DAY = 24
HOURS_PER_WEEK = 168
# The Unix epoch fell on a Thursday; shifting by 3 days makes bucket 0 Monday 00:00 UTC.
EPOCH_WEEKDAY_SHIFT_HOURS = 72
# ``AdaptiveThresholds.seeded``'s bits: the series' hour-of-day, hour-of-week bucket was seeded this hour.
SEEDED_DAY, SEEDED_WEEK = 1, 2
# With ``seasonal_offsets``: how much of its error one day's (hour-of-week: week's) hour teaches a bucket.
OFFSET_GAIN = 0.25


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
        # Offsets from the base read as values (NaN, a bucket never seeded, stays NaN); a new base is the
        # series' first sample.
        self.offsets = m.params.seasonal_offsets
        self.base = np.zeros(x.size)
        if self.offsets:
            base = m.base[ids].astype(np.float64)
            self.base = np.where(np.isnan(base), x, base)
            self.t, self.hours = timestamps, hours
            frac = timestamps / 3600.0 - hours
            self.day_knots = knots(self.h_day, frac, HOURS_PER_DAY)
            self.week_knots = knots(self.h_week, frac, HOURS_PER_WEEK)
            self.s_day = between(m.day, ids, self.h_day, self.day_knots) + self.base
            self.s_week = between(m.week, ids, self.h_week, self.week_knots) + self.base
        else:
            self.s_day = m.day[ids, self.h_day].astype(np.float64)
            self.s_week = m.week[ids, self.h_week].astype(np.float64)
        # Which buckets were seeded this hour: ``seasonal_tested`` counts their error as the level's, and
        # with offsets they learn the hour's mean.
        tracked = m.params.seasonal_tested or self.offsets
        self.seeded = seeded(m, ids, hours, self.s_day, self.s_week) if tracked else None
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
        r_day = np.where(np.isnan(self.s_day), r_level, x - self.s_day)
        r_week = np.where(np.isnan(self.s_week), r_level, x - self.s_week)
        if self.offsets:
            self._learn_offsets(m, ids, x, r_day=r_day, cap=cap, frozen=frozen)
        else:
            sa = np.where(frozen, 0.0, p.seasonal_alpha) if p.seasonal_freeze else p.seasonal_alpha
            m.day[ids, self.h_day] = np.where(np.isnan(self.s_day), x, self.s_day + sa * clipped(r_day, cap))
            m.week[ids, self.h_week] = np.where(
                np.isnan(self.s_week), x, self.s_week + sa * clipped(r_week, cap)
            )
        # A bucket's error only counts once the bucket has a value: before that it is the level's error. With
        # ``seasonal_tested``, only once it has one from an earlier day or week (``seeded``).
        if self.seeded is not None:
            m.seeded[ids] = self.seeded
        if self.seeded is not None and p.seasonal_tested:
            r_day = np.where(self.seeded & SEEDED_DAY, r_level, r_day)
            r_week = np.where(self.seeded & SEEDED_WEEK, r_level, r_week)
        e_day = np.where(np.isinf(self.e_day), np.abs(r_level), self.e_day)
        e_week = np.where(np.isinf(self.e_week), np.abs(r_level), self.e_week)
        m.dev_day[ids] = e_day + slow * (np.minimum(np.abs(r_day), err_cap) - e_day)
        m.dev_week[ids] = e_week + slow * (np.minimum(np.abs(r_week), err_cap) - e_week)

    def offset(self) -> tuple[FloatArray, FloatArray]:
        """Each sample's hour-of-day and hour-of-week offsets, as scored (NaN: the bucket is empty)."""
        return self.s_day - self.base, self.s_week - self.base

    def _learn_offsets(
        self,
        m: AdaptiveThresholds,
        ids: IntArray,
        x: FloatArray,
        *,
        r_day: FloatArray,
        cap: FloatArray,
        frozen: BoolArray,
    ) -> None:
        """Teach the buckets (offsets from the base) and the base: a bucket in its first hour learns the
        hour's mean offset, later ones ``OFFSET_GAIN`` of each day's (week's) error; the base learns at
        ``alpha`` from the hour-of-day model's error once its bucket is from an earlier day."""
        since = np.maximum(self.t - m.last_seen[ids], 0.0)  # NaN at a series' first sample, which seeds
        # The hour's mean so far, as if sampled from the hour's start at this step.
        upto = self.t - 3600.0 * self.hours + since
        mean_rate = np.where(upto > 0.0, since / np.maximum(upto, 1e-9), 1.0)
        mean_rate = np.nan_to_num(mean_rate, nan=1.0)
        rate = OFFSET_GAIN * np.nan_to_num(np.minimum(since, 3600.0), nan=0.0) / 3600.0
        seeded = np.zeros(ids.size, np.int64) if self.seeded is None else self.seeded
        r_base = np.zeros(ids.size)
        for table, h, nb, s, bit in (
            (m.day, self.h_day, self.day_knots, self.s_day, SEEDED_DAY),
            (m.week, self.h_week, self.week_knots, self.s_week, SEEDED_WEEK),
        ):
            first = (seeded & bit) != 0
            own, near = table[ids, h].astype(np.float64), table[ids, nb[0]].astype(np.float64)
            r = clipped(x - s, cap)
            alone = np.isnan(near) | first
            w = np.where(alone, 0.0, nb[1])
            mean = own + mean_rate * clipped(x - self.base - own, cap)
            new = np.where(np.isnan(own), x - self.base, np.where(first, mean, own + rate * (1.0 - w) * r))
            table[ids, h] = np.where(frozen, own, new)
            table[ids, nb[0]] = np.where(frozen | alone, near, near + rate * w * r)
            if bit == SEEDED_DAY:  # the base learns no hour its bucket is learning for the first time
                r_base = np.where(np.isnan(own) | first, 0.0, r_day)
        fresh = m.count[ids] == 0
        m.base[ids] = self.base + np.where(fresh, 0.0, m.params.alpha) * clipped(r_base, cap)


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


def knots(h: IntArray, frac: FloatArray, period: int) -> tuple[IntArray, FloatArray]:
    """The bucket next to each sample's bucket ``h`` (of ``period``) on the side of its centre the sample is
    at, and that bucket's weight in the prediction: the profile runs straight between the buckets' centres
    (``frac``: how far into its hour the sample is)."""
    u = frac - 0.5
    return (h + np.where(u >= 0.0, 1, -1)) % period, np.abs(u)


def between(
    table: npt.NDArray[np.float32], ids: IntArray, h: IntArray, nb: tuple[IntArray, FloatArray]
) -> FloatArray:
    """The offset of each of ``ids`` at its sample's place between the centres of its bucket ``h`` and the
    next one ``nb`` (``knots``): its bucket's alone where the next one is empty, NaN where its own is."""
    own = table[ids, h].astype(np.float64)
    near = table[ids, nb[0]].astype(np.float64)
    out: FloatArray = np.where(np.isnan(near), own, own + nb[1] * (near - own))
    return out


def kept_model(
    m: AdaptiveThresholds, ids: IntArray, offsets: tuple[FloatArray, FloatArray]
) -> tuple[FloatArray, ...]:
    """The prediction and error scale of the state kept before the raised faults of ``ids`` (``FaultBands``),
    with ``seasonal_offsets`` at their samples' hour-of-day and hour-of-week ``offsets`` (``Season.offset``):
    the kept base plus the offset where the kept errors choose a seasonal model, else the kept level."""
    f = m.fault
    assert f is not None
    level, dev = f.level[ids], f.dev[ids].astype(np.float64)
    if not (m.params.seasonality and m.params.seasonal_offsets):
        return level, dev
    base = f.base[ids].astype(np.float64)
    s_day, s_week = offsets[0] + base, offsets[1] + base
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
