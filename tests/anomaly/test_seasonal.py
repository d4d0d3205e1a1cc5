"""The seasonal baselines (``anomaly.seasonal``): a held change is raised once, a daily cycle still learnt."""

from __future__ import annotations

import numpy as np

from anomaly.onsets import OnsetTracker
from anomaly.scalar import ScalarThresholds
from anomaly.service import AnomalyService
from anomaly.sources import CollectorSource
from anomaly.thresholds import AdaptiveThresholds, ThresholdParams
from gpuwarden.clock import FakeClock
from gpuwarden.config_anomaly import AnomalyConfig, AnomalyQueryConfig
from tests.anomaly.fakes import TableCollector

STEP = 300.0  # a 5-minute step
PER_DAY = 288
T0 = 1_700_006_400.0  # a Wednesday, 00:00 UTC


def params_tested() -> ThresholdParams:
    """The defaults with ``seasonal_tested`` on (as the service's seasonal bands have them)."""
    return ThresholdParams.from_config(seasonal_tested=True)


def held_drop(seed: int, *, drop_at: int = 6 * PER_DAY + 90, days: int = 9) -> tuple[np.ndarray, np.ndarray]:
    """N(100, 2) at a 5-minute step, halved from ``drop_at`` (6 days 7.5 hours in) on: the week comes round
    16.5 hours after the drop, its buckets still holding 100."""
    rng = np.random.default_rng(seed)
    t = T0 + STEP * np.arange(days * PER_DAY)
    v = rng.normal(100.0, 2.0, t.size)
    v[drop_at:] = rng.normal(50.0, 2.0, t.size - drop_at)
    return t, v


def onsets(params: ThresholdParams, t: np.ndarray, v: np.ndarray) -> list[int]:
    """The samples where the adaptive thresholds raise an alert (``OnsetTracker``, 24 quiet to resolve)."""
    model, tracker, ids = (
        AdaptiveThresholds(params, capacity=1),
        OnsetTracker(24, capacity=1),
        np.zeros(1, int),
    )
    out = []
    for i, (x, at) in enumerate(zip(v.tolist(), t.tolist(), strict=True)):
        scores = model.update(ids, np.array([x]), at)
        if tracker.step(ids, scores.score > 1.0)[0].any():
            out.append(i)
    return out


def test_a_held_drop_is_raised_once_not_again_when_the_week_comes_round():
    """Six days of N(100, 2), then half, held: raised at the drop, resolved as the baseline took the new
    level, and raised again when the week came round (the week's model had won on buckets seeded within
    their hour, and its next bucket held 100)."""
    for seed in range(3):
        t, v = held_drop(seed)
        assert onsets(params_tested(), t, v) == [6 * PER_DAY + 90]


def test_a_daily_cycle_is_still_learnt_and_a_fault_a_week_on_still_raised():
    """A daily wave (amplitude 30, noise 2) is learnt: nothing raised from its third day; a 3-hour drop of 40
    on its ninth day is raised at once, by the hour-of-day buckets (which learn it: without
    ``seasonal_freeze`` it is raised again a day later, as before)."""
    rng = np.random.default_rng(4)
    t = T0 + STEP * np.arange(10 * PER_DAY)
    v = 100.0 + 30.0 * np.sin(2 * np.pi * t / 86_400.0) + rng.normal(0.0, 2.0, t.size)
    assert [i for i in onsets(params_tested(), t, v) if i >= 2 * PER_DAY] == []
    fault = 8 * PER_DAY + 100
    v[fault : fault + 36] -= 40.0
    assert [i for i in onsets(params_tested(), t, v) if i >= 2 * PER_DAY][:1] == [fault]


def test_one_series_scores_alike_in_the_scalar_path_with_tested_seasons():
    """``anomaly.scalar`` mirrors the seeded buckets to the bit (a series with a gap of a day among them)."""
    t, v = held_drop(1, days=8)
    t[500:] += 86_400.0  # a day away: it comes back in another hour
    params = params_tested()
    model, alone, ids = AdaptiveThresholds(params, capacity=1), ScalarThresholds(params), np.zeros(1, int)
    for x, at in zip(v.tolist(), t.tolist(), strict=True):
        vectorised = model.update(ids, np.array([x]), at)
        assert alone.update(x, at) == (vectorised.score[0], vectorised.yhat[0])


def test_the_service_raises_a_held_drop_once_with_seasonal_bands():
    """The service path with ``adaptive_seasonality`` on: one alert for the drop, none when the week comes
    round 16.5 hours later while the series holds its new level."""
    clock = FakeClock(T0)
    col = TableCollector()
    cfg = AnomalyConfig(
        queries=[AnomalyQueryConfig(name="job_throughput", expr="job_throughput", adaptive=True)],
        detectors=["adaptive"],
        adaptive_seasonality=True,
        infer_every_seconds=STEP,
    )
    service = AnomalyService(cfg, [CollectorSource([col], clock)], clock)
    labels = {"job": "train", "UUID": "GPU-0", "Hostname": "n1"}
    _, values = held_drop(2)
    raised = []
    for i, value in enumerate(values.tolist()):
        col.set("job_throughput", [(labels, value)])
        clock.advance(STEP)
        raised += [i for _ in service.infer().raised]
    drop = 6 * PER_DAY + 90
    assert len(raised) == 1 and drop <= raised[0] <= drop + cfg.pending_ticks  # its pending reads


def test_a_restart_mid_hour_keeps_which_buckets_were_seeded():
    """The seeded buckets are in the state (``state``/``restore``, the snapshot's arrays): a model taken up
    mid-hour, on the first week's buckets, scores the rest as the one that ran on."""
    t, v = held_drop(3, days=8)
    params, ids = params_tested(), np.zeros(1, int)
    ran_on = AdaptiveThresholds(params, capacity=1)
    cut = 6 * PER_DAY + 75  # 06:15 on its seventh day: its hour-of-week bucket seeded at 06:00
    for x, at in zip(v[:cut].tolist(), t[:cut].tolist(), strict=True):
        ran_on.update(ids, np.array([x]), at)
    assert ran_on.seeded[0] != 0
    taken_up = AdaptiveThresholds(params, capacity=1)
    taken_up.restore(ran_on.state())
    for x, at in zip(v[cut:].tolist(), t[cut:].tolist(), strict=True):
        a, b = ran_on.update(ids, np.array([x]), at), taken_up.update(ids, np.array([x]), at)
        assert (a.score[0], a.yhat[0]) == (b.score[0], b.yhat[0])
        # The week's error: learnt as the level's until 07:00 (taken up as not seeded: as the bucket's).
        assert ran_on.dev_week[0] == taken_up.dev_week[0]
