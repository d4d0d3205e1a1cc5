"""A restart replays the ticks it missed with the fleet detector's load query not due where it was not due:
a load query answered on a coarser step than asked leaves those ticks without a load, and the fleet detector
judges its load-adjusted metric only at the ticks that read both (``View.not_due``)."""

from __future__ import annotations

import math
from pathlib import Path

import httpx
import numpy as np

from anomaly.promql import PromQLSource, PromQuery
from anomaly.service import AnomalyService
from anomaly.snapshot import load_snapshot, save_snapshot
from gpuwarden.clock import FakeClock
from gpuwarden.config_anomaly import AnomalyConfig, AnomalyQueryConfig

EVERY = 300.0
T0 = 1_767_225_600.0
UTIL, POWER = "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_POWER_USAGE"
COARSE = 3 * EVERY  # UTIL answers every third step asked: a rule evaluated every 15 minutes
GPUS = [
    {"Hostname": f"n{i // 4}", "gpu": str(i % 4), "UUID": f"GPU-{i}", "modelName": "H100", "slurm_job": "7"}
    for i in range(8)
]


def _value(query: str, gpu: int, t: float) -> float:
    """A load that varies by GPU and time, and a power that follows it, with noise drawn from the time."""
    rng = np.random.default_rng([int(t), gpu, len(query)])
    load = 50.0 + 30.0 * math.sin(t / 3000.0 + gpu)
    return load + float(rng.normal(0.0, 2.0)) if query == UTIL else 100.0 + 3.0 * load + float(rng.normal())


class _Prometheus:
    """Prometheus' matrix for the asked grid, UTIL's points only where its coarser grid meets it; a query in
    ``failing`` answered 503."""

    def __init__(self) -> None:
        self.failing: set[str] = set()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        query = request.url.params["query"]
        if query in self.failing:
            return httpx.Response(503, text="Service Unavailable")
        start, end, step = (float(request.url.params[k]) for k in ("start", "end", "step"))
        stamps = [start + i * step for i in range(math.floor((end - start) / step + 1e-9) + 1)]
        if query == UTIL:
            stamps = [t for t in stamps if t % COARSE == 0]
        result = [
            {
                "metric": {"__name__": query, **labels},
                "values": [[t, str(_value(query, g, t))] for t in stamps],
            }
            for g, labels in enumerate(GPUS)
        ]
        body = {"status": "success", "data": {"resultType": "matrix", "result": result}}
        return httpx.Response(200, json=body)


def _service(clock: FakeClock, prometheus: _Prometheus) -> AnomalyService:
    """A new process: its own source and service, the fleet detector comparing POWER net of UTIL."""
    client = httpx.Client(base_url="http://prom:9090", transport=httpx.MockTransport(prometheus))
    source = PromQLSource(
        "http://prom:9090", [PromQuery(q, q, EVERY) for q in (UTIL, POWER)], clock, client=client
    )
    cfg = AnomalyConfig(
        queries=[AnomalyQueryConfig(name=q, expr=q, step_seconds=EVERY) for q in (UTIL, POWER)],
        infer_every_seconds=EVERY,
        fleet_queries=[POWER],
    )
    return AnomalyService(cfg, [source], clock)


def _fleet_scores(service: AnomalyService) -> list[list[float]]:
    return [np.round(f.score, 12).tolist() for f in service.infer().findings if f.detector == "fleet"]


def _at_a_util_tick(failing: bool = False) -> tuple[FakeClock, _Prometheus, AnomalyService]:
    """A service run past the 20 asked steps that make UTIL's coarser step believed, through a tick that
    reads UTIL (its read failing there when ``failing``)."""
    clock = FakeClock(T0)
    prometheus = _Prometheus()
    straight = _service(clock, prometheus)
    straight.warm_up()
    while straight.ticks < 24 or (clock.time() + EVERY) % COARSE:
        clock.advance(EVERY)
        straight.infer()
    clock.advance(EVERY)
    prometheus.failing = {UTIL} if failing else set()
    straight.infer()  # with UTIL failing, POWER judged as is: its load failed, not due later
    prometheus.failing = set()
    return clock, prometheus, straight


def _restarted_scores_alike(
    clock: FakeClock, prometheus: _Prometheus, straight: AnomalyService, path: Path
) -> None:
    """A process restarted now from the snapshot at ``path`` scores as ``straight`` for 8 ticks."""
    restarted = _service(clock, prometheus)
    restarted.warm_up(snapshot=load_snapshot(path, restarted.cfg))
    for _ in range(8):
        clock.advance(EVERY)
        assert _fleet_scores(restarted) == _fleet_scores(straight)


def test_a_restart_replays_a_tick_its_coarse_load_query_left_unread_as_not_due(tmp_path):
    """Saved at a tick that read UTIL, restarted a tick later: the replay of the missed tick holds no UTIL
    step (its coarser answer falls two ticks on), so the warm-up's read after the snapshot held no UTIL frame
    at all, and UTIL was left out of the queries it read: its tick scored POWER without a load, where the
    uninterrupted service skipped it as not due, and its fleet scores differed from there (restart fuzz
    ``--promql --prom-faults``, coarse answers: seed 335 of 300-339)."""
    clock, prometheus, straight = _at_a_util_tick()
    path = tmp_path / "state.npz"
    assert save_snapshot(path, straight.snapshot())
    clock.advance(EVERY)
    missed = straight.infer()
    assert not [f for f in missed.findings if f.detector == "fleet"]  # UTIL not due: POWER not judged
    _restarted_scores_alike(clock, prometheus, straight, path)


def test_a_restart_replays_the_load_its_save_failed_to_read_as_due_at_the_tick_that_caught_it_up(tmp_path):
    """UTIL's read failed at the tick of the save, a tick that reads it; the next tick reads it on from its
    last good read, so its sample there is fed with that tick, which judges POWER with it. The restart that
    missed that tick replays it so: the sample, from before the snapshot, makes UTIL due at the first tick
    replayed (restart fuzz ``--promql --prom-faults-only coarse --failed-reads``, seed 485 of 460-519,
    against a first draft that took each replayed tick's own window alone)."""
    clock, prometheus, straight = _at_a_util_tick(failing=True)
    path = tmp_path / "state.npz"
    assert save_snapshot(path, straight.snapshot())
    clock.advance(EVERY)
    assert _fleet_scores(straight)  # UTIL caught up: POWER judged with it
    _restarted_scores_alike(clock, prometheus, straight, path)
