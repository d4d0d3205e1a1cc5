"""The wall clock stepped back (an NTP correction, a VM restored from a snapshot): the samples' timestamps
jump an hour into the past while the GPUs run on. A step is no heat: it must neither raise a healthy GPU's
score nor hide a runaway seen before or after it."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from anomaly.thermal import ThermalDetector
from tests.anomaly.test_thermal import GPUS, MODEL, Gpus, _throttled

STEP = 3_600.0  # the clock set back an hour
BEFORE = 300  # ticks read before the step (2.5 hours: past the warm-up, the jobs' powers all scored at)


def _jobs(tick: int) -> np.ndarray:
    """Ten-minute jobs at 400 W with ten minutes idle at 70 W between, GPUs 3-5 offset by five minutes."""
    offset = np.where(np.arange(len(GPUS)) >= 3, 10, 0)
    return np.where(((tick + offset) // 20) % 2 == 1, 400.0, 70.0)


def _stepped(
    power: Callable[[int], np.ndarray],
    heat: Callable[[int], float] = lambda tick: 0.0,
    *,
    step: float = STEP,
    at: int = BEFORE,
    ticks: int = 200,
    tau: float = 20.0,
    labels: list[dict[str, str]] = MODEL,
) -> np.ndarray:
    """Every GPU's scores, a row a tick: ``at + ticks`` ticks at ``power(tick)`` (throttled by its heat),
    the clock set back ``step`` before tick ``at``; GPU 2's cooler's thermal resistance ``1 + heat(tick)``
    times the normal one."""
    rng = np.random.default_rng(11)
    gpus, det = Gpus(tau=tau, labels=labels), ThermalDetector()
    rows = []
    for tick in range(at + ticks):
        if tick == at:
            gpus.t -= step
        gpus.resistance[2] = 0.065 * (1.0 + heat(tick))
        [found] = det.detect(gpus.step(_throttled(power(tick), gpus.temp), rng))
        rows.append(found.score)
    return np.array(rows)


def _flagged(power: Callable[[int], np.ndarray], heat: Callable[[int], float], **kw: object) -> np.ndarray:
    """The ticks GPU 2 scored over 1 from the step on, with the clock set back and (its second row) not."""
    kept = {"ticks": 120, **kw}
    runs = [_stepped(power, heat, step=step, **kept)[BEFORE:, 2] > 1.0 for step in (STEP, 0.0)]  # type: ignore[arg-type]
    return np.array(runs)


@pytest.mark.parametrize(
    "at", [BEFORE, BEFORE + 5, BEFORE + 10], ids=["as-jobs-start", "mid-job", "as-jobs-end"]
)
@pytest.mark.parametrize("tau", [20.0, 90.0], ids=["lag-20s", "lag-90s"])
def test_a_healthy_fleet_whose_clock_steps_back_an_hour_raises_no_score(at: int, tau: float):
    """Its times an hour ahead, the sample after the step was read with no time passed since the one
    before: its power lagged as it was, the jobs starting at that tick read 5.4 (their temperature had
    followed the power)."""
    assert _stepped(_jobs, at=at, tau=tau).max() <= 1.0


def _alerted_within(flagged: np.ndarray, ticks: int) -> bool:
    """Whether ``flagged`` holds 3 ticks in a row (an alert's pending ticks) in its first ``ticks``."""
    return bool(np.convolve(flagged[:ticks], np.ones(3), "valid").max(initial=0) >= 3)


def test_a_runaway_flagged_before_the_clock_steps_back_stays_flagged_as_it_would_have_been():
    stepped, steady = _flagged(_jobs, lambda tick: 0.0 if tick < BEFORE - 40 else 2.0)
    assert stepped[:80].sum() > 50
    assert (stepped | ~steady)[:80].all()  # flagged wherever it would have been without the step


def test_a_cooler_failing_after_the_clock_steps_back_is_flagged_within_5_minutes():
    stepped, steady = _flagged(_jobs, lambda tick: min(3.0, 0.3 * max(tick - BEFORE - 40, 0)))
    assert not stepped[:40].any()
    assert _alerted_within(stepped[40:], 20)  # it started failing as its job did: unscored 6 minutes
    assert (stepped | ~steady)[:80].all()


@pytest.mark.parametrize("tau", [20.0, 90.0], ids=["lag-20s", "lag-90s"])
def test_a_cooler_failing_at_a_first_job_begun_before_the_clock_stepped_back_is_flagged_once_settled(
    tau: float,
):
    """No peers to vouch for a slope: its heat is a guess until its power has stayed up ``settle_seconds``
    (20 ticks), then judged by its climb. With its times an hour ahead, its power had stayed up an hour
    less: not flagged for 70 minutes (a 90 s lag), or at all (20 s: its line learnt the climb meanwhile)."""
    stepped, steady = _flagged(
        lambda tick: np.full(len(GPUS), 70.0 if tick < BEFORE - 5 else 690.0),
        lambda tick: min(1.0, max(tick - BEFORE + 5, 0) / 60),
        tau=tau,
        ticks=240,
        labels=GPUS,
    )
    assert steady[:30].any()
    assert stepped[:30].any()  # within 5 minutes of its power settling (20 ticks)
    assert _alerted_within(stepped, stepped.size)  # for the 3 pending ticks an alert needs
