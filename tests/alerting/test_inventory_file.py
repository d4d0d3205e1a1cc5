"""Inventory files written by ``inventory_data`` (what ``gpuwarden inventory export`` writes) read back as the
live inventory they came from, so that a replay gives the same priorities; older files still read."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from alerting.db import make_engine
from alerting.engine import IncidentEngine
from alerting.inventory import StaticInventory
from alerting.inventory_file import inventory_data, load_inventory
from alerting.k8s_inventory import KubernetesInventory
from alerting.migrate import upgrade
from alerting.slurm_inventory import SlurmInventory
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.errors import ConfigError
from gpuwarden.model import Alert
from tests.alerting.k8s_objects import FakeApi, node, pod, serving_cluster
from tests.alerting.slurm_recorded import RecordedSlurm


def slurm(*captures: str) -> StaticInventory:
    """The recorded Slurm cluster as the reader sees it after reading these captures in turn."""
    recorded = RecordedSlurm(captures[0])
    reader = SlurmInventory(FakeClock(), recorded)
    inventory = reader.read()
    for capture in captures[1:]:
        recorded.capture = capture
        inventory = reader.read()
    return inventory


def kubernetes() -> StaticInventory:
    """Four 8-GPU llama nodes of which g2 died (its replica kept), and two pods sharing g6 without known
    GPU indices (units with sizes and pods per unit)."""
    api, clock = FakeApi(), FakeClock(1000.0)
    serving_cluster(api)
    api.objects["nodes"].append(node("g6", 4))
    api.objects["pods"] += [pod("b", "p1", "g6", 1), pod("b", "p2", "g6", 2)]
    reader = KubernetesInventory(clock, api, cluster="k1")
    reader.read()
    api.objects["nodes"][1] = node("g2", ready=False)
    api.objects["pods"] = [p for p in api.objects["pods"] if p["spec"]["nodeName"] != "g2"]
    clock.advance(60)
    return reader.read()


def exported(inventory: StaticInventory, tmp_path: Path) -> StaticInventory:
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(inventory_data(inventory)))
    return load_inventory(path)


@pytest.mark.parametrize(
    "live",
    [
        pytest.param(lambda: slurm("A"), id="slurm-arrays-het-pending"),
        pytest.param(lambda: slurm("B"), id="slurm-gpus-without-indices"),
        pytest.param(lambda: slurm("C"), id="slurm-reservations"),
        pytest.param(lambda: slurm("D-running", "D-requeued"), id="slurm-node-down-job-kept"),
        pytest.param(kubernetes, id="kubernetes-node-lost-pods-sharing"),
    ],
)
def test_an_export_reads_back_as_the_live_inventory_it_came_from(live, tmp_path: Path) -> None:
    inventory = live()
    again = exported(inventory, tmp_path)
    assert list(again.node_list) == list(inventory.node_list)
    assert list(again.workload_list) == list(inventory.workload_list)
    assert again.spare == inventory.spare


def priority_of_node_down(inventory: StaticInventory, db: Path) -> tuple[str, str]:
    """Priority and title of the incident a NodeDown of node-01 opens under ``inventory``."""
    sql = make_engine(str(db))
    upgrade(sql)
    engine = IncidentEngine(sql, FakeClock(), AlertingConfig(announce_delay_seconds=0), inventory)
    engine.ingest([Alert({"alertname": "NodeDown", "cluster": "cap", "node": "node-01"})])
    ((row, _),) = engine.store.list_rows(None)
    sql.dispose()
    return row.priority, row.title


def test_a_node_down_incident_has_the_same_priority_from_the_live_inventory_and_its_export(
    tmp_path: Path,
) -> None:
    # node-01 went DOWN and Slurm requeued llm, freeing node-02: only its own GPUs are free in partition
    # gpu (node-03 reserved, node-04 in maintenance, node-05 in another partition), so it cannot start
    # again: P0. The cluster's spare_gpus alone say it can (P1), which is what an export that carried no
    # node state gave.
    live = slurm("D-running", "D-requeued")
    assert live.spare_gpus("cap") >= 8
    from_live = priority_of_node_down(live, tmp_path / "live.db")
    assert from_live == ("P0", "node node-01 is down: 1 node, 4 GPUs, training job llm (14) stopped")
    assert priority_of_node_down(exported(live, tmp_path), tmp_path / "replay.db") == from_live


def test_a_file_without_node_or_workload_states_reads_as_before(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_text(
        "nodes:\n  - {name: n1, cluster: c, rack: r, gpus: 2}\n"
        "workloads:\n  - {kind: training_job, name: j, units: [[n1:0], [n1:1]]}\n"
        "spare_gpus: {c: 4}\n"
    )
    inventory = load_inventory(path)
    (n1,) = inventory.node_list
    assert (n1.state, n1.usable, n1.free, n1.idle, n1.partitions) == ("", True, None, frozenset(), ())
    (job,) = inventory.workload_list
    assert (job.state, job.partitions, job.sizes, job.unit_pods, job.group, job.kept) == (
        "running",
        (),
        (),
        (),
        "",
        0,
    )
    assert inventory.free_gpus("c") is None and inventory.spare_gpus("c") == 4  # spare_gpus decides
    assert inventory_data(inventory)["nodes"][0].keys() == {"name", "cluster", "rack", "gpus", "gpu_uuids"}


NODE = "nodes:\n  - {name: n1, cluster: c, rack: r, gpus: 2, %s}\n"
JOB = "workloads:\n  - {kind: training_job, name: j, units: [[n1:0], [n1:1]], %s}\n"


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        (NODE % "free_gpus: 3", "nodes[0]", "free_gpus 3 for 2 gpus"),
        (NODE % "idle_gpus: [0, 2]", "nodes[0]", "idle_gpus has GPU 2, but the node has 2"),
        (NODE % "usable: maybe", "nodes[0].usable", "is not true or false; write true or false"),
        (JOB % "sizes: [1]", "workloads[0]", "1 sizes for 2 units: give one per unit"),
        (JOB % "unit_pods: [[a], [b], [c]]", "workloads[0]", "3 unit_pods for 2 units"),
        (JOB % "kept: 3", "workloads[0]", "kept 3 of 2 units"),
        (JOB % "state: ''", "workloads[0].state", "empty; write a value"),
    ],
    ids=[
        "free-over-gpus",
        "idle-beyond",
        "usable-not-bool",
        "sizes-short",
        "pods-long",
        "kept-over",
        "state",
    ],
)
def test_node_and_workload_states_that_contradict_the_entry_are_refused_at_its_line(
    tmp_path: Path, text: str, field: str, words: str
) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_inventory(path)
    assert (info.value.line, info.value.field) == (2, field) and words in str(info.value)


@pytest.mark.parametrize(
    ("text", "field", "meant"),
    [
        ("nodes:\n- {name: n1, cluster: c, rack: r, Gpus: 8}\n", "nodes[0].Gpus", "gpus"),
        (
            "nodes:\n- {name: n1, cluster: c, rack: r, gpus: 8, gpu_uuid: [GPU-1]}\n",
            "nodes[0].gpu_uuid",
            "gpu_uuids",
        ),
        ("workloads:\n- {kind: training_job, name: j, Units: [[n1:0]]}\n", "workloads[0].Units", "units"),
        ("spare_gpu: {c: 1}\n", "spare_gpu", "spare_gpus"),
    ],
    ids=["miscased", "plural", "workload", "top-level"],
)
def test_a_miscased_or_misspelt_key_is_refused_naming_the_key_it_was_meant_to_be(
    tmp_path: Path, text: str, field: str, meant: str
) -> None:
    """An inventory file's unknown key said only "Extra inputs are not permitted"; the configuration file's
    loader already named the field meant (``Port`` -> ``port``), and an inventory file now does too."""
    path = tmp_path / "inventory.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_inventory(path)
    assert info.value.field == field and f"did you mean {meant}?" in str(info.value)


def test_an_inventory_file_whose_top_level_is_a_list_is_told_what_to_write(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_text("- name: node-01\n")
    with pytest.raises(ConfigError) as refused:
        load_inventory(path)
    assert "the top level is a list, not a mapping; write one `name:` line per section (nodes," in str(
        refused.value
    )
