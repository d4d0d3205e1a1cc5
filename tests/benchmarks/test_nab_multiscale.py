"""The multi-scale harness is causal: a coarse copy speaks only once its block is complete."""

from __future__ import annotations

import sys

import numpy as np

from anomaly.univariate import ScoredSeries, Series
from tests.benchmarks.harness import BENCHMARKS

sys.path.insert(0, str(BENCHMARKS))
from nab_multiscale import MultiScale, coarse, combine


def copy(raised: list[int], score: list[float], block: int) -> ScoredSeries:
    """A coarse copy of ``len(score)`` blocks of ``block`` samples, raising at the blocks ``raised``."""
    values = np.zeros(len(score))
    series = Series(name="x", timestamps=np.arange(len(score)) * float(block), values=values)
    flags = np.zeros(len(score), bool)
    flags[raised] = True
    return ScoredSeries(series=series, score=np.asarray(score, np.float64), raised=flags)


def test_a_block_is_the_mean_of_its_samples_stamped_with_its_last_time_and_a_partial_one_is_left_out() -> (
    None
):
    rng = np.random.default_rng(7)
    values = rng.normal(size=10)
    stamps = 300.0 * np.arange(10) + 1_000.0
    out = coarse(Series(name="s", timestamps=stamps, values=values), 4)
    np.testing.assert_allclose(out.values, [values[:4].mean(), values[4:8].mean()])
    np.testing.assert_array_equal(out.timestamps, [stamps[3], stamps[7]])


def test_a_coarse_onset_is_raised_at_its_blocks_last_sample_unless_the_default_raised_just_before() -> None:
    default = np.zeros(40, bool)
    default[5] = True
    coarse_copy = copy(raised=[1, 6], score=[0.0] * 10, block=4)  # blocks 4..7 and 24..27
    alerts = combine(default, {4: coarse_copy}, MultiScale((4,), "or"))
    assert np.flatnonzero(alerts).tolist() == [5, 7, 27]
    # quiet 10: the onset at 7 follows the default's at 5 and is left out; the one at 27 is 22 samples on
    quiet = combine(default, {4: coarse_copy}, MultiScale((4,), "or", quiet=10))
    assert np.flatnonzero(quiet).tolist() == [5, 27]
    quiet = combine(default, {4: coarse_copy}, MultiScale((4,), "or", quiet=23))
    assert np.flatnonzero(quiet).tolist() == [5]


def test_a_confirmed_onset_moves_to_the_end_of_its_block_and_an_unconfirmed_one_is_dropped() -> None:
    default = np.zeros(40, bool)
    default[[5, 13, 38]] = True  # blocks 1, 3 and 9 of 4 samples
    scores = [0.0, 0.9, 0.0, 0.2, 0.0, 0.0, 0.0, 0.0, 0.0, 3.0]
    alerts = combine(default, {4: copy([], scores, 4)}, MultiScale((4,), "confirm", confirm_at=0.5))
    assert np.flatnonzero(alerts).tolist() == [7, 39]
