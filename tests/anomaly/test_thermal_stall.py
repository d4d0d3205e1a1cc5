"""A cooler failing just as its job stalls, on lone GPUs seen only in their job and lagging their power
60-120 s (120 s: the slowest lag ``thermal_settle_seconds`` allows for): its GPU's temperature never climbs a
band from where it cooled to, and no line, peer or rest of its own says how cool it should idle.

Within the 5-minute deadline it reads within 1 C (lagging 120 s; 2 C lagging 60-90 s) of a healthy GPU that
lags 73-75 s (54-56 s, 33-34 s) and idles 10-11 C warmer (its intake at 37-40.5 C): no rule on these reads
flags the one and not the other, so the failing case stays a strict xfail until the detector has something
to judge it by (its model's peers' fall at the same stall, or its intake's temperature). A rule that credits
a GPU the cooling the slowest lag would have left (tried) flags it late, and healthy GPUs whose sensors jitter
(the last test)."""

from __future__ import annotations

import numpy as np
import pytest

from anomaly.needs import POWER, TEMP
from anomaly.series import View, build_view
from anomaly.sources import Frame
from anomaly.thermal import ThermalDetector
from tests.anomaly.thermal_gpus import BUSY, GPUS, STALL, Gpus, _scores, throttled

DEADLINE = 10  # reads (30 s) from the cooler's first failing tick to its alert's third read over 1
# Per ``fails``, a healthy GPU 2 (its lag, intake and thermal resistance) read within 1 C of GPU 2 lagging
# 120 s whose cooler fails that many ticks into the stall, through the stall's first 5 minutes: 68 C at the
# job's 620 W, as the others, then 44 C and 42 C at 70 W (the others 33 C).
TWINS = {0: (73.0, 40.5, 0.045), 1: (75.0, 39.0, 0.0473)}


def _alert(scores: np.ndarray) -> int | None:
    """The read (from the first) at which three reads in a row have been over 1 (an alert), if any."""
    hot = scores > 1.0
    return next((i for i in range(2, hot.size) if hot[i - 2 : i + 1].all()), None)


@pytest.mark.xfail(
    strict=True,
    reason="no reference: within 5 minutes its reads are within 1-2 C of a healthy GPU lagging less with a"
    " hotter intake (test below), and its climb from where it cooled to stays under a band (2-3 C of 3)",
)
@pytest.mark.parametrize("fails", [0, 1], ids=["fails-as-it-stalls", "fails-30s-in"])
@pytest.mark.parametrize("tau", [60.0, 90.0, 120.0], ids=["lag-60s", "lag-90s", "lag-120s"])
def test_a_cooler_failing_as_its_job_stalls_on_a_gpu_lagging_a_minute_or_more_is_flagged_within_5_minutes(
    tau: float, fails: int
):
    """Main reads GPU 2 at most 0.67 (failing as the job stalls) and 1.0 (30 s in) through the 40-minute
    stall lagging 120 s, never alerted; lagging 90 s alerted after 8 and 7 minutes, 60 s after 6 and 5.5."""
    rows = _scores(tau, lambda tick: True, fails=fails)
    stall = rows[(rows[:, 0] >= BUSY + fails) & (rows[:, 0] < BUSY + STALL)]
    alert = _alert(stall[:, 1 + 2])
    assert alert is not None and alert < DEADLINE
    assert np.delete(rows[:, 1:], 2, axis=1).max() <= 1.0


def _twin_scores(fails: int) -> tuple[np.ndarray, np.ndarray]:
    """GPU 2's temperatures read and scores through ``_scores``' job and stall (every tick read), GPU 2 the
    healthy twin (``TWINS``) of the cooler failing ``fails`` ticks into the stall, the others as there."""
    rng = np.random.default_rng(17)
    gpus, det = Gpus(tau=120.0), ThermalDetector()
    tau, room, resistance = TWINS[fails]
    gpus.tau = np.where(np.arange(len(GPUS)) == 2, tau, 120.0)
    gpus.room[2], gpus.resistance[2] = room, resistance
    gpus.temp[:] = gpus.room + gpus.resistance * 620.0
    for _ in range(150):
        det.detect(gpus.step(np.full(len(GPUS), 620.0), rng))
    temps, scores = [], []
    for tick in range(BUSY + STALL + 40):
        watts = 70.0 if BUSY <= tick < BUSY + STALL else 620.0
        view = gpus.step(throttled(np.full(len(GPUS), watts), gpus.temp), rng)
        temps.append(np.round(gpus.temp[2]))
        scores.append(det.detect(view)[0].score[2])
    return np.array(temps), np.array(scores)


def _failing_temps(fails: int) -> np.ndarray:
    """GPU 2's temperatures read through ``_scores``' job and stall, lagging 120 s, its cooler failing
    ``fails`` ticks into the stall (x4 over 5 minutes)."""
    gpus, temps = Gpus(tau=120.0), []
    gpus.temp[:] = gpus.room + gpus.resistance * 620.0
    rng = np.random.default_rng(0)
    for tick in range(BUSY + STALL):
        if tick >= BUSY + fails:
            gpus.resistance[2] = 0.065 * (1.0 + min(3.0, 0.3 * (tick - BUSY - fails + 1)))
        watts = 70.0 if tick >= BUSY else 620.0
        gpus.step(throttled(np.full(len(GPUS), watts), gpus.temp), rng)
        temps.append(np.round(gpus.temp[2]))
    return np.array(temps)


@pytest.mark.parametrize("fails", [0, 1], ids=["twin-of-fails-as-it-stalls", "twin-of-fails-30s-in"])
def test_a_healthy_gpu_with_a_hot_intake_read_as_that_failing_cooler_for_5_minutes_raises_nothing(fails: int):
    """The other side, which a fix flagging the failing cooler on its reads alone would trade against: a
    healthy GPU lagging 73-75 s, its intake at 39-40.5 C, reads within 1 C of the cooler failing as (or 30 s
    after) its job stalls, lagging 120 s, at every read of the stall's first 5 minutes, then cools on to 44 C
    (42 C) where that one climbs back to 46 C. It is read hot at no tick."""
    temps, scores = _twin_scores(fails)
    window = slice(BUSY + fails, BUSY + fails + DEADLINE)
    assert np.abs(temps[window] - _failing_temps(fails)[window]).max() <= 1.0
    assert scores.max() <= 1.0


class _JitteryGpus(Gpus):
    """``Gpus`` whose temperature sensors read 0.5 C (sd) off before rounding, as real ones do; all read."""

    def step(self, power: np.ndarray, rng: np.random.Generator) -> View:  # type: ignore[override]
        for _ in range(30):
            self.temp += (self.room + self.resistance * power - self.temp) / self.tau
        self.t += 30.0
        shown = np.round(self.temp + rng.normal(0.0, 0.5, len(GPUS)))
        frames = [
            Frame(TEMP, self.labels, np.array([self.t]), shown[:, None]),
            Frame(POWER, self.labels, np.array([self.t]), (power + rng.normal(0, 4, len(GPUS)))[:, None]),
        ]
        return build_view(frames, self.index, self.rates, self.t)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("tau", [20.0, 120.0], ids=["lag-20s", "lag-120s"])
def test_healthy_gpus_whose_temperature_reads_jitter_as_their_job_stalls_raise_nothing(tau: float, seed: int):
    """The other side of crediting the cooling a GPU lagging the slowest lag would have had left where it
    stopped cooling (tried, left out): a GPU quicker than that stops cooling while the slowest lag's power
    still falls, so one read a degree over its low by its sensor's jitter was credited that power's fall
    times its resistance, estimated as the slowest lag's: 22 of 144 such GPUs alerted (main: 0)."""
    rng = np.random.default_rng(seed)
    gpus, det = _JitteryGpus(tau=tau), ThermalDetector()
    gpus.temp[:] = gpus.room + gpus.resistance * 620.0
    for _ in range(150):
        det.detect(gpus.step(np.full(len(GPUS), 620.0), rng))
    scores = []
    for tick in range(BUSY + STALL):
        watts = 70.0 if tick >= BUSY else 620.0
        scores.append(det.detect(gpus.step(throttled(np.full(len(GPUS), watts), gpus.temp), rng))[0].score)
    hot = np.array(scores) > 1.0
    assert not any(hot[i - 2 : i + 1].all(axis=0).any() for i in range(2, hot.shape[0]))
