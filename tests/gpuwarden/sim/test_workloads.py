from __future__ import annotations

import itertools
import math
from pathlib import Path

import pytest
import yaml

from alerting.inventory_file import inventory_data, load_inventory
from gpuwarden.api import inventory_from_fleet
from gpuwarden.clock import FakeClock
from gpuwarden.config import SimConfig
from gpuwarden.sim import build_fleet, parse_fault
from gpuwarden.sim.fleet import Fleet, fleet_from_config


@pytest.mark.parametrize(
    ("nodes", "gpus", "jobs", "ranks", "serving", "idle"),
    [(1, 1, 0, 0, 1, 0), (2, 8, 1, 8, 6, 2), (9, 8, 3, 36, 27, 9), (1, 16, 1, 8, 7, 1)],
    ids=["1x1", "2x8", "9x8", "1x16"],
)
def test_placement_splits_training_serving_and_spares(
    nodes: int, gpus: int, jobs: int, ranks: int, serving: int, idle: int
) -> None:
    fleet = build_fleet(nodes, gpus, clock=FakeClock())
    training = fleet.training_jobs()
    services = fleet.inference_services()
    assert len(training) == jobs
    assert sum(len(j.ranks) for j in training) == ranks
    assert sum(s.replicas for s in services) == serving
    placed = sum(fleet.workload_on(g.node, g.index) is not None for g in fleet.gpu_refs())
    assert placed == ranks + serving
    assert len(fleet.gpu_refs()) - placed == idle


def test_training_jobs_span_at_most_four_nodes_with_ranks_in_order() -> None:
    fleet = build_fleet(9, 8, clock=FakeClock())
    jobs = fleet.training_jobs()
    assert [j.name for j in jobs] == ["pretrain-01", "pretrain-02", "pretrain-03"]
    assert [len({r.node for r in j.ranks.values()}) for j in jobs] == [4, 4, 1]
    assert list(jobs[0].ranks) == list(range(16))
    assert jobs[1].ranks[0].node == "node-05"


def test_a_healthy_job_advances_one_step_per_base_step_time() -> None:
    clock = FakeClock()
    fleet = build_fleet(2, 8, clock=clock)
    job = fleet.training_jobs()[0]
    clock.advance(200)
    assert job.steps_completed == pytest.approx(200 / job.base_step_seconds, abs=2)
    assert job.step_seconds(0) == pytest.approx(job.base_step_seconds, rel=0.05)
    assert job.samples_per_step > 0 and job.tokens_per_step > job.samples_per_step
    assert not job.stalled
    with pytest.raises(KeyError, match=r"ranks are 0\.\.7"):
        job.step_seconds(8)


def test_a_lost_gpu_stalls_the_job_and_the_step_time_is_infinite() -> None:
    clock = FakeClock()
    fleet = build_fleet(2, 8, clock=clock)
    job = fleet.training_jobs()[0]
    clock.advance(10)
    assert fleet.workload_on("node-02", 0) is job
    fleet.inject(parse_fault({"kind": "gpu_lost", "node": "node-02", "gpu": 0}))
    clock.advance(60)
    assert job.stalled
    assert math.isinf(job.step_seconds(2))
    assert clock.time() - job.last_progress_time(2) >= 59


SHAPES = list(itertools.product((1, 2, 3), (1, 2), (1, 2, 3, 5), (1, 2, 8)))  # clusters, racks, nodes, gpus


def _fleet(shape: tuple[int, int, int, int]) -> Fleet:
    clusters, racks, nodes, gpus = shape
    cfg = SimConfig(clusters=clusters, racks_per_cluster=racks, nodes_per_rack=nodes, gpus_per_node=gpus)
    return fleet_from_config(cfg, FakeClock())


@pytest.mark.parametrize("shape", SHAPES, ids=["x".join(map(str, s)) for s in SHAPES])
def test_every_workload_runs_in_one_cluster_and_each_cluster_serves_its_own(
    shape: tuple[int, int, int, int],
) -> None:
    fleet = _fleet(shape)
    cluster_of = {n.name: n.cluster for n in fleet.nodes}
    jobs, services = fleet.training_jobs(), fleet.inference_services()
    for work, gpus in [*((j, list(j.ranks.values())) for j in jobs), *((s, s.gpus) for s in services)]:
        assert {cluster_of[g.node] for g in gpus} == {work.cluster}, work.name
    assert len({j.name for j in jobs}) == len(jobs)
    assert sorted(s.cluster for s in services if s.name == "llm-chat") == sorted(set(cluster_of.values()))


@pytest.mark.parametrize("shape", SHAPES, ids=["x".join(map(str, s)) for s in SHAPES])
def test_the_inventory_export_of_every_sim_shape_reads_back_as_alerting_inventory_file(
    tmp_path: Path, shape: tuple[int, int, int, int]
) -> None:
    inventory = inventory_from_fleet(_fleet(shape))  # serve's inventory with `sim_inventory: true`
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(inventory_data(inventory)))  # what `gpuwarden inventory export` writes
    loaded = load_inventory(path)
    assert {(w.ref, w.units) for w in loaded.workload_list} == {
        (w.ref, w.units) for w in inventory.workload_list
    }
    assert loaded.spare == inventory.spare
