"""serve's inventory sources: one slow source does not hold up the others."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from alerting.inventory import NodeInfo, StaticInventory, WorkloadInfo
from alerting.kept_inventory import LISTED, KeptInventoryStore
from alerting.kept_jobs import KeptJobStore
from gpuwarden.cli.inventories import Inventories, inventory_refresh
from gpuwarden.clock import SystemClock
from gpuwarden.errors import SourceError
from gpuwarden.model import WorkloadKind, WorkloadRef
from tests.migrated_store import migrated_sqlite

WAIT = 30.0  # a bound on waiting for threads here, never a measured time


class HungSlurm:
    """A Slurm whose slurmctld stopped answering: a read returns only once ``answer`` is set."""

    def __init__(self) -> None:
        self.answer = threading.Event()
        self.reading = threading.Event()

    def read(self) -> StaticInventory:
        self.reading.set()
        self.answer.wait(WAIT)
        return StaticInventory([NodeInfo("n1", "slurm", "r1", 8)])


class Kubernetes:
    """A Kubernetes API that answers at once, with one more node each read (g1, g2, ...)."""

    def __init__(self) -> None:
        self.reads = 0

    def read(self) -> StaticInventory:
        self.reads += 1
        return StaticInventory([NodeInfo(f"g{self.reads}", "k8s", "r2", 8)])


class RecordingEngine(SimpleNamespace):
    """What the refresh touches of the engine: its counters and the inventories it was handed."""

    def __init__(self) -> None:
        super().__init__(counters={"inventory_refresh_failures": 0, "inventory_relists": 0})
        self.handed: list[StaticInventory] = []
        self.fresh_k8s = threading.Event()  # handed a Kubernetes read newer than serve's first one

    def replace_inventory(self, inventory: StaticInventory) -> None:
        self.handed.append(inventory)
        if any(node.name != "g1" and node.cluster == "k8s" for node in inventory.node_list):
            self.fresh_k8s.set()


def test_a_hung_slurm_does_not_hold_up_the_kubernetes_refresh() -> None:
    # slurmctld hung: each failed read takes scontrol's MessageTimeout (10 s here); both sources were read
    # one after the other in one thread, so the Kubernetes view aged by as much at every refresh.
    slurm, k8s, engine = HungSlurm(), Kubernetes(), RecordingEngine()
    inventories = Inventories([], [(slurm, "slurm"), (k8s, "kubernetes")], SystemClock())
    slurm.answer.set()
    assert inventories.read()  # serve's first read, with both answering
    slurm.answer.clear()
    stop = threading.Event()
    task = inventory_refresh(engine, inventories, 0.001)  # type: ignore[arg-type]
    refresh = threading.Thread(target=task, args=(stop,))
    refresh.start()
    try:
        assert slurm.reading.wait(WAIT)  # the refresh is in Slurm's read, which hangs
        assert engine.fresh_k8s.wait(WAIT), "no Kubernetes refresh while Slurm hung"
        assert not slurm.answer.is_set()  # Slurm's read still hangs: it held nothing up
        newest = engine.handed[-1]
        assert {n.name for n in newest.node_list} >= {"n1"}  # Slurm's last good read is kept meanwhile
    finally:
        stop.set()
        slurm.answer.set()
        refresh.join(WAIT)
    assert not refresh.is_alive()


def test_serves_first_read_of_two_sources_does_not_wait_for_one_to_read_the_other() -> None:
    slurm, k8s = HungSlurm(), Kubernetes()
    inventories = Inventories([], [(slurm, "slurm"), (k8s, "kubernetes")], SystemClock())
    first = threading.Thread(target=inventories.read)
    first.start()
    try:
        assert slurm.reading.wait(WAIT)
        # Slurm's read hangs: Kubernetes' read is in all the same (it lists first in neither order).
        deadline = time.monotonic() + WAIT
        while "kubernetes" not in inventories.latest and time.monotonic() < deadline:
            slurm.answer.wait(0.01)
        assert "kubernetes" in inventories.latest and "slurm" not in inventories.latest
    finally:
        slurm.answer.set()
        first.join(WAIT)
    assert set(inventories.latest) == {"slurm", "kubernetes"}


class ExpiringKubernetes:
    """A Kubernetes API whose every list's continue token expires, again on the relist (pods listed slower
    than etcd compacts): each read lists again once, then fails."""

    def __init__(self) -> None:
        self.relists = 0

    def read(self) -> StaticInventory:
        self.relists += 1
        raise SourceError("list pods: HTTP 410 Gone", source="kubernetes")


def test_relists_of_refreshes_that_fail_are_counted_as_they_happen() -> None:
    # Counted only when a read worked: while every refresh failed so, the relists counter stayed at 0 (the
    # failures counter alone rose) until the API was read again, when all of them were added at once.
    k8s, engine = ExpiringKubernetes(), RecordingEngine()
    inventories = Inventories([], [(k8s, "kubernetes")], SystemClock())
    for _ in range(3):
        assert not inventories.read_source(k8s, "kubernetes", engine)  # type: ignore[arg-type]
    assert engine.counters == {"inventory_refresh_failures": 3, "inventory_relists": 3}


def test_what_a_source_no_longer_configured_kept_is_dropped_at_the_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Slurm and Kubernetes inventories configured once, then taken out of the configuration: what they kept
    # was taken back weeks later when configured again, their nodes as last listed then judged gone.
    sql = migrated_sqlite(tmp_path / "gw.db")
    KeptJobStore(sql).save(
        "c1", {"41": (1000.0, WorkloadInfo(WorkloadRef(WorkloadKind.TRAINING_JOB, "", "j"), ()))}
    )
    KeptInventoryStore(sql, "slurm").save("c1", {(LISTED, "n1"): (1000.0, {"name": "n1"})})
    KeptInventoryStore(sql, "kubernetes").save("k1", {(LISTED, "g1"): (1000.0, {"name": "g1"})})
    Inventories([], [(Kubernetes(), "kubernetes")], SystemClock()).keep_in(sql)
    assert KeptJobStore(sql).load("c1") == {} and KeptInventoryStore(sql, "slurm").load("c1") == {}
    assert KeptInventoryStore(sql, "kubernetes").load("k1")  # configured: its reader judges its rows
    assert "slurm inventory: not configured; what it kept for cluster c1 dropped" in caplog.text
    Inventories([], [], SystemClock()).keep_in(sql)
    assert KeptInventoryStore(sql, "kubernetes").load("k1") == {}
