"""The inventory over the API: served as an inventory file, aliases, pods and failed refreshes, and the
simulated fleet's inventory and training jobs."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import yaml
from pydantic import SecretStr

from alerting.db import make_engine
from alerting.engine import IncidentEngine
from alerting.inventory import NodeInfo, StaticInventory, WorkloadInfo
from alerting.inventory_file import load_inventory
from alerting.migrate import upgrade
from exporters.simulated import sim_job_id
from gpuwarden.api import create_app, inventory_from_fleet
from gpuwarden.clock import FakeClock
from gpuwarden.config import ApiConfig, SimConfig
from gpuwarden.model import WorkloadKind, WorkloadRef
from gpuwarden.sim.fleet import fleet_from_config
from tests.gpuwarden.api_client import TOKEN, TestClient
from tests.gpuwarden.api_error import error_text


def test_simulated_fleet_adapts_to_an_inventory_with_placement_and_spare() -> None:
    fleet = fleet_from_config(SimConfig(racks_per_cluster=2, nodes_per_rack=2), FakeClock())
    inventory = inventory_from_fleet(fleet)
    node = fleet.nodes[0]
    info = inventory.node(node.name)
    assert info is not None and (info.cluster, info.rack, info.gpu_count) == (
        node.cluster,
        node.rack,
        len(node.gpus),
    )
    placed = {w.ref for w in inventory.workloads()}
    simulated = [*fleet.inference_services(), *fleet.training_jobs()]
    assert {replace(r, cluster="") for r in placed} == {w.ref for w in simulated}
    cluster_of = {n.name: n.cluster for n in fleet.nodes}
    for w in inventory.workloads():  # each in the cluster of its GPUs
        assert {cluster_of[gpu[1]] for gpu in w.gpus} == {gpu[0] for gpu in w.gpus} == {w.ref.cluster}
    total = sum(len(n.gpus) for n in fleet.nodes)
    used = len({g for w in inventory.workloads() for g in w.gpus})
    assert inventory.spare_gpus(node.cluster) == total - used


def test_the_inventory_is_served_as_an_inventory_file_that_reads_back(
    client: TestClient, engine: IncidentEngine, tmp_path: Path
) -> None:
    engine.inventory_source = "sim"
    response = client.get("/api/v1/inventory")
    assert response.status_code == 200
    data = response.json()
    about = data.pop("about")
    assert about["source"] == "sim" and about["read_at"].endswith("Z") and about["refresh_failures"] == 0
    # what the file format does not carry, beside it: each node's and workload's state
    assert [(n["cluster"], n["name"]) for n in about["node_states"]] == [
        (n["cluster"], n["name"]) for n in data["nodes"]
    ]
    assert {w["state"] for w in about["workload_states"]} == {"running"}
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(data))
    again = load_inventory(path)  # what alerting.inventory_file would read
    assert engine.inventory is not None
    assert [(w.ref, w.units, w.aliases) for w in again.workloads()] == [
        (w.ref, w.units, w.aliases) for w in engine.inventory.workloads()
    ]
    assert list(again.node_list) == list(engine.inventory.node_list)  # type: ignore[attr-defined]


def test_without_an_inventory_the_api_says_how_to_configure_one(tmp_path: Path) -> None:
    sql = make_engine(str(tmp_path / "bare.db"))
    upgrade(sql)
    bare = IncidentEngine(sql, FakeClock())
    with TestClient(create_app(bare, ApiConfig(token=SecretStr(TOKEN)))) as c:
        response = c.get("/api/v1/inventory")
        assert response.status_code == 404 and "kubernetes_inventory" in error_text(response)
        bare.inventory_source = "kubernetes"  # configured, but its first read failed
        assert "has not been read yet" in error_text(c.get("/api/v1/inventory"))


def test_aliases_pods_and_a_failed_refresh_show_in_the_inventory(tmp_path: Path) -> None:
    sql = make_engine(str(tmp_path / "k.db"))
    upgrade(sql)
    nodes = [NodeInfo("g1", "k1", "r1", 2, ("GPU-a", "GPU-b"))]
    # As the Kubernetes and Slurm sources give them: in their cluster (a file read back infers it anyway).
    service = WorkloadRef(WorkloadKind.INFERENCE_SERVICE, "serving", "llama", "k1")
    job = WorkloadRef(WorkloadKind.TRAINING_JOB, "", "llm-70b (41)", "k1")
    workloads = [
        WorkloadInfo(
            service, (frozenset({("k1", "g1", 0)}),), aliases=("llama-70b",), pods=("llama-7f9c-1",)
        ),
        WorkloadInfo(job, (frozenset({("k1", "g1", 1)}),), aliases=("41", "llm-70b")),
    ]
    clock = FakeClock()
    engine = IncidentEngine(sql, clock, inventory=StaticInventory(nodes, workloads, {"k1": 0}))
    engine.inventory_source = "kubernetes"
    with TestClient(create_app(engine, ApiConfig(token=SecretStr(TOKEN)))) as c:
        data = c.get("/api/v1/inventory").json()
        assert data["about"]["stale"] is False and data["about"]["refreshed_sources"] == []
        # What serve's refresh loop records per source: Kubernetes read, Slurm failing since it started.
        engine.inventory_sources = {
            "kubernetes": {"read_at": clock.now(), "failed_at": None},
            "slurm": {"read_at": None, "failed_at": clock.now()},
        }
        about = c.get("/api/v1/inventory").json()["about"]
        assert about["stale"] is True
        assert [(p["name"], p["stale"]) for p in about["refreshed_sources"]] == [
            ("kubernetes", False),
            ("slurm", True),
        ]
    data.pop("about")
    path = tmp_path / "snapshot.yaml"
    path.write_text(yaml.safe_dump(data))
    again = load_inventory(path)
    assert list(again.workloads()) == workloads and list(again.node_list) == nodes
    assert again.find_workload(WorkloadKind.POD, "llama-7f9c-1", "serving") == service
    assert again.find_workload(WorkloadKind.TRAINING_JOB, "41") == job


def test_a_simulated_training_job_answers_to_the_slurm_job_id_its_exporter_labels_it_with() -> None:
    # The simulated exporter labels a training GPU slurm_job="<id>"; without the id as an alias the impact
    # listed "training job 8171" beside "training job pretrain-01": one job counted twice.
    fleet = fleet_from_config(SimConfig(racks_per_cluster=2, nodes_per_rack=2), FakeClock())
    inventory = inventory_from_fleet(fleet)
    for job in fleet.training_jobs():
        found = inventory.find_workload(WorkloadKind.TRAINING_JOB, str(sim_job_id(job)), "", job.cluster)
        assert found is not None and (found.name, found.cluster) == (job.name, job.cluster)
