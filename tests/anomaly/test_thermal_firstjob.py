"""The thermal detector at a GPU's first jobs: beside peers of its model or alone, lagging its power longer,
after bursts, and the thermal settings that reach it from the config."""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from anomaly.needs import POWER, TEMP
from anomaly.service import AnomalyService, builtin_registry
from anomaly.sources import CollectorSource
from anomaly.thermal import ThermalDetector
from gpuwarden.clock import FakeClock
from gpuwarden.config import AnomalyConfig, load_config
from tests.anomaly.fakes import TableCollector
from tests.anomaly.thermal_gpus import GPUS, MODEL, TAU, Gpus, throttled

_PREFIXES: dict[tuple[object, ...], tuple[Gpus, ThermalDetector, np.random.Generator]] = {}


def _idle_beside_jobs(
    tau: float, labels: list[dict[str, str]], hold_seconds: float, room: float
) -> tuple[Gpus, ThermalDetector, np.random.Generator]:
    """``_first_job``'s two hours before the job (GPU 2 idle, its peers running 20-minute jobs), which its
    ``heat`` does not change: run once per lag, labels (by identity), hold and intake; a caller takes a copy,
    so no run sees another's state."""
    key = ("first-job", tau, id(labels), hold_seconds, room)
    if key not in _PREFIXES:
        rng = np.random.default_rng(5)
        gpus, det = Gpus(tau=tau, labels=labels), ThermalDetector(hold_seconds=hold_seconds)
        gpus.room[2] = room
        peers = np.arange(len(GPUS)) != 2
        for tick in range(240):
            det.detect(gpus.step(np.where(peers, 690.0 if (tick // 40) % 2 else 75.0, 70.0), rng))
        _PREFIXES[key] = gpus, det, rng
    return _PREFIXES[key]


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
    gpus, det, rng = copy.deepcopy(_idle_beside_jobs(tau, labels, hold_seconds, room))
    peers = np.arange(len(GPUS)) != 2
    scores, top = [], 0.0
    for tick in range(240, 240 + ticks):
        gpus.resistance[2] = 0.065 * (1.0 + heat(tick - 240))
        power = throttled(np.where(peers, 690.0 if (tick // 40) % 2 else 75.0, 690.0), gpus.temp)
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
    powers = np.array([before(tick) for tick in range(240)])
    key = ("idle-then", tau, powers.tobytes())  # the powers themselves: many ``before`` are alike
    if key not in _PREFIXES:
        rng = np.random.default_rng(11)
        gpus, det = Gpus(tau=tau, labels=MODEL), ThermalDetector()
        for power in powers:
            det.detect(gpus.step(power, rng))
        _PREFIXES[key] = gpus, det, rng
    gpus, det, rng = copy.deepcopy(_PREFIXES[key])  # the two hours before: run once per lag and powers
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
        scores.append(det.detect(gpus.step(throttled(power, gpus.temp), rng))[0].score)
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
