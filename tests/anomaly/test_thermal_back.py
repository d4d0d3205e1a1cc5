"""GPUs back cold from their node's outage: a temperature read after so long unseen has not yet followed its
power, so neither a let-go of a carried run (``ThermalDetector._not_as_peers``) nor a climb from it
(``ThermalDetector._rewarming``) may rest on it until it has settled (``ThermalDetector._seen``)."""

from __future__ import annotations

import numpy as np
import pytest

from anomaly.needs import POWER, TEMP
from anomaly.service import AnomalyService
from anomaly.sources import CollectorSource
from gpuwarden.clock import FakeClock
from gpuwarden.config import AnomalyConfig
from tests.anomaly.fakes import TableCollector
from tests.anomaly.thermal_gpus import GPUS, MODEL, Gpus, _fed, warmed_from_job

# GPU 2 alone on node n2; its five peers of the same model on n1, up while n2 is down.
APART = [{**gpu, "Hostname": "n2" if gpu["gpu"] == "2" else "n1"} for gpu in MODEL]


@pytest.mark.parametrize("repaired", [True, False], ids=["repaired", "still-failed"])
@pytest.mark.parametrize("tau", [20.0, 90.0], ids=["lag-20s", "lag-90s"])
def test_a_runaway_back_cold_from_its_nodes_outage_is_judged_by_its_peers_only_once_its_temperature_settled(
    tau: float, repaired: bool
):
    """A runaway's job stalls at 70 W, then its node is down 30 minutes while its peers (another node) idle
    on at 33 C. Back at its room's 28 C, a failed cooler whose temperature lags 90 s read 33 C at first, no
    hotter than its peers' median plus its band: its carried run was let go at once and, climbing on to
    46 C, 13 C over its peers, it read 0 for the next 20 minutes (its line then learnt that heat at idle),
    the cooler still failed. Its peers judge it once it has been read ``settle_seconds`` (20 ticks);
    repaired, it is let go then."""
    gpus, det, rng = warmed_from_job(tau, APART)
    every, peers = np.ones(len(GPUS), np.bool_), np.arange(len(GPUS)) != 2
    for tick in range(60):  # its cooler fails at the job's power; the job stalls at tick 40
        gpus.resistance[2] = 0.065 * (1.0 + min(3.0, 0.3 * (tick + 1)))
        _fed(gpus, det, rng, 70.0 if tick >= 40 else 620.0, every)
    for tick in range(60):  # n2 down: forgotten 20 minutes in (``forget_after_seconds``: 15 minutes)
        _fed(gpus, det, rng, 70.0, peers)
        if tick == 40:
            det.forget(gpus.index.expire(gpus.t - 600.0, 1.0))
    gpus.temp[2] = gpus.room[2]
    if repaired:
        gpus.resistance[2] = 0.065
    back = np.array([_fed(gpus, det, rng, 70.0, every) for _ in range(40)])
    if repaired:
        assert back[20:].max() <= 1.0
    else:
        assert back.min() > 1.0


def _healthy_back(tau: float, lag_seconds: float) -> tuple[list[str], float]:
    """Thermal alerts raised through the service, and the GPUs' top score back: six healthy GPUs (no model
    label: lone) seen only in their job (620 W) for 75 minutes, their node then down 30 minutes (their series
    forgotten), back at its room's 28 C and idle (70 W: the job went elsewhere) for an hour; their temperature
    lags their power ``tau`` seconds, the detector told ``lag_seconds``."""
    rng = np.random.default_rng(17)
    gpus, clock, table = Gpus(tau=tau), FakeClock(), TableCollector()
    cfg = AnomalyConfig(detectors=["thermal"], thermal_lag_seconds=lag_seconds)
    service = AnomalyService(cfg, [CollectorSource([table], clock)], clock)
    gpus.temp[:] = gpus.room + gpus.resistance * 620.0
    raised, top = [], 0.0
    for tick in range(150 + 60 + 120):
        down = 150 <= tick < 210
        if tick == 210:
            gpus.temp[:] = gpus.room  # off while down: back at the air it takes in
        view = gpus.step(np.full(len(GPUS), 620.0 if tick < 150 else 70.0), rng)
        rows = [] if down else GPUS
        table.set(TEMP, list(zip(rows, view.latest[TEMP].value.tolist(), strict=False)))
        table.set(POWER, list(zip(rows, view.latest[POWER].value.tolist(), strict=False)))
        clock.advance(30.0)
        result = service.infer()
        raised += [a.labels["UUID"] for a in result.raised if a.labels.get("model") == "thermal"]
        if tick >= 210:
            top = max([top, *(float(f.score.max()) for f in result.findings if f.detector == "thermal")])
    return raised, top


@pytest.mark.parametrize(
    ("tau", "lag_seconds"),
    [(20.0, 20.0), (90.0, 20.0), (90.0, 90.0)],
    ids=["lag-20s", "lag-90s-told-20s", "lag-90s-told-90s"],
)
def test_healthy_gpus_back_cold_from_their_nodes_outage_below_any_power_they_scored_at_raise_nothing(
    tau: float, lag_seconds: float
):
    """Back at 28 C and idle below any power their lines scored at (seen only in their job), healthy GPUs
    whose temperature lags 90 s read 29 C first and warmed to their 33 C idle: judged by their climb from
    where they had "cooled to" (``_rewarming``), they scored 1.33 from 7 minutes back on, their climb never
    under half a band of that cold first read, so never settled: a thermal alert raised on every GPU and
    held for the 6-hour hold. A GPU warming from the room after being unseen is no runaway until its
    temperature has had time to follow its power."""
    raised, top = _healthy_back(tau, lag_seconds)
    assert raised == []
    assert top <= 1.0


def _alerted_within(scores: np.ndarray, ticks: int) -> bool:
    """Whether ``scores`` were over 1 three reads in a row (an alert's pending reads) within ``ticks``."""
    hot = scores > 1.0
    return any(hot[i - 2 : i + 1].all() for i in range(2, min(ticks, hot.size)))


@pytest.mark.parametrize(
    ("tau", "fails"),
    [(20.0, "on-return"), (90.0, "on-return"), (90.0, "while-down")],
    ids=["lag-20s-on-return", "lag-90s-on-return", "lag-90s-while-down"],
)
def test_a_cooler_failing_on_a_gpu_back_cold_from_its_nodes_outage_is_flagged_within_5_minutes(
    tau: float, fails: str
):
    """The settle wait must not hide a real runaway: six lone GPUs seen only in their job, their node down 30
    minutes, back at the room's 28 C and idle at 70 W (below any power their lines scored at, no rest there);
    GPU 2's cooler failed while they were down, or fails on their return (x4 over 5 minutes, as the
    simulator's), and heats it to 46 C where its neighbours idle at 33 C. Its climb is measured from where it
    reads until its temperature has settled, yet its line, learning that cold first read at 70 W, reads the
    heat: alerted within the 5-minute deadline. Failed while down and lagging only 20 s, it reads 42 C at
    once and 46 C a tick later: not flagged at all (README, ``thermal``), as a healthy GPU lagging 90 s warms
    as much from its first read."""
    gpus, det, rng = warmed_from_job(tau)
    every = np.ones(len(GPUS), np.bool_)
    det.forget(gpus.index.expire(gpus.t + 10_000, 1.0))
    gpus.t += 1800.0 - 30.0
    gpus.temp[:] = gpus.room
    back = []
    for tick in range(40):
        gpus.resistance[2] = 0.26 if fails == "while-down" else 0.065 * (1.0 + min(3.0, 0.3 * (tick + 1)))
        back.append(_fed(gpus, det, rng, 70.0, every))
    assert _alerted_within(np.array(back), 10)
    assert min(back[10:]) > 1.0  # and while it stays failed, past the settle wait


@pytest.mark.parametrize("tau", [20.0, 90.0], ids=["lag-20s", "lag-90s"])
def test_a_cooler_failing_on_a_stalled_gpu_unread_for_two_minutes_and_a_half_is_flagged_within_5_minutes(
    tau: float,
):
    """Not every gap longer than the slowest lag is an outage that cooled the GPU: six lone GPUs seen only in
    their job stall at 70 W, GPU 2's cooler fails 7 ticks in (x4 over 5 minutes) and its readings are lost
    for 5 ticks then (150 s; a scrape or two missed). Lagging 90 s, it came back at 40 C, warmer than the
    33 C it had cooled to, yet its climb was measured from each reading for the next 10 minutes as if back
    cold: it scored 1.1-1.2 (3.3 before fix/coldback), alerted after 8 minutes. A GPU back no cooler than it
    had cooled to was not cooled by the gap."""
    gpus, det, rng = warmed_from_job(tau)
    every, lost = np.ones(len(GPUS), np.bool_), np.arange(len(GPUS)) != 2
    scores = []
    for tick in range(40):
        if tick >= 7:
            gpus.resistance[2] = 0.065 * (1.0 + min(3.0, 0.3 * (tick - 7 + 1)))
        scores.append(_fed(gpus, det, rng, 70.0, lost if 7 <= tick < 12 else every))
    assert _alerted_within(np.array(scores[7:]), 10)
    assert min(scores[20:]) > 2.0  # scored on its whole climb from its idle, not the last of it


def _stalled_after_lost_readings(tau: float, after: int, fails: bool) -> np.ndarray:
    """GPU 2's scores from 200 s after its job stalls (70 W), ``after`` ticks after its readings were lost for
    5 ticks (150 s, longer than the slowest lag, at its job's 620 W); six lone GPUs seen only in their job.
    Its cooler fails then (x4 over 5 minutes) when ``fails``."""
    gpus, det, rng = warmed_from_job(tau)  # its first 150 ticks, every GPU read
    every, lost = np.ones(len(GPUS), np.bool_), np.arange(len(GPUS)) != 2
    for tick in range(150, 150 + 5 + after):
        _fed(gpus, det, rng, 620.0, lost if 150 <= tick < 155 else every)
    scores = []
    for tick in range(40):
        if fails and tick >= 7:
            gpus.resistance[2] = 0.065 * (1.0 + min(3.0, 0.3 * (tick - 7 + 1)))
        scores.append(_fed(gpus, det, rng, 70.0, every))
    return np.array(scores[7:])


@pytest.mark.parametrize("after", [1, 5, 12], ids=["30s-after", "2.5min-after", "6min-after"])
@pytest.mark.parametrize("tau", [20.0, 90.0], ids=["lag-20s", "lag-90s"])
def test_a_job_stalling_within_10_minutes_of_lost_readings_is_judged_by_its_climb_from_the_stall(
    tau: float, after: int
):
    """Readings lost 150 s at its job's power counted as an outage that cooled the GPU (``_seen``): for 10
    minutes after, a stalled GPU's climb was measured from each reading (its rest, none: seen only in its
    job). Lagging 90 s, a cooler failing 200 s into a stall begun then read 0 for 4 minutes and was alerted
    after 5.5, past the deadline (failing as the stall began: not in 15 minutes). Back within its band of its
    line at its job's power, it was not cooled by the gap."""
    healthy = _stalled_after_lost_readings(tau, after, fails=False)
    failing = _stalled_after_lost_readings(tau, after, fails=True)
    assert healthy.max() <= 1.0
    assert _alerted_within(failing, 10)
    assert failing[10:].min() > 1.0  # and while it stays failed
