"""Training metrics: step timer, report, push failures, and simulated jobs through the same API."""

from __future__ import annotations

import math

import pytest

from exporters.training import SimTrainingAdapter, TrainingMetrics
from gpuwarden.clock import FakeClock
from gpuwarden.sim import FaultSpec, build_fleet


def value(m: TrainingMetrics, rank: int, name: str) -> float | None:
    return m.rank(rank).registry.get_sample_value(f"gpuwarden_training_{name}", {"rank": str(rank)})


def test_step_timer_records_duration_progress_and_throughput_of_the_step() -> None:
    clock = FakeClock(1000.0)
    m = TrainingMetrics("pretrain", clock=clock)
    with m.step_timer(rank=3) as step:
        assert value(m, 3, "step_started_timestamp_seconds") == 1000.0
        clock.advance(1.5)
        step.compute_done()
        clock.advance(0.5)
        m.report(samples=64, tokens=64 * 2048, loss=2.5)
    assert value(m, 3, "last_step_duration_seconds") == 2.0
    assert value(m, 3, "compute_seconds") == 1.5
    assert value(m, 3, "steps_total") == 1
    assert value(m, 3, "samples_total") == 64
    assert value(m, 3, "samples_per_second") == 32.0
    assert value(m, 3, "tokens_per_second") == 32.0 * 2048
    assert value(m, 3, "loss") == 2.5
    assert value(m, 3, "last_progress_timestamp_seconds") == 1002.0
    assert value(m, 3, "step_duration_seconds_count") == 1


def test_report_after_the_step_applies_to_that_step() -> None:
    clock = FakeClock(0.0)
    m = TrainingMetrics("pretrain", clock=clock)
    with m.step_timer(rank=0):
        clock.advance(4.0)
    m.report(samples=8)
    assert value(m, 0, "samples_per_second") == 2.0


def test_report_before_any_step_without_a_rank_is_an_error() -> None:
    with pytest.raises(ValueError, match="rank"):
        TrainingMetrics("pretrain").report(samples=1)


def test_a_step_that_raises_is_not_progress() -> None:
    clock = FakeClock(0.0)
    m = TrainingMetrics("pretrain", clock=clock)
    with pytest.raises(RuntimeError), m.step_timer(rank=0):
        clock.advance(1.0)
        raise RuntimeError("nccl timeout")
    assert value(m, 0, "steps_total") == 0
    assert value(m, 0, "last_progress_timestamp_seconds") == 0


def test_ranks_push_to_separate_groups_and_a_dead_gateway_is_counted_not_raised() -> None:
    m = TrainingMetrics("pretrain", namespace="research")
    m.rank(0)
    m.rank(1)
    assert m.grouping_key(1) == {"rank": "1", "namespace": "research"}
    assert m.push("http://127.0.0.1:9", timeout=0.5) is False
    assert m.push_failures == 2


def test_simulated_job_reports_steps_samples_and_progress_for_every_rank() -> None:
    clock = FakeClock()
    fleet = build_fleet(2, 4, seed=3, clock=clock)
    adapter = SimTrainingAdapter(fleet)
    clock.advance(20.0)
    adapter.sync()
    [job] = fleet.training_jobs()
    m = adapter.jobs[job.name]
    assert m.ranks() == sorted(job.ranks)
    for rank in job.ranks:
        assert value(m, rank, "steps_total") == job.steps_completed > 0
        assert value(m, rank, "last_progress_timestamp_seconds") == job.last_progress_time(rank)
        per_rank = job.samples_per_step / len(job.ranks)
        assert value(m, rank, "samples_total") == pytest.approx(per_rank * job.steps_completed)


def test_straggler_gpu_shows_as_one_slow_rank() -> None:
    clock = FakeClock()
    fleet = build_fleet(2, 4, seed=3, clock=clock)
    adapter = SimTrainingAdapter(fleet)
    [job] = fleet.training_jobs()
    slow_rank, gpu = next(iter(job.ranks.items()))
    fleet.inject(FaultSpec("straggler", gpu.node, gpu.index, params={"factor": 0.5}))
    clock.advance(30.0)
    adapter.sync()
    m = adapter.jobs[job.name]
    compute = {rank: value(m, rank, "compute_seconds") or 0.0 for rank in job.ranks}
    others = [c for r, c in compute.items() if r != slow_rank]
    assert min(others) > 0
    assert compute[slow_rank] > 1.5 * max(others)


def test_hung_rank_stalls_the_job_and_only_that_rank_never_finishes_computing() -> None:
    clock = FakeClock()
    fleet = build_fleet(2, 4, seed=3, clock=clock)
    adapter = SimTrainingAdapter(fleet)
    [job] = fleet.training_jobs()
    clock.advance(10.0)
    adapter.sync()
    hung_rank, gpu = list(job.ranks.items())[-1]
    fleet.inject(FaultSpec("hung", gpu.node, gpu.index))
    clock.advance(3.0)
    adapter.sync()
    m = adapter.jobs[job.name]
    stalled_at = {rank: value(m, rank, "last_progress_timestamp_seconds") for rank in job.ranks}
    steps = value(m, 0, "steps_total")
    clock.advance(120.0)
    adapter.sync()
    assert value(m, 0, "steps_total") == steps
    assert {rank: value(m, rank, "last_progress_timestamp_seconds") for rank in job.ranks} == stalled_at
    hung = value(m, hung_rank, "compute_seconds")
    assert hung is not None and math.isinf(hung)
    assert all(not math.isinf(value(m, r, "compute_seconds") or 0.0) for r in job.ranks if r != hung_rank)
