"""Anomaly detection speed: one JSON line.

* ``samples_per_second_per_core``: adaptive-threshold updates (score + learn) over 250,000 series per tick,
  one process, numpy single-threaded.
* ``state_bytes_per_series``: the adaptive detector's state divided by the service's series: the arrays of
  all its models (one per parameter set: the five DCGM metrics with their own band floors are five more), the
  band kept before a raised fault (24 bytes more than ``anomaly score``'s), each series id's row in its model
  (``anomaly.modelrows``) and its bookkeeping to park a forgotten series' state (each id's query, metric and
  GPU, the GPU's string counted once however many series share it; nothing is parked in its ticks, and a
  series parked costs about its row); at least ``anomaly score``'s state per series once warmed up (its first
  samples, kept until judged, held no longer: ``anomaly.startpool``); plus the
  thermal detector's (its per-GPU regression, power range and hold, in arrays of a slot per temperature
  series, and its map of ids to slots) divided by the service's series; each part is given beside
  (``adaptive_state_bytes_per_series``, ``thermal_state_bytes_per_series``), and
  ``thermal_state_bytes_per_series_worst`` is the thermal part per slot: what it would be were every series
  a temperature series (before fix/anom6 the arrays were indexed by series id, and this was the thermal
  part if the temperature series had the highest ids). ``adaptive_rows_per_series``: the rows its models
  hold per series; ``service_adaptive_state_bytes_per_series``: the service's part alone (its series all
  still keep their first samples after its 6 ticks); ``adaptive_state_bytes_per_series_young``: the adaptive
  part were every series young, as a fleet's first 15 minutes (``anomaly score``'s after its first sample,
  120 bytes a series more than warmed up). Before fix/mem every model held a row for every series id up to
  its largest (2.52 rows a series here: 2,513 bytes with the thermal part, not the 993 this harness said,
  which counted one model's rows per row, and not the GPU string each series' parking key made, 59 bytes);
  the service's models, without seasonality, held seasonal buckets (768 bytes a row); and each series held
  its first samples for good.
* ``detector_tick_seconds``: one adaptive-threshold tick for 10,000 GPUs x 25 series (250,000 series).
* ``service_tick_seconds``: one full ``AnomalyService.infer`` for the same fleet through the in-process source
  (collecting the families, mapping label sets to ids, every built-in detector on every series, alerts,
  write-back cache); ``service_tick_without_source_read_seconds`` leaves out the read;
  ``of_which_exporter_collect_seconds`` is the part of the tick spent inside the stand-in exporter's
  ``collect`` (building 250,000 prometheus_client samples), which an out-of-process exporter would not cost.
  The GPUs run 16-GPU Slurm jobs (625), each GPU labelled with its job as gpuwarden's exporter labels it, so
  the fleet (peer) detector compares every GPU of its 5 queries with its job's (``fleet_series_compared``:
  50,000). The ``..._unlabelled`` fields time the same fleet without job labels, where the fleet detector
  compares none (``fleet_series_compared_unlabelled``: 0): the figure this harness gave alone until
  fix/fleetfast, 0.7-0.9 s short of a real fleet's tick while the detector looped over its peer groups.

``--open-moves``: every job's ranks are held on every query by a move of its job (``anomaly.collective``), as
after a fleet-wide slowdown (a fabric or storage stall): each tick settles every move, whose cost a fleet
without moves never shows; ``collective_cpu_seconds`` is the CPU time of the tick's workload check
(``_drop_collective``), the moves' part of it. The unlabelled fleet is not timed (it has no jobs to move):
its fields are null.
"""

from __future__ import annotations

import argparse
import os


def _options() -> argparse.Namespace:
    """The command line, read before the heavy imports below (numpy, the anomaly stage): ``--help`` and an
    unknown option answer at once rather than after seconds of imports."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--open-moves", action="store_true", help="every job's ranks held by a move")
    return parser.parse_args()


if __name__ == "__main__":
    OPTIONS = _options()

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import json  # noqa: E402
import time  # noqa: E402
from collections.abc import Iterable  # noqa: E402

import numpy as np  # noqa: E402
from prometheus_client.metrics_core import Metric  # noqa: E402

from anomaly.adaptive import AdaptiveDetector  # noqa: E402
from anomaly.collective import CollectiveMoves  # noqa: E402
from anomaly.detectors import Findings  # noqa: E402
from anomaly.fleet import FleetDetector  # noqa: E402
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
JOB_GPUS = 16  # --open-moves: GPUs per job


class FleetCollector:
    """25 gauge families over 10,000 GPUs with fresh random values each collect."""

    def __init__(self, seed: int = 0, *, jobs: bool = False, gpus: int | None = None) -> None:
        self.rng = np.random.default_rng(seed)
        self.gpus = gpus = GPUS if gpus is None else gpus  # GPUS read now: the tests set a smaller fleet
        self.labels = [
            {"gpu": str(i % 8), "UUID": f"GPU-{i:05d}", "Hostname": f"node{i // 8:04d}", "modelName": "H100"}
            for i in range(gpus)
        ]
        if jobs:
            for i, lab in enumerate(self.labels):
                lab["slurm_job"] = str(i // JOB_GPUS)
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
            values = 50 + j + self.rng.normal(0, 1, self.gpus)
            for lab, v in zip(self.labels, values.tolist(), strict=True):
                family.add_sample(name, lab, v)
            out.append(family)
        return out


def bench_detector() -> tuple[float, float, float, float]:
    """(samples a second, state per series warmed up, tick seconds, state per series after the first tick:
    every series young)."""
    rng = np.random.default_rng(0)
    det = AdaptiveThresholds(capacity=SERIES)
    onsets = OnsetTracker(capacity=SERIES)
    ids = np.arange(SERIES, dtype=np.int64)
    base = rng.normal(50, 10, SERIES)
    t0 = 1_767_225_600.0
    young = 0.0
    for i in range(40):  # warm up past the warm-up period
        det.update(ids, base + rng.normal(0, 1, SERIES), t0 + 30 * i)
        young = young or det.state_bytes_per_series()
    ticks = 20
    batches = [base + rng.normal(0, 1, SERIES) for _ in range(ticks)]
    start = time.perf_counter()
    for i, values in enumerate(batches):
        out = det.update(ids, values, t0 + 30 * (40 + i))
        onsets.step(out.ids, out.score > 1.0)
    elapsed = time.perf_counter() - start
    return SERIES * ticks / elapsed, det.state_bytes_per_series(), elapsed / ticks, young


class TimedSource(CollectorSource):
    """The in-process source, timing its reads (building 250,000 samples in Python is the source's cost)."""

    last_read = 0.0

    def read(self, start: float, end: float) -> list[Frame]:
        t0 = time.perf_counter()
        try:
            return super().read(start, end)
        finally:
            self.last_read = time.perf_counter() - t0


def open_moves(service: AnomalyService) -> None:
    """Hold every job's ranks on every adaptive query, each by a move of its job (``--open-moves``)."""
    by_key: dict[tuple[str, tuple[str, ...]], list[int]] = {}
    for i, key in enumerate(service.index.keys):
        job = None if key is None else dict(key[1]).get("slurm_job")
        if key is not None and job is not None:
            by_key.setdefault((key[0], (job,)), []).append(i)
    # A record as ``CollectiveMoves.state()`` writes it: held, ranks, own distances, others, the side it went
    # (down: a slowdown), waited, sat and back (0: a move its job's moving started), near (none), returned.
    # Left at 5 fields as the record grew to 8 (fix/moves on), at 8 as it grew to 9 (fix/slowed2), at 9 as it
    # grew to 11 (fix/movestart3), at 11 as it grew to 12 (fix/sitfix), and at 12 as it grew to 13
    # (fix/return), the harness failed before its first timed tick.
    state = [
        ["adaptive", q, list(w), ids, ids, [], [], -1.0, 0, 0, 0, [], 0]
        for (q, w), ids in sorted(by_key.items())
    ]
    service.collective = CollectiveMoves.restored(state)


class _CheckTimer:
    """The CPU time spent in a service's workload check (``_drop_collective``), summed over its calls."""

    def __init__(self, service: AnomalyService) -> None:
        self.seconds = 0.0
        check = service._drop_collective

        def timed(f: Findings, rows: list[int]) -> list[int]:
            t0 = time.process_time()
            try:
                return check(f, rows)
            finally:
                self.seconds += time.process_time() - t0

        service._drop_collective = timed  # type: ignore[method-assign]


def bench_service(
    moves: bool, *, jobs: bool = True
) -> tuple[tuple[float, float, float, float], AnomalyService]:
    """(whole infer tick, the part after the source read, the exporter's own collect inside the read, the
    workload check's CPU) with every series scored by every detector, and the service (for its state);
    ``jobs``: the GPUs labelled with their Slurm jobs (``moves`` needs them)."""
    clock = FakeClock()
    exporter = FleetCollector(jobs=jobs or moves)
    source = TimedSource([exporter], clock)
    cfg = AnomalyConfig(adaptive_metrics=["*"], fleet_queries=FleetCollector().names[:5])
    service = AnomalyService(cfg, [source], clock)
    for _ in range(3):
        clock.advance(30)
        service.infer()
    service.fit()
    best = (float("inf"), float("inf"), float("inf"), float("inf"))
    timer = _CheckTimer(service)
    for _ in range(3):
        clock.advance(30)
        if moves:  # before each tick: the first, its jobs not moving, let every rank go (best of 3: none)
            open_moves(service)
        timer.seconds = 0.0
        start = time.perf_counter()
        service.infer()
        total = time.perf_counter() - start
        best = min(best, (total, total - source.last_read, exporter.last_collect, timer.seconds))
    return best, service


def thermal_state(service: AnomalyService) -> tuple[float, float]:
    """The thermal detector's state per series of the service: as held, and per temperature series it
    holds a slot for (were every series one)."""
    (thermal,) = [d for d in service.detectors if isinstance(d, ThermalDetector)]
    held = thermal.state_bytes()
    per_slot = held / thermal.n.size if thermal.n.size else 0.0
    return held / len(service.index), per_slot


def adaptive_state(service: AnomalyService) -> tuple[float, float]:
    """The adaptive detector's state per series of the service, as the service holds it (every model's
    arrays with its own parameters: the band kept before a raised fault, ``anomaly.faultbands``, is the
    service's alone, not ``bench_detector``'s ``anomaly score`` defaults; each id's row and what parking
    costs), and the rows its models hold per series."""
    (adaptive,) = [d for d in service.detectors if isinstance(d, AdaptiveDetector)]
    rows = sum(m.capacity for m in adaptive._models.values())
    return adaptive.state_bytes() / len(service.index), rows / len(service.index)


def fleet_compared(service: AnomalyService) -> int:
    """The series the fleet detector compared with their peers at the last tick (each query's GPUs less those
    it compared with none)."""
    (fleet,) = [d for d in service.detectors if isinstance(d, FleetDetector)]
    return sum(GPUS - uncompared for uncompared in fleet.uncompared.values())


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


def main(moves: bool) -> None:
    rate, arrays, tick, young = bench_detector()
    bare: list[float | None] = [None, None, None, None]
    if not moves:  # first, its service let go before the labelled fleet's is built
        (tick_bare, scoring_bare, collect_bare, _), unlabelled = bench_service(False, jobs=False)
        bare = [tick_bare, scoring_bare, collect_bare, fleet_compared(unlabelled)]
        del unlabelled
    (service_tick, scoring_tick, exporter_collect, check), service = bench_service(moves)
    held = service.collective.held()
    thermal, thermal_worst = thermal_state(service)
    served, rows = adaptive_state(service)
    state = max(arrays, served)
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
                "adaptive_rows_per_series": round(rows, 3),
                "service_adaptive_state_bytes_per_series": round(served, 1),
                "adaptive_state_bytes_per_series_young": round(max(young, served), 1),
                "detector_tick_seconds": round(tick, 4),
                "service_tick_seconds": round(service_tick, 3),
                "service_tick_without_source_read_seconds": round(scoring_tick, 3),
                "of_which_exporter_collect_seconds": round(exporter_collect, 3),
                "fleet_series_compared": fleet_compared(service),
                "service_tick_unlabelled_seconds": _round(bare[0], 3),
                "service_tick_without_source_read_unlabelled_seconds": _round(bare[1], 3),
                "of_which_exporter_collect_unlabelled_seconds": _round(bare[2], 3),
                "fleet_series_compared_unlabelled": bare[3],
                "collective_cpu_seconds": round(check, 3),
                "open_moves": moves,
                "series_held_after": held,
                "targets": {
                    "samples_per_second_per_core": 1_000_000,
                    "state_bytes_per_series": 1024,
                    "tick_s": 1.0,
                },
            }
        )
    )


if __name__ == "__main__":
    main(OPTIONS.open_moves)
