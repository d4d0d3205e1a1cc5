"""Simulated training jobs through the training-metrics API, and their periodic push."""

from __future__ import annotations

import math
import urllib.error

import pytest
from prometheus_client import CollectorRegistry, Metric

from exporters import training_export
from exporters.training import TrainingMetrics
from exporters.training_sim import SimTrainingAdapter, SimTrainingPublisher
from gpuwarden.clock import FakeClock
from gpuwarden.sim import FaultSpec, build_fleet


def value(m: TrainingMetrics, rank: int, name: str) -> float | None:
    return m.rank(rank).registry.get_sample_value(f"gpuwarden_training_{name}", {"rank": str(rank)})


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


def test_every_simulated_rank_has_a_step_start_and_a_hung_step_rule_fires_only_on_the_stalled_job() -> None:
    clock = FakeClock()
    fleet = build_fleet(8, 4, seed=3, clock=clock)
    adapter = SimTrainingAdapter(fleet)
    healthy, stalled = fleet.training_jobs()
    clock.advance(20.0)
    adapter.sync()
    gpu = next(iter(stalled.ranks.values()))
    fleet.inject(FaultSpec("hung", gpu.node, gpu.index))
    clock.advance(600.0)
    adapter.sync()

    def hung_step(job_name: str, rank: int) -> bool:  # time() - step_started > 300
        started = value(adapter.jobs[job_name], rank, "step_started_timestamp_seconds")
        assert started is not None and started > 0, (job_name, rank)
        return clock.time() - started > 300.0

    assert not any(hung_step(healthy.name, r) for r in healthy.ranks)
    assert all(hung_step(stalled.name, r) for r in stalled.ranks)


class Recorder:
    def __init__(self) -> None:
        self.groups: list[tuple[str, dict[str, str]]] = []
        self.fail = False

    def __call__(self, gateway: str, *, job: str, registry: CollectorRegistry, **kw: object) -> None:
        key = kw["grouping_key"]
        assert isinstance(key, dict)
        self.groups.append((job, key))
        if self.fail:
            raise urllib.error.URLError("connection refused")


def test_the_publisher_pushes_one_group_per_rank_of_every_simulated_job(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    recorder = Recorder()
    monkeypatch.setattr(training_export, "push_to_gateway", recorder)
    clock = FakeClock()
    fleet = build_fleet(8, 4, seed=3, clock=clock)
    publisher = SimTrainingPublisher(fleet, "127.0.0.1:9091", interval=5.0)
    assert publisher.adapter.pushgateway == "http://127.0.0.1:9091"
    clock.advance(10.0)
    assert publisher.run_once()
    expected = {(job.name, str(rank)) for job in fleet.training_jobs() for rank in job.ranks}
    assert {(job, key["rank"]) for job, key in recorder.groups} == expected
    assert all(key["namespace"] == "training" for _, key in recorder.groups)


def test_the_publisher_backs_off_while_the_gateway_is_down(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder()
    recorder.fail = True
    monkeypatch.setattr(training_export, "push_to_gateway", recorder)
    fleet = build_fleet(4, 4, seed=3, clock=FakeClock())
    publisher = SimTrainingPublisher(fleet, "http://127.0.0.1:9", interval=5.0)
    assert publisher.run_once() is False
    assert len(recorder.groups) == 1  # one refused push per job, not one per rank
    assert publisher.failed_rounds == 1
    assert publisher.next_delay(False, 5.0) == 10.0
    assert publisher.next_delay(False, 40.0) == 60.0
    assert publisher.next_delay(True, 60.0) == 5.0


def test_an_unusable_gateway_url_stops_the_publisher_before_it_starts() -> None:
    with pytest.raises(ValueError, match="Pushgateway URL"):
        SimTrainingPublisher(build_fleet(1, 4, seed=0, clock=FakeClock()), "not a url", interval=5.0)


def test_adapter_without_a_gateway_pushes_nothing_and_says_so() -> None:
    adapter = SimTrainingAdapter(build_fleet(1, 4, seed=0, clock=FakeClock()))
    adapter.sync()
    assert adapter.push() is False
    assert adapter.jobs  # synced, only not pushed


def test_failed_pushes_show_on_the_exporters_own_metrics_by_reason_with_the_last_success(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The gateway cannot say that a push never arrived: the exporter's own /metrics must."""
    recorder = Recorder()
    monkeypatch.setattr(training_export, "push_to_gateway", recorder)
    clock = FakeClock(1_000.0)
    publisher = SimTrainingPublisher(build_fleet(1, 4, seed=3, clock=clock), "127.0.0.1:9091", interval=5.0)
    registry = CollectorRegistry()
    registry.register(_Families(publisher))
    assert registry.get_sample_value("gpuwarden_exporter_training_pushes_total") == 0
    assert (
        registry.get_sample_value("gpuwarden_exporter_training_last_push_success_timestamp_seconds") is None
    )
    assert publisher.run_once()
    pushed = registry.get_sample_value("gpuwarden_exporter_training_pushes_total")
    assert pushed == len(recorder.groups) > 0
    assert (
        registry.get_sample_value("gpuwarden_exporter_training_last_push_success_timestamp_seconds")
        == 1_000.0
    )
    clock.advance(5.0)
    recorder.fail = True
    assert not publisher.run_once()
    failures = "gpuwarden_exporter_training_push_failures_total"
    assert registry.get_sample_value(failures, {"reason": "unreachable"}) == pushed  # every group, one try
    assert (
        registry.get_sample_value("gpuwarden_exporter_training_last_push_success_timestamp_seconds")
        == 1_000.0
    )


def test_a_push_the_gateway_refuses_is_counted_under_its_http_status(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(gateway: str, **_: object) -> None:
        raise urllib.error.HTTPError(gateway, 400, "Bad Request", {}, None)  # type: ignore[arg-type]

    monkeypatch.setattr(training_export, "push_to_gateway", refuse)
    fleet = build_fleet(1, 4, seed=3, clock=FakeClock())
    publisher = SimTrainingPublisher(fleet, "127.0.0.1:9091", interval=5.0)
    assert not publisher.run_once()
    [failures] = [m for m in publisher.families() if m.name == "gpuwarden_exporter_training_push_failures"]
    groups = sum(len(job.ranks) for job in fleet.training_jobs())
    assert [(s.labels, s.value) for s in failures.samples] == [({"reason": "http_400"}, groups)]


class _Families:
    def __init__(self, publisher: SimTrainingPublisher) -> None:
        self.publisher = publisher

    def collect(self) -> list[Metric]:
        return self.publisher.families()
