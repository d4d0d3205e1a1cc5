"""The thermal detector across a node's outage, at the longest settings the config allows, and its parked
GPUs' state."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pytest

from anomaly.needs import TEMP
from anomaly.service import AnomalyService
from anomaly.sources import CollectorSource
from anomaly.thermal import ThermalDetector
from exporters.simulated import sim_collectors
from gpuwarden.clock import FakeClock
from gpuwarden.config import AnomalyConfig
from gpuwarden.model import Alert
from gpuwarden.sim import FaultSpec, build_fleet
from tests.anomaly.thermal_gpus import GPUS, TAU, Gpus


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
