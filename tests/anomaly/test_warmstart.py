"""The robust start (``anomaly.warmstart``): one odd sample among a series' first no longer blinds its band.

Issue 4's reproduction: N(10, 0.2) a sample apart, one reading of 100 (or, mirrored, of -80) among the first
eleven, then a 90 % drop (or a 90 % rise) held from sample 40 or 60. Before, the level started at the first
sample and moved 1 % a sample, and the warm-up's errors were learnt unclipped: the default detector never
alerted on the drop (``gpuwarden anomaly score``, label 0 throughout)."""

from __future__ import annotations

import numpy as np
import pytest

from anomaly.levelshift import MAD_TO_MEAN_ABS
from anomaly.snapshot import Snapshot, read_snapshot, save_snapshot
from anomaly.thresholds import AdaptiveThresholds, ThresholdParams
from anomaly.univariate import Series, score_many, score_together
from anomaly.warmstart import START_SAMPLES, relearnt, start_length

T0 = 1_767_225_600.0
ROWS = 400
ODD_ROWS = [0, 5, 10]
CHANGES = [40, 60]
# The odd sample 90 away from the level, the change 90 % of it the other way: a drop after a high reading,
# a rise after a low one.
SIDES = {"high_reading_then_drop": (100.0, 1.0), "low_reading_then_rise": (-80.0, 19.0)}


def reproduction(odd_row: int, change: int, side: str, seed: int = 0) -> np.ndarray:
    """Issue 4's series: its odd early sample at ``odd_row``, its change held from ``change``."""
    odd, after = SIDES[side]
    rng = np.random.default_rng(seed)
    values = rng.normal(10.0, 0.2, ROWS)
    values[odd_row] = odd
    values[change:] = after + rng.normal(0.0, 0.2, ROWS - change)
    return values


def _times(step: float = 1.0) -> np.ndarray:
    return T0 + step * np.arange(ROWS)


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("change", CHANGES)
@pytest.mark.parametrize("odd_row", ODD_ROWS)
def test_one_odd_early_sample_leaves_the_default_alerting_on_the_change(odd_row, change, side):
    """``anomaly score``'s path: one alert, raised at the change's first sample, none before it."""
    (scored,) = score_many([Series("issue4", _times(), reproduction(odd_row, change, side))])
    assert np.flatnonzero(scored.raised).tolist() == [change]


@pytest.mark.parametrize("side", SIDES)
@pytest.mark.parametrize("change", CHANGES)
@pytest.mark.parametrize("odd_row", ODD_ROWS)
@pytest.mark.parametrize("step", [1.0, 300.0], ids=["1s", "5min"])
def test_one_odd_early_sample_leaves_the_service_band_judging_the_change(odd_row, change, side, step):
    """The service's path (``AdaptiveThresholds`` over many series): the change scores above 1 at once, the
    samples between the warm-up and it do not."""
    values = reproduction(odd_row, change, side)
    det = AdaptiveThresholds()
    scores = [det.update(np.array([0]), values[i : i + 1], T0 + step * i).score[0] for i in range(ROWS)]
    assert max(scores[:change]) <= 1.0
    assert scores[change] > 1.0


def test_a_warm_up_without_an_odd_sample_is_learnt_as_before_to_the_bit():
    """Judged and found clean, a series keeps what its warm-up learnt: the state after it, and every score
    after, are those of the detector without the robust start; so does a flat start (spikes among zeros,
    MAD 0)."""
    rng = np.random.default_rng(7)
    clean = 50.0 + rng.normal(0.0, 1.0, (ROWS, 3))
    clean[:, 1] = np.where(np.arange(ROWS) % 7 == 0, 20.0, 0.0)  # more than half equal: none judged odd
    clean[:, 2] = 3.0  # constant
    robust, plain = AdaptiveThresholds(), AdaptiveThresholds(ThresholdParams.from_config(robust_start=0))
    ids = np.arange(3)
    for i, row in enumerate(clean):
        a, b = robust.update(ids, row, T0 + 60.0 * i), plain.update(ids, row, T0 + 60.0 * i)
        assert a.score.tobytes() == b.score.tobytes() and a.upper.tobytes() == b.upper.tobytes()
    for name in ("level", "dev", "fast_dev", "tail", "day", "week", "dev_day", "dev_week"):
        assert getattr(robust, name)[:3].tobytes() == getattr(plain, name)[:3].tobytes(), name


def test_the_kept_samples_are_judged_once_the_warm_up_is_learnt_and_cost_four_bytes_each():
    """Four bytes each while kept, and once judged none but its slot's (a warmed-up series held them for good
    before fix/mem: 120 of its 937 bytes)."""
    params = ThresholdParams.from_config()
    assert start_length(params) == min(START_SAMPLES, params.warmup) == 30
    det = AdaptiveThresholds(capacity=100)
    plain = AdaptiveThresholds(ThresholdParams.from_config(robust_start=0), capacity=100)
    ids, rng = np.arange(100), np.random.default_rng(0)
    for i in range(31):
        for model in (det, plain):
            model.update(ids, 50.0 + rng.normal(0, 1, 100), T0 + 60.0 * i)
        kept = det.state_bytes_per_series() - plain.state_bytes_per_series()
        assert kept == 4 + (4 * 30 if i < 30 else 0), i  # and its slot in the pool
    assert start_length(ThresholdParams.from_config(warmup=2)) == 0  # no median an odd sample cannot move
    assert (
        start_length(ThresholdParams.from_config(shift_run=12)) == 12
    )  # the re-baselining's ring keeps them
    with pytest.raises(ValueError, match="robust_start"):
        ThresholdParams.from_config(robust_start=65)


def test_an_odd_sample_is_moved_in_to_the_edge_of_the_band_the_warm_up_gives():
    """Its median and MAD judge the first samples: one 90 away is past the band a warmed-up series of their
    error scale has (k mean absolute errors, the MAD's) and counts as at its edge; the level, error scale and
    fast error learnt again are those of the same samples with it there."""
    params = ThresholdParams.from_config()
    values = 10.0 + np.linspace(-0.3, 0.3, 30)[None, :]  # MAD 0.15: odd beyond 1.42 from the median
    values[0, ::2] = values[0, ::-2]  # in no order a level could follow
    assert relearnt(values.astype(np.float32), params)[0].tolist() == [False]
    odd = np.vstack([values, values])
    odd[0, 0] = 100.0  # at the start: the level began there
    centre = np.median(odd[0])
    edge = params.k * MAD_TO_MEAN_ABS * np.median(np.abs(odd[0] - centre))
    odd[1, 0] = centre + edge + 0.01  # just past the edge: the same median and MAD
    found, level, dev, fast = relearnt(odd.astype(np.float32), params)
    assert found.tolist() == [True, True]
    # Both now learnt from the median with it at the edge: the same level, scale and fast error, the noise's
    # (its mean absolute error 0.15, and the edge's 1.42 a thirtieth) and not the odd sample's.
    np.testing.assert_allclose(level[0], level[1], rtol=1e-6)
    np.testing.assert_allclose([dev[0], fast[0]], [dev[1], fast[1]], rtol=1e-5)
    assert abs(level[0] - 10.0) < 0.05 and dev[0] < 0.25 and fast[0] < 0.25
    within = odd.copy()
    within[1, 0] = centre + edge - 0.01  # inside the band: no sample is odd, the series keeps its state
    assert relearnt(within[1:].astype(np.float32), params)[0].tolist() == [False]


@pytest.mark.parametrize("side", SIDES)
def test_with_rebaselining_on_its_ring_keeps_the_first_samples_and_the_change_still_alerts(side):
    values = reproduction(5, 40, side)
    det = AdaptiveThresholds(ThresholdParams.from_config(shift_run=48))
    scores = [det.update(np.array([0]), values[i : i + 1], T0 + i).score[0] for i in range(ROWS)]
    assert max(scores[:40]) <= 1.0 and scores[40] > 1.0


def test_series_scored_together_and_alone_take_the_same_start():
    """One series scored alone (``anomaly.scalar``) gets the same bits as among others."""
    series = [
        Series(f"s{k}", _times(300.0), reproduction(k, 40 + 20 * (k % 2), side))
        for k, side in enumerate([*SIDES, *SIDES])
    ]
    together = score_together(series)
    for one, expected in zip(series, together, strict=True):
        (alone,) = score_many([one])
        assert alone.score.tobytes() == expected.score.tobytes(), one.name


def test_a_series_taken_over_mid_warm_up_keeps_its_kept_samples(tmp_path):
    """``row``/``set_row`` (a forgotten series parked and taken up again) and a snapshot (``state`` and
    ``restore``) carry the samples kept so far: the series judges its warm-up as if never interrupted."""
    values = reproduction(3, 40, "high_reading_then_drop")
    straight, parked, restored = AdaptiveThresholds(), AdaptiveThresholds(), AdaptiveThresholds()
    for i in range(15):
        for det in (straight, parked, restored):
            det.update(np.array([0]), values[i : i + 1], T0 + i)
    parked.set_row(7, parked.row(0))
    path = tmp_path / "state.npz"  # through the file, as the service saves it
    save_snapshot(path, Snapshot(T0, T0, {}, {}, {}, {"detector:adaptive": restored.state()}))
    restored = AdaptiveThresholds(capacity=1)
    restored.restore(read_snapshot(path, {}).components["detector:adaptive"])
    first = np.array([0])
    assert restored.start.read(first).tobytes() == straight.start.read(first).tobytes()
    for i in range(15, ROWS):
        a = straight.update(np.array([0]), values[i : i + 1], T0 + i)
        b = parked.update(np.array([7]), values[i : i + 1], T0 + i)
        c = restored.update(np.array([0]), values[i : i + 1], T0 + i)
        assert a.score.tobytes() == b.score.tobytes() == c.score.tobytes()
        assert (a.score[0] > 1.0) == (i == 40) or i > 40  # the drop found, nothing before it
