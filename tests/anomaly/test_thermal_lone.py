"""A lone GPU's runaway carried below any power its line scored at: too few peers of its model to ask, its own
rest at that power judges whether it is still hot (``ThermalDetector._not_as_rested``)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from anomaly.thermal import ThermalDetector
from tests.anomaly.thermal_gpus import GPUS, TAU, Gpus, throttled, warmed_from_job

# GPU 2 the only one of its model: its peers' median is never asked, as for a GPU without the label (GPUS).
ONE_OF_ITS_MODEL = [{**gpu, "modelName": "H100" if gpu["gpu"] == "2" else "A100"} for gpu in GPUS]


def _fed(gpus: Gpus, det: ThermalDetector, rng: np.random.Generator, watts: float) -> np.ndarray:
    """One tick of every GPU at ``watts`` (throttled by its heat, as the simulator's): its scores."""
    return det.detect(gpus.step(throttled(np.full(len(GPUS), watts), gpus.temp), rng))[0].score


_RESTED: dict[tuple[int, int, float], tuple[object, Gpus, ThermalDetector, np.random.Generator]] = {}


def _runaway_rested(
    labels: list[dict[str, str]], busy: int, tau: float = TAU
) -> tuple[Gpus, ThermalDetector, np.random.Generator]:
    """Six GPUs seen only in their job (620 W) for 75 minutes, whose job stalls at 70 W for 10 minutes (they
    cool to their 33 C idle, too short for their lines to learn it) and runs ``busy`` ticks more; then GPU
    2's cooler fails (x4 over 5 minutes, as the simulator's), its heat throttling it, for 20 minutes; their
    temperature lags their power by ``tau`` seconds. Run once per set of arguments (``labels``: a module's
    list, kept beside it); each call gets a copy, so no test sees another's state."""
    key = (id(labels), busy, tau)
    if key not in _RESTED:
        _RESTED[key] = labels, *_rested(labels, busy, tau)
    return copy.deepcopy(_RESTED[key][1:])


def _rested(
    labels: list[dict[str, str]], busy: int, tau: float
) -> tuple[Gpus, ThermalDetector, np.random.Generator]:
    """``_runaway_rested``, run."""
    gpus, det, rng = warmed_from_job(tau, labels)  # warm from its job, as the simulator's after an hour
    for _ in range(20):
        _fed(gpus, det, rng, 70.0)
    for _ in range(busy):
        _fed(gpus, det, rng, 620.0)
    for tick in range(40):
        gpus.resistance[2] = 0.065 * (1.0 + min(3.0, 0.3 * (tick + 1)))
        _fed(gpus, det, rng, 620.0)
    return gpus, det, rng


LONE = pytest.mark.parametrize("labels", [GPUS, ONE_OF_ITS_MODEL], ids=["no-model-label", "one-of-its-model"])
# 20 minutes after its rest its line still draws its idle (33 C at 70 W), reading the runaway hot there; after
# 6 hours in its job it has forgotten that idle and draws 59 C, and the runaway's 46 C is hot only by its run.
BUSY = pytest.mark.parametrize("busy", [40, 720], ids=["rested-20-minutes-before", "rested-6-hours-before"])


def _down_and_back(gpus: Gpus, det: ThermalDetector, rng: np.random.Generator, repaired: bool) -> None:
    """Its job stalled at 70 W for 20 ticks, then its node down 30 minutes (its series forgotten, its state
    parked), every GPU back at its room's temperature, GPU 2's cooler replaced if ``repaired``."""
    for _ in range(20):
        _fed(gpus, det, rng, 70.0)
    det.forget(gpus.index.expire(gpus.t + 10_000, 1.0))
    gpus.t += 1800.0 - 30.0
    gpus.temp[:] = gpus.room
    if repaired:
        gpus.resistance[2] = 0.065


def _repaired_in_a_stall(gpus: Gpus, det: ThermalDetector, rng: np.random.Generator) -> np.ndarray:
    """80 ticks of its job stalled at 70 W, GPU 2's cooler replaced 10 ticks in: the scores of each tick."""
    stalled = []
    for tick in range(80):
        if tick == 10:
            gpus.resistance[2] = 0.065  # its cooler replaced while the job is stalled
        stalled.append(_fed(gpus, det, rng, 70.0))
    return np.array(stalled)


@LONE
@BUSY
def test_a_lone_gpus_runaway_repaired_as_its_job_stalls_is_not_carried_once_it_idles_as_it_did_before(
    labels: list[dict[str, str]], busy: int
):
    """No peer of its model to ask, a runaway's hot run was carried through its job's whole stall: repaired 5
    minutes into it, the GPU idled at the 33 C it had read at 70 W before the runaway, yet its alert was held
    (4.2; 11.6 where its line had forgotten that idle) until the job resumed or its 6-hour hold ended."""
    gpus, det, rng = _runaway_rested(labels, busy)
    scores = _repaired_in_a_stall(gpus, det, rng)
    assert (scores[:10, 2] > 1.0).all()  # still failed: flagged through the stall's first 5 minutes
    assert scores[12:, 2].max() <= 1.0  # repaired, back at its idle: let go
    assert np.delete(scores, 2, axis=1).max() <= 1.0


@LONE
@BUSY
def test_a_lone_gpus_runaway_whose_job_stalls_stays_flagged_through_the_stall(
    labels: list[dict[str, str]], busy: int
):
    """The other side, the reason a hot run is carried: the failed cooler idles at 46 C, 13 C above the 33 C
    it rested at there, and 13 C under the 59 C its line draws at 70 W 6 hours after its rest (where the line
    alone read it 0 from the stall's first sample on)."""
    gpus, det, rng = _runaway_rested(labels, busy)
    scores = np.array([_fed(gpus, det, rng, 70.0) for _ in range(80)])
    assert scores[:, 2].min() > 1.0
    assert np.delete(scores, 2, axis=1).max() <= 1.0


@pytest.mark.parametrize("repaired", [True, False], ids=["repaired", "still-failed"])
def test_a_lone_gpus_runaway_repaired_while_its_node_is_down_is_not_carried_when_back_idle_as_before(
    repaired: bool,
):
    """Its job stalled, its node down 30 minutes (its series forgotten, its state parked) and its cooler
    replaced: back, the job still stalled, it idled at its rest's 33 C, yet its parked hot run was carried
    on; it is let go once its temperature has been read ``settle_seconds`` back (20 ticks: a GPU back cold
    reads cool before a failed cooler has warmed it). Kept failed, it is carried."""
    gpus, det, rng = _runaway_rested(GPUS, busy=720)
    _down_and_back(gpus, det, rng, repaired)
    back = np.array([_fed(gpus, det, rng, 70.0) for _ in range(40)])
    assert np.delete(back, 2, axis=1).max() <= 1.0
    if repaired:
        assert back[20:, 2].max() <= 1.0
    else:
        assert back[:, 2].min() > 1.0


@pytest.mark.parametrize("repaired", [True, False], ids=["repaired", "still-failed"])
def test_a_lone_gpu_back_cold_from_its_nodes_outage_is_judged_by_its_rest_only_once_its_temperature_settled(
    repaired: bool,
):
    """A GPU whose temperature lags 90 s (the detector allows for 120 s), off while its node was down 30
    minutes, is back at its room's 28 C: its failed cooler read 33 C at first, no hotter than its 32 C rest
    plus its band, and its carried run was let go; climbing on to 46 C at its stall's 70 W, it read 0 for
    the whole stall (fix/lone; carried at 1.8 before). A temperature read after so long unseen has not
    settled: its rest judges it only once it has been read ``settle_seconds`` (20 ticks)."""
    gpus, det, rng = _runaway_rested(GPUS, busy=720, tau=90.0)
    _down_and_back(gpus, det, rng, repaired)
    # Its healthy neighbours, back as cold, read their rewarming as a climb (1.3) as before fix/lone: not
    # this case's.
    back = np.array([_fed(gpus, det, rng, 70.0)[2] for _ in range(40)])
    if repaired:
        assert back[20:].max() <= 1.0
    else:
        assert back.min() > 1.0


def test_a_lone_gpus_rest_is_not_a_cold_read_after_its_nodes_outage():
    """Its rest is the newest settled reading, not the coolest (a cold start would stay its rest for good);
    but its power settles at once after an outage (both lags caught up meanwhile), so a GPU lagging 90 s,
    back at its room's 28 C and idle a minute before its job restarted, rested at its 29 C first read, not
    at the 33 C it had idled at. A runaway later, its cooler replaced as the job stalled, it idled at 33 C,
    over that rest plus its band: carried (1.004) through the whole 40-minute stall, an alert held on a
    repaired GPU until the job resumed or the 6-hour hold ended. A rest is taken only from a temperature
    settled since the GPU was unseen."""
    gpus, det, rng = warmed_from_job(90.0, GPUS)
    for watts, ticks in ((70.0, 20), (620.0, 20)):  # rested at 33 C at 70 W, after 150 ticks at 620 W
        for _ in range(ticks):
            _fed(gpus, det, rng, watts)
    det.forget(gpus.index.expire(gpus.t + 10_000, 1.0))
    gpus.t += 1800.0 - 30.0
    gpus.temp[:] = gpus.room
    for watts in (70.0, 70.0, *[620.0] * 40):  # back idle a minute, then its job again
        _fed(gpus, det, rng, watts)
    for tick in range(40):
        gpus.resistance[2] = 0.065 * (1.0 + min(3.0, 0.3 * (tick + 1)))
        _fed(gpus, det, rng, 620.0)
    scores = _repaired_in_a_stall(gpus, det, rng)
    assert (scores[:10, 2] > 1.0).all()  # still failed: flagged through the stall's first 5 minutes
    assert scores[30:, 2].max() <= 1.0  # repaired, cooled to its idle (a 90 s lag): let go
    assert np.delete(scores, 2, axis=1).max() <= 1.0


@LONE
def test_a_lone_gpus_hiccup_of_a_few_reads_just_before_its_job_stalls_is_not_carried_through_the_stall(
    labels: list[dict[str, str]],
):
    """A lone GPU seen only in its job, a fan's hiccup read hot 3 times (an alert) just before the job stalls
    at 70 W, where it never rested: no peer and no rest of its own to ask. A run hot for less than the
    slowest lag is carried only on their word (``ThermalDetector._carried``); carried on no one's, a
    healthy GPU read 8.0 through the whole stall."""
    rng = np.random.default_rng(4)
    gpus, det = Gpus(labels=labels), ThermalDetector()
    gpus.temp[:] = gpus.room + gpus.resistance * 620.0
    for _ in range(150):
        _fed(gpus, det, rng, 620.0)
    gpus.resistance[2] = 0.065 * 1.6
    hiccup = [float(_fed(gpus, det, rng, 620.0)[2]) for _ in range(3)]
    gpus.resistance[2] = 0.065
    stalled = np.array([_fed(gpus, det, rng, 70.0) for _ in range(40)])
    assert min(hiccup) > 1.0
    assert stalled[4:].max() <= 1.0
