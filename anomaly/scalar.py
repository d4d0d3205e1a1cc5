"""The default detector's arithmetic for one series in plain Python floats: ``anomaly score``'s fast path.

The reference is the vectorised code (``AdaptiveThresholds``, ``OnsetTracker``, ``RangeBreakout``, scored
together by ``anomaly.univariate.score_together``): the service and the NAB evaluation run it over many
series at once. On one series its dozens of numpy calls per sample work on one-element arrays, and their
per-call overhead, not arithmetic, was the cost (700-2,000 rows/s). Here the same operations run in the same
order on Python floats, so the scores are the same to the bit (``tests/anomaly/test_scalar.py`` runs both
on varied series and requires it):

* ``+ - * /`` and ``abs`` are IEEE operations in both; there is no ``exp``, ``log`` or ``pow`` to differ;
* ``np.maximum``/``np.minimum`` are ``fmax``/``fmin`` here, which pick the same operand numpy does for NaN
  and for zeros of either sign;
* the state numpy keeps in float32 (seasonal buckets, their errors, the fast error, the tail) is kept in
  ``array("f")``, which rounds each stored value to float32 as numpy's assignment does;
* a division by zero gives numpy's inf or NaN (``quotient``), not Python's exception.

``DailyRecurrence`` and ``ContextNovelty`` already worked sample by sample; both paths call the same code
(``recurs``, ``update_one``). A change to a vectorised part must be made here too; the test says when not.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable

import numpy as np

from anomaly.breakout import SCORE_CAP, BreakoutParams
from anomaly.novelty import ContextNovelty, NoveltyParams
from anomaly.recurrence import DailyRecurrence, RecurrenceParams
from anomaly.seasonal import SEEDED_DAY, SEEDED_WEEK
from anomaly.steps import NEVER, BoolArray, FloatArray
from anomaly.thresholds import ThresholdParams
from anomaly.warmstart import relearnt, start_length

_INT32_MAX = 2**31 - 1
_QUIET_MAX = _INT32_MAX - 1  # OnsetTracker's saturation
_FLOAT32_MAX = 3.4028234663852886e38  # float32's largest finite value (numpy's finfo, without importing it)
_DEV_DAY, _DEV_WEEK, _FAST_DEV, _TAIL = range(4)  # the float32 scalars, in one array("f")
_HOURS_PER_DAY, _HOURS_PER_WEEK, _WEEK_SHIFT_HOURS = 24, 168, 72  # as in anomaly.seasonal
INF = math.inf
_INVALID = INF - INF  # the NaN this machine's floating-point unit makes for 0/0, as numpy's 0/0 gives it


def fmax(a: float, b: float) -> float:
    """``np.maximum`` of two floats: NaN if either is NaN, else the larger, ``b`` when they are equal
    (so ``fmax(0.0, -0.0)`` is ``-0.0``, as numpy gives it)."""
    return a if a > b or a != a else b  # noqa: PLR0124 (NaN test without a call: per sample, hot)


def fmin(a: float, b: float) -> float:
    """``np.minimum`` of two floats, with numpy's NaN and signed-zero answers (see ``fmax``)."""
    return a if a < b or a != a else b  # noqa: PLR0124 (as in fmax)


def quotient(a: float, b: float) -> float:
    """``a / b`` as numpy divides: ``b == 0`` gives a signed inf, or NaN for ``0 / 0`` and ``NaN / 0``."""
    if b:
        return a / b
    if math.isnan(a):
        return a
    if a == 0.0:
        return _INVALID
    return math.copysign(INF, a) * math.copysign(1.0, b)


def _clip(x: float, cap: float) -> float:
    return fmin(fmax(x, -cap), cap)


class ScalarThresholds:
    """``AdaptiveThresholds`` for one series; ``update`` takes a finite value and time (the vectorised
    one skips the others: so must its caller)."""

    def __init__(self, params: ThresholdParams) -> None:
        self.params = params
        self.count = 0
        self.level = 0.0
        self.dev = 0.0
        self.f32 = array("f", [INF, INF, 0.0, 0.0])
        self.day = array("f", [math.nan] * _HOURS_PER_DAY)
        self.week = array("f", [math.nan] * _HOURS_PER_WEEK)
        self.start_len = start_length(params)
        self.start = array("f", [0.0] * self.start_len)
        self.last_seen = math.nan  # the time of the latest sample learnt
        self.seeded = 0  # ``AdaptiveThresholds.seeded``: the buckets seeded in the hour it is in

    def update(self, x: float, t: float) -> tuple[float, float]:
        """Score ``x`` at ``t`` then learn from it; return the score and the baseline (``yhat``)."""
        p, f32 = self.params, self.f32
        n = self.count
        level = x if n == 0 else self.level
        dev = self.dev
        if p.seasonality:
            hours = int(t // 3600.0)
            h_day, h_week = hours % _HOURS_PER_DAY, (hours + _WEEK_SHIFT_HOURS) % _HOURS_PER_WEEK
            s_day, s_week = self.day[h_day], self.week[h_week]
            e_day, e_week = f32[_DEV_DAY], f32[_DEV_WEEK]
            if p.seasonal_tested:  # ``anomaly.seasonal.seeded``
                was = 0 if self.last_seen // 3600.0 != hours else self.seeded
                self.seeded = was | SEEDED_DAY * math.isnan(s_day) | SEEDED_WEEK * math.isnan(s_week)
            use_day = e_day < p.seasonal_gain * dev and not math.isnan(s_day)
            use_week = e_week < p.seasonal_gain * fmin(dev, e_day) and not math.isnan(s_week)
            yhat = s_week if use_week else s_day if use_day else level
            scale = e_week if use_week else e_day if use_day else dev
        else:
            yhat, scale = level, dev
        resid = x - yhat
        width = self._width(resid, scale)
        band = self._band(width * scale, yhat)
        signed = abs(resid) if p.direction == "both" else fmax(resid if p.direction == "up" else -resid, 0.0)
        score = quotient(signed, band)
        fast_dev = 0.0 if n == 0 else f32[_FAST_DEV]
        fast_dev = fast_dev + p.fast_alpha * (signed - fast_dev)
        if p.volatility_k > 0:
            floor = fmax(quotient(p.volatility_k, width) * band, p.min_deviation)
            score = fmax(score, quotient(fast_dev, floor))
        if n < p.warmup:
            score = 0.0
        early = n < self.start_len
        cap = quotient(p.clip * band, width) if n >= (self.start_len or p.warmup) else INF
        r_level = x - level
        slow = fmax(p.scale_alpha, 1.0 / (n + 1.0))
        if early:
            self.start[n] = _clip(x, _FLOAT32_MAX)
        self.level = level + (1.0 if n == 0 else p.alpha) * _clip(r_level, cap)
        err_cap = p.error_clip * cap
        self.dev = dev + slow * (fmin(abs(r_level), err_cap) - dev)
        if p.seasonality:
            learn = (0.0 if score > 1.0 else p.seasonal_alpha) if p.seasonal_freeze else p.seasonal_alpha
            shared = {"r_level": r_level, "learn": learn, "cap": cap, "slow": slow, "err_cap": err_cap}
            f32[_DEV_DAY] = _bucket(
                self.day, h_day, x, s_day, e_day, seeded=self.seeded & SEEDED_DAY, **shared
            )
            f32[_DEV_WEEK] = _bucket(
                self.week, h_week, x, s_week, e_week, seeded=self.seeded & SEEDED_WEEK, **shared
            )
        f32[_FAST_DEV] = fmin(fast_dev, _FLOAT32_MAX)  # as the vectorised one holds it (no inf, then NaN)
        self.count = min(n + 1, _INT32_MAX)
        self.last_seen = t
        if early and n == self.start_len - 1:
            self._start()
        return score, yhat

    def _start(self) -> None:
        """``AdaptiveThresholds._start``: judge the kept first samples, all learnt now."""
        odd, level, dev, fast = relearnt(np.frombuffer(self.start, np.float32).reshape(1, -1), self.params)
        if odd[0]:
            self.level = float(level[0])
            self.dev = float(dev[0])
            self.f32[_FAST_DEV] = fmin(float(fast[0]), _FLOAT32_MAX)

    def _band(self, band: float, yhat: float) -> float:
        """The band's half-width from ``width * scale``, with its floors."""
        p = self.params
        band = fmax(band, p.min_deviation)
        if p.min_relative_deviation > 0:
            band = fmax(band, p.min_relative_deviation * abs(yhat))
        return fmax(band, 1e-9 * (1.0 + abs(yhat)))

    def _width(self, resid: float, scale: float) -> float:
        """``AdaptiveThresholds._width`` (it moves the tail quantile on)."""
        p = self.params
        if p.tail_quantile <= 0:
            return p.k
        tail = self.f32[_TAIL]
        z = quotient(abs(resid), fmax(scale, 1e-12))
        step = p.tail_rate * (p.tail_quantile if z > tail else p.tail_quantile - 1.0)
        self.f32[_TAIL] = fmin(fmax(tail + step * fmax(tail, 1.0), 0.0), 1e3)
        return fmax(p.k, p.tail_k * tail)


def _bucket(
    buckets: array[float],
    hour: int,
    x: float,
    seen: float,
    error: float,
    *,
    r_level: float,
    learn: float,
    cap: float,
    slow: float,
    err_cap: float,
    seeded: int,
) -> float:
    """``Season.learn`` (anomaly.seasonal) for one model: update the visited bucket, return its new error
    (``seeded``: the bucket was seeded in this hour, ``seasonal_tested`` on)."""
    empty = math.isnan(seen)
    resid = r_level if empty else x - seen
    buckets[hour] = x if empty else seen + learn * _clip(resid, cap)
    if seeded:
        resid = r_level
    error = abs(r_level) if abs(error) == INF else error
    return error + slow * (fmin(abs(resid), err_cap) - error)


class ScalarOnsets:
    """``OnsetTracker`` for one series."""

    def __init__(self, resolve_after: int) -> None:
        self.resolve_after = resolve_after
        self.firing = False
        self.quiet = 0
        self.muted = False  # the running anomaly's onset was muted (``OnsetTracker.mute``)

    def step(self, anomalous: bool) -> bool:
        """Advance one sample; whether an alert is raised now."""
        was = self.firing
        quiet = 0 if anomalous else self.quiet + 1
        resolved = was and not anomalous and quiet >= self.resolve_after
        self.firing = (was or anomalous) and not resolved
        self.quiet = min(quiet, _QUIET_MAX)
        raised = anomalous and not was
        if raised:
            self.muted = False
        return raised


class ScalarBreakout:
    """``RangeBreakout`` for one series."""

    def __init__(self, params: BreakoutParams) -> None:
        self.params = params
        self.low, self.high = INF, -INF
        self.count = 0
        self.since = NEVER

    def update(self, x: float) -> tuple[float, bool]:
        """One sample (NaN and inf skipped: score 0, no state change); its score and whether it raises."""
        if not math.isfinite(x):
            return 0.0, False
        p = self.params
        low, high = self.low, self.high
        score, out = 0.0, False
        if self.count >= max(p.warmup, 1):
            span = high - low
            centre = 0.5 * (high + low)
            half = (0.5 + p.margin) * span
            distance = abs(x - centre)
            score = fmin(distance / half if half > 0 else INF if distance > 0 else 0.0, SCORE_CAP)
            out = x > high + p.margin * span or x < low - p.margin * span
        raised = out and self.since + 1 >= p.rearm
        self.since = 0 if out else min(self.since + 1, NEVER)
        self.low, self.high = fmin(low, x), fmax(high, x)
        self.count += 1
        return score, raised


class ScalarDetector:
    """The default detector's parts for one series (``univariate._Detectors`` on one-element arrays);
    ``None`` turns a part off as there. ``score`` walks a whole series."""

    def __init__(
        self,
        params: ThresholdParams,
        resolve_after: int,
        breakout: BreakoutParams | None,
        recurrence: RecurrenceParams | None,
        novelty: NoveltyParams | None,
    ) -> None:
        self.adaptive = ScalarThresholds(params)
        self.onsets = ScalarOnsets(resolve_after)
        self.routine = DailyRecurrence(recurrence) if recurrence is not None else None
        self.ranges = ScalarBreakout(breakout) if breakout is not None else None
        self.contexts = ContextNovelty(novelty) if novelty is not None else None

    def step(self, x: float, t: float) -> tuple[float, bool]:
        """The largest score of the parts and whether any raises, for the sample ``x`` at ``t``."""
        score, raised = self.ranges.update(x) if self.ranges is not None else (0.0, False)
        if not raised:  # a re-armed part counts at most 1 where it does not raise (steps.reported)
            score = fmin(score, 1.0)
        if self.contexts is not None:
            found, novel = self.contexts.update_one(0, x)
            score, raised = fmax(score, found if novel else fmin(found, 1.0)), raised or novel
        if not (math.isfinite(x) and math.isfinite(t)):  # the adaptive part skips it: no onset either
            return score, raised
        adaptive, yhat = self.adaptive.update(x, t)
        up = self.onsets.step(adaptive > 1.0)
        if up and self.routine is not None:
            side = _sign(x - yhat) if self.routine.params.same_direction else 0.0
            up = not self.routine.recurs(0, t, side)
            self.onsets.muted = not up
        if self.onsets.muted:  # a routine the recurrence part muted: at most 1 until it resolves
            adaptive = fmin(adaptive, 1.0)
        return fmax(score, adaptive), raised or up

    def score(
        self,
        values: FloatArray,
        timestamps: FloatArray,
        progress: Callable[[int, int], None] | None = None,
        every: int = 10_000,
    ) -> tuple[FloatArray, BoolArray]:
        """Scores and raised alerts of a whole series, sample by sample; ``progress(done, total)`` every
        ``every`` samples and once at the end, as ``score_many`` calls it."""
        total = len(values)
        scores, raised = [0.0] * total, [False] * total
        step = self.step
        for i, (x, t) in enumerate(zip(values.tolist(), timestamps.tolist(), strict=True)):
            scores[i], raised[i] = step(x, t)
            if progress is not None and (i + 1) % every == 0:
                progress(i + 1, total)
        if progress is not None:
            progress(total, total)
        return np.array(scores, np.float64), np.array(raised, np.bool_)


def _sign(d: float) -> float:
    """``np.sign`` of a float (NaN stays NaN)."""
    return 1.0 if d > 0 else -1.0 if d < 0 else 0.0 if d == 0 else d
