"""The anomaly service ticked by hand: eight GPUs of one node, a table collector read through it (``setup``,
``tick``, their temperatures), and a source holding history as Prometheus does (``HistorySource``)."""

from __future__ import annotations

import math

import numpy as np

from anomaly.service import AnomalyService
from anomaly.sources import CollectorSource, Frame, SourceHealth
from gpuwarden.clock import FakeClock
from gpuwarden.config_anomaly import AnomalyConfig
from tests.anomaly.fakes import TableCollector

GPUS = [{"gpu": str(i), "UUID": f"GPU-{i}", "Hostname": "n1", "modelName": "H100"} for i in range(8)]


TEMP = "DCGM_FI_DEV_GPU_TEMP"


def setup(**cfg):
    cfg.setdefault("adaptive_metrics", [TEMP])  # the default set leaves temperatures to the fleet detector
    clock = FakeClock()
    col = TableCollector()
    service = AnomalyService(AnomalyConfig(**cfg), [CollectorSource([col], clock)], clock)
    return clock, col, service


def warmed(rng, ticks):
    """``setup()``, then ``ticks`` ticks of normal temperatures, none of which raised anything."""
    clock, col, service = setup()
    for _ in range(ticks):
        col.set(TEMP, temps(rng))
        assert tick(clock, service).raised == []
    return clock, col, service


def tick(clock, service, seconds=30.0):
    clock.advance(seconds)
    return service.infer()


def temps(rng, spike=None):
    vals = 60 + rng.normal(0, 0.5, len(GPUS))
    if spike is not None:
        vals[spike] = 95
    return list(zip(GPUS, vals.tolist(), strict=True))


class HistorySource:
    """A source holding history, as Prometheus does: ``values(t)`` per query, on a 30 s grid."""

    name = "history"

    def __init__(self, values, labels=GPUS):
        self.values = values
        self.labels = labels
        self.reads: list[tuple[float, float]] = []
        self._health = SourceHealth(self.name)

    def read(self, start, end):
        self.reads.append((start, end))
        ts = np.arange(math.floor(start / 30) * 30 + 30, end + 1, 30.0)
        ts = ts[ts <= end]
        ts = ts[ts > start]
        if ts.size == 0:
            return []
        frames = []
        for query, fn in self.values.items():
            cols = np.column_stack([np.asarray(fn(t), dtype=float) for t in ts.tolist()])
            frames.append(Frame(query, self.labels, ts, cols))
        self._health.succeeded(end, len(GPUS))
        return frames

    def health(self):
        return self._health
