from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from anomaly.thermal import ThermalDetector
from tests.anomaly.thermal_gpus import GPUS, Gpus


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
