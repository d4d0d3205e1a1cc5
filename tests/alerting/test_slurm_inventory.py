"""Reading Slurm's answers into an inventory: hostlists, GRES strings, the topology's racks, and a fake
Slurm's jobs kept after they fail or are requeued, spare GPUs and nodes, and answers it cannot read."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from alerting.db import make_engine
from alerting.engine import IncidentEngine
from alerting.inventory import StaticInventory
from alerting.migrate import upgrade
from alerting.slurm_hostlist import expand_hostlist
from alerting.slurm_inventory import SlurmInventory, gpu_count, parse_cluster_name, parse_topology
from alerting.slurm_jobs import gpu_indices
from gpuwarden.clock import FakeClock
from gpuwarden.errors import SourceError
from gpuwarden.model import Alert, WorkloadKind
from tests.alerting.fake_slurm import FakeSlurm, _job
from tests.alerting.slurm_recorded import RecordedSlurm


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("node-01", ["node-01"]),
        ("node-[01-03,07]", ["node-01", "node-02", "node-03", "node-07"]),
        ("gpu[8-10],login", ["gpu8", "gpu9", "gpu10", "login"]),
        ("r[1-2]n[01-02]", ["r1n01", "r1n02", "r2n01", "r2n02"]),
    ],
    ids=["one", "padded-ranges", "unpadded-and-plain", "two-groups"],
)
def test_hostlists_expand_as_scontrol_show_hostnames_does(text: str, names: list[str]) -> None:
    assert expand_hostlist(text) == names


@pytest.mark.parametrize(
    ("gres", "count"),
    [("gpu:8", 8), ("gpu:h100:8(S:0-1)", 8), ("gpu:a100:2,gpu:t4:2", 4), ("", 0), ("mps:100", 0)],
)
def test_gpus_of_a_node_from_its_gres(gres: str, count: int) -> None:
    assert gpu_count(gres) == count


def test_gpu_indices_of_a_job_on_one_node() -> None:
    assert gpu_indices("gpu:4(IDX:0-3)") == [0, 1, 2, 3]
    assert gpu_indices("gpu:h100:3(IDX:0,2,5-6)") == [0, 2, 5, 6]
    assert gpu_indices("") == []


def test_racks_are_the_leaf_switches_of_the_topology() -> None:
    text = (
        "SwitchName=r01 Level=0 LinkSpeed=1 Nodes=node-[01-02]\n"
        "SwitchName=r02 Level=0 LinkSpeed=1 Nodes=node-03\n"
        "SwitchName=spine Level=1 LinkSpeed=1 Nodes=node-[01-03] Switches=r[01-02]\n"
    )
    assert parse_topology(text) == {"node-01": "r01", "node-02": "r01", "node-03": "r02"}
    assert parse_cluster_name("AuthType = auth/munge\nClusterName             = c7\n") == "c7"


def test_a_job_stays_known_a_while_after_it_fails_and_spare_gpus_follow_slurm() -> None:
    slurm, clock = FakeSlurm(), FakeClock()
    reader = SlurmInventory(clock, slurm, keep_ended_seconds=300)
    slurm.jobs = [_job(41, "llm-70b", "RUNNING"), _job(42, "pending", "PENDING")]
    first = reader.read()
    assert [(n.name, n.rack, n.gpu_count) for n in first.node_list] == [("n1", "r07", 8), ("n2", "r07", 8)]
    (job,) = first.workload_list  # a pending job holds no GPUs... until it runs
    assert job.ref.name == "llm-70b (41)" and job.aliases == ("41", "llm-70b") and len(job.units) == 10
    assert first.spare == {"c1": 6}
    slurm.jobs = [_job(41, "llm-70b", "NODE_FAIL")]
    slurm.node_state = "down"
    clock.advance(120)
    after = reader.read()
    assert [w.ref.name for w in after.workload_list] == ["llm-70b (41)"]
    assert after.spare == {"c1": 0}  # down nodes spare nothing
    clock.advance(299)
    assert reader.read().workload_list != []  # kept keep_ended_seconds from when it stopped
    clock.advance(2)
    assert reader.read().workload_list == []


@pytest.mark.parametrize(
    ("state", "node_after", "kept"),
    [
        ("COMPLETED", "idle", False),
        ("CANCELLED", "idle", False),
        ("TIMEOUT", "idle", False),
        ("FAILED", "idle", True),  # a GPU fault kills the job's processes, not its node
        ("NODE_FAIL", "idle", True),
        ("PENDING", "down", True),
        ("PENDING", "idle+not_responding", True),
        ("PENDING", "idle", False),  # requeued while every node was well: preempted, or a person did it
        ("REQUEUE_HOLD", "idle", False),
    ],
    ids=[
        "completed", "cancelled", "timeout", "failed", "node-fail", "requeued-node-down",
        "requeued-node-not-responding", "requeued-nodes-well", "requeue-hold-nodes-well",
    ],
)  # fmt: skip
def test_only_a_job_that_stopped_abnormally_is_kept(state: str, node_after: str, kept: bool) -> None:
    slurm, clock = FakeSlurm(), FakeClock()
    reader = SlurmInventory(clock, slurm, keep_ended_seconds=300)
    slurm.jobs = [_job(41, "llm-70b", "RUNNING")]
    reader.read()
    slurm.jobs, slurm.states = [_job(41, "llm-70b", state)], {"n2": node_after}
    clock.advance(10)
    assert bool(reader.read().workload_list) is kept


@pytest.mark.parametrize(
    ("field", "kept"),
    [("boot_time", True), ("slurmd_start_time", True), ("last_busy", False)],
    ids=["rebooted", "slurmd-restarted", "only-busy-changed"],
)
def test_a_job_requeued_off_a_node_that_restarted_between_two_reads_is_kept(field: str, kept: bool) -> None:
    # A node that failed and came back between two reads shows nothing wrong at either; one that rebooted
    # (or whose slurmd started again) says when. last_busy moves whenever a job leaves a node: no trace.
    slurm, clock = FakeSlurm(), FakeClock()
    times = {"boot_time": 1_000, "slurmd_start_time": 1_100, "last_busy": 1_200}
    slurm.extra = {"n1": dict(times)}
    reader = SlurmInventory(clock, slurm, keep_ended_seconds=300)
    slurm.jobs = [_job(41, "llm-70b", "RUNNING")]
    reader.read()
    slurm.jobs, slurm.node_state = [_job(41, "llm-70b", "PENDING")], "idle"
    slurm.extra = {"n1": {**times, field: 1_500}}
    clock.advance(10)
    assert bool(reader.read().workload_list) is kept


def _read_recorded(*captures: str) -> StaticInventory:
    """The inventory after a reader read each capture of the preemption cluster in turn, 10 s apart."""
    slurm, clock = RecordedSlurm(captures[0], topology="empty.txt"), FakeClock()
    reader = SlurmInventory(clock, slurm)
    for capture in captures:
        slurm.capture = capture
        inventory = reader.read()
        clock.advance(10)
    return inventory


def test_a_preempted_or_operator_requeued_job_is_not_blamed_for_a_later_node_failure() -> None:
    # Real Slurm 22.05: low (6) on gpu01 preempted by high (8, PreemptMode=REQUEUE), rq (7) on gpu02
    # requeued by `scontrol requeue`; then gpu01 dies. Both were PENDING with every node well: low was kept
    # as stopped and the node's incident said "high (8) stopped, low (6) stopped".
    inventory = _read_recorded("Q-running", "Q-requeued")
    assert [(w.ref.name, w.kept) for w in inventory.workload_list] == [("high (8)", 0)]
    sql = make_engine("sqlite://")
    upgrade(sql)
    gw = IncidentEngine(sql, FakeClock(), inventory=inventory)
    gw.ingest([Alert({"alertname": "NodeDown", "cluster": "cap", "node": "gpu01"})])
    ((row, _),) = gw.store.list_rows(None)
    assert "high (8)" in row.title and "low (6)" not in row.title, row.title


def test_a_job_requeued_off_a_node_that_stopped_answering_is_kept_though_the_node_came_back() -> None:
    # Real Slurm 22.05: gpu07's slurmd stopped answering (NOT_RESPONDING at one read), slurmctld set it
    # DOWN, requeued flap (9), and gpu07 was back within a second: the next read shows it well.
    assert [(w.ref.name, w.state) for w in _read_recorded("F-running", "F-requeued").workload_list] == []
    kept = _read_recorded("F-running", "F-stalled", "F-requeued").workload_list
    assert [(w.ref.name, w.state, w.kept) for w in kept] == [("flap (9)", "pending", 4)]


def test_a_job_gone_from_squeue_while_running_is_kept() -> None:
    slurm, clock = FakeSlurm(), FakeClock()
    reader = SlurmInventory(clock, slurm, keep_ended_seconds=300)
    slurm.jobs = [_job(41, "llm-70b", "RUNNING")]
    reader.read()
    slurm.jobs = []
    assert [w.ref.name for w in reader.read().workload_list] == ["llm-70b (41)"]


def test_a_node_removed_from_slurm_while_its_incident_is_open_keeps_its_place_and_stopped_job() -> None:
    # n2 failed and took job 41; then it left Slurm's node list (slurm.conf and `scontrol reconfigure`, a
    # dynamic node deleted): the incident's next alert for n2 lost the cluster and rack, and the job too.
    slurm, clock = FakeSlurm(), FakeClock()
    reader = SlurmInventory(clock, slurm)
    slurm.jobs = [_job(41, "llm-70b", "RUNNING")]
    sql = make_engine("sqlite://")
    upgrade(sql)
    gw = IncidentEngine(sql, clock, inventory=reader.read())
    slurm.jobs, slurm.states["n2"] = [_job(41, "llm-70b", "NODE_FAIL")], "down"
    gw.replace_inventory(reader.read())
    gw.ingest([Alert({"alertname": "NodeDown", "node": "n2"})])
    slurm.removed.add("n2")
    clock.advance(60)
    inventory = reader.read()
    gw.replace_inventory(inventory)
    n2 = inventory.node("n2")
    assert n2 is not None and (n2.cluster, n2.rack, n2.state, n2.usable, n2.free) == (
        "c1",
        "r07",
        "deleted",
        False,
        0,
    )
    gw.ingest([Alert({"alertname": "GpuXid", "xid": "79", "Hostname": "n2", "gpu": "1"})])
    ((row, _),) = gw.store.list_rows(None)
    assert "llm-70b (41)" in row.title, row.title
    target = gw.store.get(row.id).root_cause.target
    assert (target.cluster, target.rack) == ("c1", "r07")


def test_two_jobs_with_one_name_stay_two_workloads() -> None:
    slurm = FakeSlurm()
    slurm.jobs = [
        _job(41, "train", "RUNNING"),
        {**_job(42, "train", "RUNNING"), "gres_detail": ["gpu:1(IDX:7)"]},
    ]
    inventory = SlurmInventory(FakeClock(), slurm).read()
    assert [w.ref.name for w in inventory.workload_list] == ["train (41)", "train (42)"]
    ref = inventory.find_workload(WorkloadKind.TRAINING_JOB, "42")
    assert ref is not None and inventory.placement(ref) == {("c1", "n1", 7)}


def test_a_powered_down_idle_node_is_usable_and_a_draining_one_is_not() -> None:
    slurm = FakeSlurm()
    slurm.node_state = "idle"
    reader = SlurmInventory(FakeClock(), slurm)
    assert reader.read().spare == {"c1": 16}
    slurm.node_state = "IDLE+POWERED_DOWN"
    assert reader.read().spare == {"c1": 16}
    slurm.node_state = "MIXED+DRAIN"
    assert reader.read().spare == {"c1": 0}


@pytest.mark.parametrize(
    "state",
    ["IDLE+POWERING_DOWN", "IDLE+REBOOT_ISSUED", "IDLE+INVALID_REG", "IDLE+PERFCTRS", "UNKNOWN"],
    ids=["powering-down", "rebooting", "invalid-registration", "network-counters", "not-yet-registered"],
)
def test_an_idle_node_that_sinfo_says_runs_no_job_now_is_not_spare(state: str) -> None:
    # sinfo(1): POWERING_DOWN "not capable of running any jobs", REBOOT_ISSUED rebooting, INVAL "a slurmd
    # restart is required", PERFCTRS "not usable for any other jobs", UNKNOWN not registered since slurmctld
    # started. Each counted 8 spare GPUs, a stopped job's restart room that was not there.
    slurm = FakeSlurm()
    slurm.node_state = state
    inventory = SlurmInventory(FakeClock(), slurm).read()
    assert inventory.spare == {"c1": 0}
    assert not any(node.usable or node.free for node in inventory.node_list)


def test_an_idle_node_the_backfill_scheduler_planned_for_a_pending_job_is_not_spare() -> None:
    # sinfo --json: "state": ["IDLE"], "state_flags": ["PLANNED"]; its GPUs go to the higher-priority job.
    slurm = FakeSlurm()
    slurm.node_state = "IDLE+PLANNED"
    inventory = SlurmInventory(FakeClock(), slurm).read()
    assert inventory.spare == {"c1": 0}
    assert all(node.usable and node.free == 0 for node in inventory.node_list)


def test_json_of_a_slurm_release_this_reader_does_not_know_is_refused_not_read_as_empty() -> None:
    slurm = FakeSlurm()
    slurm.jobs = [{"job_id": 7, "name": "x", "job_state": "RUNNING", "job_resources": {"hosts": 2}}]
    with pytest.raises(SourceError, match=r"neither allocated_nodes nor nodes\.allocation"):
        SlurmInventory(FakeClock(), slurm).read()


def test_a_slurm_that_cannot_be_read_raises_a_source_error() -> None:
    slurm = FakeSlurm()
    slurm.broken = True
    with pytest.raises(SourceError, match="slurmctld not responding"):
        SlurmInventory(FakeClock(), slurm).read()


def test_a_resubmitted_job_answers_to_its_name_and_the_failed_run_to_its_id() -> None:
    slurm, clock = FakeSlurm(), FakeClock()
    reader = SlurmInventory(clock, slurm, keep_ended_seconds=300)
    slurm.jobs = [_job(41, "llm-70b", "RUNNING")]
    reader.read()
    slurm.jobs = [_job(41, "llm-70b", "FAILED"), _job(42, "llm-70b", "RUNNING")]
    clock.advance(10)
    inv = reader.read()
    assert inv.find_workload(WorkloadKind.TRAINING_JOB, "llm-70b") == inv.find_workload(
        WorkloadKind.TRAINING_JOB, "42"
    )
    assert inv.find_workload(WorkloadKind.TRAINING_JOB, "41") is not None  # still known, by its id


def test_a_job_requeued_by_a_node_failure_between_the_reads_of_nodes_and_jobs_is_kept() -> None:
    # n2 fails while a read runs, between its sinfo and squeue: read nodes first, n2 was well at that read
    # and the one before while squeue showed job 41 requeued (PENDING): an operator's requeue, it seemed,
    # and the job was forgotten. Jobs first, the failure shows in the nodes read after them.
    slurm, clock = FakeSlurm(), FakeClock()
    reader = SlurmInventory(clock, slurm, keep_ended_seconds=300)
    slurm.jobs = [_job(41, "llm-70b", "RUNNING")]
    reader.read()
    read_before_failing, asked = reader._run, []

    def failing_meanwhile(argv: Sequence[str]) -> str:
        if argv[0] in ("sinfo", "squeue"):
            asked.append(argv[0])
            if len(asked) == 2:  # the second of the two
                slurm.jobs, slurm.states = [_job(41, "llm-70b", "PENDING")], {"n2": "down"}
        return read_before_failing(argv)

    reader._run = failing_meanwhile
    clock.advance(10)
    reader.read()
    clock.advance(10)
    assert [(w.ref.name, w.state, w.kept) for w in reader.read().workload_list] == [
        ("llm-70b (41)", "pending", 10)
    ]


def test_a_completing_job_keeps_the_gpus_it_ran_on_and_is_not_warned_of_as_a_gres_change(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Real Slurm 22.05 lists a job ending (a node failure's requeue too) COMPLETING with `gres_detail: []`:
    # it was placed by its TRES, on 2 GPUs unknown among n2's 8, warned of as "after a GRES change?", and
    # kept so once requeued: a fault on any of n2's GPUs named it.
    slurm, clock = FakeSlurm(), FakeClock()
    reader = SlurmInventory(clock, slurm, keep_ended_seconds=300)
    job = {
        "job_id": 41,
        "name": "llm-70b",
        "job_state": "RUNNING",
        "job_resources": {"allocated_nodes": [{"nodename": "n2"}]},
        "gres_detail": ["gpu:2(IDX:4-5)"],
        "tres_per_node": "gres:gpu:2",
    }
    slurm.jobs = [job]
    reader.read()
    slurm.jobs = [{**job, "job_state": "COMPLETING", "gres_detail": []}]
    clock.advance(10)
    (ending,) = reader.read().workload_list
    assert (ending.state, sorted(ending.gpus)) == ("completing", [("c1", "n2", 4), ("c1", "n2", 5)])
    assert "without GPU indices" not in caplog.text
    slurm.jobs, slurm.states = (
        [{**job, "job_state": "PENDING", "gres_detail": [], "job_resources": {}}],
        {"n2": "down"},
    )
    clock.advance(10)
    (kept,) = reader.read().workload_list
    assert (kept.state, kept.kept, sorted(kept.gpus)) == ("pending", 2, [("c1", "n2", 4), ("c1", "n2", 5)])
