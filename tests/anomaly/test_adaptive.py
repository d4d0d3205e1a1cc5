from __future__ import annotations

import numpy as np
import pytest

from anomaly.adaptive import AdaptiveDetector
from anomaly.series import CounterRates, SeriesIndex, Step, View, build_view
from anomaly.service import AnomalyService
from anomaly.sources import CollectorSource, Frame
from gpuwarden.clock import FakeClock
from gpuwarden.config_anomaly import AnomalyConfig, AnomalyQueryConfig
from tests.anomaly.fakes import TableCollector

TEMP = "DCGM_FI_DEV_GPU_TEMP"
POWER = "DCGM_FI_DEV_POWER_USAGE"
# What deploy/gpuwarden.example.yaml reads besides the adaptive set: for thermal, fleet and the signatures.
NOT_ADAPTIVE = (
    TEMP,
    "gpuwarden_gpu_up",
    "DCGM_FI_DEV_XID_ERRORS",
    "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
    "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS",
)


def queries(*names: str, adaptive: bool | None = None) -> list[AnomalyQueryConfig]:
    return [AnomalyQueryConfig(name=n, expr=n, adaptive=adaptive) for n in names]


def test_configured_queries_are_scored_only_when_adaptive_metrics_names_them():
    detector = AdaptiveDetector(AnomalyConfig(queries=queries(POWER, *NOT_ADAPTIVE)))
    assert detector.scores(POWER)
    assert [n for n in NOT_ADAPTIVE if detector.scores(n)] == []


@pytest.mark.parametrize(
    ("name", "adaptive", "scored"),
    [
        (TEMP, True, True),
        (POWER, False, False),
        ("job_throughput", True, True),
        ("job_throughput", None, False),
    ],
    ids=["opt-in", "opt-out", "custom-opt-in", "custom-unset"],
)
def test_a_querys_own_adaptive_setting_overrides_adaptive_metrics(name, adaptive, scored):
    detector = AdaptiveDetector(AnomalyConfig(queries=queries(name, adaptive=adaptive)))
    assert detector.scores(name) is scored


def test_a_gpu_cooling_after_its_reset_raises_no_adaptive_alert_with_the_examples_queries():
    """The soak: each GPU reset opened a P3 "thermal" incident, a temperature that fell to 60 C as the GPU
    came back idle, because the adaptive detector scored every configured query."""
    clock = FakeClock()
    col = TableCollector()
    cfg = AnomalyConfig(queries=queries(TEMP, POWER), detectors=["adaptive"])
    service = AnomalyService(cfg, [CollectorSource([col], clock)], clock)
    gpus = [{"gpu": str(i), "UUID": f"GPU-{i}", "Hostname": "n1"} for i in range(4)]
    rng = np.random.default_rng(1)
    raised = []
    for t in range(70):
        temps = 78 + rng.normal(0, 0.5, len(gpus))
        if t >= 60:
            temps[2] = 60.0  # reset: idle and cooling
        col.set(TEMP, list(zip(gpus, temps.tolist(), strict=True)))
        col.set(POWER, [(g, 500.0 + rng.normal(0, 5)) for g in gpus])
        clock.advance(30)
        raised += service.infer().raised
    assert [a.labels["for"] for a in raised] == []


def test_its_judged_rows_are_those_it_reports_past_their_warm_up_whatever_rows_read_no_value():
    """``Findings.judged`` is aligned with the rows it reports (their ids), not with the step's: a series
    with no value this tick is left out of both, and one still warming up is reported unjudged (scored 0 as
    no evidence, no quiet read of a firing alert's series)."""
    detector = AdaptiveDetector(AnomalyConfig(adaptive_metrics=[POWER], thresholds={"warmup": 3}))
    labels = [{"gpu": str(i)} for i in range(3)]
    ids = np.arange(3, dtype=np.int64)
    for t in range(5):
        # GPU 1 unread at the last tick; GPU 2 read from tick 3 only (warming up at the last).
        value = np.array([300.0 + t, np.nan if t == 4 else 300.0, 300.0 if t >= 3 else np.nan])
        step = Step(POWER, 30.0 * t, ids, labels, value, value, np.full(3, np.nan), "gauge")
        (found,) = detector.detect(View(30.0 * t, [step], {POWER: step}))
    assert dict(zip(found.ids.tolist(), found.judged_rows().tolist(), strict=True)) == {0: True, 2: False}


class PowerReads:
    """Power of ``gpus`` GPUs read every 30 s into views as the service builds them, for a detector."""

    def __init__(self, gpus: int = 4) -> None:
        self.labels = [{"gpu": str(i), "UUID": f"GPU-{i}", "Hostname": "n1"} for i in range(gpus)]
        self.index, self.rates = SeriesIndex(), CounterRates()
        self.t = 1_767_225_600.0

    def read(self, det: AdaptiveDetector, value: float = 300.0) -> View:
        """One read at ``value`` W for every GPU, scored by ``det``."""
        self.t += 30.0
        ripple = value + (self.t // 30.0 % 3) * 2.0 + 0.5 * np.arange(len(self.labels))
        frame = Frame(POWER, self.labels, np.array([self.t]), ripple[:, None])
        view = build_view([frame], self.index, self.rates, self.t)
        det.detect(view)
        return view

    def away(self, det: AdaptiveDetector, seconds: float = 1_200.0) -> None:
        """Their node down ``seconds``: ``det`` forgets their series."""
        self.t += seconds
        det.forget(self.index.expire(self.t, 900.0))


def _learnt(det: AdaptiveDetector, reads: PowerReads, count: int = 40) -> AdaptiveDetector:
    for _ in range(count):
        reads.read(det)
    return det


def test_a_forgotten_series_state_is_parked_counted_and_dropped_after_a_day():
    """Parked, a series' state is counted in the detector's bytes (about a series' arrays each); a day on
    it is dropped though nothing else is forgotten, and the GPU back is learnt anew."""
    cfg = AnomalyConfig(adaptive_metrics=[POWER])
    det, reads = AdaptiveDetector(cfg), PowerReads()
    _learnt(det, reads)
    held = det.state_bytes()
    reads.away(det)
    model = det.model_for(POWER)
    parked = det.state_bytes()
    assert parked - held >= 4 * model.state_bytes_per_series()
    reads.away(det, 86_400.0)
    reads.read(det)
    assert parked - det.state_bytes() >= 4 * model.state_bytes_per_series()
    assert len(det._parked) == 0
    assert model.count[model.count > 0].tolist() == [1] * 4


@pytest.mark.parametrize(
    "cfg",
    [
        AnomalyConfig(adaptive_metrics=[POWER]),
        AnomalyConfig(adaptive_metrics=[POWER], adaptive_seasonality=True),
    ],
    ids=["default", "seasonal"],
)
def test_a_gpu_back_within_a_day_scores_and_learns_as_if_its_series_had_never_been_forgotten(cfg):
    """Every per-series array comes back (the seasonal profile included): the GPU's
    state after its first read back is, byte for byte, that of a twin whose series was never forgotten."""
    det, reads = AdaptiveDetector(cfg), PowerReads()
    twin, twin_reads = AdaptiveDetector(cfg), PowerReads()
    _learnt(det, reads)
    _learnt(twin, twin_reads)
    reads.away(det)
    twin_reads.t = reads.t
    back, kept = reads.read(det).latest[POWER], twin_reads.read(twin).latest[POWER]
    assert back.ids.tolist() != kept.ids.tolist()  # new series
    for sid, twin_sid in zip(back.ids.tolist(), kept.ids.tolist(), strict=True):
        assert _row(det, sid) == _row(twin, twin_sid)


@pytest.mark.parametrize("saved", ["before_the_outage", "while_parked"])
def test_a_detector_restored_from_its_snapshot_still_hands_a_gpu_back_its_parked_state(saved):
    """The snapshot (``state()``/``restore()``) carries each series id's query and GPU, so a series forgotten
    after the restart is parked, and the rows parked before it, so a GPU back after the restart takes its
    band up: either way, byte for byte that of a twin never forgotten nor restarted."""
    cfg = AnomalyConfig(adaptive_metrics=[POWER], adaptive_seasonality=True)
    det, reads = AdaptiveDetector(cfg), PowerReads()
    twin, twin_reads = AdaptiveDetector(cfg), PowerReads()
    _learnt(det, reads)
    _learnt(twin, twin_reads)
    if saved == "while_parked":
        reads.away(det)
    restored = AdaptiveDetector(cfg)
    restored.restore(det.state())
    if saved == "before_the_outage":
        reads.away(restored)
    twin_reads.t = reads.t
    back, kept = reads.read(restored).latest[POWER], twin_reads.read(twin).latest[POWER]
    for sid, twin_sid in zip(back.ids.tolist(), kept.ids.tolist(), strict=True):
        assert _row(restored, sid) == _row(twin, twin_sid)


def _row(det: AdaptiveDetector, sid: int) -> bytes:
    """Series ``sid``'s state in ``det`` (its row of its model: ``anomaly.modelrows``)."""
    row = det.row(sid)
    assert row is not None
    return row.tobytes()


def test_the_series_parked_are_at_most_as_many_as_the_ids_it_holds():
    """Nodes churning through new GPUs (replaced boards) parked every series a day; the oldest go first."""
    cfg = AnomalyConfig(adaptive_metrics=[POWER])
    det, reads = AdaptiveDetector(cfg), PowerReads(gpus=16)
    for batch in range(80):  # 1,280 GPUs within a day
        reads.labels = [{**lab, "UUID": f"GPU-{batch}-{i}"} for i, lab in enumerate(reads.labels)]
        reads.read(det)
        reads.away(det, 930.0)
    model = det.model_for(POWER)
    assert len(det._parked) == model.capacity == 1024
    reads.labels = [{**lab, "UUID": f"GPU-0-{i}"} for i, lab in enumerate(reads.labels)]
    reads.read(det)  # the first batch: long dropped, learnt anew
    assert model.count[model.count > 0].tolist() == [1] * 16
