from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from prometheus_client import CollectorRegistry

from anomaly.adaptive import AdaptiveDetector
from anomaly.changepoint import LevelShiftDetector
from anomaly.detectors import Detector, Findings
from anomaly.fleet import FleetDetector
from anomaly.multivariate import MultivariateDetector
from anomaly.series import CounterRates, SeriesIndex, build_view
from anomaly.service import AnomalyService
from anomaly.sources import CollectorSource, Frame
from anomaly.thermal import ThermalDetector
from gpuwarden.clock import FakeClock
from gpuwarden.config_anomaly import AnomalyConfig, AnomalyQueryConfig
from tests.anomaly.fakes import TableCollector

UTIL = "DCGM_FI_DEV_GPU_UTIL"
STEP = "train_step_time_seconds"
GPUS = [{"gpu": str(i), "UUID": f"GPU-{i}", "Hostname": "n1"} for i in range(4)]


def setup(query: str, data_range: tuple[float, float] | None, **cfg: object):
    clock = FakeClock()
    col = TableCollector()
    queries = [AnomalyQueryConfig(name=query, expr=query, data_range=data_range)]
    service = AnomalyService(
        AnomalyConfig(queries=queries, detectors=["adaptive", "level_shift"], **cfg),
        [CollectorSource([col], clock)],
        clock,
    )
    registry = CollectorRegistry()
    registry.register(service.collector)
    return clock, col, service, registry


def feed_bursty_utilisation(clock, col, service, ticks: int = 80) -> None:
    """Utilisation that jumps between idle and busy: a wide band, whose lower edge is far below 0."""
    rng = np.random.default_rng(3)
    for _ in range(ticks):
        col.set(UTIL, [(g, float(rng.choice([0.0, 40.0, 90.0]))) for g in GPUS])
        clock.advance(30)
        service.infer()


def band(registry, query: str, model: str, gpu: int = 0) -> tuple[float | None, ...]:
    labels = {**GPUS[gpu], "for": query, "model": model}
    return tuple(
        registry.get_sample_value(f"gpuwarden_anomaly_{name}", labels)
        for name in ("yhat_lower", "yhat", "yhat_upper", "score")
    )


def test_without_a_data_range_the_band_is_unbounded_as_in_vmanomaly() -> None:
    clock, col, service, registry = setup(UTIL, None)
    feed_bursty_utilisation(clock, col, service)
    lower, _, upper, _ = band(registry, UTIL, "adaptive")
    assert lower is not None and lower < 0  # what the operator saw: yhat_lower at -88
    assert upper is not None and upper > 100


def test_a_data_range_clips_the_written_back_yhat_and_band_to_it() -> None:
    clock, col, service, registry = setup(UTIL, (0.0, 100.0))
    feed_bursty_utilisation(clock, col, service)
    lower, yhat, upper, score = band(registry, UTIL, "adaptive")
    assert lower == 0.0
    assert upper == 100.0
    assert yhat is not None and 0.0 <= yhat <= 100.0
    assert score is not None and score <= 1.0  # an in-range value is scored by the model as before


def test_a_value_outside_the_data_range_scores_above_one_and_alerts_after_pending_ticks() -> None:
    clock, col, service, registry = setup(UTIL, (0.0, 100.0), score_outside_data_range=5.0)
    feed_bursty_utilisation(clock, col, service)
    raised = []
    for _ in range(service.cfg.pending_ticks):
        col.set(UTIL, [(g, 250.0 if g["gpu"] == "1" else 40.0) for g in GPUS])
        clock.advance(30)
        raised += service.infer().raised
    assert band(registry, UTIL, "adaptive", gpu=1)[3] == 5.0
    (alert,) = [a for a in raised if a.labels["model"] == "adaptive"]
    assert alert.labels["UUID"] == "GPU-1"
    assert "outside its data_range [0, 100]" in alert.annotations["summary"]
    assert float(alert.annotations["yhat_upper"]) <= 100.0


def test_a_negative_value_of_a_non_negative_query_is_anomalous_though_the_band_reached_below_it() -> None:
    clock, col, service, registry = setup(UTIL, (0.0, float("inf")))
    feed_bursty_utilisation(clock, col, service)
    col.set(UTIL, [(g, -1.0) for g in GPUS])  # a broken recording rule, an exporter overflow
    clock.advance(30)
    service.infer()
    lower, _, upper, score = band(registry, UTIL, "adaptive")
    assert lower == 0.0 and upper is not None and upper > 100
    assert score == service.cfg.score_outside_data_range


def test_the_level_shift_band_of_a_step_time_query_is_written_back_and_clipped_too() -> None:
    clock, col, service, registry = setup(STEP, (0.0, float("inf")))
    rng = np.random.default_rng(4)
    for _ in range(60):
        col.set(STEP, [(g, float(0.2 + rng.normal(0, 0.05))) for g in GPUS])
        clock.advance(30)
        service.infer()
    lower, yhat, upper, score = band(registry, STEP, "level_shift")
    assert lower == 0.0  # the CUSUM band reaches 13 noise widths below 0.2 s: clipped
    assert yhat is not None and upper is not None and 0.0 < yhat < upper
    assert score is not None and score <= 1.0


# A value outside its query's data range is scored but teaches no detector anything: each learned state is as
# if the sample had been a gap (issue 4: 808,334,905 for a utilisation kept an alert open ~1.5 h).
WILD = 808334905.0
POWER = "DCGM_FI_DEV_POWER_USAGE"
TEMP = "DCGM_FI_DEV_GPU_TEMP"
JOB = [{"gpu": str(i), "UUID": f"GPU-{i}", "Hostname": "n1", "slurm_job": "7"} for i in range(8)]
BOUNDED = {UTIL: (0.0, 100.0), STEP: (0.0, 3600.0), TEMP: (0.0, 150.0), POWER: (0.0, 5000.0)}


def detectors() -> dict[str, tuple[Callable[[], Detector], tuple[str, ...]]]:
    """Each learned detector, made fresh, and the queries it reads (the out-of-range value is the last's)."""
    return {
        "adaptive": (lambda: AdaptiveDetector(AnomalyConfig(adaptive_metrics=[UTIL])), (UTIL,)),
        "level_shift": (lambda: LevelShiftDetector([STEP]), (STEP,)),
        "thermal temperature": (ThermalDetector, (POWER, TEMP)),
        "thermal power": (ThermalDetector, (TEMP, POWER)),
        "multivariate": (lambda: MultivariateDetector([TEMP, UTIL]), (TEMP, UTIL)),
        "fleet load": (
            lambda: FleetDetector([POWER], peer_labels=(), load_query=UTIL, load_adjusted=[POWER]),
            (POWER, UTIL),
        ),
    }


def feed(detector: Detector, queries: tuple[str, ...], wild: float, ticks: int = 100) -> list[Findings]:
    """``ticks`` ticks of eight GPUs' values; at tick 70 GPU 3's last query reads ``wild``. Fitted at tick 80;
    the findings of the ticks from 70 on."""
    rng = np.random.default_rng(6)
    index, counters = SeriesIndex(), CounterRates()
    out: list[Findings] = []
    for t in range(ticks):
        frames = []
        for k, query in enumerate(queries):
            values = 40.0 + 10 * k + rng.normal(0, 2, len(JOB))
            if t == 70 and k == len(queries) - 1:
                values[3] = wild
            frames.append(Frame(query, JOB, np.array([30.0 * t]), values[:, None]))
        view = build_view(frames, index, counters, 30.0 * t, BOUNDED)
        found = detector.detect(view)
        if t == 80:
            detector.fit(view)
        if t >= 70:
            out += found
    return out


@pytest.mark.parametrize("name", list(detectors()))
def test_an_out_of_range_value_teaches_a_learned_detector_what_a_gap_teaches(name: str) -> None:
    make, queries = detectors()[name]
    wild, gap = feed(make(), queries, WILD), feed(make(), queries, np.nan)
    assert len(wild) == len(gap) > 0
    for after_wild, after_gap in list(zip(wild, gap, strict=True))[len(wild) // 30 :]:  # from tick 71 on
        np.testing.assert_array_equal(after_wild.score, after_gap.score)


def test_an_out_of_range_value_is_scored_against_its_peers_but_leaves_its_smoothed_peer_score_as_it_was() -> (
    None
):
    fleet, twin = FleetDetector([UTIL], peer_labels=()), FleetDetector([UTIL], peer_labels=())
    (found,) = feed(fleet, (UTIL,), WILD, ticks=71)  # tick 70, the out-of-range one
    assert feed(twin, (UTIL,), WILD, ticks=70) == []  # the same ticks but that one
    assert found.score[3] > 1 and found.score[np.arange(8) != 3].max() <= 1
    for state in ("smooth", "fresh", "latched", "above"):
        assert getattr(fleet, state)[3] == getattr(twin, state)[3], state


@pytest.mark.parametrize("gpus", [8, 4], ids=["eight-peers", "min-peers"])
def test_an_out_of_range_value_is_left_out_of_its_peers_statistics_and_moves_no_other_gpus_score(
    gpus: int,
) -> None:
    # One GPU's 808334905 was in the peers' median and spread: up or down, it moved every other GPU's score.
    def others(wild: float) -> np.ndarray:
        fleet, index, counters = FleetDetector([UTIL], peer_labels=()), SeriesIndex(), CounterRates()
        rng = np.random.default_rng(6)
        for t in range(3):
            values = 40.0 + rng.normal(0, 2, gpus)
            values[3] = wild if t == 2 else values[3]
            frames = [Frame(UTIL, JOB[:gpus], np.array([30.0 * t]), values[:, None])]
            (found,) = fleet.detect(build_view(frames, index, counters, 30.0 * t, BOUNDED))
        return np.delete(found.score, 3)

    above = others(WILD)
    assert np.isfinite(above).all() and above.max() > 0  # still compared: the GPU counts toward min_peers
    np.testing.assert_array_equal(above, others(-WILD))
    if gpus > 4:  # enough peers without it: what a gap in its place leaves
        np.testing.assert_array_equal(above, others(np.nan))
