"""The residual harness is causal: a residual at raw index t uses t and earlier samples, and speaks at t."""

from __future__ import annotations

import sys

import numpy as np

from anomaly.univariate import Series
from tests.benchmarks.harness import BENCHMARKS

sys.path.insert(0, str(BENCHMARKS))
from nab_residual import Residuals, combine, residual


def test_the_first_difference_starts_at_the_second_sample_and_keeps_its_time() -> None:
    rng = np.random.default_rng(3)
    values = rng.normal(size=6)
    stamps = 300.0 * np.arange(6) + 1_000.0
    out, at = residual(Series(name="s", timestamps=stamps, values=values), None)
    assert at.tolist() == [1, 2, 3, 4, 5]
    np.testing.assert_allclose(out.values, values[1:] - values[:-1])
    np.testing.assert_array_equal(out.timestamps, stamps[1:])


def test_a_seasonal_residual_subtracts_the_last_value_stamped_at_least_a_lag_earlier() -> None:
    stamps = np.array([0.0, 50.0, 100.0, 160.0, 210.0, 330.0])
    values = np.array([1.0, 2.0, 4.0, 8.0, 16.0, 32.0])
    out, at = residual(Series(name="s", timestamps=stamps, values=values), 100.0)
    # 0 and 50 have nothing 100 s earlier; 100 - 100 = 0 is sample 0 exactly; 160 - 100 = 60 falls after 50
    # (sample 1); 210 -> 110 after 100 (sample 2); 330 -> 230 after 210 (sample 4)
    assert at.tolist() == [2, 3, 4, 5]
    np.testing.assert_allclose(out.values, [4.0 - 1.0, 8.0 - 2.0, 16.0 - 4.0, 32.0 - 16.0])
    np.testing.assert_array_equal(out.timestamps, stamps[2:])


def test_a_residual_of_a_prefix_is_the_prefix_of_the_residual() -> None:
    rng = np.random.default_rng(11)
    stamps = np.cumsum(rng.uniform(100.0, 500.0, size=400))
    values = rng.normal(size=400)
    for lag in (None, 3_600.0):
        whole, at = residual(Series(name="s", timestamps=stamps, values=values), lag)
        part, at_part = residual(Series(name="s", timestamps=stamps[:250], values=values[:250]), lag)
        assert at_part.tolist() == at[at < 250].tolist()
        np.testing.assert_array_equal(part.values, whole.values[: len(part.values)])


def test_a_residual_onset_is_raised_at_its_raw_index_unless_the_default_raised_just_before() -> None:
    default = np.zeros(30, bool)
    default[5] = True
    raised = np.array([False, True, False, True])
    at = np.array([3, 8, 12, 20], dtype=np.int64)  # onsets at raw 8 and 20
    assert np.flatnonzero(combine(default, {"day": (raised, at)}, Residuals(("day",)))).tolist() == [5, 8, 20]
    quiet = combine(default, {"day": (raised, at)}, Residuals(("day",), quiet=10))
    assert np.flatnonzero(quiet).tolist() == [5, 20]
    # a kind the setting does not name is not raised
    other = combine(default, {"day": (raised, at), "diff": (raised, at + 1)}, Residuals(("day",)))
    assert np.flatnonzero(other).tolist() == [5, 8, 20]
