"""The HTM parts: encoder, spatial pooler, temporal memory, anomaly likelihood, and causality."""

from __future__ import annotations

import numpy as np
import pytest

from anomaly.htm import (
    HtmParams,
    LikelihoodParams,
    ScalarEncoder,
    SpatialPooler,
    day_encoding,
    likelihood_alerts,
    likelihood_tail,
    raw_scores,
)
from anomaly.htm_memory import TemporalMemory

PARAMS = HtmParams()


def shared(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.intersect1d(a, b).size)


def test_encoder_shares_bits_between_near_values_and_none_between_far_ones() -> None:
    encoder = ScalarEncoder(400, 21, resolution=1.0, offset=0.0, seed=7)
    ten = encoder.encode(10.0)
    assert 19 <= ten.size <= 21  # a hash collision may merge two bits
    assert shared(ten, encoder.encode(10.3)) == ten.size  # the same bucket
    assert shared(ten, encoder.encode(11.0)) >= ten.size - 2
    assert shared(ten, encoder.encode(14.0)) >= ten.size - 6
    assert shared(ten, encoder.encode(40.0)) <= 4


def test_encoder_has_no_edges_so_a_far_value_gets_its_own_bits() -> None:
    encoder = ScalarEncoder(400, 21, resolution=0.5, offset=3.0, seed=7)
    for value in (1e6, -1e6, 1e300):
        bits = encoder.encode(value)
        assert bits.size >= 19 and bits.min() >= 0 and bits.max() < 400
        assert shared(bits, encoder.encode(3.0)) <= 4


def test_time_of_day_encoding_wraps_at_midnight() -> None:
    late = day_encoding(86400.0 - 60.0, 54, 21)
    early = day_encoding(86400.0 * 3 + 60.0, 54, 21)
    noon = day_encoding(43200.0, 54, 21)
    assert shared(late, early) >= 19
    assert shared(late, noon) == 0


def test_spatial_pooler_learning_connects_a_repeated_inputs_columns_to_it() -> None:
    pooler = SpatialPooler(454, PARAMS, np.random.default_rng(3))
    bits = np.sort(np.random.default_rng(4).choice(454, 42, replace=False))
    first = pooler.compute(bits, learn=False)
    before = pooler.overlap(bits)[first].mean()
    for _ in range(60):
        columns = pooler.compute(bits)
    assert shared(columns, first) == PARAMS.active_columns  # the same columns win: stable
    after = pooler.overlap(bits)[columns]
    potential = pooler.potential[columns][:, bits].sum(axis=1)
    assert np.array_equal(after, potential)  # every potential synapse on the input is now connected
    assert after.mean() > before + 5


def sdr(rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(PARAMS.columns, PARAMS.active_columns, replace=False))


def trained_memory() -> tuple[TemporalMemory, list[np.ndarray], np.random.Generator]:
    """A memory that saw A, B, C, D forty times, each time after a fresh random pattern."""
    rng = np.random.default_rng(11)
    memory = TemporalMemory(PARAMS, np.random.default_rng(12))
    letters = [sdr(rng) for _ in range(4)]
    for _ in range(40):
        memory.compute(sdr(rng))
        for letter in letters:
            memory.compute(letter)
    return memory, letters, rng


def test_temporal_memory_predicts_a_learned_sequence() -> None:
    memory, letters, rng = trained_memory()
    memory.compute(sdr(rng))
    scores = [memory.compute(letter) for letter in letters]
    assert scores[0] == 1.0  # A follows noise: nothing predicted it
    assert scores[1:] == [0.0, 0.0, 0.0]


def test_temporal_memory_scores_a_novel_transition_high() -> None:
    memory, (a, b, _, d), rng = trained_memory()
    memory.compute(sdr(rng))
    memory.compute(a)
    memory.compute(b)
    assert memory.compute(d) >= 0.9  # B was always followed by C (D may share a column with C)
    assert memory.compute(sdr(rng)) >= 0.9


def test_raw_scores_fall_on_a_repeated_pattern_and_rise_at_a_novel_value() -> None:
    values = np.tile([1.0, 5.0, 9.0, 3.0, 7.0], 120)
    values[560] = 100.0
    stamps = np.zeros(values.size)
    raw = raw_scores(values, stamps, warmup=100)
    assert raw[:20].mean() > 0.5
    assert raw[400:560].mean() < 0.1
    assert raw[560] >= 0.7  # the time-of-day bits (half the input) still favour some predicted columns


def test_raw_scores_are_causal() -> None:
    rng = np.random.default_rng(5)
    values = np.sin(np.arange(360) / 6.0) * 10.0 + rng.normal(0.0, 0.5, 360)
    stamps = np.arange(360) * 300.0
    whole = raw_scores(values, stamps, warmup=60)
    assert np.array_equal(raw_scores(values[:250], stamps[:250], warmup=60), whole[:250])
    assert whole[60:].max() > 0.0


def test_raw_scores_skip_non_finite_samples_and_stay_zero_when_the_warm_up_never_ends() -> None:
    values = np.array([1.0, np.nan, 2.0, np.inf, 1.0, 2.0, 1.0, 2.0])
    raw = raw_scores(values, np.zeros(8), warmup=4)
    assert raw[1] == 0.0 and raw[3] == 0.0 and raw[0] == 1.0
    assert not raw_scores(values, np.zeros(8), warmup=8).any()  # the warm-up never ended


def steady_then_change(rng: np.random.Generator) -> np.ndarray:
    raw = np.where(rng.random(3000) < 0.1, 0.2 * rng.random(3000), 0.0)
    raw[2500:2520] = 1.0
    return raw


@pytest.mark.parametrize(("spread", "tail"), [("raw", 1e-5), ("mean", 1e-8)], ids=["raw", "mean"])
def test_likelihood_flags_a_change_once_and_nothing_before_it(spread: str, tail: float) -> None:
    """The short means' Gaussian is narrow (they are correlated), so it needs a smaller tail: at 1e-5 a
    cluster of noise at sample 1334 raises it."""
    raw = steady_then_change(np.random.default_rng(9))
    alerts = likelihood_alerts(raw, 450, LikelihoodParams(spread=spread, tail=tail, rearm=1000))
    assert np.flatnonzero(alerts).tolist() == [int(np.flatnonzero(alerts)[0])]
    assert 2500 <= np.flatnonzero(alerts)[0] < 2520


def test_likelihood_mean_spread_is_the_more_sensitive() -> None:
    raw = steady_then_change(np.random.default_rng(9))
    narrow = likelihood_tail(raw, 450, LikelihoodParams(spread="mean"))[2500:2520].min()
    wide = likelihood_tail(raw, 450, LikelihoodParams(spread="raw"))[2500:2520].min()
    assert narrow < wide


def test_likelihood_is_causal_and_silent_in_warm_up() -> None:
    raw = steady_then_change(np.random.default_rng(9))
    raw[:400] = 0.0
    raw[400:410] = 1.0  # after the learning period, inside the warm-up: anomalous, but not raised
    params = LikelihoodParams(tail=1e-3)
    assert np.array_equal(likelihood_tail(raw[:2510], 450, params), likelihood_tail(raw, 450, params)[:2510])
    assert likelihood_tail(raw, 450, params)[400:410].min() <= params.tail
    assert not likelihood_alerts(raw, 450, params)[:450].any()


@pytest.mark.parametrize(
    "bad",
    [
        {"buckets": 0},
        {"value_active": 401},
        {"active_columns": 0},
        {"min_threshold": 14},
        {"new_synapses": 33},
    ],
    ids=["buckets", "encoder", "columns", "thresholds", "synapses"],
)
def test_htm_params_refuse_impossible_settings(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError):
        HtmParams(**bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "bad", [{"tail": 0.0}, {"short": 0}, {"spread": "median"}, {"min_std": 0.0}], ids=str
)
def test_likelihood_params_refuse_impossible_settings(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        LikelihoodParams(**bad)  # type: ignore[arg-type]
