"""The wall clock stepped back (an NTP correction, a VM restored from a snapshot): the samples' timestamps
jump an hour into the past while the GPUs run on. A step is no heat: it must neither raise a healthy GPU's
score nor hide a runaway seen before or after it."""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import pytest

from anomaly.thermal import ThermalDetector
from tests.anomaly.thermal_gpus import GPUS, MODEL, Gpus, _fed, throttled, warmed_from_job

STEP = 3_600.0  # the clock set back an hour
BEFORE = 300  # ticks read before the step (2.5 hours: past the warm-up, the jobs' powers all scored at)


def _jobs(tick: int) -> np.ndarray:
    """Ten-minute jobs at 400 W with ten minutes idle at 70 W between, GPUs 3-5 offset by five minutes."""
    offset = np.where(np.arange(len(GPUS)) >= 3, 10, 0)
    return np.where(((tick + offset) // 20) % 2 == 1, 400.0, 70.0)


_BEFORE: dict[tuple[object, ...], tuple[Gpus, ThermalDetector, np.random.Generator, list[np.ndarray]]] = {}


def _before(
    power: Callable[[int], np.ndarray],
    heat: Callable[[int], float],
    tau: float,
    labels: list[dict[str, str]],
    scrape: int,
    ticks: int,
) -> tuple[Gpus, ThermalDetector, np.random.Generator, list[np.ndarray]]:
    """``_stepped``'s first ``ticks`` ticks, none of them stepped (the GPUs, the detector, the random
    generator and the scores), run once per set of arguments (``labels`` by identity) for the runs that
    share them; a caller takes a copy, so no run sees another's state."""
    key = (power, heat, tau, id(labels), scrape, ticks)
    if key not in _BEFORE:
        rng = np.random.default_rng(11)
        gpus, det, rows = Gpus(tau=tau, labels=labels), ThermalDetector(), []
        for tick in range(ticks):
            gpus.resistance[2] = 0.065 * (1.0 + heat(tick))
            for _ in range(scrape):
                view = gpus.step(throttled(power(tick), gpus.temp), rng)
            [found] = det.detect(view)
            rows.append(found.score)
        _BEFORE[key] = gpus, det, rng, rows
    return _BEFORE[key]


def _stepped(
    power: Callable[[int], np.ndarray],
    heat: Callable[[int], float] = lambda tick: 0.0,
    *,
    step: float = STEP,
    at: int = BEFORE,
    ticks: int = 200,
    tau: float = 20.0,
    labels: list[dict[str, str]] = MODEL,
    scrape: int = 1,
    restored: bool = False,
) -> np.ndarray:
    """Every GPU's scores, a row a tick: ``at + ticks`` ticks at ``power(tick)`` (throttled by its heat),
    read every ``scrape`` 30-second steps, the clock set back ``step`` before tick ``at``; GPU 2's cooler's
    thermal resistance ``1 + heat(tick)`` times the normal one; ``restored``: a new detector takes up the
    old one's state at the step (a restart)."""
    start = min(at, BEFORE)  # the ticks before any step: the same run for every step, restart or none
    gpus, det, rng, rows = copy.deepcopy(_before(power, heat, tau, labels, scrape, start))
    for tick in range(start, at + ticks):
        if tick == at:
            gpus.t -= step
            if restored:
                det, old = ThermalDetector(), det
                det.restore(old.state())
        gpus.resistance[2] = 0.065 * (1.0 + heat(tick))
        for _ in range(scrape):
            view = gpus.step(throttled(power(tick), gpus.temp), rng)
        [found] = det.detect(view)
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


@pytest.mark.parametrize("step", [STEP, 75.0], ids=["an-hour", "75s"])
@pytest.mark.parametrize("tau", [20.0, 90.0], ids=["lag-20s", "lag-90s"])
def test_a_healthy_fleet_scraped_every_minute_whose_clock_steps_back_raises_no_score(tau: float, step: float):
    """Read every 60 s, the sample after the step was taken as read ``lag_seconds`` (20 s) after the one
    before: its power lagged a third short of the new one, and the jobs starting at that tick (GPUs lagging
    20 s) read 2.2. The step is undone by the interval the detector has seen between its reads."""
    assert _stepped(_jobs, at=BEFORE, tau=tau, step=step, scrape=2).max() <= 1.0


@pytest.mark.parametrize("scrape", [1, 2], ids=["30s", "60s"])
def test_a_healthy_fleet_restored_from_its_snapshot_across_a_clock_step_back_raises_no_score(scrape: int):
    """Restarted as the clock steps back: no interval between ticks seen yet, and GPUs lagging 20 s whose
    jobs start then (a 60 s scrape read 2.2 as one read ``lag_seconds`` before)."""
    assert _stepped(_jobs, at=BEFORE, scrape=scrape, restored=True).max() <= 1.0


@pytest.mark.parametrize(
    ("stepped", "forgotten"), [(10, None), (45, 40)], ids=["read-on", "forgotten-before-the-step"]
)
@pytest.mark.parametrize("tau", [20.0, 90.0], ids=["lag-20s", "lag-90s"])
def test_a_gpu_whose_node_is_down_as_the_clock_steps_back_is_back_from_an_outage_all_the_same(
    tau: float, stepped: int, forgotten: int | None
):
    """Six lone GPUs seen only in their job (620 W); GPU 2's node is down 30 minutes, the clock set back an
    hour ``stepped`` ticks in (its series forgotten, its state parked, ``forgotten`` ticks in), and it comes
    back at the room's 28 C, idle. Its time, ahead of the clock, was moved back to just before its first read
    after: the outage was taken for no gap, its temperature for one settled, and its warming from the room
    to its idle (lagging 90 s) for a climb (3.6; 7.6 lagging 90 s)."""
    gpus, det, rng = warmed_from_job(tau)
    every, down = np.ones(len(GPUS), np.bool_), np.arange(len(GPUS)) != 2
    for tick in range(60):
        if tick == stepped:
            gpus.t -= STEP
        if tick == forgotten:
            det.forget(gpus.index.expire(gpus.t - 600.0, 1.0))
        _fed(gpus, det, rng, 70.0, down)
    gpus.temp[2] = gpus.room[2]
    back = [_fed(gpus, det, rng, 70.0, every) for _ in range(60)]
    assert max(back) <= 1.0


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
