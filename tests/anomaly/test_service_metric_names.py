"""An alert of a query over several metrics keeps the metric's name (``metric``): without it two series of one
GPU, its temperature and its power, were one alert that could not be told apart."""

from __future__ import annotations

import numpy as np

from anomaly.detectors import Findings
from anomaly.service import AnomalyService
from anomaly.sources import CollectorSource
from gpuwarden.clock import FakeClock
from gpuwarden.config_anomaly import AnomalyConfig
from tests.anomaly.fakes import TableCollector
from tests.anomaly.service_ticks import TEMP, temps, tick

GPU = {"Hostname": "node-01", "gpu": "0", "UUID": "GPU-0"}


class _Fixed:
    """A detector finding every row of ``rows`` anomalous (score 5) at every tick, as query ``query``."""

    name = "fixed"

    def __init__(self, query: str, rows: list[dict[str, str]]) -> None:
        self.query, self.rows = query, rows

    def fit(self, view: object) -> None:
        pass

    def forget(self, ids: object) -> None:
        pass

    def detect(self, view: object) -> list[Findings]:
        n = len(self.rows)
        return [Findings("fixed", self.query, self.rows, np.full(n, 5.0), np.arange(n, dtype=float))]


def _raised(query: str, rows: list[dict[str, str]]) -> list[dict[str, str]]:
    clock, col = FakeClock(), TableCollector()
    detector = _Fixed(query, rows)
    service = AnomalyService(AnomalyConfig(), [CollectorSource([col], clock)], clock, detectors=[detector])
    rng = np.random.default_rng(0)
    raised = []
    for _ in range(service.cfg.pending_ticks + 1):
        col.set(TEMP, temps(rng))
        raised += tick(clock, service).raised
    return [{**a.labels, "summary": a.annotations["summary"]} for a in raised]


def test_alerts_of_a_query_over_several_metrics_are_told_apart_by_the_metric_name() -> None:
    # {__name__=~"DCGM_FI_DEV_GPU_TEMP|DCGM_FI_DEV_POWER_USAGE"}: one GPU's two series differ only by name.
    rows = [{"__name__": "DCGM_FI_DEV_GPU_TEMP", **GPU}, {"__name__": "DCGM_FI_DEV_POWER_USAGE", **GPU}]
    raised = _raised("gpu_heat", rows)
    assert sorted(a.get("metric", "") for a in raised) == ["DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_POWER_USAGE"]
    assert all("__name__" not in a and a["for"] == "gpu_heat" for a in raised)
    assert all(a["summary"].endswith(f"({a['metric']})") for a in raised)  # the summary says it too


def test_alerts_of_a_query_over_one_metric_keep_their_labels() -> None:
    # A query named otherwise than its metric (``temp: DCGM_FI_DEV_GPU_TEMP``): its alerts' labels, and so
    # their identity across an upgrade, are as before.
    raised = _raised(
        "temp",
        [
            {"__name__": "DCGM_FI_DEV_GPU_TEMP", **GPU},
            {"__name__": "DCGM_FI_DEV_GPU_TEMP", **GPU, "gpu": "1"},
        ],
    )
    assert len(raised) == 2 and not [a for a in raised if "metric" in a]
