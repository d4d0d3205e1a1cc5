"""``bench_anomaly.py --open-moves`` holds every job's ranks by a move its service can read."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from anomaly.collective import CollectiveMoves
from anomaly.detectors import Findings
from anomaly.fleet import FleetDetector
from anomaly.thresholds import BoolArray
from tests.benchmarks.harness import harness_module


def test_open_moves_holds_every_jobs_ranks_on_each_query_by_a_move_the_service_can_settle(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The harness wrote each move in a record format ``CollectiveMoves.restored`` no longer took (5 fields
    as at fix/rev_sympathy2; 6 from fix/moves, 8 since fix/join901): ``--open-moves`` failed before its
    first timed tick."""
    bench = harness_module(monkeypatch, "bench_anomaly")
    keys = [
        (query, (("gpu", str(g)), ("slurm_job", job)))
        for query in ("power", "util")
        for job in ("1", "2")
        for g in range(4)
    ]
    service = SimpleNamespace(index=SimpleNamespace(keys=[*keys, None]))
    bench.open_moves(service)
    assert service.collective.held() == len(keys)
    assert [(q, w, held) for _, q, w, held, *_ in service.collective.state()] == [
        ("power", ["1"], [0, 1, 2, 3]),
        ("power", ["2"], [4, 5, 6, 7]),
        ("util", ["1"], [8, 9, 10, 11]),
        ("util", ["2"], [12, 13, 14, 15]),
    ]


def test_open_moves_are_open_at_each_timed_tick_of_the_service_bench(monkeypatch: pytest.MonkeyPatch) -> None:
    """Opened once before the timed ticks, every move was let go at the first (the jobs not moving), and the
    best of the 3 ticks was one without a move: ``collective_cpu_seconds`` 0.0, the moves' cost unmeasured.
    Each timed tick must settle moves opened for it (a small fleet: 10 jobs of 16)."""
    bench = harness_module(monkeypatch, "bench_anomaly")
    monkeypatch.setattr(bench, "GPUS", 160)
    settled: list[CollectiveMoves] = []
    judge = CollectiveMoves.judge  # what the service's tick calls (``kept``), and ``update`` too

    def spied(
        self: CollectiveMoves, f: Findings, collective: set[tuple[str, ...]]
    ) -> tuple[BoolArray, BoolArray]:
        if self.held():
            settled.append(self)
        return judge(self, f, collective)

    monkeypatch.setattr(CollectiveMoves, "judge", spied)
    bench.bench_service(True)
    assert len({id(moves) for moves in settled}) == 3


def test_the_service_bench_times_a_fleet_whose_gpus_carry_their_jobs_so_the_peer_detector_compares_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its GPUs unlabelled, the headline tick timed a fleet detector that compared no GPU (no ``slurm_job``
    label), 0.7-0.9 s short of a real fleet's tick at 10,000 GPUs. The labelled fleet is the headline; the
    unlabelled one is timed beside it, its detector comparing none (a small fleet: 10 jobs of 16)."""
    bench = harness_module(monkeypatch, "bench_anomaly")
    monkeypatch.setattr(bench, "GPUS", 160)
    queries = bench.FleetCollector().names[:5]
    _, labelled = bench.bench_service(False)
    (fleet,) = [d for d in labelled.detectors if isinstance(d, FleetDetector)]
    assert fleet.uncompared == {query: 0 for query in queries}
    assert bench.fleet_compared(labelled) == 160 * 5
    _, unlabelled = bench.bench_service(False, jobs=False)
    assert bench.fleet_compared(unlabelled) == 0
