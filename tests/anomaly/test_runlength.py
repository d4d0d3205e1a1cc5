from __future__ import annotations

import numpy as np
import pytest

from anomaly.runlength import RunLengthChange, RunLengthParams, raise_grid, raise_many

PARAMS = RunLengthParams(hazard=1e-6, transform="asinh", delay=5, rearm=300)


def noise(n: int = 3000, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(10.0, 1.0, n)


def onsets(values: np.ndarray, params: RunLengthParams = PARAMS) -> list[int]:
    return np.flatnonzero(raise_many([values], params)[0]).tolist()


def test_stationary_noise_raises_nothing() -> None:
    series = [noise(seed=seed) for seed in range(3)]
    for transform in ("linear", "asinh"):
        alerts = raise_many(series, RunLengthParams(transform=transform, hazard=1e-6))
        assert [np.flatnonzero(a).tolist() for a in alerts] == [[], [], []], transform


def test_a_step_inside_the_noise_raises_once_soon_after_it() -> None:
    values = noise()
    values[2000:] += 3.0  # three standard deviations: inside an adaptive band of a few of them
    found = onsets(values)
    assert len(found) == 1 and 2000 + PARAMS.delay - 1 <= found[0] < 2000 + 40


def test_a_change_is_raised_only_once_it_has_held_for_delay_samples() -> None:
    values = noise()
    values[2000:] += 8.0  # clear from its first sample
    for delay in (5, 20):
        found = onsets(values, RunLengthParams(transform="linear", hazard=1e-6, delay=delay, rearm=300))
        # raised at the change's delay-th sample at the earliest (the run then holds delay samples)
        assert len(found) == 1 and 2000 + delay - 1 <= found[0] < 2000 + delay + 5, delay


def test_a_noisy_series_that_goes_quiet_raises() -> None:
    values = np.random.default_rng(1).normal(10.0, 3.0, 3000)
    values[2000:] = 10.0 + np.random.default_rng(2).normal(0.0, 0.3, 1000)  # within the old spread
    found = onsets(values)
    assert len(found) == 1 and 2000 <= found[0] < 2000 + 60


def test_heavy_tailed_noise_and_lone_spikes_raise_nothing_through_asinh() -> None:
    spiky = noise()
    spiky[1000::300] += 30.0
    heavy = np.random.default_rng(4).standard_t(3, 3000)
    assert [np.flatnonzero(a).tolist() for a in raise_many([spiky, heavy], PARAMS)] == [[], []]


def test_a_change_inside_the_warm_up_is_not_raised_after_it() -> None:
    values = noise()
    values[50:] += 5.0
    assert onsets(values) == []


def test_nothing_is_judged_before_the_warm_up_and_nan_samples_change_nothing() -> None:
    values = noise(400)
    detector, twin = RunLengthChange(PARAMS, capacity=1), RunLengthChange(PARAMS, capacity=1)
    ids = np.array([0], dtype=np.int64)
    for i, x in enumerate(values):
        out = detector.update(ids, np.array([x]))
        twin.update(ids, np.array([x]))
        if i < PARAMS.warmup:
            assert out.score[0] == 0.0 and not out.raised[0]
        if i % 50 == 7:
            gap = detector.update(ids, np.array([np.nan]))
            assert gap.score[0] == 0.0 and not gap.raised[0]
    assert np.array_equal(detector.logmass, twin.logmass) and np.array_equal(detector.count, twin.count)


def test_a_restored_state_goes_on_as_the_original() -> None:
    values = noise(2600)
    values[2200:] += 3.0
    ids = np.array([0], dtype=np.int64)
    original = RunLengthChange(PARAMS, capacity=1)
    for x in values[:1500]:
        original.update(ids, np.array([x]))
    copy = RunLengthChange(PARAMS, capacity=1)
    copy.restore(original.state())
    later = [(original.update(ids, np.array([x])), copy.update(ids, np.array([x]))) for x in values[1500:]]
    assert any(a.raised[0] for a, _ in later)
    for a, b in later:
        assert a.raised[0] == b.raised[0] and a.score[0] == b.score[0]


def test_a_grid_with_its_posterior_shared_raises_as_each_setting_alone() -> None:
    first, second = noise(1500, 5), noise(1200, 6)
    first[600:] += 4.0
    first[1100:] -= 8.0
    second[500:550] = np.nan
    second[800:] = 10.0 + np.random.default_rng(7).normal(0.0, 0.1, 400)
    grid = [
        RunLengthParams(hazard=1e-4, delay=5, rearm=300, threshold=0.5),
        RunLengthParams(hazard=1e-4, delay=5, rearm=1000),
        RunLengthParams(hazard=1e-4, delay=20, rearm=300),
        RunLengthParams(hazard=1e-6, transform="linear"),
    ]
    together = raise_grid([first, second], grid)
    for params, alerts in zip(grid, together, strict=True):
        alone = raise_many([first, second], params)
        assert all(np.array_equal(a, b) for a, b in zip(alerts, alone, strict=True)), params
    assert all(alerts[0].any() and alerts[1].any() for alerts in together)
    assert len({tuple(np.flatnonzero(alerts[0])) for alerts in together}) > 1  # the settings differ


@pytest.mark.parametrize(
    "bad",
    [
        {"hazard": 0.0},
        {"hazard": 1.0},
        {"threshold": 0.0},
        {"delay": 0},
        {"delay": 128},
        {"warmup": 1},
        {"rearm": 0},
        {"transform": "log"},
    ],
    ids=[
        "no hazard",
        "certain hazard",
        "no threshold",
        "no delay",
        "delay at horizon",
        "tiny warm-up",
        "no rearm",
        "unknown transform",
    ],
)
def test_settings_that_cannot_work_are_refused(bad: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        RunLengthParams(**bad)  # type: ignore[arg-type]
