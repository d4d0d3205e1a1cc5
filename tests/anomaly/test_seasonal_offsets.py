"""``anomaly run``'s seasonal bands (``adaptive_seasonality``) learn no fault and take a lasting change once:
the buckets are offsets from a base (``seasonal_offsets``, ``anomaly.seasonal``)."""

from __future__ import annotations

import numpy as np
import pytest

from anomaly.adaptive import AdaptiveDetector
from anomaly.levelshift import rebaseline
from anomaly.onsets import OnsetTracker
from anomaly.thresholds import AdaptiveThresholds, ThresholdParams
from gpuwarden.config_anomaly import AnomalyConfig

METRIC = "inference_latency_seconds"  # scored by the adaptive detector by default, no band floor
STEP = 30.0
PER_HOUR = 120
PER_DAY = 24 * PER_HOUR
T0 = 1_767_571_200.0  # a Monday, 00:00 UTC
FAULT = 2 * PER_DAY + 10 * PER_HOUR  # the third day, 10:00
HOURS = 3 * PER_HOUR


def _params() -> ThresholdParams:
    """``anomaly run``'s adaptive thresholds for the metric with its seasonal bands on."""
    return AdaptiveDetector(AnomalyConfig(adaptive_seasonality=True)).params_for(METRIC)


def _series(seed: int, *, wave: bool = True, days: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """Times and values at 30 s: a daily wave (100 + 30 sin, noise N(0, 2)), else N(100, 2)."""
    t = T0 + STEP * np.arange(days * PER_DAY)
    cycle = 30.0 * np.sin(2 * np.pi * (t - T0) / 86_400.0) if wave else 0.0
    return t, 100.0 + cycle + np.random.default_rng(seed).normal(0.0, 2.0, t.size)


def _raised(t: np.ndarray, v: np.ndarray, pending: int = 3) -> list[int]:
    """The samples where an alert is raised: ``pending`` samples in a row above 1 (the service's
    ``pending_ticks``), 24 quiet samples to resolve."""
    model, tracker, ids = (
        AdaptiveThresholds(_params(), capacity=1),
        OnsetTracker(24, capacity=1),
        np.zeros(1, int),
    )
    out, above = [], 0
    for i, (x, at) in enumerate(zip(v.tolist(), t.tolist(), strict=True)):
        above = above + 1 if model.update(ids, np.array([x]), at).score[0] > 1.0 else 0
        if tracker.step(ids, np.array([above >= pending]))[0].any():
            out.append(i)
    return out


@pytest.mark.parametrize("seed", range(3))
def test_a_3_hour_fault_on_a_daily_wave_is_not_raised_again_the_next_day_and_a_second_one_is(seed):
    """A daily wave 40 down for 3 hours: raised at once, nothing when the next day reaches those hours (its
    buckets had learnt the fault's values: an alert at each of its 3 hours), and the same fault the next day
    raised again (it was those hours' normal: not raised)."""
    t, v = _series(seed)
    v[FAULT : FAULT + HOURS] -= 40.0
    assert [i - FAULT for i in _raised(t, v)] == [2]  # its third sample: the pending reads
    v[FAULT + PER_DAY : FAULT + PER_DAY + HOURS] -= 40.0
    assert [i - FAULT for i in _raised(t, v)] == [2, PER_DAY + 2]


@pytest.mark.parametrize("wave", [True, False], ids=["wave", "flat"])
def test_a_lasting_change_is_raised_once_then_taken_for_every_hour(wave):
    """40 down from 10:00 on, held: one alert, and the band takes the new level for every hour (each next
    hour's bucket met it anew: an alert every hour for 8 hours on the wave, 4 on the flat series)."""
    t, v = _series(0, wave=wave)
    v[FAULT:] -= 40.0
    raised = _raised(t, v)
    assert [i for i in raised if i < FAULT] == []
    assert [i - FAULT for i in raised if i >= FAULT] == [2]


def test_a_re_baselined_series_moves_its_base_not_its_offsets():
    """The opt-in re-baselining (``shift_run``) moves what the buckets are offsets from, so every hour moves
    with the level, as the values did when the buckets held them."""
    params = ThresholdParams.from_config(seasonal_offsets=True, shift_run=10)
    model, ids = AdaptiveThresholds(params, capacity=1), np.zeros(1, np.int64)
    t, v = _series(1, days=1)
    for x, at in zip(v[:PER_HOUR].tolist(), t[:PER_HOUR].tolist(), strict=True):
        model.update(ids, np.array([x]), at)
    assert model.shift is not None
    model.shift.values[0] = np.float32(50.0)
    day, base, level = model.day[0].copy(), float(model.base[0]), float(model.level[0])
    rebaseline(model, ids, np.ones(1))
    np.testing.assert_array_equal(model.day[0], day)
    assert float(model.base[0]) == pytest.approx(base + 50.0 - level, abs=1e-3)


@pytest.mark.parametrize("seed", range(3))
def test_a_lasting_drop_near_the_band_is_raised_at_most_once_and_on_no_later_day(seed):
    """A daily wave 10 down from 10:00 on, held (near its band): at most one alert, at the change. The hour's
    bucket learnt it within minutes (at 0.1 a sample) while the base learnt it over the day, so on the next
    days the bucket read the drop twice: the healthy hours it had learnt it in alerted (1 to 3 a day, for 2 to
    5 days), and the change itself was not raised (``anomaly.seasonal``)."""
    t, v = _series(seed, days=5)
    v[FAULT:] -= 10.0
    raised = _raised(t, v)
    assert [i for i in raised if i < FAULT] == []
    assert [i for i in raised if i >= FAULT + PER_HOUR] == []
    assert len(raised) <= 1


@pytest.mark.parametrize("seed", range(3))
def test_a_20_minute_drop_is_raised_at_the_drop_not_at_its_return(seed):
    """A daily wave 16 down for 20 minutes: raised within the drop, and nothing when it comes back. The hour's
    bucket learnt the drop sample by sample (each within the band), so it was not raised, and the healthy
    value 20 minutes on alerted as a rise."""
    t, v = _series(seed, days=3)
    v[FAULT : FAULT + 40] -= 16.0
    raised = [i - FAULT for i in _raised(t, v)]
    assert len(raised) == 1 and 0 <= raised[0] < 40
