"""A band a raised fault widened is given back at the repair (``anomaly.faultbands``): in the model, and in
the service that turns it on (``anomaly.band_restore_ticks``)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from anomaly.service import AnomalyService
from anomaly.sources import Frame, SourceHealth
from anomaly.thresholds import AdaptiveThresholds, ThresholdParams
from gpuwarden.clock import FakeClock
from gpuwarden.config import load_config
from gpuwarden.config_anomaly import AnomalyConfig
from gpuwarden.errors import ConfigError

T0 = 1_767_225_600.0
CLOCK = "DCGM_FI_DEV_SM_CLOCK"
GPUS = [{"gpu": str(i), "UUID": f"GPU-{i}", "Hostname": "n1", "modelName": "H100"} for i in range(8)]


def _params(restore: int) -> ThresholdParams:
    # The service's SM-clock band: its floor of 150 MHz, seasonal baselines off.
    return ThresholdParams.from_config(min_deviation=150.0, seasonality=False, restore_ticks=restore)


def _clock(fault: tuple[int, int, float], *more: tuple[int, int, float], n: int = 600, seed: int = 0):
    """An SM clock at N(1980, 5) MHz, 30 s apart; each (start, end, value) of ``fault`` and ``more`` holds
    it at N(value, 5) for those samples."""
    values = 1980.0 + np.random.default_rng(seed).normal(0.0, 5.0, n)
    for start, end, value in (fault, *more):
        values[start:end] += value - 1980.0
    return values


def _fed(values: np.ndarray, restore: int) -> tuple[np.ndarray, np.ndarray]:
    """Scores and band half-widths of one series fed ``values``."""
    model = AdaptiveThresholds(_params(restore), capacity=1)
    scores, bands = [], []
    for i, v in enumerate(values.tolist()):
        out = model.update(np.array([0]), np.array([v]), T0 + 30.0 * i)
        scores.append(float(out.score[0]))
        bands.append(float(out.upper[0] - out.yhat[0]))
    return np.array(scores), np.array(bands)


def test_a_band_an_hours_throttle_widened_is_given_back_at_the_repair_so_a_second_drop_scores():
    # 2 hours healthy, an hour at 1400 MHz, repaired; 20 minutes on, 10 minutes 250 MHz down.
    values = _clock((240, 360, 1400.0), (400, 420, 1730.0))
    scores, bands = {}, {}
    for restore in (0, 720):
        scores[restore], bands[restore] = _fed(values, restore)
    assert bands[0][239] == bands[720][239] == pytest.approx(150.0)  # the floor before the fault
    # Without it the band is still three times as wide when the second drop comes, which scores under 1.
    assert bands[0][399] > 450.0
    assert scores[0][400:420].max() < 1.0
    # With it the band is the floor again a few samples after the repair, and the drop scores past it.
    assert bands[720][365:400].max() == pytest.approx(150.0)
    assert (scores[720][402:420] > 1.0).all()
    # The fault itself scores as without it: what it learns in the fault is the same.
    np.testing.assert_array_equal(scores[0][:362], scores[720][:362])


def test_a_change_that_lasts_is_learnt_as_without_the_rule():
    # Held at 1400 for 9 hours: past restore_ticks, and never back within the band before it.
    values = _clock((240, 1320, 1400.0), n=1320)
    off, _ = _fed(values, 0)
    on, _ = _fed(values, 720)
    np.testing.assert_array_equal(off, on)
    assert (off[-600:] <= 1.0).all()  # learnt: the new level is normal


@pytest.mark.parametrize("run", [1, 2], ids=["one-sample", "two-samples"])
def test_a_burst_shorter_than_a_raise_gives_nothing_back(run):
    # 300 MHz down: its fast error after two samples is still within the volatility floor.
    values = _clock(*((i, i + run, 1680.0) for i in range(100, 600, 50)))
    off, _ = _fed(values, 0)
    on, _ = _fed(values, 720)
    np.testing.assert_array_equal(off, on)


def test_a_fault_repaired_after_restore_ticks_keeps_the_band_it_learnt():
    values = _clock((240, 360, 1400.0), n=500)
    _, short = _fed(values, 100)  # the fault lasted 120 samples: past 100
    _, off = _fed(values, 0)
    np.testing.assert_array_equal(short, off)


def test_the_rule_costs_24_bytes_a_series_and_is_bounded():
    off = AdaptiveThresholds(_params(0), capacity=100).state_bytes_per_series()
    on = AdaptiveThresholds(_params(720), capacity=100).state_bytes_per_series()
    assert on == off + 24
    assert on <= 1024
    with pytest.raises(ValueError, match="restore_ticks"):
        _params(65535)


def test_a_series_state_kept_before_its_fault_goes_with_its_row_and_its_snapshot():
    values = _clock((240, 360, 1400.0))
    whole = AdaptiveThresholds(_params(720), capacity=1)
    moved = AdaptiveThresholds(_params(720), capacity=1)
    for i, v in enumerate(values.tolist()):
        if i == 300:  # mid-fault: the state before it travels with the row, as the snapshot keeps it
            restored = AdaptiveThresholds(_params(720), capacity=1)
            restored.restore(whole.state())
            moved.set_row(0, restored.row(0))
        a = whole.update(np.array([0]), np.array([v]), T0 + 30.0 * i)
        b = moved.update(np.array([0]), np.array([v]), T0 + 30.0 * i)
        if i >= 300:
            assert (a.score[0], a.upper[0]) == (b.score[0], b.upper[0])


class _ClockSource:
    """GPU 0's SM clock at ``clock0[tick]`` where set, else 1980; every GPU N(it, 5) MHz."""

    name = "in-process"

    def __init__(self, clock: FakeClock, clock0: dict[int, float]) -> None:
        self._clock, self._clock0 = clock, clock0
        self._rng = np.random.default_rng(0)
        self._health = SourceHealth(self.name)
        self.tick = 0

    def read(self, start: float, end: float) -> list[Frame]:
        values = 1980.0 + self._rng.normal(0.0, 5.0, len(GPUS))
        values[0] = values[0] + self._clock0.get(self.tick, 1980.0) - 1980.0
        self.tick += 1
        now = self._clock.time()
        self._health.succeeded(now, len(GPUS))
        return [Frame(CLOCK, GPUS, np.array([now]), values.reshape(-1, 1))]

    def health(self) -> SourceHealth:
        return self._health


@pytest.mark.parametrize(("ticks", "raised"), [(720, True), (0, False)], ids=["default", "off"])
def test_the_service_raises_a_second_drop_twenty_minutes_after_an_hours_throttle_was_repaired(
    ticks, raised, caplog
):
    caplog.set_level(logging.ERROR)  # the fleet detector's missing-label warnings
    clock0 = dict.fromkeys(range(240, 360), 1400.0)
    clock0.update(dict.fromkeys(range(400, 420), 1730.0))
    clock = FakeClock()
    cfg = AnomalyConfig() if ticks else AnomalyConfig(band_restore_ticks=0)  # the default: 720
    service = AnomalyService(cfg, [_ClockSource(clock, clock0)], clock)
    alerts = []
    for tick in range(440):
        clock.advance(30.0)
        alerts += [(tick, a.labels["gpu"]) for a in service.infer().raised if a.labels["model"] == "adaptive"]
    assert alerts[0] == (242, "0")  # the throttle, after pending_ticks
    second = [t for t, gpu in alerts if 400 <= t < 420 and gpu == "0"]
    assert bool(second) is raised
    if raised:
        assert second == [402]
    assert [a for a in alerts if a != (242, "0") and a[0] not in second] == []


@pytest.mark.parametrize(
    ("written", "problem"),
    [("-1", "-1 is less than 0, the least allowed"), ("65535", "65535 is more than 65534, the most allowed")],
    ids=["negative", "too-many"],
)
def test_a_band_restore_ticks_out_of_its_range_is_refused_at_its_line(
    tmp_path: Path, written: str, problem: str
) -> None:
    path = tmp_path / "gpuwarden.yaml"
    path.write_text(f"anomaly:\n  band_restore_ticks: {written}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert str(caught.value).startswith(f"{path}:2: anomaly.band_restore_ticks: {problem}"), str(caught.value)
