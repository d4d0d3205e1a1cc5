from __future__ import annotations

import numpy as np
import pytest

from anomaly.scalar import ScalarThresholds
from anomaly.thresholds import AdaptiveThresholds, ThresholdParams
from anomaly.univariate import Series, score_many

T0 = 1_767_225_600.0  # Monday 2026-01-05 is 4 days later; any start works


def feed(det: AdaptiveThresholds, values: np.ndarray, step: float = 60.0, ids: np.ndarray | None = None):
    ids = np.arange(values.shape[1]) if ids is None else ids
    out = []
    for i, row in enumerate(values):
        out.append(det.update(ids, row, T0 + i * step))
    return out


def test_a_spike_after_warmup_scores_above_one_and_normal_noise_does_not():
    rng = np.random.default_rng(0)
    values = (10 + rng.normal(0, 1, 600)).reshape(-1, 1)
    values[500, 0] = 40
    out = feed(AdaptiveThresholds(), values)
    scores = np.array([o.score[0] for o in out])
    assert scores[500] > 1
    assert (scores[100:500] <= 1).mean() > 0.99


def test_nothing_fires_during_warmup():
    params = ThresholdParams.from_config(warmup=50)
    values = np.r_[np.ones(10), [1000.0], np.ones(10)].reshape(-1, 1)
    out = feed(AdaptiveThresholds(params), values)
    assert max(o.score[0] for o in out) == 0


def test_nan_and_inf_samples_are_skipped_without_teaching_the_baseline():
    det = AdaptiveThresholds()
    values = np.full((100, 1), 5.0)
    values[50:60, 0] = np.nan
    values[70, 0] = np.inf
    out = feed(det, values)
    assert all(o.ids.size == 0 for o in out[50:60])
    assert det.level[0] == pytest.approx(5.0)
    assert det.count[0] == 89


@pytest.mark.parametrize(("direction", "fires_on_drop"), [("up", False), ("down", True), ("both", True)])
def test_direction_decides_which_deviations_count(direction, fires_on_drop):
    rng = np.random.default_rng(1)
    values = (100 + rng.normal(0, 1, 300)).reshape(-1, 1)
    values[250, 0] = 50
    out = feed(AdaptiveThresholds(ThresholdParams.from_config(direction=direction)), values)
    assert bool(out[250].score[0] > 1) is fires_on_drop


def test_min_deviation_keeps_a_flat_series_from_alarming_on_tiny_moves():
    values = np.full((200, 1), 50.0)
    values[150, 0] = 50.5
    loose = feed(AdaptiveThresholds(), values.copy())
    floored = feed(AdaptiveThresholds(ThresholdParams.from_config(min_deviation=1.0)), values.copy())
    assert loose[150].score[0] > 1
    assert floored[150].score[0] < 1


def daily(values_at_hour, days=21, noise=1.0, seed=2):
    hours = np.arange(24 * days)
    rng = np.random.default_rng(seed)
    return (values_at_hour(hours % 24) + rng.normal(0, noise, hours.size)).astype(float)


def test_a_daily_cycle_is_learned_so_a_daytime_level_at_night_is_flagged():
    values = daily(lambda h: 50 + 20 * np.sin(2 * np.pi * (h - 6) / 24))
    night = 24 * 20 + 0  # the trough is at midnight; put the peak's level there
    values[night] = 70
    seasonal = feed(AdaptiveThresholds(), values.reshape(-1, 1), step=3600.0)
    flat = feed(
        AdaptiveThresholds(ThresholdParams.from_config(seasonality=False)), values.reshape(-1, 1), 3600.0
    )
    assert seasonal[night].score[0] > 1
    assert flat[night].score[0] < 1
    assert max(o.score[0] for o in seasonal[24 * 14 : night]) < 1


def test_a_sharp_daily_peak_is_learned_when_errors_are_clipped_loosely():
    values = daily(lambda h: 50 + 40 * (h == 12))
    night = 24 * 20 + 2
    values[night] = 90
    params = ThresholdParams.from_config(error_clip=3.0)
    seasonal = feed(AdaptiveThresholds(params), values.reshape(-1, 1), step=3600.0)
    noon = 24 * 20 + 12
    assert seasonal[night].score[0] > 1
    assert seasonal[noon].score[0] < 1


def test_series_scored_together_match_series_scored_alone():
    rng = np.random.default_rng(3)
    values = rng.normal(0, 1, (300, 3)) + np.array([0, 10, 100])
    together = feed(AdaptiveThresholds(), values)
    alone = feed(AdaptiveThresholds(), values[:, [1]])
    np.testing.assert_allclose([o.score[1] for o in together], [o.score[0] for o in alone])


def test_state_per_series_is_at_most_one_kilobyte():
    det = AdaptiveThresholds(capacity=10_000)
    assert det.state_bytes_per_series() <= 1024


def test_new_series_ids_grow_the_state_and_reset_forgets_a_series():
    det = AdaptiveThresholds(capacity=2)
    det.update(np.array([0, 4000]), np.array([1.0, 2.0]), T0)
    assert det.capacity > 4000
    det.reset(np.array([4000]))
    assert det.count[4000] == 0


@pytest.mark.parametrize("freeze", [True, False], ids=["frozen", "learning"])
def test_an_incident_does_not_become_the_next_days_normal_when_buckets_freeze(freeze):
    values = daily(lambda h: 50 + 20 * np.sin(2 * np.pi * (h - 6) / 24), days=16)
    incident = slice(24 * 14 + 13, 24 * 14 + 16)  # three hours far above normal on day 14
    values[incident] += 60
    params = ThresholdParams.from_config(seasonal_freeze=freeze)
    # Sample every 5 minutes so each hour bucket sees the incident many times.
    fine = np.repeat(values, 12)
    out = feed(AdaptiveThresholds(params), fine.reshape(-1, 1), step=300.0)
    next_day = [o.score[0] for o in out[12 * (24 * 15 + 13) : 12 * (24 * 15 + 16)]]
    assert (max(next_day) > 1) is not freeze


def test_after_a_job_stall_a_constant_clock_back_at_its_normal_raises_nothing_below_the_floor():
    # A training GPU's SM clock in the simulator: constant 1980 MHz, idle 345 MHz during a one-hour job
    # stall, then constant again. The baseline lags a few MHz behind for hours; with the volatility term
    # measured against the widened tail band that lag alone scored above 1, although it is far below the
    # 150 MHz floor.
    m = AdaptiveThresholds(ThresholdParams.from_config(min_deviation=150.0))
    values = [1980.0] * 100 + [345.0] * 60 + [1980.0] * 1500
    scores = [float(m.update(np.array([0]), np.array([v]), 30.0 * i).score[0]) for i, v in enumerate(values)]
    assert max(scores[100:160]) > 1  # the stall itself is far out of the band
    assert max(scores[220:]) <= 1


def test_a_drop_larger_than_the_floor_still_scores_above_one():
    m = AdaptiveThresholds(ThresholdParams.from_config(min_deviation=150.0))
    values = [1980.0] * 200 + [1500.0] * 5
    scores = [float(m.update(np.array([0]), np.array([v]), 30.0 * i).score[0]) for i, v in enumerate(values)]
    assert min(scores[200:]) > 1


def test_a_series_past_two_billion_samples_keeps_its_count_and_scores_like_the_scalar_path():
    """The vectorised count is int32 and its ``+ 1`` wrapped to -2**31 before the saturation: a series that
    old was taken as not warmed up and scored 0 for ever after, where the scalar path kept scoring."""
    params = ThresholdParams.from_config()
    vector, scalar = AdaptiveThresholds(params), ScalarThresholds(params)
    rng = np.random.default_rng(3)
    values = [*(10 + rng.normal(0, 1, 200)), 10.5, 9.5, 40.0, 10.0]
    scores = []
    for i, x in enumerate(values):
        if i == 200:  # as if two billion samples had gone by
            vector.count[0] = scalar.count = np.iinfo(np.int32).max - 1
        t = T0 + i * 60.0
        scores.append(
            (float(vector.update(np.array([0]), np.array([x]), t).score[0]), scalar.update(x, t)[0])
        )
    assert int(vector.count[0]) == scalar.count == np.iinfo(np.int32).max
    assert [v for v, _ in scores[200:]] == [s for _, s in scores[200:]]
    assert scores[202][0] > 1


def _step(seed: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.r_[rng.normal(10, 1, 600), rng.normal(30, 1, 600)]


def test_after_a_level_shift_the_band_relearns_when_rebaselining_is_on():
    values = np.c_[_step(), _step(6)]  # two series; the second id is past the capacity, so the state grows
    widths, over = {}, {}
    for run in (0, 12):
        det = AdaptiveThresholds(ThresholdParams.from_config(shift_run=run), capacity=1)
        out = feed(det, values, ids=np.array([0, 3]))
        widths[run] = np.array([o.upper - o.yhat for o in out])
        over[run] = (np.array([o.score for o in out])[615:] > 1).sum(axis=0)
    before = widths[0][590]
    # Off: the baseline catches up slowly, a model whose error widened leaves the band over 3x as wide for a
    # while, and dozens of samples at the new level score above 1. On: the band is back to its width before.
    assert np.all(widths[0][615:].max(axis=0) > 3 * before)
    assert np.all(over[0] > 20)
    assert np.all(widths[12][615:].max(axis=0) < 1.5 * before)
    assert np.all(over[12] == 0)


def test_rebaselining_raises_nothing_itself_and_keeps_the_shifts_own_alert():
    values = _step()
    series = Series("step", T0 + 60.0 * np.arange(values.size), values)
    onsets = {}
    for run in (0, 12, 48):
        (scored,) = score_many([series], ThresholdParams.from_config(shift_run=run))
        onsets[run] = np.flatnonzero(scored.raised).tolist()
    assert 600 in onsets[0]
    assert onsets[12] == onsets[0]
    assert onsets[48] == onsets[0]


def test_rebaselining_state_is_stated_and_off_costs_nothing():
    off = AdaptiveThresholds(capacity=100)
    on = AdaptiveThresholds(ThresholdParams.from_config(shift_run=48), capacity=100).state_bytes_per_series()
    # Its ring of recent values holds the first samples the robust start keeps (``anomaly.warmstart``),
    # which without it are held only while read (none yet, but each series' slot: ``anomaly.startpool``).
    assert on == off.state_bytes_per_series() - 4 + 4 * 48 + 12
    assert on <= 1024
    with pytest.raises(ValueError, match="shift_run"):
        ThresholdParams.from_config(shift_run=49)


@pytest.mark.parametrize("cap", [20.0, 160.0])
def test_fast_cap_bounds_how_long_one_huge_sample_keeps_the_score_above_one(cap):
    # Issue 4's glitch as a value: uncapped, the fast error of one 4294967295 falls below the volatility
    # floor only ~175 samples later. Capped at `cap` floors, the glitch's part starts at 0.1 cap floors and
    # decays by 0.9 a sample; with the noise's own part under half a floor, it is back below one floor after
    # ln(0.2 cap - 1) / -ln(0.9) samples.
    rng = np.random.default_rng(3)
    values = (60 + rng.normal(0, 0.5, 400)).reshape(-1, 1)
    values[200, 0] = float(0xFFFFFFFF)
    runs = {}
    for label, params in {"off": None, "capped": ThresholdParams.from_config(fast_cap=cap)}.items():
        scores = np.array([o.score[0] for o in feed(AdaptiveThresholds(params), values)])
        assert scores[200] > 1e6  # the sample itself is anomalous either way
        runs[label] = int(np.argmax(scores[200:] <= 1))  # samples from the glitch until the score is back
    assert runs["capped"] <= np.ceil(np.log(0.2 * cap - 1) / -np.log(0.9))
    assert runs["off"] > 100


def test_a_series_state_set_from_its_row_scores_and_learns_as_the_series_would():
    """``row`` holds every per-series array (the seasonal buckets and the re-baselining run included):
    set as another id's state, that id scores and learns exactly as the series it came from."""
    params = ThresholdParams.from_config(shift_run=10)
    det = AdaptiveThresholds(params, capacity=4)
    rng = np.random.default_rng(3)
    for i in range(60):
        det.update(np.array([0]), np.array([50.0 + rng.normal(0, 1) + (i > 40) * 9.0]), 3_600.0 * i)
    det.set_row(9, det.row(0))
    assert det.capacity >= 10
    for i in range(60, 80):
        a, b = (det.update(np.array([sid]), np.array([60.0 + (i % 3)]), 3_600.0 * i) for sid in (0, 9))
        assert (a.score, a.lower, a.upper, a.judged) == (b.score, b.lower, b.upper, b.judged)
    assert det.row(0).tobytes() == det.row(9).tobytes()
