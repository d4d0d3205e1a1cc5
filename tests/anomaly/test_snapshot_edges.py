"""A restart from a snapshot whose warm-up read failed reads a range query's first answer as the process
before it would have: where each series' run of points began (``anomaly.rangeedges``) is kept in the
snapshot, not rebuilt from a first read that takes each series there as running before it."""

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
UP_MIN = "min_over_time(gpuwarden_gpu_up[10m])"  # a range query: blanked for its range after a gap
GPUS = [{"Hostname": f"n{i // 2}", "gpu": str(i % 2), "UUID": f"GPU-{i}"} for i in range(4)]
GONE = {T0 + EVERY * k for k in (11, 12)}  # GPU-0's node: no sample at these steps


class _Prometheus:
    """Answers every query with each GPU's value at the asked steps (GPU-0 none in ``GONE``); 503 while
    ``down``."""

    def __init__(self) -> None:
        self.down = False

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if self.down:
            return httpx.Response(503, text="Service Unavailable")
        query = request.url.params["query"]
        start, end, step = (float(request.url.params[k]) for k in ("start", "end", "step"))
        stamps = [start + i * step for i in range(math.floor((end - start) / step + 1e-9) + 1)]
        result = [
            {
                "metric": labels,
                "values": [[t, str(_value(query, g, t))] for t in stamps if g or t not in GONE],
            }
            for g, labels in enumerate(GPUS)
        ]
        body = {"status": "success", "data": {"resultType": "matrix", "result": result}}
        return httpx.Response(200, json=body)


def _value(query: str, gpu: int, t: float) -> float:
    """Noise drawn from the time: every read of a step reads the same value."""
    rng = np.random.default_rng([int(t), gpu, len(query)])
    return 1.0 + float(rng.normal(0.0, 0.01))


def _service(clock: FakeClock, prometheus: _Prometheus) -> AnomalyService:
    """A new process: its own source and service."""
    client = httpx.Client(base_url="http://prom:9090", transport=httpx.MockTransport(prometheus))
    source = PromQLSource("http://prom:9090", [PromQuery("up_min", UP_MIN, EVERY)], clock, client=client)
    cfg = AnomalyConfig(
        queries=[AnomalyQueryConfig(name="up_min", expr=UP_MIN, step_seconds=EVERY)],
        infer_every_seconds=EVERY,
        adaptive_metrics=["*"],
    )
    return AnomalyService(cfg, [source], clock)


def _scores(service: AnomalyService) -> list[tuple[str, list[str], list[float]]]:
    found = service.infer().findings
    return [
        (f.detector, [lab["UUID"] for lab in f.labels], np.round(f.score, 12).tolist())
        for f in found
        if f.detector != "source"
    ]


def _restart_during_an_outage(
    tmp_path: Path, torn: bool = False
) -> tuple[FakeClock, AnomalyService, AnomalyService]:
    """At step 14, the process run through, and one restarted from its snapshot saved at step 12 (GPU-0
    gone) while Prometheus is down at step 13; ``torn``: its range edges' starts one short of their labels."""
    clock = FakeClock(T0)
    prometheus = _Prometheus()
    straight = _service(clock, prometheus)
    straight.warm_up()
    for _ in range(12):
        clock.advance(EVERY)
        straight.infer()
    snapshot = straight.snapshot()
    if torn:
        arrays = snapshot.components["sources"].arrays
        arrays["s0_edge_start"] = arrays["s0_edge_start"][:-1]
    path = tmp_path / "state.npz"
    assert save_snapshot(path, snapshot)
    prometheus.down = True
    clock.advance(EVERY)
    straight.infer()
    restarted = _service(clock, prometheus)
    restarted.warm_up(snapshot=load_snapshot(path, restarted.cfg))
    prometheus.down = False
    clock.advance(EVERY)
    return clock, straight, restarted


def test_a_restart_whose_warm_up_read_failed_blanks_a_series_back_from_a_gap_as_the_process_before_it(
    tmp_path,
):
    """GPU-0 misses two steps; the service saves during the gap and restarts while Prometheus is down, so its
    warm-up reads nothing and its first read is the catch-up, GPU-0 back at its first step. That read was the
    source's first of the query, which took GPU-0 as running up to it and scored its range's ramp, where the
    process before it held GPU-0's last point from before the gap and left the range unscored (restart fuzz,
    seed 308)."""
    clock, straight, restarted = _restart_during_an_outage(tmp_path)
    scored: list[list[str]] = []
    for tick in range(6):
        if tick:
            clock.advance(EVERY)
        scores = _scores(straight)
        assert _scores(restarted) == scores
        scored.append(sorted({uuid for _, uuids, _ in scores for uuid in uuids}))
    # GPU-0, back at step 13, is unscored for its range and a step (steps 13-15: the catch-up and one more).
    assert scored[:2] == [["GPU-1", "GPU-2", "GPU-3"]] * 2
    assert scored[2:] == [["GPU-0", "GPU-1", "GPU-2", "GPU-3"]] * 4


def test_range_edges_that_do_not_fit_are_said_and_the_rest_of_the_snapshot_is_taken_up(tmp_path, caplog):
    """Range edges cut short (one run's start missing): the source starts from nothing (a first read takes
    each series as running before it), said in a warning naming it; the detectors take up the snapshot."""
    with caplog.at_level("INFO"):
        _, _, restarted = _restart_during_an_outage(tmp_path, torn=True)
    assert (
        "what source prometheus learnt of its answer steps and range edges not used (ValueError"
        in caplog.text
    )
    assert "anomaly state restored from" in caplog.text
    assert [uuids for _, uuids, _ in _scores(restarted)] == [["GPU-0", "GPU-1", "GPU-2", "GPU-3"]]
