from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from alerting import scenarios
from alerting.inventory import (
    NodeInfo,
    StaticInventory,
    WorkloadInfo,
    inventory_data,
    load_inventory,
    merge_inventories,
    workloads_on,
)
from gpuwarden.errors import ConfigError
from gpuwarden.model import WorkloadKind, WorkloadRef


def test_inventory_file_round_trips_nodes_workloads_and_spare(tmp_path: Path) -> None:
    original = scenarios.fleet_inventory(racks=8, spare_gpus=12)
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(inventory_data(original)))
    loaded = load_inventory(path)
    assert loaded.node("r07-n03") == original.node("r07-n03")
    assert loaded.gpu_by_uuid(scenarios.gpu_uuid("r07-n03", 5)) == ("r07-n03", 5)
    assert {w.ref for w in workloads_on(loaded, [("r07-n01", 0)])} == {scenarios.TRAINING_JOB}
    assert loaded.spare_gpus("c1") == 12
    assert len(loaded.nodes_in("c1", "r07")) == 8


def test_bad_gpu_reference_in_inventory_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_text(
        yaml.safe_dump({"workloads": [{"kind": "training_job", "name": "j", "units": [["nocolon"]]}]})
    )
    with pytest.raises(ConfigError, match=r"workloads\.units"):
        load_inventory(path)


def test_unknown_inventory_key_is_an_error_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_text("nodes: []\nrackz: []\n")
    with pytest.raises(ConfigError, match=r"inventory.yaml:2: rackz"):
        load_inventory(path)


def test_inventory_lookups_answer_what_a_scan_of_the_lists_answers() -> None:
    inv = scenarios.fleet_inventory(racks=8)
    for cluster, rack in (("c1", "r07"), ("c1", None), ("c9", None), ("c1", "r99")):
        scan = [n for n in inv.node_list if n.cluster == cluster and rack in (None, n.rack)]
        assert list(inv.nodes_in(cluster, rack)) == scan
    for gpus in ([("r07-n01", 0)], [("r01-n02", 0), ("r08-n08", 7)], [("r03-n01", 0)], []):
        scan_w = [w for w in inv.workload_list if not set(gpus).isdisjoint(w.gpus)]
        assert inv.workloads_on(gpus) == scan_w
    job = scenarios.TRAINING_JOB
    assert inv.placement(job) == frozenset().union(*next(w for w in inv.workload_list if w.ref == job).units)
    assert inv.placement(WorkloadRef(WorkloadKind.TRAINING_JOB, "x", "unknown")) == frozenset()
    assert inv.find_workload(job.kind, job.name) == job
    assert inv.find_workload(job.kind, job.name, job.namespace) == job
    assert inv.find_workload(job.kind, job.name, "elsewhere") is None
    assert inv.find_workload(WorkloadKind.INFERENCE_SERVICE, job.name) is None


def test_inventories_of_two_sources_merge_into_one() -> None:
    training = StaticInventory(
        [NodeInfo("t1", "slurm-a", "r1", 8), NodeInfo("shared", "slurm-a", "r1", 8)],
        [
            WorkloadInfo(
                WorkloadRef(WorkloadKind.TRAINING_JOB, "", "llm (41)"), (frozenset({("t1", 0)}),), ("41",)
            )
        ],
        {"slurm-a": 7},
    )
    serving = StaticInventory(
        [NodeInfo("k1-n1", "k8s-b", "r9", 8), NodeInfo("shared", "k8s-b", "r9", 4)],
        [
            WorkloadInfo(
                WorkloadRef(WorkloadKind.INFERENCE_SERVICE, "serving", "llama"), (frozenset({("k1-n1", 0)}),)
            )
        ],
        {"k8s-b": 3},
    )
    merged = merge_inventories([training, serving])
    assert [n.name for n in merged.node_list] == ["t1", "shared", "k1-n1"]
    assert merged.node("shared").cluster == "slurm-a"  # type: ignore[union-attr]  # the first source's
    assert merged.spare_gpus("slurm-a") == 7 and merged.spare_gpus("k8s-b") == 3
    assert merged.find_workload(WorkloadKind.TRAINING_JOB, "41") is not None
    assert [w.ref.name for w in merged.workloads_on([("k1-n1", 0)])] == ["llama"]
    assert merge_inventories([serving]) is serving
