"""The thermal detector on GPUs seen only in their job when that job stalls: coolers failing before, during
and after the stall, and runaways carried through it."""

from __future__ import annotations

import numpy as np
import pytest

from anomaly.needs import POWER, TEMP
from anomaly.service import AnomalyService
from anomaly.sources import CollectorSource
from anomaly.thermal import ThermalDetector
from gpuwarden.clock import FakeClock
from gpuwarden.config import AnomalyConfig
from tests.anomaly.fakes import TableCollector
from tests.anomaly.thermal_gpus import GPUS, MODEL, TAU, Gpus, throttled, warmed_from_job


def _stalled(tau: float, stall: int, fails: int | None, busy: int = 0) -> np.ndarray:
    """Scores (ticks x GPUs) of six GPUs of one model seen only in their job (620 W) for 75 minutes, then
    ``busy`` ticks more, from the moment the job stalls (70 W: another node of it down) for ``stall`` ticks,
    then resumes for an hour; GPU 2's cooler fails (x4 over 5 minutes, as the simulator's) ``fails`` ticks
    after those 75 minutes and stays failed, its heat throttling it at the job's power. Their temperature
    lags their power ``tau`` seconds."""
    gpus, det, rng = warmed_from_job(tau, MODEL)
    scores = []
    for tick in range(busy + stall + 120):
        if fails is not None and tick >= fails:
            gpus.resistance[2] = 0.065 * (1.0 + min(3.0, 0.3 * (tick - fails + 1)))
        power = throttled(np.full(len(GPUS), 70.0 if busy <= tick < busy + stall else 620.0), gpus.temp)
        scores.append(det.detect(gpus.step(power, rng))[0].score)
    return np.array(scores)


@pytest.mark.parametrize("tau", [TAU, 90.0], ids=["lag-20s", "lag-90s"])
def test_a_cooler_failing_on_a_gpu_whose_job_stalled_is_flagged_within_5_minutes_and_while_it_lasts(
    tau: float,
):
    """`eval_gpu_faults` seed 901: node-07 GPU 1 had only run its job (598-647 W, its slope shrunk to 0.004
    C/W by the ridge) when a long outage of another node stalled it at 70 W; a cooler failing there 200 s
    later heated it from 33 C to 46 C, far under the 67 C its line drew at 70 W: scored 0 throughout, alerted
    404 s in by the fleet's temperature band only. Below any power its line scored at, the line is a guess;
    the temperature climbing from where it had cooled to, the power flat, is a failing cooler's."""
    scores = _stalled(tau, stall=80, fails=7)
    hot = scores[7:, 2] > 1.0
    third = next((i for i in range(2, hot.size) if hot[i - 2 : i + 1].all()), None)
    assert third is not None and third < 10  # an alert (3 pending reads) within the 5-minute deadline
    # While the cooler stays failed: stalled, and once the job resumes, throttled by the heat to about 265 W,
    # still under any power it scored at (flagged by its climb alone, it read 0 at 100 C there).
    assert hot[10:].all()
    assert np.delete(scores, 2, axis=1).max() <= 1.0


@pytest.mark.parametrize("stall", [10, 80], ids=["5-minute-stall", "40-minute-stall"])
@pytest.mark.parametrize("tau", [TAU, 90.0, 120.0], ids=["lag-20s", "lag-90s", "lag-120s"])
def test_gpus_whose_job_stalls_and_resumes_raise_nothing(tau: float, stall: int):
    """The other side: a healthy GPU cools down as its job stalls and warms up as it resumes, its
    temperature lagging its power up to 2 minutes (the detector assumes 20 s), and is read hot at neither."""
    assert _stalled(tau, stall=stall, fails=None).max() <= 1.0


@pytest.mark.parametrize("stall", [20, 80], ids=["10-minute-stall", "40-minute-stall"])
@pytest.mark.parametrize("tau", [TAU, 90.0], ids=["lag-20s", "lag-90s"])
def test_a_runaway_whose_job_stalls_stays_flagged_through_the_stall_and_after(tau: float, stall: int):
    """Its cooler failed at its job's power (97 C at 265 W, throttled) 20 minutes before the job stalled at
    70 W: the GPU cooled to 46 C, 13 C above its healthy peers' 33 C but far under the 68 C its line (seen
    only at 620 W, its slope shrunk by the ridge) drew there, and read 0 from the stall's first sample on:
    its alert resolved after 24 quiet reads (12 minutes) or, over a shorter stall, recovered and was raised
    again when the job resumed, the cooler failed throughout. Below any power its line scored at, the line
    cannot tell, and the runaway's hot run carries on."""
    scores = _stalled(tau, stall=stall, fails=0, busy=40)
    assert (scores[10:, 2] > 1.0).all()  # from 5 minutes into the failure, through the stall, to the end
    assert np.delete(scores, 2, axis=1).max() <= 1.0


@pytest.mark.parametrize("tau", [90.0, 120.0], ids=["lag-90s", "lag-120s"])
def test_a_runaway_hot_for_less_than_the_slowest_lag_before_its_job_stalls_stays_flagged(tau: float):
    """Its cooler failed 3 reads before its job stalled at 70 W: at a 90 s lag it read 1.33, 3.33, 5.67 (an
    alert raised) and 1.33 at the stall's first read, then 0 for the whole stall, its alert resolved with
    the cooler still failed: its run, hot 90 s, was not carried, as only one hot for the slowest lag
    (120 s) was. One hot for as many reads as raise an alert, and hotter than its peers there, was the GPU's
    heat, not a reading's spike."""
    scores = _stalled(tau, stall=40, fails=12, busy=15)
    assert (scores[13:, 2] > 1.0).all()  # from its second hot read, through the stall, to the end
    assert np.delete(scores, 2, axis=1).max() <= 1.0


def test_a_minutes_hot_spike_just_before_a_job_stalls_is_not_carried_through_the_stall():
    """The other side: a run carried below what its line scored at must be a GPU's heat, not a spike (a
    minute of work its power reading missed, read hot twice) just before its job stalled: carried, it read
    hot for the whole 40-minute stall, an alert raised on a healthy GPU."""
    rng = np.random.default_rng(4)
    gpus, det = Gpus(labels=MODEL), ThermalDetector()
    gpus.temp[:] = gpus.room + gpus.resistance * 620.0
    for _ in range(150):
        det.detect(gpus.step(np.full(len(GPUS), 620.0), rng))
    spike = []
    for _ in range(2):
        gpus.temp[2] += 20.0
        spike.append(float(det.detect(gpus.step(np.full(len(GPUS), 620.0), rng))[0].score[2]))
    stalled = [det.detect(gpus.step(np.full(len(GPUS), 70.0), rng))[0].score for _ in range(80)]
    assert min(spike) > 1.0
    assert np.array(stalled).max() <= 1.0


def _runaway_stalled(idle_first: bool) -> tuple[list[str], list[str], list[float]]:
    """Thermal alerts raised and resolved through the service, and GPU 2's scores while stalled: six GPUs
    in their job (620 W; idle 20 minutes first where ``idle_first``), GPU 2's cooler failing (x4 over 5
    minutes) 75 minutes in, its heat throttling it; 20 minutes later the job stalls at 70 W for 20 minutes,
    then resumes for half an hour."""
    rng = np.random.default_rng(17)
    gpus, clock, table = Gpus(labels=MODEL), FakeClock(), TableCollector()
    service = AnomalyService(AnomalyConfig(detectors=["thermal"]), [CollectorSource([table], clock)], clock)
    raised, resolved, stalled = [], [], []
    for tick in range(290):
        job = 70.0 if (idle_first and tick < 40) or 190 <= tick < 230 else 620.0
        if tick >= 150:
            gpus.resistance[2] = 0.065 * (1.0 + min(3.0, 0.3 * (tick - 149)))
        view = gpus.step(throttled(np.full(len(GPUS), job), gpus.temp), rng)
        table.set(TEMP, list(zip(MODEL, view.latest[TEMP].value.tolist(), strict=True)))
        table.set(POWER, list(zip(MODEL, view.latest[POWER].value.tolist(), strict=True)))
        clock.advance(30.0)
        result = service.infer()
        raised += [a.labels["UUID"] for a in result.raised]
        resolved += [a.labels["UUID"] for a in result.resolved]
        if 195 <= tick < 230:
            stalled += [float(f.score[2]) for f in result.findings if f.detector == "thermal"]
    return raised, resolved, stalled


def test_a_runaway_read_less_hot_while_its_job_stalls_is_one_alert_through_the_stall():
    """`eval_gpu_faults` seed 907: a runaway at its job's power (97 C, throttled, scored 17-22) whose job
    stalled at 70 W, a power its line knew (it had idled there), read 4.3 (46 C where it idles at 33 C):
    still hot, but under half its peak for 3 reads, which the service took for a recovery, as the thermal
    alert named no side; the job's resumption re-raised it mid-fault ("score 17.8 after it fell to 4.16")."""
    raised, resolved, stalled = _runaway_stalled(idle_first=True)
    assert 1.0 < max(stalled) < 6.0  # still hot at its idle, under half its peak: the case
    assert raised == ["GPU-2"]
    assert resolved == []


def test_a_runaway_seen_only_in_its_job_is_one_alert_through_its_stall():
    """The same GPU seen only in its job: its line drew 68 C at the stall's 70 W, the runaway read 0 there
    and its alert resolved 12 minutes into the stall; raised anew when the job resumed."""
    raised, resolved, _ = _runaway_stalled(idle_first=False)
    assert raised == ["GPU-2"]
    assert resolved == []


def test_it_judges_a_gpu_only_past_its_warm_up_and_never_one_without_power():
    """A warm-up sample is scored 0 as no evidence: unjudged (``Findings.judged``), so a firing alert of its
    GPU does not recover by it; nor is a GPU whose power reads 0 W judged."""
    rng = np.random.default_rng(0)
    gpus, det = Gpus(), ThermalDetector(warmup=10)
    idle = np.full(len(GPUS), 70.0)
    lost = np.where(np.arange(len(GPUS)) == 4, 0.0, idle)  # GPU 4's power read as 0 W
    judged = [det.detect(gpus.step(idle, rng, reported=lost))[0].judged_rows().tolist() for _ in range(12)]
    assert judged[:10] == [[False] * 6] * 10
    assert judged[10:] == [[True, True, True, True, False, True]] * 2


def test_a_healthy_gpu_hot_for_minutes_as_its_job_stalls_is_not_carried_while_it_idles_as_its_peers():
    """A fan's 4-minute hiccup at its job's power (80 C where its peers read 68 C: a real alert), over as the
    job stalled at 70 W: the GPU idled at its healthy peers' 33 C, yet its hot run was carried at 4.0 through
    the whole 40-minute stall, its alert held on a healthy GPU (it resolved 12 minutes into the stall before
    the carry). Below any power its line scored at its line cannot judge; its peers at that power can."""
    rng = np.random.default_rng(4)
    gpus, det = Gpus(labels=MODEL), ThermalDetector()
    gpus.temp[:] = gpus.room + gpus.resistance * 620.0
    for _ in range(150):
        det.detect(gpus.step(np.full(len(GPUS), 620.0), rng))
    gpus.resistance[2] = 0.065 * 1.3
    hiccup = [float(det.detect(gpus.step(np.full(len(GPUS), 620.0), rng))[0].score[2]) for _ in range(8)]
    gpus.resistance[2] = 0.065
    stalled = np.array([det.detect(gpus.step(np.full(len(GPUS), 70.0), rng))[0].score for _ in range(80)])
    assert min(hiccup[2:]) > 1.0  # hot for 3 minutes at its job's power: the slowest lag's 120 s and more
    assert stalled[4:].max() <= 1.0


@pytest.mark.parametrize("repaired", [True, False], ids=["repaired", "still-failed"])
def test_a_runaway_repaired_while_its_node_is_down_is_not_carried_when_it_is_back_idle_as_its_peers(
    repaired: bool,
):
    """A runaway's job stalls, then its node is down 30 minutes (its series forgotten, its state parked) and
    its cooler is replaced: back, the job still stalled, it idled at its peers' 33 C, yet its parked hot run
    was carried on at 9.7 (until the job resumed or the 6-hour hold ended). Kept failed, it is carried. It is
    let go once its temperature has been read ``settle_seconds`` back (20 ticks): before, a failed cooler
    back cold reads as cool as its peers (``test_thermal_back``)."""
    rng = np.random.default_rng(17)
    gpus, det = Gpus(labels=MODEL), ThermalDetector()
    gpus.temp[:] = gpus.room + gpus.resistance * 620.0
    for _ in range(150):
        det.detect(gpus.step(np.full(len(GPUS), 620.0), rng))
    for tick in range(60):  # its cooler fails at the job's power; the job stalls at tick 40
        gpus.resistance[2] = 0.065 * (1.0 + min(3.0, 0.3 * (tick + 1)))
        det.detect(gpus.step(throttled(np.full(len(GPUS), 70.0 if tick >= 40 else 620.0), gpus.temp), rng))
    det.forget(gpus.index.expire(gpus.t + 10_000, 1.0))
    gpus.t += 1800.0 - 30.0
    gpus.temp[:] = gpus.room
    if repaired:
        gpus.resistance[2] = 0.065
    back = np.array([det.detect(gpus.step(np.full(len(GPUS), 70.0), rng))[0].score for _ in range(40)])
    assert np.delete(back, 2, axis=1).max() <= 1.0
    if repaired:
        assert back[20:, 2].max() <= 1.0
    else:
        assert back[:, 2].min() > 1.0
