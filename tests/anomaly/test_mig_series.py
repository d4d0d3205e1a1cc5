"""A MIG GPU's device-level values, repeated on each MIG instance's series (dcgm-exporter's shape), must
count once per GPU in the anomaly service: one alert, one fleet peer, one multivariate row."""

from __future__ import annotations

import numpy as np
import pytest

from anomaly.multivariate import MultivariateDetector
from anomaly.series import CounterRates, SeriesIndex, build_view
from anomaly.service import AnomalyService
from anomaly.sources import CollectorSource, Frame
from gpuwarden.clock import FakeClock
from gpuwarden.config_anomaly import AnomalyConfig
from tests.anomaly.fakes import TableCollector

TEMP = "DCGM_FI_DEV_GPU_TEMP"
POWER = "DCGM_FI_DEV_POWER_USAGE"
FB_USED = "DCGM_FI_DEV_FB_USED"
GPUS = [{"gpu": str(i), "UUID": f"GPU-{i}", "Hostname": "n1", "modelName": "A100"} for i in range(8)]
MIG = 3  # GPU 3 is in MIG mode: three instances, each held by a replica of the service
INSTANCES = [
    {
        **GPUS[MIG],
        "GPU_I_PROFILE": "2g.20gb",
        "GPU_I_ID": str(i),
        "namespace": "ml",
        "pod": f"llm-7d9f8c6b5-x{i}",
    }
    for i in (1, 5, 6)
]
SHAPES = {"g+i": True, "instances only": False}  # dcgm-exporter --devices g+i, and its default


def rows(
    values: np.ndarray, whole: bool, gpus: list[dict[str, str]] = GPUS
) -> list[tuple[dict[str, str], float]]:
    """One row per GPU; GPU ``MIG``'s value again under each instance (its whole-GPU row if ``whole``)."""
    out = [(g, float(v)) for g, v in zip(gpus, values.tolist(), strict=True) if whole or g["gpu"] != str(MIG)]
    return out + [(lab, float(values[MIG])) for lab in INSTANCES]


def run(cfg: AnomalyConfig, feed, ticks: int) -> list:
    clock = FakeClock()
    col = TableCollector()
    service = AnomalyService(cfg, [CollectorSource([col], clock)], clock)
    raised = []
    for t in range(ticks):
        feed(col, t)
        clock.advance(30)
        raised += service.infer().raised
    return raised


@pytest.mark.parametrize("whole", SHAPES.values(), ids=SHAPES.keys())
def test_a_hot_mig_gpu_raises_one_alert_not_one_per_instance(whole: bool) -> None:
    rng = np.random.default_rng(1)

    def feed(col: TableCollector, t: int) -> None:
        vals = 60 + rng.normal(0, 0.5, len(GPUS))
        if t >= 60:
            vals[MIG] = 95
        col.set(TEMP, rows(vals, whole))

    raised = run(AnomalyConfig(detectors=["adaptive"], adaptive_metrics=[TEMP]), feed, 64)
    assert [a.labels["gpu"] for a in raised] == [str(MIG)]
    assert "GPU_I_ID" not in raised[0].labels and "pod" not in raised[0].labels


@pytest.mark.parametrize("whole", SHAPES.values(), ids=SHAPES.keys())
def test_a_mig_gpus_seven_instances_do_not_outvote_the_whole_gpus_of_their_service(whole: bool) -> None:
    # Four replicas on whole GPUs, seven on the slices of one MIG GPU that draws more: as seven peers the
    # MIG GPU was the median, and the four healthy whole GPUs "differed from their peers".
    gpus = [{**g, "namespace": "ml", "pod": f"llm-7d9f8c6b5-w{g['gpu']}abc"} for g in GPUS[:4]]
    mig = {**GPUS[4]}
    slices = [
        {
            **mig,
            "GPU_I_PROFILE": "1g.10gb",
            "GPU_I_ID": str(7 + i),
            "namespace": "ml",
            "pod": f"llm-7d9f8c6b5-m{i}abc",
        }
        for i in range(7)
    ]
    rng = np.random.default_rng(2)

    def feed(col: TableCollector, t: int) -> None:
        vals = 500 + rng.normal(0, 3, len(gpus))
        col.set(
            POWER,
            [
                *zip(gpus, vals.tolist(), strict=True),
                *([(mig, 600.0)] if whole else []),
                *((s, 600.0) for s in slices),
            ],
        )

    cfg = AnomalyConfig(
        detectors=["fleet"], fleet_queries=[POWER], adaptive_metrics=[], fleet_load_query=None
    )
    assert run(cfg, feed, 20) == []


def test_the_multivariate_vector_of_a_mig_gpu_is_its_whole_gpu_row() -> None:
    gpus = GPUS[:4]
    ts = np.array([30.0])
    temp = Frame(TEMP, [*gpus], ts, np.array([[60.0], [61.0], [62.0], [63.0]]))
    # FB_USED is each instance's own: the GPU's row says 40000 MiB, its instances 1000, 2000, 3000.
    fb_labels = [*gpus, *({**gpus[MIG], "GPU_I_ID": str(i), "GPU_I_PROFILE": "2g.20gb"} for i in (1, 5, 6))]
    fb = Frame(
        FB_USED, fb_labels, ts, np.array([[10.0], [20.0], [30.0], [40000.0], [1000.0], [2000.0], [3000.0]])
    )
    view = build_view([temp, fb], SeriesIndex(), CounterRates(), 30.0)
    labels, x = MultivariateDetector([TEMP, FB_USED]).matrix(view)
    assert [lab["gpu"] for lab in labels] == ["0", "1", "2", "3"]
    assert x[3].tolist() == [63.0, 40000.0]
    assert "GPU_I_ID" not in labels[3]
