from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from anomaly.entropy import EntropyParams, RelativeEntropy
from anomaly.univariate import Series, score_many
from tests.anomaly.stepping import feed_rows

PARAMS = EntropyParams(window=20, bins=5, warmup=100, rearm=50)


def alternating(n: int) -> np.ndarray:
    """Low and high values in turn: two bins of the range, never the middle."""
    rng = np.random.default_rng(1)
    return np.where(np.arange(n) % 2 == 0, 0.0, 10.0) + rng.uniform(0, 0.5, n)


def test_a_series_that_settles_inside_its_known_range_raises_once_after_its_window_changes() -> None:
    values = np.concatenate([alternating(400), np.full(200, 5.0)])  # 5.0: inside the range, never seen
    scores, raised = feed_rows(RelativeEntropy(PARAMS), values[:, None])
    onsets = np.flatnonzero(raised[:, 0]).tolist()
    assert len(onsets) == 1 and 400 <= onsets[0] < 400 + PARAMS.window
    assert scores[onsets[0], 0] > 1.0
    assert (scores[PARAMS.warmup : 400, 0] < 1.0).all()  # the routine is explained all along


def test_nothing_fires_before_the_warm_up_ends_nor_right_after_it() -> None:
    values = alternating(300)
    values[:80] = np.linspace(-50, 50, 80)  # wild during the warm-up: learned, not alerted
    scores, raised = feed_rows(RelativeEntropy(PARAMS), values[:, None])
    assert not raised[: PARAMS.warmup].any()
    assert (scores[: PARAMS.warmup] == 0.0).all()
    assert not raised[PARAMS.warmup : PARAMS.warmup + 5].any()


def test_a_distribution_the_warm_up_showed_early_does_not_raise_after_it() -> None:
    # The warm-up oscillates, then sits at one level for its last windows; the oscillation comes back.
    params = EntropyParams(window=20, bins=5, warmup=300, rearm=50)
    values = np.concatenate([alternating(150), np.full(150, 5.0), alternating(300)])
    _, raised = feed_rows(RelativeEntropy(params), values[:, None])
    assert not raised.any()
    # Without the early part it is new: the same ending raises once the oscillation starts.
    quiet = 5.0 + np.random.default_rng(2).uniform(0, 0.5, 300)
    fresh = np.concatenate([quiet, alternating(300)])
    _, raised = feed_rows(RelativeEntropy(params), fresh[:, None])
    onsets = np.flatnonzero(raised[:, 0]).tolist()
    assert len(onsets) == 1 and 300 <= onsets[0] < 300 + 20


def test_series_are_independent_and_a_gap_changes_nothing() -> None:
    steady = alternating(500)
    settled = np.concatenate([alternating(400), np.full(100, 5.0)])
    gappy = steady.copy()
    gappy[200:210] = np.nan
    rows = np.stack([steady, settled, gappy], axis=1)
    scores, raised = feed_rows(RelativeEntropy(PARAMS), rows)
    assert not raised[:, 0].any() and raised[:, 1].any() and not raised[:, 2].any()
    assert (scores[200:210, 2] == 0.0).all()
    alone, _ = feed_rows(RelativeEntropy(PARAMS), settled[:, None])
    np.testing.assert_allclose(alone[:, 0], scores[:, 1])


def test_a_full_model_store_replaces_the_least_used_model() -> None:
    detector = RelativeEntropy(EntropyParams(window=10, bins=5, warmup=20, rearm=1, max_models=2))
    # Every 10 samples a constant level in another bin (the range is about 0..10.5, bins 2.1 wide):
    # each full window is a distribution never seen.
    levels = [1.0, 3.0, 5.0, 7.0, 9.5, 12.0, -2.0]
    values = np.concatenate([alternating(20), *[np.full(10, level) for level in levels]])
    _, raised = feed_rows(detector, values[:, None])
    assert raised.sum() >= 4  # more new distributions than the store holds are still found
    assert (detector.seen[0] > 0).sum() == 2
    assert (detector.models[0].argmax(axis=1) == 0).any()  # the last level, below the range, is kept


def test_the_entropy_part_joins_the_univariate_detector_only_when_asked() -> None:
    stamps = np.arange(600, dtype=np.float64) * 300.0
    values = np.concatenate([alternating(400), np.full(200, 5.0)])
    series = Series(name="s", timestamps=stamps, values=values)
    with_entropy = score_many([series], entropy=PARAMS)[0]
    default = score_many([series])[0]
    assert with_entropy.raised[400 : 400 + PARAMS.window].any()
    assert (with_entropy.score >= default.score).all()


@pytest.mark.parametrize(
    "bad",
    [
        {"window": 1},
        {"bins": 0},
        {"significance": 0.0},
        {"significance": 1.0},
        {"warmup": 10, "window": 20},
        {"max_models": 0},
    ],
)
def test_impossible_settings_are_refused(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        EntropyParams(**bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("significance", [0.01, 0.001, 1e-5])
def test_the_threshold_is_the_chi_square_upper_quantile_of_the_bins(significance: float) -> None:
    from scipy.stats import chi2  # noqa: PLC0415 - the reference the detector no longer imports

    params = EntropyParams(significance=significance)
    detector = RelativeEntropy(params)
    assert detector._threshold == float(chi2.isf(significance, params.bins + 1))


def test_the_univariate_detector_loads_without_scipy_stats() -> None:
    # scipy.stats took two of the three seconds a NAB harness spent starting, for one quantile.
    probe = "import sys, anomaly.nab; print('scipy.stats' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_a_model_that_explained_two_billion_windows_saturates_and_keeps_explaining() -> None:
    """``seen`` is int32 and its ``+= 1`` wrapped to -2**31: the model that explained a series all along
    was taken for an empty slot, so the next window was "new" (score 1000) and raised."""
    detector = RelativeEntropy(PARAMS)
    values = alternating(600)
    feed_rows(detector, values[:300, None])
    busiest = int(detector.seen[0].argmax())
    detector.seen[0, busiest] = np.iinfo(np.int32).max - 1  # as if two billion windows had gone by
    scores, raised = feed_rows(detector, values[300:, None])
    assert not raised.any() and (scores < 1.0).all()
    assert int(detector.seen[0, busiest]) == np.iinfo(np.int32).max
