"""The Slurm inventory over recorded Slurm 22.05.8 answers (tests/alerting/slurm_recorded.py): jobs kept or
not, spare nodes and partitions, het jobs and arrays, commands that fail, and stopped jobs placed again."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from alerting.db import make_engine
from alerting.engine import IncidentEngine
from alerting.migrate import upgrade
from alerting.slurm_inventory import SlurmInventory
from alerting.slurm_jobs import gpu_indices
from alerting.topology import UNKNOWN, locate
from gpuwarden.clock import FakeClock
from gpuwarden.model import Alert, FaultKind, Incident, WorkloadKind
from tests.alerting.fake_slurm import FakeSlurm, _job, names
from tests.alerting.slurm_recorded import RECORDED, RecordedSlurm


def test_jobs_that_ended_normally_are_not_kept_though_squeue_lists_them_without_gpus() -> None:
    # Slurm 22.05 lists a job that ended with `gres_detail: []`: it is recognised by its state, not taken
    # for a running job that vanished.
    slurm, clock = RecordedSlurm("B"), FakeClock()
    reader = SlurmInventory(clock, slurm, keep_ended_seconds=3600)
    running = names(reader.read())
    assert {"slow (12)", "arr (5_0)", "arr (5_1)"} <= set(running)
    slurm.capture = "C"  # slow TIMEOUT, the array CANCELLED
    clock.advance(60)
    after = names(reader.read())
    assert not any(name.startswith(("slow", "arr")) for name in after)
    assert "span5 (7)" in after


def test_a_job_holding_gpus_of_two_types_on_one_node_is_placed_on_all_of_them() -> None:
    assert gpu_indices("gpu:a100:2(IDX:0-1),gpu:h100:1(IDX:2)") == [0, 1, 2]
    assert gpu_indices("gpu:a100:0(IDX:),gpu:h100:0(IDX:)") == []
    inventory = SlurmInventory(FakeClock(), RecordedSlurm("A")).read()
    ref = inventory.find_workload(WorkloadKind.TRAINING_JOB, "mixtype")
    assert ref is not None
    assert inventory.placement(ref) == {("cap", "node-05", 0), ("cap", "node-05", 1), ("cap", "node-05", 2)}


def test_a_kept_job_says_it_stopped_and_how() -> None:
    slurm, clock = RecordedSlurm("D-running"), FakeClock()
    reader = SlurmInventory(clock, slurm)
    (llm,) = reader.read().workload_list
    assert (llm.ref.name, llm.state, llm.kept) == ("llm (14)", "running", 0)
    slurm.capture = "D-requeued"  # node-01 DOWN: llm requeued
    clock.advance(30)
    (kept,) = reader.read().workload_list
    assert (kept.ref.name, kept.state, kept.kept, len(kept.units)) == ("llm (14)", "pending", 8, 8)


def test_nodes_in_maintenance_reserved_or_in_no_switch_are_not_spare() -> None:
    # sinfo says `maint` and `resv`; its JSON says idle with the flags MAINTENANCE and RESERVED.
    inventory = SlurmInventory(FakeClock(), RecordedSlurm("C")).read()
    nodes = {n.name: n for n in inventory.node_list}
    assert (nodes["node-04"].state, nodes["node-04"].usable) == ("idle+maintenance+reserved", False)
    assert (nodes["node-03"].state, nodes["node-03"].usable) == ("idle+reserved", False)
    assert (nodes["node-01"].state, nodes["node-01"].usable) == ("mixed", True)
    # node-05's 2 (the het job holds 2); not node-03's and node-04's 8, nor node-02's 2 (ALLOCATED: no CPU
    # left for a job)
    assert inventory.spare == {"cap": 2}
    assert [(n.name, n.free, n.partitions) for n in inventory.node_list] == [
        ("node-01", 0, ("gpu",)),
        ("node-02", 0, ("gpu",)),
        ("node-03", 0, ("gpu",)),
        ("node-04", 0, ("gpu",)),
        ("node-05", 2, ("other",)),
    ]
    # topology/tree with node-05 in no switch: Slurm refuses every job for it ("switches lack access").
    alone = SlurmInventory(FakeClock(), RecordedSlurm("A", "topology-no-switch.txt")).read()
    node05 = next(n for n in alone.node_list if n.name == "node-05")
    assert (node05.rack, node05.state, node05.usable) == (UNKNOWN, "mixed+no_switch", False)
    # topology/none: no switch at all, every node schedulable
    plain = RecordedSlurm("A")
    plain.topology = "empty.txt"
    assert all(n.usable for n in SlurmInventory(FakeClock(), plain).read().node_list)


@pytest.mark.parametrize(
    ("debug", "priority"),
    [("UP", "P1"), ("DRAIN", "P1"), ("DOWN", "P0"), ("INACTIVE", "P0")],
    ids=["up", "drain", "down", "inactive"],
)
def test_a_partition_that_starts_no_job_gives_its_stopped_jobs_no_spare(debug: str, priority: str) -> None:
    # Real Slurm 22.05: `scontrol update PartitionName=debug State=DOWN`, then a node of it died and its job
    # (partition debug) was requeued; the idle node beside it was counted as the job's spare (P1), though
    # Slurm starts no job of a DOWN or INACTIVE partition (DRAIN: it takes no new job, queued ones start).
    slurm, clock = FakeSlurm(), FakeClock()
    slurm.partitions = {"n1": ["debug"], "n2": ["gpu", "debug"]}
    slurm.partition_states = {"gpu": "UP", "debug": debug}
    slurm.node_state = "idle"
    job = {**_job(41, "llm", "RUNNING"), "partition": "debug", "tres_per_node": "gres:gpu:8"}
    slurm.jobs = [
        {**job, "job_resources": {"allocated_nodes": [{"nodename": "n1"}]}, "gres_detail": ["gpu:8(IDX:0-7)"]}
    ]
    reader = SlurmInventory(clock, slurm)
    reader.read()
    slurm.states, slurm.jobs = {"n1": "down"}, [{**job, "job_state": "PENDING", "job_resources": None}]
    clock.advance(30)
    inventory = reader.read()
    n2 = inventory.node("n2")
    assert n2 is not None and (n2.usable, n2.free) == (True, 8)  # partition gpu still starts jobs there
    sql = make_engine("sqlite://")
    upgrade(sql)
    gw = IncidentEngine(sql, clock, inventory=inventory)
    gw.ingest([Alert({"alertname": "NodeDown", "cluster": "c1", "node": "n1"})])
    ((row, _),) = gw.store.list_rows(None)
    assert (row.priority, "training job llm (41) stopped" in row.title) == (priority, True), row.title


def test_a_node_whose_every_partition_is_down_takes_no_new_work() -> None:
    slurm = FakeSlurm()
    slurm.node_state = "idle"
    slurm.partitions = {"n1": ["debug"], "n2": ["gpu", "debug"]}
    slurm.partition_states = {"gpu": "UP", "debug": "DOWN"}
    inventory = SlurmInventory(FakeClock(), slurm).read()
    assert [(n.name, n.state, n.usable, n.free) for n in inventory.node_list] == [
        ("n1", "idle+partitions_down", False, 0),
        ("n2", "idle", True, 8),
    ]
    assert inventory.spare == {"c1": 8}


def test_a_running_job_without_gpu_indices_is_placed_by_its_tres_not_taken_for_gone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The probe's llm after a GRES change: RUNNING, gres_detail [] (here: the recorded job with it emptied).
    slurm, clock = RecordedSlurm("D-running"), FakeClock()
    reader = SlurmInventory(clock, slurm)
    reader.read()
    squeue = json.loads((RECORDED / "squeue-D-running.json").read_text())
    for job in squeue["jobs"]:
        if job["name"] == "llm":
            job["gres_detail"] = []  # tres_per_node: gres:gpu:4

    def emptied(argv: Sequence[str]) -> str:
        return json.dumps(squeue) if argv[0] == "squeue" else slurm(argv)

    reader._run = emptied
    for _ in range(3):
        clock.advance(60)
        inventory = reader.read()
        (llm,) = inventory.workload_list
        assert (llm.ref.name, llm.state, llm.kept, llm.held) == ("llm (14)", "running", 0, 8)
        assert inventory.node("node-02") is not None and inventory.node("node-02").free == 0  # type: ignore[union-attr]
    assert len([r for r in caplog.records if "without GPU indices" in r.getMessage()]) == 1
    # Slurm 22.05 also wrote `gpu:a100:0(IDX:)` for a het job component after a GRES reconfigure.
    het = SlurmInventory(FakeClock(), RecordedSlurm("B")).read()
    (job,) = [w for w in het.workload_list if w.ref.name == "hetjob (8)"]
    assert job.held == 3  # 2 of node-05's 4 (8+0), and node-02's GPU 1 (8+1)
    assert job.gpus == {("cap", "node-05", i) for i in range(4)} | {("cap", "node-02", 1)}


def test_a_het_job_is_one_workload_and_array_tasks_are_named_as_squeue_shows_them() -> None:
    inventory = SlurmInventory(FakeClock(), RecordedSlurm("B")).read()
    by_name = {w.ref.name: w for w in inventory.workload_list}
    het = by_name["hetjob (8)"]  # 8+0 on node-05, 8+1 (job id 9) on node-02: a fault on either stops it
    assert het.aliases == ("8", "8+0", "8+1", "9", "hetjob") and het.partitions == ("other", "gpu")
    for alias in ("8", "8+1", "9"):
        assert inventory.find_workload(WorkloadKind.TRAINING_JOB, alias) == het.ref
    task = by_name["arr (5_0)"]  # job id 10
    assert task.aliases == ("5_0", "10", "arr") and task.group == "5"
    # slurm_job="5", the array as users see it, names every task of it
    located = locate({"alertname": "TrainingJobStalled", "slurm_job": "5"}, FaultKind.JOB_STALLED, inventory)
    assert {w.name for w in located.workloads} == {"arr (5_0)", "arr (5_1)"}
    located = locate({"alertname": "TrainingJobStalled", "slurm_job": "11"}, FaultKind.JOB_STALLED, inventory)
    assert {w.name for w in located.workloads} == {"arr (5_1)"}


def _ended(job_id: int, state: str, ended: float) -> dict[str, object]:
    """A job as squeue lists it after it ended: no GPU indices (22.05 writes `gres_detail: []`)."""
    return {
        **_job(job_id, f"job{job_id}", state),
        "gres_detail": [],
        "tres_per_node": "gres:gpu:4",
        "end_time": int(ended),
    }


def test_a_job_that_failed_before_serve_started_is_still_known_where_it_ran() -> None:
    # serve restarted (an upgrade, a crash, a standby taking over) a minute after a node failure: squeue
    # still lists the job NODE_FAIL with its nodes, and the node's incident must still name it.
    slurm, clock = FakeSlurm(), FakeClock()
    now = clock.time()
    slurm.jobs = [
        _ended(41, "NODE_FAIL", now - 60),
        _ended(42, "FAILED", now - 200),
        _ended(43, "COMPLETED", now - 60),  # ended normally: nothing to explain
        _ended(44, "NODE_FAIL", now - 400),  # ended longer ago than the window
    ]
    inventory = SlurmInventory(clock, slurm, keep_ended_seconds=300).read()
    by_name = {w.ref.name: w for w in inventory.workload_list}
    assert sorted(by_name) == ["job41 (41)", "job42 (42)"]
    job = by_name["job41 (41)"]
    assert (job.state, job.kept, job.held) == ("node_fail", len(job.units), 8)
    assert {node for _, node, _ in job.gpus} == {"n1", "n2"}
    assert [w.ref.name for w in inventory.workloads_on({("c1", "n1", 0)})] == ["job41 (41)", "job42 (42)"]


def test_an_alert_naming_a_node_by_its_slurm_hostname_or_address_is_placed_on_that_node(
    tmp_path: Path,
) -> None:
    # NodeName=n1 NodeHostname=dgx-a-01 NodeAddr=10.0.0.1: node_exporter's `up == 0` says only
    # `instance="10.0.0.1:9100"` (scraped by address), DCGM's `Hostname` is the host's own name.
    slurm = FakeSlurm()
    plain = slurm.__call__

    def named(argv: Sequence[str]) -> str:
        if argv[0] != "sinfo":
            return plain(argv)
        nodes = json.loads(plain(argv))["nodes"]
        for i, node in enumerate(nodes, start=1):
            node.update(hostname=f"dgx-a-0{i}", address=f"10.0.0.{i}")
        return json.dumps({"nodes": nodes})

    slurm.jobs = [_job(41, "llm-70b", "RUNNING")]
    inventory = SlurmInventory(FakeClock(), named).read()
    for labels in (
        {"alertname": "NodeDown", "instance": "10.0.0.2:9100", "cluster": "c1"},
        {"alertname": "NodeDown", "Hostname": "dgx-a-02"},
    ):
        assert locate(labels, FaultKind.NODE_DOWN, inventory).path == ("c1", "r07", "n2"), labels
    node = inventory.node("n2")
    assert node is not None and node.addresses == ("dgx-a-02", "10.0.0.2")
    # The node's incident names the job it stopped, as it does for `node="n2"`.
    sql = make_engine(str(tmp_path / "addr.db"))
    upgrade(sql)
    engine = IncidentEngine(sql, FakeClock(), inventory=inventory)
    engine.ingest([Alert({"alertname": "NodeDown", "instance": "10.0.0.2:9100", "cluster": "c1"})])
    (row, _count) = engine.store.list_rows()[0]
    assert "training job llm-70b (41) stopped" in engine.store.get(row.id).title


@pytest.mark.parametrize(
    ("limits", "priority"),
    [
        ({}, "P1"),
        ({"required_nodes": "n1"}, "P0"),
        ({"excluded_nodes": "n2"}, "P0"),
        ({"required_nodes": "n[1-2]", "excluded_nodes": ""}, "P1"),
        ({"features": "a100&ib"}, "P0"),  # n2 has a100 only
        ({"features": "a100"}, "P1"),
    ],
    ids=[
        "anywhere",
        "pinned-to-its-node",
        "excluded-from-the-free-node",
        "pinned-to-both",
        "n2-lacks-a-feature",
        "n2-has-the-feature",
    ],
)
def test_a_stopped_job_restarts_only_on_nodes_it_may_run_on(
    tmp_path: Path, limits: dict[str, str], priority: str
) -> None:
    # `sbatch -w n1` (ReqNodeList) or `-x n2` (ExcNodeList): n2's 8 idle GPUs are no capacity for it.
    slurm, clock = FakeSlurm(), FakeClock()
    reader = SlurmInventory(clock, slurm)
    pinned = {
        **_job(41, "llm", "RUNNING"),
        "job_resources": {"allocated_nodes": [{"nodename": "n1"}]},
        "gres_detail": ["gpu:8(IDX:0-7)"],
        "partition": "gpu",
        **limits,
    }
    slurm.jobs, slurm.states = [pinned], {"n1": "allocated", "n2": "idle"}
    slurm.features = {"n1": "a100,ib", "n2": "a100"}
    reader.read()
    slurm.jobs, slurm.states = [{**pinned, "job_state": "NODE_FAIL", "gres_detail": []}], {"n1": "down"}
    clock.advance(30)
    inventory = reader.read()
    sql = make_engine(str(tmp_path / "pinned.db"))
    upgrade(sql)
    engine = IncidentEngine(sql, clock, inventory=inventory)
    engine.ingest([Alert({"alertname": "NodeDown", "cluster": "c1", "node": "n1"})])
    ((row, _),) = engine.store.list_rows()
    assert (row.priority, "training job llm (41) stopped" in row.title) == (priority, True), row.title


def test_a_failed_job_found_after_a_restart_is_not_named_by_a_fault_on_another_gpu_of_its_node(
    tmp_path: Path,
) -> None:
    # serve restarted after job 41 (2 of n1's 8 GPUs) FAILED: squeue no longer says which two (22.05 writes
    # `gres_detail: []`, and `scontrol show job -d` `GRES=` for an ended job), so it is on n1, its GPUs not
    # known. A GPU of n1 that falls off the bus an hour later is nothing of its own.
    slurm, clock = FakeSlurm(), FakeClock()
    failed = {
        **_ended(41, "FAILED", clock.time() - 60),
        "job_resources": {"allocated_nodes": [{"nodename": "n1"}]},
        "tres_per_node": "gres:gpu:2",
    }
    slurm.jobs = [failed]
    inventory = SlurmInventory(clock, slurm).read()
    (job,) = inventory.workload_list
    assert (job.held, job.sizes, {g[1] for g in job.gpus}) == (2, (2,), {"n1"})  # on n1, not per GPU

    def incident(alert: dict[str, str], db: str) -> Incident:
        sql = make_engine(str(tmp_path / db))
        upgrade(sql)
        engine = IncidentEngine(sql, clock, inventory=inventory)
        engine.ingest([Alert(alert)])
        ((row, _),) = engine.store.list_rows()
        return engine.store.get(row.id)

    xid = incident({"alertname": "GpuXid", "cluster": "c1", "node": "n1", "gpu": "6", "xid": "79"}, "x.db")
    assert xid.impact.workloads == () and "41" not in xid.title
    # Its whole node down surely took its GPUs: that incident still names it.
    down = incident({"alertname": "NodeDown", "cluster": "c1", "node": "n1"}, "down.db")
    assert "training job job41 (41) stopped" in down.title


def test_a_stopped_job_whose_gpu_indices_squeue_still_gives_is_placed_on_them() -> None:
    slurm, clock = FakeSlurm(), FakeClock()
    slurm.jobs = [
        {
            **_ended(41, "FAILED", clock.time() - 60),
            "job_resources": {"allocated_nodes": [{"nodename": "n1"}]},
            "gres_detail": ["gpu:2(IDX:3-4)"],
        }
    ]
    (job,) = SlurmInventory(clock, slurm).read().workload_list
    assert (job.gpus, job.sizes) == ({("c1", "n1", 3), ("c1", "n1", 4)}, ())


def test_a_job_asking_gpus_per_node_keeps_that_count_and_one_asking_a_total_does_not() -> None:
    # Recorded from a real slurmctld 22.05: llm ran with --nodes=2 --gres=gpu:4 (tres_per_node gres:gpu:4),
    # span5 with --gpus=5 on 2 nodes (tres_per_job), slow with --gres=gpu:h100:1; hetjob's components ask
    # 2 and 1 per node.
    running = {
        w.ref.name: w for w in SlurmInventory(FakeClock(), RecordedSlurm("D-running")).read().workload_list
    }
    assert running["llm (14)"].per_node == 4
    by_name = {w.ref.name: w for w in SlurmInventory(FakeClock(), RecordedSlurm("B")).read().workload_list}
    per_node = {name: by_name[name].per_node for name in ("span5 (7)", "slow (12)", "hetjob (8)")}
    assert per_node == {"span5 (7)": 0, "slow (12)": 1, "hetjob (8)": 0}
