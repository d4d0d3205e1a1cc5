from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pytest

from anomaly.needs import POWER, TEMP
from anomaly.service import AnomalyService, builtin_registry
from anomaly.sources import CollectorSource
from anomaly.thermal import ThermalDetector
from exporters.simulated import sim_collectors
from gpuwarden.clock import FakeClock
from gpuwarden.config import AnomalyConfig, load_config
from gpuwarden.model import Alert
from gpuwarden.sim import FaultSpec, build_fleet
from tests.anomaly.fakes import TableCollector
from tests.anomaly.thermal_gpus import GPUS, TAU, Gpus, warmed_from_job


def test_an_idle_gpu_whose_cooling_fails_is_flagged_within_a_few_minutes_and_its_peers_are_not():
    rng = np.random.default_rng(0)
    gpus, det = Gpus(), ThermalDetector()
    idle = np.full(len(GPUS), 70.0)
    for _ in range(120):
        assert det.detect(gpus.step(idle, rng))[0].score.max() <= 1.0
    flagged_after = None
    for tick in range(1, 11):
        gpus.resistance[2] = 0.065 * (1.0 + min(3.0, 0.3 * tick))  # the cooler fails over 5 minutes
        score = det.detect(gpus.step(idle, rng))[0].score
        assert np.delete(score, 2).max() <= 1.0
        if score[2] > 1.0 and flagged_after is None:
            flagged_after = tick
    assert flagged_after is not None and flagged_after <= 5


def test_workload_changes_that_move_temperature_with_power_raise_nothing():
    rng = np.random.default_rng(1)
    gpus, det = Gpus(), ThermalDetector()
    worst = 0.0
    for tick in range(600):
        # Jobs start and stop every 20 minutes on half the GPUs; an hourly wave on the others.
        on = (tick // 40) % 2 == 1
        power = np.where(np.arange(len(GPUS)) % 2 == 0, 690.0 if on else 75.0, 0.0)
        wave = 350.0 + 200.0 * math.sin(2 * math.pi * tick * 30 / 3600)
        power = np.where(np.arange(len(GPUS)) % 2 == 1, wave, power)
        score = det.detect(gpus.step(power, rng))[0].score
        if tick >= 60:
            worst = max(worst, float(score.max()))
    assert worst <= 1.0


def test_a_cooling_failure_stays_flagged_while_it_lasts_and_clears_once_repaired():
    """The band learnt from the runaway's own samples (the error scale grew 5 % a tick): the demo's GPU held
    at 92 C scored under 1 within 8 minutes and its alert resolved while the GPU still cooked."""
    rng = np.random.default_rng(2)
    gpus, det = Gpus(), ThermalDetector()
    busy = np.full(len(GPUS), 400.0)
    for _ in range(120):
        det.detect(gpus.step(busy, rng))
    gpus.resistance[2] = 0.065 * 1.6  # the cooler fails and stays failed for an hour
    for tick in range(120):
        score = det.detect(gpus.step(busy, rng))[0].score
        if tick >= 10:  # once the temperature has climbed
            assert score[2] > 1.0, tick
    gpus.resistance[2] = 0.065  # repaired
    for tick in range(40):
        score = det.detect(gpus.step(busy, rng))[0].score
        if tick >= 20:  # the GPU has cooled back down
            assert score[2] <= 1.0, tick
    assert score.max() <= 1.0


def test_a_gpu_seen_only_idle_that_starts_a_job_is_not_flagged_for_good():
    """Its prediction at a power it never learnt at is a guess: held like a fault's, that alert never ends."""
    rng = np.random.default_rng(5)
    gpus, det = Gpus(), ThermalDetector()
    for _ in range(150):
        det.detect(gpus.step(np.full(len(GPUS), 70.0), rng))
    busy = np.full(len(GPUS), 690.0)
    scores = [det.detect(gpus.step(busy, rng))[0].score.max() for _ in range(120)]
    assert max(scores[-20:]) <= 1.0


def test_a_gpu_seen_only_idle_that_starts_a_job_is_not_flagged_at_all():
    """Seen only at 70 W, the regression's slope was the ridge's guess (near 0), so the job's 690 W predicted
    the idle temperature: the job's first 27 minutes scored 10 down to 1 (55 ticks above 1, an alert raised),
    the warmth a job brings taught back 3 C a tick at most. A power above any it learnt at is no evidence:
    not scored, learnt unclipped (its slope comes from it)."""
    rng = np.random.default_rng(5)
    gpus, det = Gpus(), ThermalDetector()
    for _ in range(150):
        det.detect(gpus.step(np.full(len(GPUS), 70.0), rng))
    busy = np.full(len(GPUS), 690.0)
    scores = [float(det.detect(gpus.step(busy, rng))[0].score.max()) for _ in range(120)]
    assert max(scores) <= 1.0


def test_a_cooling_failure_on_a_gpu_seen_only_idle_is_flagged_once_its_job_has_run_a_while():
    """The other side of not scoring a power it never learnt at: once its job has run, that power is learnt
    and a cooler failing there is flagged as on any GPU."""
    rng = np.random.default_rng(6)
    gpus, det = Gpus(), ThermalDetector()
    for _ in range(150):
        det.detect(gpus.step(np.full(len(GPUS), 70.0), rng))
    busy = np.full(len(GPUS), 690.0)
    for _ in range(40):
        det.detect(gpus.step(busy, rng))
    gpus.resistance[2] = 0.065 * 1.3
    scores = [det.detect(gpus.step(busy, rng))[0].score for _ in range(10)]
    assert max(float(s[2]) for s in scores[5:]) > 1.0
    assert max(float(np.delete(s, 2).max()) for s in scores) <= 1.0


def _hotter_for_good(power: Callable[[int], float], ticks_after_hold: int) -> tuple[int, list[float]]:
    """GPU 2's scores once it runs 15 % hotter per watt for good, and the ticks its hold lasts."""
    rng = np.random.default_rng(3)
    gpus, det = Gpus(), ThermalDetector()
    for tick in range(80):
        det.detect(gpus.step(np.full(len(GPUS), power(tick)), rng))
    gpus.resistance[2] = 0.065 * 1.15  # a hotter room, a worse slot or fan curve: from now on
    held = int(det.hold_seconds // 30)
    return held, [
        float(det.detect(gpus.step(np.full(len(GPUS), power(tick)), rng))[0].score[2])
        for tick in range(80, 80 + held + ticks_after_hold)
    ]


def test_a_gpu_that_runs_hotter_for_good_at_the_same_power_is_not_flagged_forever():
    """A sample above the band at a learnt power taught nothing, so a GPU 4 C hotter for good at the same
    400 W fired its alert for the rest of the run (24 hours and on; before that fix it resolved in 9 minutes).
    A hold is bounded (``hold_seconds``, 6 hours); then it learns the new level as before."""
    held, scores = _hotter_for_good(lambda tick: 400.0, 120)
    assert min(scores[20 : held - 5]) > 1.0  # held while the hold lasts, as a failed cooler's
    assert max(scores[-20:]) <= 1.0


def test_a_hold_lasts_across_the_quiet_idle_between_jobs_and_still_ends():
    """Cool enough at idle between its jobs, the same GPU started a new hold at each job: hot at every job
    for good (an alert that flaps with the jobs, forever). A hold counts the time spent hot: busy half the
    time, it ends after about twice ``hold_seconds``."""
    held, scores = _hotter_for_good(
        lambda tick: 690.0 if (tick // 40) % 2 else 75.0, 720 + 240
    )  # 720: a hold
    assert max(scores[:held]) > 1.0
    assert max(scores[-160:]) <= 1.0  # two whole job cycles


def test_a_few_hot_samples_hours_before_a_cooling_failure_do_not_use_up_its_hold():
    """A hold counted from its first hot sample and lasted across quiet samples until none was hot for 6
    hours: a handful of noisy samples over the band in the hours before a cooler failed had started the
    clock, so the failure's alert let go within the hour (a runaway in `eval_gpu_faults` resolved early).
    The hold is the time spent hot, not the time since the first hot sample."""
    rng = np.random.default_rng(4)
    gpus, det = Gpus(), ThermalDetector()
    busy = np.full(len(GPUS), 400.0)
    for _ in range(120):
        det.detect(gpus.step(busy, rng))
    glitches = []
    for _ in range(5):  # a minute's spike each hour (a burst of work the power read missed): over the band
        gpus.temp[2] += 20.0
        glitches.append(float(det.detect(gpus.step(busy, rng))[0].score[2]))
        for _ in range(119):
            det.detect(gpus.step(busy, rng))
    assert min(glitches) > 1.0
    gpus.resistance[2] = 0.065 * 1.6  # 5 hours after the first glitch the cooler fails, for two hours
    scores = [float(det.detect(gpus.step(busy, rng))[0].score[2]) for _ in range(240)]
    assert min(scores[10:]) > 1.0


def test_a_cooling_failure_that_throttles_the_gpu_to_a_power_it_never_ran_at_stays_flagged():
    """A failing cooler throttles its GPU: in `eval_gpu_faults` a runaway on a GPU that had only run its job
    at about 630 W fell to 275 W at 100 C. That power was below any it had learnt at, taken as a guess, so
    the runaway's samples taught the regression (winsorised at the band): the band grew 5 % a tick, it scored
    under 1 after 20 minutes and its alert resolved after 32, the GPU still at 100 C. Below what it learnt
    at, the ridge's prediction errs high, never low: a temperature above it there teaches nothing, as at a
    power it knows."""
    rng = np.random.default_rng(6)
    gpus, det = Gpus(), ThermalDetector()
    busy = np.full(len(GPUS), 630.0)
    for _ in range(120):
        det.detect(gpus.step(busy, rng))
    gpus.resistance[2] = 0.065 * 4.0  # the cooler fails and stays failed for an hour
    scores = []
    for tick in range(120):
        power = busy.copy()
        if tick >= 2:
            power[2] = 275.0  # the heat slows the clocks: the GPU draws less than it ever did
        scores.append(float(det.detect(gpus.step(power, rng))[0].score[2]))
    assert min(scores[5:]) > 1.0
    gpus.resistance[2] = 0.065  # repaired: its job runs at full power again
    after = [float(det.detect(gpus.step(busy, rng))[0].score[2]) for _ in range(20)]
    assert max(after[10:]) <= 1.0


def test_a_gpu_seen_only_busy_whose_job_ends_raises_nothing():
    """The other side of learning nothing below its learnt power: the idle temperature of a GPU that only ever
    ran its job sits under the ridge's prediction there (its slope is shrunk towards zero), not above it."""
    rng = np.random.default_rng(7)
    gpus, det = Gpus(), ThermalDetector()
    for _ in range(150):
        det.detect(gpus.step(np.full(len(GPUS), 690.0), rng))
    scores = [det.detect(gpus.step(np.full(len(GPUS), 70.0), rng))[0].score.max() for _ in range(120)]
    assert max(scores) <= 1.0


def test_a_gpu_whose_idle_power_falls_below_any_it_learnt_at_learns_it():
    """Learning nothing below the learnt power is for a runaway that throttled its GPU there: hot first, at a
    power it knows. A GPU run at 90-400 W whose idle power falls to 20 W (a driver update, MIG, a lowered
    cap), its idle temperature as it was, is no runaway: it learns as before, not flagged for 6 hours."""
    rng = np.random.default_rng(11)
    gpus, det = Gpus(), ThermalDetector()
    for tick in range(440):  # jobs at 400 W, idle at 90 W between, every 20 minutes; it ends idle
        det.detect(gpus.step(np.full(len(GPUS), 400.0 if (tick // 40) % 2 else 90.0), rng))
    idle = np.full(len(GPUS), 90.0)
    idle[2] = 20.0
    gpus.resistance[2] = 0.065 * 90.0 / 20.0  # the temperature it had at 90 W
    scores = [float(det.detect(gpus.step(idle, rng))[0].score[2]) for _ in range(240)]
    assert max(scores[120:]) <= 1.0  # learnt within the hour


def _fed(other_series: int) -> ThermalDetector:
    """A detector fed 30 ticks of the six GPUs, their series given ids after ``other_series`` others'."""
    rng = np.random.default_rng(13)
    gpus, det = Gpus(), ThermalDetector()
    pods = [{"pod": f"p{i}"} for i in range(other_series)]
    gpus.index.ids_for("other", pods, gpus.t)
    for _ in range(30):
        det.detect(gpus.step(np.full(len(GPUS), 300.0), rng))
    return det


def test_its_state_grows_with_the_gpus_it_scores_not_with_their_series_ids():
    # Its arrays were indexed by series id up to the highest temperature id: six GPUs whose series came after
    # 200,000 others (pods, another query) held 20 MB, against 106 KB for the same GPUs numbered first.
    low, high = _fed(0), _fed(200_000)
    assert (
        high.state_bytes() == low.state_bytes() <= (248 + 8) * 64 + 1024
    )  # 64 slots and their GPUs, the id map
    assert np.array_equal(low.mt[: len(GPUS)], high.mt[: len(GPUS)])


def _forgotten(labels: list[dict[str, str]], away: float = 10_000.0) -> ThermalDetector:
    """A detector that learnt six GPUs for 90 ticks, forgot them all, then read ``labels``' GPUs once,
    ``away`` seconds after their last read."""
    rng = np.random.default_rng(17)
    gpus, det = Gpus(), ThermalDetector()
    for _ in range(90):
        det.detect(gpus.step(np.full(len(GPUS), 300.0), rng))
    gone = gpus.index.expire(gpus.t + 10_000, 1.0)  # every series unseen for long: forgotten, ids freed
    det.forget(gone)
    assert not det.n.any()
    gpus.t += away - 30.0
    gpus.labels = labels
    det.detect(gpus.step(np.full(len(GPUS), 300.0), rng))  # new ids (some freed ones among them)
    return det


def test_a_forgotten_gpus_state_is_not_handed_to_the_next_series():
    other = [{**gpu, "UUID": f"GPU-new-{i}"} for i, gpu in enumerate(GPUS)]
    det = _forgotten(other)  # other GPUs: learnt from the start
    assert sorted(det.n[det.n > 0].tolist()) == [1.0] * len(GPUS)


def test_a_forgotten_gpu_back_under_a_new_series_takes_up_its_own_state_again():
    det = _forgotten(GPUS)  # the same GPUs (UUIDs) under new series ids: their lines, one sample on
    assert sorted(det.n[det.n > 0].tolist()) == [91.0] * len(GPUS)


def test_a_forgotten_gpu_back_after_more_than_a_day_learns_anew():
    det = _forgotten(GPUS, away=86_400.0 + 60.0)  # out for repair: its cooler may have been replaced
    assert sorted(det.n[det.n > 0].tolist()) == [1.0] * len(GPUS)


def test_a_single_power_reading_far_above_any_learnt_does_not_make_a_later_job_read_hot():
    """A GPU learnt at 70-400 W read 1,400 W once (a counter glitch, 2x a 700 W GPU's limit) with its
    temperature idle: that sample, above any power learnt at, was learnt unclipped (66 C below the line),
    dragged the slope down and set the learnt range to 1,180 W, so its first job at 690 W read hot at a power
    it "knew" and was held, learning nothing: flagged for the whole 2 hours after. A guess errs low, so a
    temperature below even it is learnt only down to the band."""
    rng = np.random.default_rng(7)
    gpus, det = Gpus(), ThermalDetector()
    for tick in range(200):
        det.detect(gpus.step(np.full(len(GPUS), 400.0 if (tick // 20) % 2 else 70.0), rng))
    idle = np.full(len(GPUS), 70.0)
    det.detect(gpus.step(idle, rng, reported=np.where(np.arange(len(GPUS)) == 2, 1400.0, 70.0)))
    for _ in range(10):
        det.detect(gpus.step(idle, rng))
    busy = np.full(len(GPUS), 690.0)
    scores = [float(det.detect(gpus.step(busy, rng))[0].score.max()) for _ in range(240)]
    assert max(scores) <= 1.0


def test_a_gpu_seen_only_idle_whose_temperature_lags_longer_is_not_held_hot_at_its_first_job():
    """Its temperature following power over 60 s, not the detector's 20 s: the job's first samples, above any
    power learnt at, were not scored and learnt the climb, and made the job's power "known"; the temperature
    climbing on then read hot there and was held (learning nothing): 236 of 240 ticks over 1, the 6-hour hold.
    A power is known for a hold once a scored sample learnt there."""
    rng = np.random.default_rng(5)
    gpus, det = Gpus(tau=60.0), ThermalDetector()
    for _ in range(150):
        det.detect(gpus.step(np.full(len(GPUS), 70.0), rng))
    busy = np.full(len(GPUS), 690.0)
    scores = [float(det.detect(gpus.step(busy, rng))[0].score.max()) for _ in range(240)]
    assert max(scores[-180:]) <= 1.0


MODEL = [{**gpu, "modelName": "NVIDIA H100 80GB HBM3"} for gpu in GPUS]


def _throttled(power: np.ndarray, temp: np.ndarray) -> np.ndarray:
    """The simulator's clocks slow to 0.8 at 87 C and 0.5 at 92 C, and power above idle follows clock**1.5."""
    clock = np.where(temp >= 92.0, 0.5, np.where(temp >= 87.0, 0.8, 1.0))
    return 70.0 + (power - 70.0) * clock**1.5


def _first_job(
    heat: Callable[[int], float],
    tau: float = TAU,
    ticks: int = 120,
    hold_seconds: float = 6 * 3600.0,
    labels: list[dict[str, str]] = MODEL,
    room: float = 28.0,
) -> tuple[list[float], float]:
    """GPU 2's scores at its first job (690 W, its cooler's thermal resistance ``1 + heat(tick)`` times the
    normal one, its intake air at ``room``) after two hours idle beside five GPUs of its model (``labels``)
    running 20-minute jobs; their top score."""
    rng = np.random.default_rng(5)
    gpus, det = Gpus(tau=tau, labels=labels), ThermalDetector(hold_seconds=hold_seconds)
    gpus.room[2] = room
    peers = np.arange(len(GPUS)) != 2
    for tick in range(240):
        det.detect(gpus.step(np.where(peers, 690.0 if (tick // 40) % 2 else 75.0, 70.0), rng))
    scores, top = [], 0.0
    for tick in range(240, 240 + ticks):
        gpus.resistance[2] = 0.065 * (1.0 + heat(tick - 240))
        power = _throttled(np.where(peers, 690.0 if (tick // 40) % 2 else 75.0, 690.0), gpus.temp)
        score = det.detect(gpus.step(power, rng))[0].score
        scores.append(float(score[2]))
        top = max(top, float(np.delete(score, 2).max()))
    return scores, top


def test_a_cooler_failing_as_its_gpus_first_job_starts_is_flagged_within_5_minutes_and_while_it_lasts():
    """A power above any it scored at was not scored and was learnt whole: the runaway (resistance x4 over 5
    minutes, the GPU throttled at 103 C) scored from the 3rd tick, then taught its heat and scored under 1
    after 35 minutes (69 ticks over 1 of the hour). Its model's peers know the slope of a job's heat."""
    scores, peers = _first_job(lambda tick: min(3.0, 0.3 * (tick + 1)))
    assert max(scores[:10]) > 1.0  # the soft-fault deadline: 5 minutes
    assert min(scores[10:]) > 1.0  # the hour it stays failed
    assert peers <= 1.0


def test_a_cooler_failed_before_its_gpus_first_job_is_flagged():
    """Already 60 % worse when the job started (86 C where its peers run at 73 C): never scored over 1."""
    scores, _ = _first_job(lambda tick: 0.6)
    assert max(scores[:10]) > 1.0
    assert min(scores[10:]) > 1.0


@pytest.mark.parametrize("tau", [TAU, 60.0], ids=["lag-as-detector", "temperature-lags-60s"])
def test_a_gpus_first_job_beside_peers_that_know_their_slope_raises_nothing(tau: float):
    """Its normal heat, judged by its peers' slope, not its own guess; at a 60 s lag (the detector assumes
    20 s) the first job's guesses learnt the climb, and its own line scored it up to 3.2 for 13 minutes."""
    scores, _ = _first_job(lambda tick: 0.0, tau=tau)
    assert max(scores) <= 1.0


def test_a_gpu_hotter_than_its_peers_for_good_learns_its_heat_once_its_hold_ends():
    """Judged by its peers, a GPU 60 % hotter per watt at its first job is held as a failed cooler's alert
    would be, and like one its hold ends: it then learns the job's power as its own (not flagged forever)."""
    scores, _ = _first_job(lambda tick: 0.6, ticks=180, hold_seconds=1800.0)
    assert min(scores[10:55]) > 1.0
    assert max(scores[-60:]) <= 1.0


def test_a_power_reading_of_zero_is_a_lost_reading_not_a_sample():
    """A GPU run at 70-400 W, idle, read 0 W for 5 minutes (dcgm-exporter's stale zeros): its temperature,
    above what 0 W explains, scored 1.3 for 9 of its 10 ticks. A GPU warmer than the room draws power."""
    rng = np.random.default_rng(7)
    gpus, det = Gpus(), ThermalDetector()
    for tick in range(200):
        det.detect(gpus.step(np.full(len(GPUS), 400.0 if (tick // 20) % 2 else 70.0), rng))
    idle, lost = np.full(len(GPUS), 70.0), np.where(np.arange(len(GPUS)) == 2, 0.0, 70.0)
    scores = [float(det.detect(gpus.step(idle, rng, reported=lost))[0].score[2]) for _ in range(10)]
    scores += [float(det.detect(gpus.step(idle, rng))[0].score[2]) for _ in range(20)]
    assert max(scores) <= 1.0


def _idle_then(
    tau: float, before: Callable[[int], np.ndarray], after: Callable[[int], np.ndarray]
) -> np.ndarray:
    """Scores (ticks x GPUs) of six GPUs of one model over two hours at ``after(tick)`` watts, following two
    hours at ``before(tick)``; their temperature lags their power ``tau`` seconds."""
    rng = np.random.default_rng(11)
    gpus, det = Gpus(tau=tau, labels=MODEL), ThermalDetector()
    for tick in range(240):
        det.detect(gpus.step(before(tick), rng))
    return np.array([det.detect(gpus.step(after(tick), rng))[0].score for tick in range(240)])


def test_gpus_of_one_model_starting_their_first_jobs_together_do_not_hold_each_other_hot():
    """Each GPU in its first job learnt its slope from guesses, short while the temperature lags (90 s), and
    vouched for it as a peer: read hot against each other's, every GPU taught nothing and all were held hot
    for the 6-hour hold (2 hours in the test). Alone, each GPU's own line reads its first job as before."""
    idle, busy = np.full(len(GPUS), 70.0), np.full(len(GPUS), 690.0)
    scores = _idle_then(90.0, lambda tick: idle, lambda tick: busy)
    assert scores[-120:].max() <= 1.0


def test_peers_back_from_a_burst_of_first_job_do_not_vouch_for_its_slope():
    """Five GPUs ran a one-minute burst (a health check) and idled again: their slope, learnt from two
    guesses while the temperature lagged (60 s), judged GPU 2's first job, hot for 90 minutes of 2 hours."""
    peers = np.arange(len(GPUS)) != 2
    scores = _idle_then(
        60.0,
        lambda tick: np.where(peers & (200 <= tick < 202), 690.0, 70.0),
        lambda tick: np.where(peers, 70.0, 690.0),
    )
    assert scores[-120:, 2].max() <= 1.0


def _jobs(watts: float, ticks: int) -> Callable[[int], np.ndarray]:
    """Every GPU at ``watts`` for ``ticks`` of each 2 ``ticks``, at 70 W (idle) between."""
    return lambda tick: np.full(len(GPUS), watts if (tick // ticks) % 2 else 70.0)


@pytest.mark.parametrize(
    ("tau", "before", "watts"),
    [
        (60.0, _jobs(250.0, 40), 690.0),
        (90.0, _jobs(150.0, 40), 690.0),
        (60.0, lambda tick: np.full(len(GPUS), 690.0 if 200 <= tick < 206 else 70.0), 690.0),
        (120.0, _jobs(70.0, 40), 300.0),
    ],
    ids=["jobs-70-250W-lag-60s", "jobs-70-150W-lag-90s", "3-minute-burst-lag-60s", "idle-then-300W-lag-120s"],
)
def test_a_job_above_any_power_a_gpu_ran_at_is_not_held_hot_when_its_temperature_lags_longer(
    tau: float, before: Callable[[int], np.ndarray], watts: float
):
    """Its temperature lagging its power 60-120 s (the detector assumes 20 s), the climb's samples sat under
    the line a settled temperature draws; scored under 1 by a line learnt from them, they made the job's power
    "known" while the temperature still rose, and its settled heat read hot there and was held: 234-238 of
    240 ticks over 1 (the 6-hour hold). Above any power its line scored at, a sample is a guess until the
    power has stayed there ``settle_seconds`` and the line is within half a band."""
    scores = _idle_then(tau, before, lambda tick: np.full(len(GPUS), watts))
    assert scores.max() <= 1.0


def _cooler_failing(detector: ThermalDetector) -> float:
    """The highest score an idle GPU whose cooler fails over 5 minutes reaches (the first test's fault)."""
    rng = np.random.default_rng(0)
    gpus, idle = Gpus(), np.full(len(GPUS), 70.0)
    for _ in range(120):
        detector.detect(gpus.step(idle, rng))
    scores = []
    for tick in range(1, 11):
        gpus.resistance[2] = 0.065 * (1.0 + min(3.0, 0.3 * tick))
        scores.append(float(detector.detect(gpus.step(idle, rng))[0].score[2]))
    return max(scores)


def _configured(tmp_path: Path, settings: str) -> ThermalDetector:
    """The thermal detector ``anomaly run`` builds from a config file's ``anomaly`` section."""
    path = tmp_path / "gpuwarden.yaml"
    path.write_text(f"anomaly:\n{settings}")
    [detector] = builtin_registry(load_config(path, environ={}).anomaly).create(["thermal"])
    assert isinstance(detector, ThermalDetector)
    return detector


def test_the_thermal_band_floor_set_in_the_config_is_the_one_anomaly_run_scores_with(tmp_path: Path):
    # The detector's parameters could not be set: a site whose GPUs run a few degrees apart had no way to
    # widen its floor (or to name its own peer labels) short of editing the code.
    assert _cooler_failing(_configured(tmp_path, "  detectors: [thermal]\n")) > 1.0
    assert _cooler_failing(_configured(tmp_path, "  thermal_min_deviation: 100\n")) < 1.0


# Each thermal setting of the config: as written in YAML, the detector attribute it sets, and its value there.
SETTINGS = [
    ("thermal_lag_seconds", "60", "lag_seconds", 60.0),
    ("thermal_alpha", "0.05", "alpha", 0.05),
    ("thermal_k", "4", "k", 4.0),
    ("thermal_min_deviation", "5", "min_deviation", 5.0),
    ("thermal_ridge_watts", "20", "ridge_watts", 20.0),
    ("thermal_warmup", "10", "warmup", 10),
    ("thermal_hold_seconds", "3600", "hold_seconds", 3600.0),
    ("thermal_settle_seconds", "0", "settle_seconds", 0.0),
    ("thermal_peer_labels", "[modelName, cluster]", "peer_labels", ("modelName", "cluster")),
    ("thermal_min_peers", "5", "min_peers", 5),
    ("thermal_peer_tolerance", "0.5", "peer_tolerance", 0.5),
]


@pytest.mark.parametrize(
    ("setting", "written", "attribute", "expected"), SETTINGS, ids=[s[0] for s in SETTINGS]
)
def test_each_thermal_setting_reaches_the_detector(
    tmp_path: Path, setting: str, written: str, attribute: str, expected: object
):
    assert getattr(_configured(tmp_path, f"  {setting}: {written}\n"), attribute) == expected


def test_the_thermal_settings_default_to_the_detectors_own_defaults():
    built, own = builtin_registry(AnomalyConfig()).create(["thermal"])[0], ThermalDetector()
    names = [attribute for _, _, attribute, _ in SETTINGS]
    assert {n: getattr(built, n) for n in names} == {n: getattr(own, n) for n in names}


def _burst(minutes: int) -> Callable[[int], np.ndarray]:
    """Every GPU idle (70 W) but for a burst at 690 W of ``minutes`` from tick 20."""
    return lambda tick: np.full(len(GPUS), 690.0 if 20 <= tick < 20 + 2 * minutes else 70.0)


@pytest.mark.parametrize(
    ("tau", "minutes"),
    [(90.0, 3), (120.0, 2), (120.0, 10), (60.0, 3)],
    ids=[
        "3-minute-burst-lag-90s",
        "2-minute-burst-lag-120s",
        "10-minute-burst-lag-120s",
        "3-minute-burst-lag-60s",
    ],
)
def test_a_gpu_cooling_down_after_a_burst_is_not_read_hot(tau: float, minutes: int):
    """Its temperature lagging its power 60-120 s (the detector assumes 20 s), the idle samples after a burst
    above any power it ran at read up to 3.9 (90 s, 3 minutes) for 4 ticks, an alert with 3 pending ticks:
    the line learnt from the burst's lagging climb is too flat to say how warm the burst left it."""
    idle = np.full(len(GPUS), 70.0)
    scores = _idle_then(tau, lambda tick: idle, _burst(minutes))
    assert scores.max() <= 1.0


def test_anomaly_run_raises_no_thermal_alert_for_gpus_cooling_down_after_a_burst():
    """The same through the service: every GPU of the six raised a thermal alert 5 minutes after the burst."""
    rng = np.random.default_rng(11)
    gpus, clock, table = Gpus(tau=90.0, labels=MODEL), FakeClock(), TableCollector()
    service = AnomalyService(AnomalyConfig(detectors=["thermal"]), [CollectorSource([table], clock)], clock)
    raised = []
    for tick in range(300):
        power = np.full(len(GPUS), 690.0 if 240 <= tick < 246 else 70.0)
        view = gpus.step(power, rng)
        table.set(TEMP, list(zip(MODEL, view.latest[TEMP].value.tolist(), strict=True)))
        table.set(POWER, list(zip(MODEL, view.latest[POWER].value.tolist(), strict=True)))
        clock.advance(30.0)
        raised += [a.labels["UUID"] for a in service.infer().raised]
    assert raised == []


@pytest.mark.parametrize("tau", [TAU, 90.0], ids=["lag-as-detector", "temperature-lags-90s"])
def test_a_cooler_failing_as_a_first_job_runs_without_peers_is_flagged_once_its_power_has_settled(tau: float):
    """No peers to vouch for a slope (no model label): the job's heat is a guess until the power has settled
    and the line is within half a band, and the line learnt the climb of a cooler failing (twice worse over
    30 minutes) as it ran: never scored over 1 while the GPU climbed to 108 C (at 90 s: first after 56
    minutes). A healthy GPU's temperature has settled by ``settle_seconds``; this one's climbs on."""
    scores, others = _first_job(lambda tick: min(1.0, tick / 60), tau=tau, ticks=240, labels=GPUS)
    runs = np.diff(np.flatnonzero(np.diff(np.r_[0, np.array(scores) > 1.0, 0])))[::2]
    assert max(scores[:30]) > 1.0  # within 5 minutes of its power settling (10)
    assert runs.size and runs.max() >= 3  # for the 3 pending ticks an alert needs
    assert others <= 1.0


@pytest.mark.parametrize("tau", [TAU, 90.0], ids=["lag-as-detector", "temperature-lags-90s"])
def test_a_gpu_in_a_hotter_rack_position_is_not_flagged_at_its_first_job_beside_cooler_peers(tau: float):
    """Its air 10 C warmer, it runs 10 C hotter than its peers at every power: judged by their slope drawn on
    from its own line (its own idle temperature), not by their temperatures. A chassis that cools worse per
    watt cannot be told from a cooler failed before the job (``test_a_cooler_failed_before_...``)."""
    scores, _ = _first_job(lambda tick: 0.0, tau=tau, room=38.0)
    assert max(scores) <= 1.0


def test_a_cooler_failing_while_its_power_swings_every_minute_stays_flagged_when_its_heat_lags_longer():
    """A GPU that ran 20-minute jobs, then a job whose power swings on and off every minute, its temperature
    lagging it 90 s, its cooler failing (x4 over 5 minutes): each sample after a swing down was let off as
    cooling and taught its line at the band's edge, the line and its error scale grew, and the runaway scored
    over 1 for 19 of 140 ticks (never more than 3 in a row: its alert resolved while the GPU ran at 116 C).
    Let off as cooling, a sample hot against its line teaches it nothing."""
    rng = np.random.default_rng(5)
    gpus, det = Gpus(tau=90.0), ThermalDetector()
    scores = []
    for tick in range(400):
        jobs = 690.0 if (tick // 40) % 2 else 70.0
        power = np.full(len(GPUS), jobs if tick < 200 else (690.0 if ((tick - 200) // 2) % 2 else 70.0))
        gpus.resistance[2] = 0.065 * (1.0 + min(3.0, max(0.0, 0.3 * (tick - 259))))
        scores.append(det.detect(gpus.step(_throttled(power, gpus.temp), rng))[0].score)
    runaway, others = np.array(scores)[270:, 2], np.delete(np.array(scores)[200:], 2, axis=1)
    assert (runaway > 1.0).mean() >= 0.9
    assert others.max() <= 1.0


@pytest.mark.parametrize("start", [50, 55], ids=["10-ticks-before", "5-ticks-before"])
def test_a_job_started_as_the_warm_up_ends_is_not_held_hot_when_its_temperature_lags_longer(start: int):
    """Idle for 25 minutes of the 30-minute warm-up (60 ticks), then a job at 690 W, its temperature lagging
    90 s: the warm-up learnt the job's power as one its line scored at while the temperature still climbed,
    and the settled heat read hot there and was held, every GPU for all 240 ticks after (the 6-hour hold).
    Above any power it learnt at, a warm-up sample is a guess as any other, until the power has settled."""
    rng = np.random.default_rng(5)
    gpus, det = Gpus(tau=90.0), ThermalDetector()
    scores = [
        det.detect(gpus.step(np.full(len(GPUS), 70.0 if tick < start else 690.0), rng))[0].score
        for tick in range(300)
    ]
    assert np.array(scores).max() <= 1.0


def _node_back(runaway: bool, ticks: int = 200) -> tuple[list[float], list[list[Alert]]]:
    """node-01 of a simulated fleet down for 20 minutes (longer than ``forget_after_seconds``: its series
    are forgotten) after an hour up, then back until ``ticks`` (20 minutes by default); its GPU 2's cooler
    failed while it was down when ``runaway``. That GPU's thermal scores after its node is back, and the
    alerts raised at each tick."""
    clock = FakeClock()
    fleet = build_fleet(2, 8, seed=3, clock=clock)
    service = AnomalyService(
        AnomalyConfig(), [CollectorSource(sim_collectors(fleet, clock).collectors, clock)], clock
    )
    scores, raised, down = [], [], ""
    for tick in range(ticks):
        if tick == 120:
            down = fleet.inject(FaultSpec("node_down", "node-01"))
        if tick == 150 and runaway:
            fleet.inject(FaultSpec("thermal_runaway", "node-01", gpu=2))
        if tick == 160:
            fleet.clear_fault(down)
        clock.advance(30.0)
        result = service.infer()
        raised.append(result.raised)
        [found] = [f for f in result.findings if f.detector == "thermal"]
        on = [
            s for lab, s in zip(found.labels, found.score.tolist(), strict=True) if _is(lab, "node-01", "2")
        ]
        scores += on if tick >= 160 else []
    return scores, raised


NodeBack = tuple[list[float], list[list[Alert]]]


@pytest.fixture(scope="module")
def runaway_back() -> NodeBack:
    """``_node_back`` with the runaway, run once to 250 ticks for the tests that read it: its first 200
    ticks are the 200-tick run's (the fleet and the service are seeded; nothing else runs between)."""
    return _node_back(runaway=True, ticks=250)


def _is(labels: Mapping[str, str], node: str, gpu: str) -> bool:
    return labels.get("Hostname") == node and labels.get("gpu") == gpu


def test_a_gpu_back_from_a_long_node_outage_with_its_cooler_failed_is_flagged_within_5_minutes(
    runaway_back: NodeBack,
):
    """Its series forgotten while its node was down (20 minutes, over the 15 it is kept), the GPU warmed
    up anew when back: the runaway (100 C at 620 W) was learnt as its normal and never flagged (a score of
    0.0-0.1 for the 20 minutes). The same GPU takes its own line up again."""
    scores, raised = runaway_back[0][:40], [a for tick in runaway_back[1][:200] for a in tick]
    assert len(scores) == 40
    assert min(scores[1:]) > 1.0  # from its second read back (its first: 67 C, still cool) to the end
    assert [(a.labels["Hostname"], a.labels["gpu"]) for a in _thermal(raised)] == [("node-01", "2")]


def test_a_healthy_node_back_from_a_long_outage_raises_nothing_but_its_outage():
    scores, raised = _node_back(runaway=False)
    assert len(scores) == 40 and max(scores) <= 1.0
    assert [(a.labels["alertname"], a.labels["Hostname"]) for tick in raised for a in tick] == [
        ("NodeDown", "node-01")
    ]


def test_the_ranks_a_gpu_back_with_its_cooler_failed_slows_raise_nothing_of_their_own(
    runaway_back: NodeBack,
):
    """The runaway GPU in HW slowdown (990 MHz) holds back its job's 7 other ranks at every collective:
    node-02's four drop from 625 W and 95 % to 350 W and 47 % two minutes after node-01 is back, a change of
    the whole job, held back as one (node-01's other three, forgotten, learnt anew at the slower pace). Their
    bands widening, two of them fell under a score of 1 half an hour later, all four still half-way out: the
    workload check, run only when 3 were over 1, let GPUs 0-2 alert at 37-39 minutes, on nothing wrong with
    them. The GPU at fault is alerted on its own, the node on its outage."""
    raised = [a for tick in runaway_back[1] for a in tick]
    assert {(a.labels["Hostname"], a.labels.get("gpu", "")) for a in raised} == {
        ("node-01", ""),
        ("node-01", "2"),
    }


def _thermal(alerts: list[Alert]) -> list[Alert]:
    return [a for a in alerts if a.labels.get("model") == "thermal"]


def _most(setting: str) -> float:
    """The largest value the config accepts for ``setting``."""
    return float(next(m.le for m in AnomalyConfig.model_fields[setting].metadata if hasattr(m, "le")))


def _swings(detector: ThermalDetector, tau: float) -> float:
    """The top score of GPUs whose temperature lags ``tau`` seconds, after their first half hour of jobs
    started and stopped every 20 minutes (half of them) and an hourly wave of 150-550 W (the others)."""
    rng = np.random.default_rng(1)
    gpus, worst = Gpus(tau=tau), 0.0
    for tick in range(480):
        job = np.where(np.arange(len(GPUS)) % 2 == 0, 690.0 if (tick // 40) % 2 else 75.0, 0.0)
        wave = 350.0 + 200.0 * math.sin(2 * math.pi * tick * 30 / 3600)
        score = detector.detect(gpus.step(np.where(np.arange(len(GPUS)) % 2 == 1, wave, job), rng))[0].score
        worst = max(worst, float(score.max())) if tick >= 60 else worst
    return worst


def _alerted_after(detector: ThermalDetector, tau: float, jobs: bool) -> tuple[float, float]:
    """Seconds from GPU 2's cooler starting to fail (x4 over 5 minutes) at idle, as its last job ends when
    ``jobs``, to its first score over 1 and to its third in a row (an alert at ``pending_ticks``)."""
    rng = np.random.default_rng(0)
    gpus = Gpus(tau=tau)
    for tick in range(240):
        detector.detect(gpus.step(np.full(len(GPUS), 690.0 if jobs and (tick // 40) % 2 else 70.0), rng))
    hot = []
    for tick in range(20):
        gpus.resistance[2] = 0.065 * (1.0 + min(3.0, 0.3 * (tick + 1)))
        hot.append(bool(detector.detect(gpus.step(np.full(len(GPUS), 70.0), rng))[0].score[2] > 1.0))
    first = hot.index(True) if True in hot else math.inf
    third = next((i for i in range(2, len(hot)) if all(hot[i - 2 : i + 1])), math.inf)
    return 30.0 * (first + 1), 30.0 * (third + 1)


@pytest.mark.parametrize("tau", [TAU, 60.0, 120.0], ids=["lag-20s", "lag-60s", "lag-120s"])
def test_at_the_longest_settle_the_config_allows_a_cooler_failing_as_a_job_ends_is_flagged_in_time(
    tau: float,
):
    """A fifth of ``settle_seconds`` is the longest lag the detector allows a GPU cooling down after its
    power fell: up to 366 days was taken, and at 3,600 s a cooler failing as a job ended was not flagged in
    15 minutes; at 31,622,400 s nothing was let off as cooling and a GPU lagging 120 s read every job's end
    hot (5.9). At 600 it is flagged within the 5-minute soft-fault deadline and alerted one read later at
    worst (the GPU lagging 60-90 s: 330 s), and normal load swings raise nothing."""
    settle = _most("thermal_settle_seconds")
    first, alerted = _alerted_after(ThermalDetector(settle_seconds=settle), tau, jobs=True)
    assert first <= 300.0 and alerted <= 330.0
    assert _swings(ThermalDetector(settle_seconds=settle), tau) <= 1.0


@pytest.mark.parametrize("settle", [0.0, 600.0], ids=["settle-0", "settle-600"])
def test_at_the_longest_lag_the_config_allows_a_gpu_lagging_that_long_is_judged_in_time(settle: float):
    """``lag_seconds`` at its bound on GPUs whose temperature lags that long (3 minutes, "a few minutes"),
    ``settle_seconds`` at either of its bounds: a cooler failing at idle or as a job ends is alerted within
    the 5-minute soft-fault deadline, and normal load swings raise nothing. Longer, the lag hides a cooler
    failing as a job ends (600 s: not flagged in 10 minutes), so the config refuses it."""
    lag = _most("thermal_lag_seconds")
    for jobs in (False, True):
        _, alerted = _alerted_after(ThermalDetector(lag_seconds=lag, settle_seconds=settle), lag, jobs)
        assert alerted <= 300.0, jobs
    assert _swings(ThermalDetector(lag_seconds=lag, settle_seconds=settle), lag) <= 1.0


@pytest.mark.parametrize("tau", [TAU, 120.0], ids=["lag-20s", "lag-120s"])
@pytest.mark.parametrize("setting", ["thermal_alpha", "thermal_ridge_watts"])
def test_at_the_largest_weight_and_ridge_the_config_allows_a_failing_cooler_is_flagged_in_time(
    setting: str, tau: float
):
    """Up to 1 was taken for ``alpha`` (at 0.2 the line followed each sample: load swings scored 13 and a
    cooler failing on an idle GPU was never flagged) and 10,000 W for ``ridge_watts`` (at 100 W a cooler
    failing as a job ended was not flagged in 10 minutes). At their bounds both are alerted within the
    soft-fault deadline (a job's end one read past it at worst), and normal load swings raise nothing."""

    def detector() -> ThermalDetector:
        most = _most(setting)
        return (
            ThermalDetector(alpha=most) if setting == "thermal_alpha" else ThermalDetector(ridge_watts=most)
        )

    assert _alerted_after(detector(), tau, jobs=False)[1] <= 300.0
    assert _alerted_after(detector(), tau, jobs=True)[1] <= 330.0
    assert _swings(detector(), tau) <= 1.0


def _parked_after(gpus: Gpus, det: ThermalDetector, rng: np.random.Generator) -> ThermalDetector:
    """``det`` after it forgot ``gpus``' series (their node down), 90 ticks learnt."""
    for _ in range(90):
        det.detect(gpus.step(np.full(len(GPUS), 300.0), rng))
    det.forget(gpus.index.expire(gpus.t + 10_000, 1.0))
    return det


def test_a_parked_gpus_state_is_dropped_after_a_day_though_no_other_series_is_forgotten():
    """It was dropped only when another series was forgotten: a node retired for good kept its GPUs' state
    for as long as the rest of the fleet stayed up."""
    rng = np.random.default_rng(5)
    det = ThermalDetector()
    _parked_after(Gpus(), det, rng)
    others = Gpus(labels=[{**gpu, "UUID": f"GPU-other-{i}"} for i, gpu in enumerate(GPUS)])
    others.t += 10_000.0
    det.detect(others.step(np.full(len(GPUS), 300.0), rng))
    parked = det.state_bytes()
    others.t += 86_400.0
    det.detect(others.step(np.full(len(GPUS), 300.0), rng))  # a day on, the same series, none forgotten
    assert det.state_bytes() < parked
    assert len(det._parked) == 0


def test_a_gpu_back_after_the_services_clock_was_set_back_a_day_takes_up_its_state():
    """Dropped against the latest time any slot, freed ones included, had read: a series last read while
    the clock was two days ahead held that time once freed, and every GPU parked after the clock was set
    right was dropped as it was parked, so a GPU back from an outage learnt its failed cooler anew."""
    rng = np.random.default_rng(6)
    ahead = Gpus(labels=[{**gpu, "UUID": f"GPU-ahead-{i}"} for i, gpu in enumerate(GPUS)])
    ahead.t += 2 * 86_400.0  # the clock two days ahead
    det = ThermalDetector()
    seen = ahead.step(np.full(len(GPUS), 300.0), rng)
    det.detect(seen)
    gpus = Gpus()  # the clock set right: these GPUs learn, the others' series are forgotten
    gpus.index = ahead.index
    det.detect(gpus.step(np.full(len(GPUS), 300.0), rng))
    det.forget(seen.latest[TEMP].ids)
    _parked_after(gpus, det, rng)  # then their node is down, back 20 minutes later
    gpus.t += 1_200.0
    det.detect(gpus.step(np.full(len(GPUS), 300.0), rng))
    assert sorted(det.n[det.n > 0].tolist()) == [92.0] * len(GPUS)


def test_a_gpu_with_an_empty_uuid_is_not_handed_another_gpus_state():
    """An empty ``key_label`` names no GPU: parked under "", one GPU's line went to the next series of
    another GPU with an empty UUID (another node, another model)."""
    rng = np.random.default_rng(7)
    det = ThermalDetector()
    gpus = Gpus(labels=[{**gpu, "UUID": ""} for gpu in GPUS])
    _parked_after(gpus, det, rng)
    gpus.labels = [{**gpu, "UUID": "", "Hostname": "n2"} for gpu in GPUS]
    det.detect(gpus.step(np.full(len(GPUS), 300.0), rng))
    assert det.n[det.n > 0].tolist() == [1.0] * len(GPUS)


def test_the_gpus_parked_are_at_most_as_many_as_the_slots_it_scores_in():
    """Nodes churning through new GPUs (replaced boards, a fleet rebuilt: 1,200 UUIDs in an hour) parked every
    one for a day, six GPUs' state (a 64-slot detector) holding 1,200 lines; the oldest go first."""
    rng = np.random.default_rng(8)
    det, gpus = ThermalDetector(), Gpus()
    for batch in range(200):
        gpus.labels = [{**gpu, "UUID": f"GPU-{batch}-{i}"} for i, gpu in enumerate(GPUS)]
        det.detect(gpus.step(np.full(len(GPUS), 300.0), rng))
        det.forget(gpus.index.expire(gpus.t + 1.0, 0.5))
    assert det.n.size == 64
    assert len(det._parked) == 64
    gpus.labels = GPUS
    det.detect(gpus.step(np.full(len(GPUS), 300.0), rng))  # long gone: learnt anew
    assert sorted(det.n[det.n > 0].tolist()) == [1.0] * len(GPUS)


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
        power = _throttled(np.full(len(GPUS), 70.0 if busy <= tick < busy + stall else 620.0), gpus.temp)
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
        view = gpus.step(_throttled(np.full(len(GPUS), job), gpus.temp), rng)
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
        det.detect(gpus.step(_throttled(np.full(len(GPUS), 70.0 if tick >= 40 else 620.0), gpus.temp), rng))
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
