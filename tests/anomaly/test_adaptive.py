from __future__ import annotations

import numpy as np
import pytest

from anomaly.adaptive import AdaptiveDetector
from anomaly.series import Step, View
from anomaly.service import AnomalyService
from anomaly.sources import CollectorSource
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
