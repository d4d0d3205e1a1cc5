"""A GPU's line drifts from the idle it once scored at: hours in its job later, its idle samples faded from
the line's moments and its slope shrunk by the ridge, the line draws that idle far too hot, yet the idle is
still a power the line scored at. The GPU's own rest there (``ThermalHolds._rested``) says what it reads."""

from __future__ import annotations

import numpy as np
import pytest

from anomaly.thermal import ThermalDetector
from tests.anomaly.thermal_gpus import GPUS, Gpus, throttled

IDLE, JOB = 70.0, 620.0
OUTAGE = 44  # ticks its node is down (22 minutes: its series forgotten after 15)


def _back_in_a_stall(tau: float, *, runaway: bool, ticks: int = 40) -> np.ndarray:
    """Scores (reads x GPUs) of six lone GPUs whose temperature lags ``tau`` seconds: idle (70 W) for 40
    minutes, so each rests and scores there, then 8 hours in their job (620 W); then their node is down 22
    minutes (unread, cooling to their idle), and back, their job stalled (another of its nodes still down),
    they idle for ``ticks`` reads. GPU 2's cooler failed while they were down when ``runaway``: it heats from
    their return (x4 over 5 minutes, as the simulator's)."""
    rng = np.random.default_rng(5)
    gpus, det = Gpus(tau=tau), ThermalDetector()
    for tick in range(80 + 960):
        watts = np.full(len(GPUS), IDLE if tick < 80 else JOB)
        det.detect(gpus.step(throttled(watts, gpus.temp), rng))
    unread = np.zeros(len(GPUS), np.bool_)
    for tick in range(OUTAGE):
        gpus.step(np.full(len(GPUS), IDLE), rng, shown=unread)
        if tick == 30:
            det.forget(gpus.index.expire(gpus.t, 900.0))
    rows = []
    for tick in range(ticks):
        if runaway:
            gpus.resistance[2] = 0.065 * (1.0 + min(3.0, 0.3 * (tick + 1)))
        rows.append(det.detect(gpus.step(throttled(np.full(len(GPUS), IDLE), gpus.temp), rng))[0].score)
    return np.array(rows)


def _alerted_within(scores: np.ndarray, ticks: int) -> bool:
    """Whether ``scores`` were over 1 three reads in a row (an alert's pending reads) within ``ticks``."""
    hot = scores > 1.0
    return any(hot[i - 2 : i + 1].all() for i in range(2, min(ticks, hot.size)))


@pytest.mark.parametrize("tau", [20.0, 60.0], ids=["lag-20s", "lag-60s"])
def test_a_cooler_failed_while_its_node_was_down_is_flagged_within_5_minutes_of_its_return_to_a_stalled_job(
    tau: float,
):
    """Seed 1505's late `thermal_runaway_while_down` (node-04 GPU 3): back from its node's outage to its job
    stalled by another node's, the GPU idled at 70 W, inside the powers its line had scored at (it had rested
    there, 33 C), where the line, hours in its job since, drew 44 C. Its failed cooler heated it to
    46 C, 13 C over its rest: 0.36-0.75 against that line, never alerted by the thermal detector until the
    job resumed (540 s); the fleet detector raised it at 390 s, past the 5-minute deadline."""
    scores = _back_in_a_stall(tau, runaway=True)
    assert _alerted_within(scores[:, 2], 10)
    assert scores[10:, 2].min() > 1.0  # and while it stays failed


@pytest.mark.parametrize("tau", [20.0, 60.0, 90.0], ids=["lag-20s", "lag-60s", "lag-90s"])
def test_healthy_gpus_back_from_an_outage_to_a_stalled_job_at_the_idle_they_rested_at_raise_nothing(
    tau: float,
):
    """The counterpart: judged at their rest while their line draws their idle too hot, healthy GPUs back
    idle at the temperature they rested at score nothing for 40 minutes."""
    scores = _back_in_a_stall(tau, runaway=False, ticks=80)
    assert scores.max() <= 1.0
