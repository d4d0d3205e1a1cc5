"""Anomaly detection speed: one JSON line.

* ``samples_per_second_per_core``: adaptive-threshold updates (score + learn) over 250,000 series per tick,
  one process, numpy single-threaded.
* ``state_bytes_per_series``: the adaptive thresholds' array state divided by series and the adaptive
  detector's bookkeeping to park a forgotten series' state (each series id's query and GPU) divided by the
  service's series (nothing is parked in its ticks; a series parked costs about its arrays), plus the
  thermal detector's (its per-GPU regression, power range and hold, in arrays of a slot per temperature
  series, and its map of ids to slots) divided by the service's series; each part is given beside
  (``adaptive_state_bytes_per_series``, ``thermal_state_bytes_per_series``), and
  ``thermal_state_bytes_per_series_worst`` is the thermal part per slot: what it would be were every series
  a temperature series (before fix/anom6 the arrays were indexed by series id, and this was the thermal
  part if the temperature series had the highest ids).
* ``detector_tick_seconds``: one adaptive-threshold tick for 10,000 GPUs x 25 series (250,000 series).
* ``service_tick_seconds``: one full ``AnomalyService.infer`` for the same fleet through the in-process source
  (collecting the families, mapping label sets to ids, every built-in detector on every series, alerts,
  write-back cache); ``service_tick_without_source_read_seconds`` leaves out the read;
  ``of_which_exporter_collect_seconds`` is the part of the tick spent inside the stand-in exporter's
  ``collect`` (building 250,000 prometheus_client samples), which an out-of-process exporter would not cost.
"""

from __future__ import annotations

import argparse
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import json  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterable  # noqa: E402

import numpy as np  # noqa: E402
from prometheus_client.metrics_core import Metric  # noqa: E402

from anomaly.adaptive import AdaptiveDetector  # noqa: E402
from anomaly.onsets import OnsetTracker  # noqa: E402
from anomaly.service import AnomalyService  # noqa: E402
from anomaly.sources import CollectorSource, Frame  # noqa: E402
from anomaly.thermal import ThermalDetector  # noqa: E402
from anomaly.thresholds import AdaptiveThresholds  # noqa: E402
from gpuwarden.clock import FakeClock  # noqa: E402
from gpuwarden.config_anomaly import AnomalyConfig  # noqa: E402

GPUS = 10_000
PER_GPU = 25
SERIES = GPUS * PER_GPU


class FleetCollector:
    """25 gauge families over 10,000 GPUs with fresh random values each collect."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        self.labels = [
            {"gpu": str(i % 8), "UUID": f"GPU-{i:05d}", "Hostname": f"node{i // 8:04d}", "modelName": "H100"}
            for i in range(GPUS)
        ]
        self.names = [
            "DCGM_FI_DEV_GPU_TEMP",
            "DCGM_FI_DEV_POWER_USAGE",
            "DCGM_FI_DEV_SM_CLOCK",
            "DCGM_FI_DEV_GPU_UTIL",
            "DCGM_FI_DEV_FB_USED",
        ] + [f"bench_metric_{j}" for j in range(PER_GPU - 5)]

    last_collect = 0.0

    def collect(self) -> Iterable[Metric]:
        t0 = time.perf_counter()
        try:
            return self._collect()
        finally:
            self.last_collect = time.perf_counter() - t0

    def _collect(self) -> list[Metric]:
        out = []
        for j, name in enumerate(self.names):
            family = Metric(name, "bench", "gauge")
            values = 50 + j + self.rng.normal(0, 1, GPUS)
            for lab, v in zip(self.labels, values.tolist(), strict=True):
                family.add_sample(name, lab, v)
            out.append(family)
        return out


def bench_detector() -> tuple[float, float, float]:
    rng = np.random.default_rng(0)
    det = AdaptiveThresholds(capacity=SERIES)
    onsets = OnsetTracker(capacity=SERIES)
    ids = np.arange(SERIES, dtype=np.int64)
    base = rng.normal(50, 10, SERIES)
    t0 = 1_767_225_600.0
    for i in range(40):  # warm up past the warm-up period
        det.update(ids, base + rng.normal(0, 1, SERIES), t0 + 30 * i)
    ticks = 20
    batches = [base + rng.normal(0, 1, SERIES) for _ in range(ticks)]
    start = time.perf_counter()
    for i, values in enumerate(batches):
        out = det.update(ids, values, t0 + 30 * (40 + i))
        onsets.step(out.ids, out.score > 1.0)
    elapsed = time.perf_counter() - start
    return SERIES * ticks / elapsed, det.state_bytes_per_series(), elapsed / ticks


class TimedSource(CollectorSource):
    """The in-process source, timing its reads (building 250,000 samples in Python is the source's cost)."""

    last_read = 0.0

    def read(self, start: float, end: float) -> list[Frame]:
        t0 = time.perf_counter()
        try:
            return super().read(start, end)
        finally:
            self.last_read = time.perf_counter() - t0


def bench_service() -> tuple[tuple[float, float, float], AnomalyService]:
    """(whole infer tick, the part after the source read, the exporter's own collect inside the read) with
    every series scored by every detector, and the service (for its state)."""
    clock = FakeClock()
    exporter = FleetCollector()
    source = TimedSource([exporter], clock)
    cfg = AnomalyConfig(adaptive_metrics=["*"], fleet_queries=FleetCollector().names[:5])
    service = AnomalyService(cfg, [source], clock)
    for _ in range(3):
        clock.advance(30)
        service.infer()
    service.fit()
    best = (float("inf"), float("inf"), float("inf"))
    for _ in range(3):
        clock.advance(30)
        start = time.perf_counter()
        service.infer()
        total = time.perf_counter() - start
        best = min(best, (total, total - source.last_read, exporter.last_collect))
    return best, service


def thermal_state(service: AnomalyService) -> tuple[float, float]:
    """The thermal detector's state per series of the service: as held, and per temperature series it
    holds a slot for (were every series one)."""
    (thermal,) = [d for d in service.detectors if isinstance(d, ThermalDetector)]
    held = thermal.state_bytes()
    per_slot = held / thermal.n.size if thermal.n.size else 0.0
    return held / len(service.index), per_slot


def parking_state(service: AnomalyService) -> float:
    """The adaptive detector's bytes to park forgotten series (each id's query and GPU), per series of the
    service."""
    (adaptive,) = [d for d in service.detectors if isinstance(d, AdaptiveDetector)]
    return adaptive.parking_bytes() / len(service.index)


def main() -> None:
    rate, arrays, tick = bench_detector()
    (service_tick, scoring_tick, exporter_collect), service = bench_service()
    thermal, thermal_worst = thermal_state(service)
    state = arrays + parking_state(service)
    print(
        json.dumps(
            {
                "benchmark": "anomaly",
                "series": SERIES,
                "samples_per_second_per_core": round(rate),
                "state_bytes_per_series": round(state + thermal, 1),
                "adaptive_state_bytes_per_series": round(state, 1),
                "thermal_state_bytes_per_series": round(thermal, 1),
                "thermal_state_bytes_per_series_worst": round(thermal_worst, 1),
                "detector_tick_seconds": round(tick, 4),
                "service_tick_seconds": round(service_tick, 3),
                "service_tick_without_source_read_seconds": round(scoring_tick, 3),
                "of_which_exporter_collect_seconds": round(exporter_collect, 3),
                "targets": {
                    "samples_per_second_per_core": 1_000_000,
                    "state_bytes_per_series": 1024,
                    "tick_s": 1.0,
                },
            }
        )
    )


if __name__ == "__main__":
    argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args()  # --help; no option
    main()
