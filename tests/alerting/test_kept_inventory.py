"""Nodes gone from their source and Kubernetes pods lost with them, kept in the store across a serve
restart."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from sqlalchemy import Engine

from alerting.k8s_inventory import KubernetesInventory
from alerting.kept_inventory import LISTED, NODE, POD, KeptInventoryStore
from alerting.kept_jobs import KeptJobStore
from alerting.slurm_inventory import SlurmInventory
from gpuwarden.clock import FakeClock
from gpuwarden.errors import SourceError
from tests.alerting.fake_slurm import FakeSlurm, _job
from tests.alerting.k8s_objects import FakeApi, inventory, node, serving_cluster
from tests.alerting.kept_scenarios import (
    a_deleted_kubernetes_node_keeps_its_place_and_lost_replica_after_a_restart,
    a_kubernetes_node_deleted_while_serve_was_down_is_judged_at_the_first_read,
    a_removed_slurm_node_keeps_its_place_and_stopped_job_after_a_restart,
    a_slurm_node_removed_while_serve_was_down_keeps_its_place_and_stopped_job,
)


def test_a_node_deleted_from_the_api_keeps_its_place_and_lost_replica_after_serve_restarts(
    sql: Engine,
) -> None:
    a_deleted_kubernetes_node_keeps_its_place_and_lost_replica_after_a_restart(sql)


def test_a_node_removed_from_slurm_keeps_its_place_and_stopped_job_after_serve_restarts(sql: Engine) -> None:
    a_removed_slurm_node_keeps_its_place_and_stopped_job_after_a_restart(sql)


def test_a_node_deleted_while_serve_was_down_is_judged_deleted_at_the_first_read_after_it_starts(
    sql: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    a_kubernetes_node_deleted_while_serve_was_down_is_judged_at_the_first_read(sql)
    assert (
        "nodes g2 left while gpuwarden was down (not listed at the first read since it started,"
        " 1970-01-01T00:26:40Z); the 1 GPU pods last seen on them are lost as of then" in caplog.text
    )


def test_pods_gone_from_a_ready_node_while_serve_was_down_are_not_lost(sql: Engine) -> None:
    # A scale-down while serve was down: llama runs 3 replicas on Ready nodes, none of them lost.
    api, clock = FakeApi(), FakeClock(1000.0)
    serving_cluster(api)
    reader = inventory(api, clock)
    reader.keep_in(KeptInventoryStore(sql, "kubernetes"))
    reader.read()
    del api.objects["pods"][1]
    again = inventory(api, clock)
    again.keep_in(KeptInventoryStore(sql, "kubernetes"))
    (llama,) = again.read().workload_list
    assert (len(llama.units), llama.kept) == (3, 0)


def test_a_node_registered_again_while_serve_was_down_loses_the_pods_it_ran_at_the_first_read(
    sql: Engine,
) -> None:
    # g2 recreated under its name (another uid) while serve was down, without llama's replica.
    api, clock = FakeApi(), FakeClock(1000.0)
    serving_cluster(api)
    for n in api.objects["nodes"]:
        n["metadata"]["uid"] = f"uid-{n['metadata']['name']}"
    reader = inventory(api, clock)
    reader.keep_in(KeptInventoryStore(sql, "kubernetes"))
    reader.read()
    api.objects["nodes"][1]["metadata"]["uid"] = "uid-g2-again"
    del api.objects["pods"][1]
    again = inventory(api, clock)
    again.keep_in(KeptInventoryStore(sql, "kubernetes"))
    (llama,) = again.read().workload_list
    assert (len(llama.units), llama.kept) == (4, 1) and ("k1", "g2", 0) in llama.gpus


def test_a_node_removed_from_slurm_while_serve_was_down_keeps_its_place_and_stopped_job(
    sql: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    a_slurm_node_removed_while_serve_was_down_keeps_its_place_and_stopped_job(sql)
    assert "slurm inventory: nodes n2 left while gpuwarden was down" in caplog.text


def test_the_sources_keep_their_own_rows_of_clusters_of_one_name(sql: Engine) -> None:
    # A Slurm ClusterName and a Kubernetes cluster may be called alike: each reader replaces its own rows.
    slurm, kube = KeptInventoryStore(sql, "slurm"), KeptInventoryStore(sql, "kubernetes")
    slurm.save("c1", {(NODE, "n2"): (1.0, {"name": "n2"})})
    kube.save("c1", {(POD, "a/b/u"): (2.0, {"name": "b"})})
    kube.save("c1", {})
    assert slurm.load("c1") == {(NODE, "n2"): (1.0, {"name": "n2"})} and kube.load("c1") == {}


def test_a_save_replaces_what_was_kept_row_by_row(sql: Engine) -> None:
    # Only the rows that changed are written: one gone is deleted, one changed updated, one new added.
    store = KeptInventoryStore(sql, "kubernetes")
    store.save("k1", {(LISTED, "g1"): (1.0, {"name": "g1"}), (LISTED, "g2"): (1.0, {"name": "g2"})})
    store.save("k1", {(LISTED, "g2"): (2.0, {"name": "g2", "uid": "b"}), (NODE, "g3"): (3.0, {"name": "g3"})})
    assert store.load("k1") == {
        (LISTED, "g2"): (2.0, {"name": "g2", "uid": "b"}),
        (NODE, "g3"): (3.0, {"name": "g3"}),
    }


def test_a_kept_row_that_does_not_read_is_left_out_with_a_warning(
    sql: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    # Written by another version: the rest of what was kept still comes back.
    api, clock = FakeApi(), FakeClock(1000.0)
    serving_cluster(api)
    KeptInventoryStore(sql, "kubernetes").save(
        "k1", {(POD, "serving/x/u"): (990.0, {"name": "x"}), (NODE, "g9"): (990.0, {"gpus": "many"})}
    )
    reader = inventory(api, clock)
    reader.keep_in(KeptInventoryStore(sql, "kubernetes"))
    assert [n.name for n in reader.read().node_list] == ["g1", "g2", "g3", "g4"]
    assert "kept pod serving/x/u left out" in caplog.text and "kept node g9 left out" in caplog.text


class BrokenStore:
    """A store that cannot be reached (PostgreSQL restarting), then can."""

    def __init__(self, store: KeptInventoryStore) -> None:
        self.store, self.down = store, True

    def load(self, cluster: str) -> dict[tuple[str, str], tuple[float, Mapping[str, Any]]]:
        if self.down:
            raise SourceError("kept kubernetes inventory cannot be read: connection refused", source="store")
        return self.store.load(cluster)

    def save(self, cluster: str, kept: Mapping[tuple[str, str], tuple[float, Mapping[str, Any]]]) -> None:
        if self.down:
            raise SourceError("kept kubernetes inventory cannot be saved: connection refused", source="store")
        self.store.save(cluster, kept)

    def drop_others(self, cluster: str | None) -> list[str]:
        if self.down:
            raise SourceError(
                "kept kubernetes inventory cannot be deleted: connection refused", source="store"
            )
        return self.store.drop_others(cluster)


def test_a_store_that_cannot_be_reached_leaves_the_read_alone_and_is_caught_up_later(
    sql: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    api, clock = FakeApi(), FakeClock(1000.0)
    serving_cluster(api)
    broken = BrokenStore(KeptInventoryStore(sql, "kubernetes"))
    reader = inventory(api, clock)
    reader.keep_in(broken)
    reader.read()
    api.objects["nodes"][1] = node("g2", ready=False)  # g2 fails, then is deleted with its pod
    clock.advance(30)
    reader.read()
    del api.objects["nodes"][1], api.objects["pods"][1]
    clock.advance(30)
    assert reader.read().node("g2") is not None  # read though the store is down
    assert "cannot be read: connection refused; asking again at the next read" in caplog.text
    broken.down = False
    clock.advance(30)
    reader.read()
    kept = KeptInventoryStore(sql, "kubernetes").load("k1")
    assert sorted(kind for kind, _ in kept if kind != LISTED) == [NODE, POD]


def test_what_a_renamed_cluster_kept_is_dropped_not_taken_back_when_the_old_name_returns(
    sql: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    # Read as k1; `kubernetes_inventory.cluster` renamed k2; g2 is deleted with llama's replica while it is,
    # and kept its while; renamed back to k1 hours later. k1's rows were never deleted: the reader took them
    # back as if just written, judged g2 gone "while gpuwarden was down" and its replica lost a second time.
    api, clock = FakeApi(), FakeClock(1000.0)
    serving_cluster(api)

    def reader(cluster: str) -> KubernetesInventory:
        read = KubernetesInventory(clock, api, cluster=cluster)
        read.keep_in(KeptInventoryStore(sql, "kubernetes"))
        return read

    reader("k1").read()
    renamed = reader("k2")
    renamed.read()
    assert KeptInventoryStore(sql, "kubernetes").load("k1") == {}
    assert "kubernetes inventory: what it kept for cluster k1 dropped: it reads cluster k2 now" in caplog.text
    del api.objects["nodes"][1], api.objects["pods"][1]
    clock.advance(30)
    (llama,) = renamed.read().workload_list
    assert llama.kept == 1  # lost with g2, as it should
    clock.advance(4 * 3600)
    assert renamed.read().workload_list[0].kept == 0  # its while is over
    (llama,) = reader("k1").read().workload_list
    assert (len(llama.units), llama.kept) == (3, 0)
    assert "left while gpuwarden was down" not in caplog.text
    assert KeptInventoryStore(sql, "kubernetes").load("k2") == {}


def test_the_jobs_and_nodes_kept_for_a_renamed_slurm_cluster_are_dropped(
    sql: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    slurm, clock = FakeSlurm(), FakeClock()
    slurm.jobs = [_job(41, "llm-70b", "RUNNING")]
    reader = SlurmInventory(clock, slurm)
    reader.keep_in(KeptJobStore(sql), KeptInventoryStore(sql, "slurm"))
    reader.read()
    slurm.jobs, slurm.states["n2"] = [_job(41, "llm-70b", "NODE_FAIL")], "down"
    reader.read()
    assert KeptJobStore(sql).load("c1") and KeptInventoryStore(sql, "slurm").load("c1")
    slurm.cluster = "gpu-east"  # ClusterName changed in slurm.conf (with slurmctld's state cleared)
    again = SlurmInventory(clock, slurm)
    again.keep_in(KeptJobStore(sql), KeptInventoryStore(sql, "slurm"))
    again.read()
    assert KeptJobStore(sql).load("c1") == {} and KeptInventoryStore(sql, "slurm").load("c1") == {}
    assert (
        "slurm inventory: the jobs kept for cluster c1 dropped: it reads cluster gpu-east now" in caplog.text
    )
    assert "slurm inventory: what it kept for cluster c1 dropped" in caplog.text
    assert {name for _, name in KeptInventoryStore(sql, "slurm").load("gpu-east")} == {"n1", "n2"}
