"""The fleet that the snapshot tests read (every query on a grid of ``EVERY`` seconds, each GPU on a daily
cycle), the service ticking over it, its scores by tick and a snapshot saved after 30 ticks."""

from __future__ import annotations

import math

import numpy as np

from anomaly.service import AnomalyService, _Firing
from anomaly.snapshot import save_snapshot
from anomaly.sources import Frame, SourceHealth
from gpuwarden.clock import FakeClock
from gpuwarden.config_anomaly import AnomalyConfig
from gpuwarden.model import Alert, AlertSource

EVERY = 300.0  # a tick every 5 minutes: three days are 864 ticks


DAY = 86_400.0


# The multivariate detector's (temperature, power, SM clock, utilisation, memory), which the fleet and thermal
# detectors read too, and a step time for the level-shift detector.
QUERIES = (*AnomalyConfig().multivariate_queries, "train_step_time_seconds")


GPUS = [
    {"Hostname": f"n{i // 4}", "gpu": str(i % 4), "UUID": f"GPU-{i}", "modelName": "H100", "slurm_job": "7"}
    for i in range(8)
]


def _value(query: int, t: float) -> np.ndarray:
    """Each GPU's value of query number ``query`` at ``t``: a daily cycle (busy by day) plus noise drawn
    from ``t``, so a replay of the history reads what the live ticks read."""
    rng = np.random.default_rng([int(t), query])
    hour = (t % DAY) / 3600.0
    busy = 0.5 + 0.5 * math.sin(2 * math.pi * (hour - 9) / 24)
    base = (60 + 20 * busy, 300 + 300 * busy, 1400 + 300 * busy, 40 + 50 * busy, 20_000 + 5000 * busy, 1.0)
    return base[query] * (1 + 0.01 * rng.standard_normal(len(GPUS)))


class GridSource:
    """Prometheus as the service reads it: every query on a grid of ``EVERY`` seconds, at any time."""

    name = "prometheus"

    def __init__(self, gpus: list[dict[str, str]] = GPUS) -> None:
        self.reads: list[tuple[float, float]] = []
        self._health = SourceHealth(self.name)
        self.gpus = gpus

    def read(self, start: float, end: float) -> list[Frame]:
        self.reads.append((start, end))
        ts = np.arange(math.floor(start / EVERY) * EVERY + EVERY, end + 1, EVERY)
        ts = ts[(ts > start) & (ts <= end)]
        self._health.succeeded(end, len(GPUS))
        if not ts.size:
            return []
        return [
            Frame(q, self.gpus, ts, np.column_stack([_value(k, t) for t in ts.tolist()]))
            for k, q in enumerate(QUERIES)
        ]

    def health(self) -> SourceHealth:
        return self._health


def _config(**overrides: object) -> AnomalyConfig:
    return AnomalyConfig(
        infer_every_seconds=EVERY,
        adaptive_metrics=["*"],
        adaptive_seasonality=True,  # the hour-of-day and hour-of-week profiles a restart forgot
        presence_queries=["DCGM_FI_DEV_GPU_TEMP"],
        **overrides,
    )


# The multivariate detector's forest at its floor (``multivariate_trees``), for the tests of what a snapshot
# keeps, refuses and reads on: its fit at each warm-up is most of their CPU at the default 100 trees, and
# its size is none of what they check (its state is saved, refused and restored alike at either size).
FEW_TREES: dict[str, object] = {"multivariate_trees": 10}


def _few_trees(**overrides: object) -> AnomalyConfig:
    """``_config`` with the multivariate detector's forest at its floor (``FEW_TREES``)."""
    return _config(**FEW_TREES, **overrides)


def _service(clock: FakeClock, **overrides: object) -> tuple[GridSource, AnomalyService]:
    source = GridSource()
    return source, AnomalyService(_config(**overrides), [source], clock)


Scores = list[dict[tuple[str, str], np.ndarray]]


def _ticks(clock: FakeClock, service: AnomalyService, n: int) -> Scores:
    """``n`` ticks: each one's scores by detector and query."""
    out = []
    for _ in range(n):
        clock.advance(EVERY)
        result = service.infer()
        out.append({(f.detector, f.query): f.score.copy() for f in result.findings if f.detector != "source"})
    return out


def _same(a: Scores, b: Scores) -> bool:
    return len(a) == len(b) and all(
        x.keys() == y.keys() and all(np.array_equal(x[k], y[k], equal_nan=True) for k in x)
        for x, y in zip(a, b, strict=True)
    )


def _saved(tmp_path, clock: FakeClock, ticks: int = 30, **overrides: object) -> tuple[AnomalyService, object]:
    _, service = _service(clock, **overrides)
    service.warm_up()
    _ticks(clock, service, ticks)
    path = tmp_path / "anomaly.state.npz"
    assert save_snapshot(path, service.snapshot())
    return service, path


def saved_with_one_firing(tmp_path, clock: FakeClock) -> tuple[AnomalyService, Alert, object]:
    """A quiet fleet's service after 30 ticks with one firing alert planted, as a fault would have left it,
    saved: the service, the alert and the snapshot's path."""
    _, service = _service(clock)
    service.warm_up()
    _ticks(clock, service, 30)
    assert service.firing == {}
    alert = Alert(labels={"alertname": "GpuwardenAnomaly", "UUID": "GPU-3"}, source=AlertSource.ANOMALY)
    service.firing["k"] = _Firing(alert, 24, QUERIES[0], "adaptive", peak=7.5, trough=2.0, reads=40)
    path = tmp_path / "s.npz"
    assert save_snapshot(path, service.snapshot())
    return service, alert, path


OTHER_FLEET = [{**gpu, "Hostname": f"b{gpu['Hostname']}", "UUID": f"GPU-B{i}"} for i, gpu in enumerate(GPUS)]


class CounterGridSource(GridSource):
    """``GridSource`` with what the counters and the signatures detector keep state of: an XID count rising by
    one a step, single-bit ECC counts, each GPU's up flag (the last GPU's gone after ``gone_after``) and its
    NVLinks' status."""

    def __init__(self, gone_after: float) -> None:
        super().__init__()
        self.gone_after = gone_after

    def read(self, start: float, end: float) -> list[Frame]:
        frames = super().read(start, end)
        if frames:
            ts = frames[0].timestamps
            counts = np.tile(ts / EVERY, (len(GPUS), 1))
            up = GPUS[:-1] if ts[-1] > self.gone_after else GPUS
            links = [{**gpu, "link": "0"} for gpu in GPUS]
            frames += [
                Frame("DCGM_FI_DEV_XID_ERRORS", GPUS, ts, counts, "counter"),
                Frame("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", GPUS, ts, counts, "counter"),
                Frame("gpuwarden_gpu_up", up, ts, np.ones((len(up), ts.size))),
                Frame("DCGM_FI_DEV_NVLINK_LINK_STATUS", links, ts, np.ones_like(counts)),
            ]
        return frames
