"""Whether a stopped training job can start again: P0 ("fully stopped with no spare capacity") or P1."""

from __future__ import annotations

from dataclasses import replace

import pytest
from sqlalchemy import Engine

from alerting.capacity import can_restart, gpus_lost, units_hit
from alerting.engine import IncidentEngine
from alerting.inventory import GpuKey, NodeInfo, StaticInventory, WorkloadInfo
from alerting.slurm_inventory import SlurmInventory
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert, WorkloadKind, WorkloadRef
from tests.alerting.slurm_recorded import RecordedSlurm

DUO = WorkloadRef(WorkloadKind.TRAINING_JOB, "", "duo (5)", "c1")


def node(name: str, free: int, usable: bool = True, partition: str = "gpu") -> NodeInfo:
    """A 4-GPU node of c1 (rack r1, n3 in r2) with its first ``free`` GPUs free."""
    rack = "r2" if name == "n3" else "r1"
    idle = frozenset(range(free))
    return NodeInfo(name, "c1", rack, 4, usable=usable, free=free, idle=idle, partitions=(partition,))


def duo_on(*names: str, partitions: tuple[str, ...] = ("gpu",)) -> WorkloadInfo:
    units = tuple(frozenset({("c1", n, i)}) for n in names for i in range(4))
    return WorkloadInfo(DUO, units, aliases=("5", "duo"), partitions=partitions)


def gpus(*names: str) -> frozenset[GpuKey]:
    return frozenset(("c1", n, i) for n in names for i in range(4))


@pytest.mark.parametrize(
    ("nodes", "lost", "restarts"),
    [
        ([node("n1", 0), node("n2", 0), node("n3", 4)], gpus("n1"), True),
        # requeued: Slurm freed its healthy half, which is its own, not spare beyond its size
        ([node("n1", 0, usable=False), node("n2", 4), node("n3", 0)], gpus("n1"), False),
        # the idle node is another incident's: not spare
        ([node("n1", 0), node("n2", 0), node("n3", 4)], gpus("n1", "n3"), False),
        # free GPUs only in a partition the job does not use
        ([node("n1", 0), node("n2", 0), node("n3", 4, partition="other")], gpus("n1"), False),
        # reserved or in maintenance: the reader gives it no free GPU
        ([node("n1", 0), node("n2", 0), node("n3", 0, usable=False)], gpus("n1"), False),
        # one GPU of n3 is lost (an XID on an idle GPU): 3 free are not enough
        ([node("n1", 0), node("n2", 0), node("n3", 4)], gpus("n1") | {("c1", "n3", 2)}, False),
    ],
    ids=["spare", "own-gpus-freed", "lost-elsewhere", "other-partition", "reserved", "idle-gpu-lost"],
)
def test_a_job_can_restart_on_free_usable_gpus_of_its_partitions_plus_its_own_healthy_ones(
    nodes: list[NodeInfo], lost: frozenset[GpuKey], restarts: bool
) -> None:
    inventory = StaticInventory(nodes, [duo_on("n1", "n2")], {"c1": 4})
    assert can_restart(inventory, [DUO], lost) is restarts


@pytest.mark.parametrize(
    ("nodes", "excluded", "restarts"),
    [
        ((), (), True),
        (("n1", "n2"), (), False),
        (("n1", "n2", "n3"), (), True),
        ((), ("n3",), False),
        ((), ("n2",), True),
    ],
    ids=[
        "anywhere",
        "pinned-to-its-nodes",
        "pinned-with-the-free-node",
        "free-node-excluded",
        "other-excluded",
    ],
)
def test_a_job_restarts_only_on_free_gpus_of_nodes_it_may_run_on(
    nodes: tuple[str, ...], excluded: tuple[str, ...], restarts: bool
) -> None:
    duo = replace(duo_on("n1", "n2"), nodes=nodes, excluded_nodes=excluded)
    inventory = StaticInventory([node("n1", 0), node("n2", 0), node("n3", 4)], [duo], {"c1": 4})
    assert can_restart(inventory, [DUO], gpus("n1")) is restarts


@pytest.mark.parametrize(
    ("constraint", "restarts"),
    [
        ("a100", False),
        ("a100|h100", True),
        ("h100&ib", True),
        ("a100&ib", False),
        ("[a100|h100]*2", True),
        ("(a100|h100)&ib", True),
        ("ib&(a100|big)", False),
        # Slurm reads & and | left to right, without precedence: (h100|a100)&big, which n3 lacks
        ("h100|a100&big", False),
        ("h100&ib|a100", True),
        ("[a100|h100]", True),
        ("[a100|v100]", False),
        ("[a100|v100]&ib", False),
        # counted features are not placed node by node: each node is held to them (never over-counts)
        ("v100*2", False),
        ("h100*2", True),
        # [rack1*2&rack2*4]: each of the job's nodes is in one of the counted groups
        ("[a100*1&v100*1]", False),
        ("[v100*1&h100*3]", True),
        ("!a100", True),
        ("!ib", False),
        ("h100&!ib", False),
        ("!a100&ib|v100", True),
        ('"h100"&ib', True),
        ("'a100'|\"v100\"", False),
        ("a100!", False),  # not read: no node, only the job's own GPUs
        ("!(a100|v100)", False),  # NOT before a group is not read
    ],
    ids=[
        "feature-n3-lacks",
        "any-of",
        "all-of",
        "one-of-all-missing",
        "count-on-brackets",
        "parentheses",
        "parentheses-missing",
        "left-to-right",
        "and-then-or",
        "matching-or",
        "matching-or-missing",
        "matching-or-and",
        "count-missing",
        "count",
        "multiple-counts-missing",
        "multiple-counts",
        "not",
        "not-missing",
        "and-not",
        "not-and-then-or",
        "quoted",
        "quoted-missing",
        "unreadable",
        "not-a-group-unreadable",
    ],
)
def test_a_job_restarts_only_on_nodes_with_the_features_its_constraint_asks_for(
    constraint: str, restarts: bool
) -> None:
    n3 = replace(node("n3", 4), features=frozenset({"h100", "ib"}))
    duo = replace(duo_on("n1", "n2"), constraint=constraint)
    inventory = StaticInventory([node("n1", 0), node("n2", 0), n3], [duo], {"c1": 4})
    assert can_restart(inventory, [DUO], gpus("n1")) is restarts


def test_two_stopped_jobs_compete_for_the_same_free_gpus() -> None:
    other = WorkloadRef(WorkloadKind.TRAINING_JOB, "", "solo (6)", "c1")
    solo = WorkloadInfo(other, tuple(frozenset({("c1", "n4", i)}) for i in range(4)), partitions=("gpu",))
    nodes = [node("n1", 0), node("n2", 0), node("n3", 4), node("n4", 0)]
    inventory = StaticInventory(nodes, [duo_on("n1", "n2"), solo], {"c1": 4})
    assert can_restart(inventory, [DUO], gpus("n1")) is True
    assert can_restart(inventory, [DUO, other], gpus("n1", "n4")) is False  # 4 free GPUs, 8 wanted


def test_an_inventory_file_without_free_gpus_per_node_says_nothing() -> None:
    inventory = StaticInventory([NodeInfo("n1", "c1", "r1", 4)], [duo_on("n1")], {"c1": 4})
    assert can_restart(inventory, [DUO], gpus("n1")) is None


def engine(sql: Engine, clock: FakeClock, inventory: StaticInventory) -> IncidentEngine:
    return IncidentEngine(sql, clock, AlertingConfig(announce_delay_seconds=0), inventory)


def test_a_requeued_job_whose_node_died_stays_p0_when_only_its_own_gpus_are_free(sql: Engine) -> None:
    # Real Slurm: llm on node-01,02 of partition gpu; node-03 reserved, node-04 in maintenance, node-05 idle
    # in partition other. node-01 goes DOWN and Slurm requeues llm, freeing node-02.
    slurm, clock = RecordedSlurm("D-running"), FakeClock()
    reader = SlurmInventory(clock, slurm)
    gw = engine(sql, clock, reader.read())
    gw.ingest([Alert({"alertname": "NodeDown", "cluster": "cap", "node": "node-01"})])
    ((row, _),) = gw.store.list_rows(None)
    assert row.priority == "P0" and "training job llm (14) stopped" in row.title
    slurm.capture = "D-requeued"
    clock.advance(30)
    gw.replace_inventory(reader.read())
    incident = gw.store.get(row.id)
    assert incident.priority.value == "P0" and "training job llm (14) stopped" in incident.title


def test_an_idle_node_another_incident_lost_is_not_spare(sql: Engine) -> None:
    clock = FakeClock()
    nodes = [node("n1", 0), node("n2", 0), node("n3", 4), node("n4", 0)]
    gw = engine(sql, clock, StaticInventory(nodes, [duo_on("n1", "n2")], {"c1": 4}))
    gw.ingest([Alert({"alertname": "NodeDown", "cluster": "c1", "node": "n1"})])
    assert [r.priority for r, _ in gw.store.list_rows(None)] == ["P1"]  # n3 is free
    clock.advance(10)
    gw.ingest([Alert({"alertname": "NodeDown", "cluster": "c1", "node": "n3"})])  # an idle node
    by_root = {r.root_target.get("name"): r.priority for r, _ in gw.store.list_rows(None)}
    assert by_root == {"n1": "P0", "n3": "P2"}


def test_a_unit_whose_gpu_indices_are_unknown_is_hit_only_when_what_is_known_says_so() -> None:
    # Two pods share n1's 8 GPUs, indices unknown: a (2 GPUs) and b (4 GPUs).
    svc = WorkloadRef(WorkloadKind.INFERENCE_SERVICE, "ns", "svc", "c1")
    everywhere = frozenset(("c1", "n1", i) for i in range(8))
    info = WorkloadInfo(svc, (everywhere, everywhere), sizes=(2, 4), unit_pods=(("a",), ("b",)))
    one = frozenset({("c1", "n1", 0)})
    assert units_hit(info, one) == []  # GPU 0 may be idle
    assert units_hit(info, one, {("c1", "n1", 0): frozenset({("ns", "a")})}) == [0]  # the alert names pod a
    assert units_hit(info, frozenset(list(everywhere)[:5])) == [1]  # 5 lost: b's 4 cannot all be clear
    assert units_hit(info, everywhere) == [0, 1]  # the node
    assert info.held == 6 and gpus_lost(info, [0, 1], everywhere) == 6


def test_a_lost_gpu_on_a_node_one_services_replicas_fill_takes_one_of_them_though_none_is_named() -> None:
    # Replicas a and b of one service hold all of n1's 8 GPUs (4 each), indices unknown: GPU 5 is theirs.
    svc = WorkloadRef(WorkloadKind.INFERENCE_SERVICE, "ns", "svc", "c1")
    n1 = frozenset(("c1", "n1", i) for i in range(8))
    n2 = frozenset(("c1", "n2", i) for i in range(8))
    info = WorkloadInfo(svc, (n1, n1, n2, n2), sizes=(4, 4, 4, 2), unit_pods=(("a",), ("b",), ("c",), ("d",)))
    assert len(units_hit(info, frozenset({("c1", "n1", 5)}))) == 1
    assert len(units_hit(info, frozenset({("c1", "n1", 5), ("c1", "n1", 6)}))) == 1  # both may be one's
    assert units_hit(info, frozenset({("c1", "n2", 5)})) == []  # n2 has 2 GPUs no replica holds
    assert len(units_hit(info, frozenset(list(n2)[:3]))) == 1  # 3 lost: at most 2 idle
    # The alert gives GPU 5 to a pod of another workload: the replicas are clear of it.
    assert units_hit(info, frozenset({("c1", "n1", 5)}), {("c1", "n1", 5): frozenset({("other", "x")})}) == []


def test_a_gpu_fault_on_a_node_with_two_of_four_replicas_is_p1_though_the_alert_names_no_pod(
    sql: Engine,
) -> None:
    # DESIGN.md: >= 25% of a service's capacity lost is P1. n1's 8 GPUs are all llama's (2 replicas of 4);
    # the XID names no pod (an exporter without the kubelet's pod-resources socket).
    llama = WorkloadRef(WorkloadKind.INFERENCE_SERVICE, "serving", "llama", "k1")
    keys = {n: frozenset(("k1", n, i) for i in range(8)) for n in ("n1", "n2", "n3")}
    units = (keys["n1"], keys["n1"], keys["n2"], keys["n3"])
    pods = (("llama-a",), ("llama-b",), ("llama-c",), ("llama-d",))
    info = WorkloadInfo(llama, units, pods=tuple(p for (p,) in pods), sizes=(4,) * 4, unit_pods=pods)
    nodes = [NodeInfo(n, "k1", "r1", 8, free=0) for n in keys]
    engine = IncidentEngine(sql, FakeClock(1000.0), inventory=StaticInventory(nodes, [info]))
    engine.ingest([Alert({"alertname": "GpuXidError", "node": "n1", "gpu": "5", "xid": "79"})])
    ((row, _),) = engine.store.list_rows(None)
    assert row.priority == "P1" and "inference service llama 25% of replicas lost" in row.title, row.title


@pytest.mark.parametrize(
    ("solo_reach", "restart"),
    [
        ({"constraint": "ib"}, False),
        ({"nodes": ("n3", "n4")}, False),
        ({"constraint": "a100"}, True),
        ({"nodes": ("n4", "n5")}, True),
    ],
    ids=["both-constraints-want-n3", "constraint-and-node-list-want-n3", "constraints-apart", "lists-apart"],
)
def test_two_stopped_jobs_together_restart_only_where_each_may_run(
    solo_reach: dict[str, object], restart: bool
) -> None:
    other = WorkloadRef(WorkloadKind.TRAINING_JOB, "", "solo (6)", "c1")
    solo = WorkloadInfo(other, tuple(frozenset({("c1", "n4", i)}) for i in range(4)), partitions=("gpu",))
    n3 = replace(node("n3", 4), features=frozenset({"h100", "ib"}))
    n5 = replace(node("n5", 4), features=frozenset({"a100"}))
    duo = replace(duo_on("n1", "n2"), constraint="h100")
    solo = replace(solo, **solo_reach)  # type: ignore[arg-type]
    inventory = StaticInventory([node("n1", 0), node("n2", 0), n3, node("n4", 0), n5], [duo, solo], {"c1": 8})
    assert can_restart(inventory, [DUO], gpus("n1")) is True
    assert can_restart(inventory, [other], gpus("n1", "n4")) is True
    # 8 GPUs free, 8 wanted: enough only where each job may use its own share
    assert can_restart(inventory, [DUO, other], gpus("n1", "n4")) is restart


def test_three_stopped_jobs_are_fitted_by_which_nodes_each_may_use() -> None:
    refs = [WorkloadRef(WorkloadKind.TRAINING_JOB, "", f"job ({i})", "c1") for i in range(3)]
    features = {"n3": {"a", "b"}, "n5": {"b", "c"}, "n6": {"c"}}
    nodes = [node("n1", 0)] + [replace(node(n, 4), features=frozenset(f)) for n, f in features.items()]
    jobs = [
        WorkloadInfo(ref, tuple(frozenset({("c1", "n1", i)}) for i in range(4)), constraint=c)
        for ref, c in zip(refs, ["a", "a|b", "b"], strict=True)
    ]
    inventory = StaticInventory(nodes, jobs, {"c1": 12})
    # each pair fits (n3 and n5 for "a" and "b"); all three want n3 and n5 only, 12 GPUs from 8
    assert all(can_restart(inventory, pair, gpus("n1")) for pair in [refs[:2], refs[1:], refs[::2]])
    assert can_restart(inventory, refs, gpus("n1")) is False


def eight(name: str, free: int, features: frozenset[str] = frozenset()) -> NodeInfo:
    """An 8-GPU node of c1 with its first ``free`` GPUs free."""
    idle = frozenset(range(free))
    return NodeInfo(name, "c1", "r1", 8, free=free, idle=idle, partitions=("gpu",), features=features)


WIDE = WorkloadRef(WorkloadKind.TRAINING_JOB, "", "wide (7)", "c1")


def wide_on(*names: str, per_node: int = 8) -> WorkloadInfo:
    """``sbatch --nodes=2 --gres=gpu:8``: 8 GPUs on each of its nodes."""
    units = tuple(frozenset({("c1", n, i)}) for n in names for i in range(8))
    return WorkloadInfo(WIDE, units, partitions=("gpu",), per_node=per_node)


def lost_on(*names: str) -> frozenset[GpuKey]:
    return frozenset(("c1", n, i) for n in names for i in range(8))


@pytest.mark.parametrize(
    ("free", "per_node", "restarts"),
    [
        # one free GPU on each of 16 nodes: 16 GPUs, but no node takes 8 of them
        ({f"f{i}": 1 for i in range(16)}, 8, False),
        # the same job not asking per node (--gpus=16): GPUs are counted
        ({f"f{i}": 1 for i in range(16)}, 0, True),
        ({"f0": 8, "f1": 8}, 8, True),
        # 16 free GPUs, one whole node: it needs two
        ({"f0": 8, "f1": 4, "f2": 4}, 8, False),
    ],
    ids=["scattered", "not-per-node", "two-whole-nodes", "one-whole-node"],
)
def test_a_job_asking_gpus_per_node_restarts_only_on_as_many_nodes_each_with_that_many(
    free: dict[str, int], per_node: int, restarts: bool
) -> None:
    nodes = [eight("a", 0), eight("b", 0)] + [eight(n, f) for n, f in free.items()]
    inventory = StaticInventory(nodes, [wide_on("a", "b", per_node=per_node)], {})
    assert can_restart(inventory, [WIDE], lost_on("a", "b")) is restarts  # both its nodes lost (their rack)


def test_a_job_asking_gpus_per_node_counts_its_own_healthy_gpus_on_their_node_only() -> None:
    # a died; b still holds the job's 8 healthy GPUs (not freed yet); c has 8 free: b and c are its two nodes.
    nodes = [eight("a", 0), eight("b", 0), eight("c", 8)]
    inventory = StaticInventory(nodes, [wide_on("a", "b")], {})
    assert can_restart(inventory, [WIDE], lost_on("a")) is True
    # one of b's GPUs is lost too: b has 7 of its own, c 8: one whole node
    assert can_restart(inventory, [WIDE], lost_on("a") | {("c1", "b", 3)}) is False
    # an idle GPU of c is another incident's: c has 7 to give
    assert can_restart(inventory, [WIDE], lost_on("a") | {("c1", "c", 0)}) is False


def test_a_job_asking_gpus_per_node_uses_only_whole_nodes_it_may_run_on() -> None:
    nodes = [eight("a", 0), eight("b", 8, frozenset({"h100"})), eight("c", 8, frozenset({"a100"}))]
    job = replace(wide_on("a", "d"), constraint="h100")
    inventory = StaticInventory([*nodes, eight("d", 0)], [job], {})
    assert can_restart(inventory, [WIDE], lost_on("a", "d")) is False  # c is whole but has no h100
    job = replace(job, constraint="h100|a100")
    inventory = StaticInventory([*nodes, eight("d", 0)], [job], {})
    assert can_restart(inventory, [WIDE], lost_on("a", "d")) is True


def test_stopped_jobs_together_need_the_gpu_count_fit_and_each_its_whole_nodes() -> None:
    other = WorkloadRef(WorkloadKind.TRAINING_JOB, "", "solo (8)", "c1")
    solo = WorkloadInfo(other, tuple(frozenset({("c1", "s", i)}) for i in range(8)), partitions=("gpu",))
    scattered = [eight(f"f{i}", 2) for i in range(12)]  # 24 GPUs, no whole node
    inventory = StaticInventory(
        [eight("a", 0), eight("b", 0), eight("s", 0), *scattered], [wide_on("a", "b"), solo], {}
    )
    # GPUs alone: 24 free, 16 + 8 wanted; but the wide job finds no whole node
    assert can_restart(inventory, [WIDE, other], lost_on("a", "b", "s")) is False
    assert can_restart(inventory, [other], lost_on("s")) is True


def test_a_constraint_that_is_not_read_counts_no_free_node_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Read as "any node" it made a job that cannot restart look restartable: P1 where it is P0.
    n3 = replace(node("n3", 4), features=frozenset({"h100"}))
    duo = replace(duo_on("n1", "n2"), constraint="h100,,unread")
    inventory = StaticInventory([node("n1", 0), node("n2", 0), n3], [duo], {"c1": 4})
    with caplog.at_level("WARNING", logger="alerting.constraints"):
        assert can_restart(inventory, [DUO], gpus("n1")) is False
        assert can_restart(inventory, [DUO], gpus("n1")) is False
        assert can_restart(inventory, [DUO], frozenset()) is True  # its own GPUs, all healthy
    said = [r.getMessage() for r in caplog.records if "h100,,unread" in r.getMessage()]
    assert len(said) == 1, said


def test_a_node_down_stopping_a_job_that_wants_whole_nodes_is_p0_when_free_gpus_are_scattered(
    sql: Engine,
) -> None:
    # --nodes=2 --gres=gpu:8 on a and b; a dies and Slurm requeues the job, freeing b; 15 other nodes have one
    # GPU free each: 23 free GPUs, one whole node.
    nodes = [replace(eight("a", 0), usable=False), eight("b", 8)] + [eight(f"f{i}", 1) for i in range(15)]
    gw = engine(sql, FakeClock(), StaticInventory(nodes, [wide_on("a", "b")], {}))
    gw.ingest([Alert({"alertname": "NodeDown", "cluster": "c1", "node": "a"})])
    ((row, _),) = gw.store.list_rows(None)
    assert row.priority == "P0" and "training job wide (7) stopped" in row.title, row.title


@pytest.mark.parametrize(
    ("min_nodes", "restarts"),
    [(0, False), (2, False), (1, True)],
    ids=["as-held", "two-of-two", "one-of-two"],
)
def test_a_job_asking_a_range_of_nodes_needs_only_its_minimum_to_restart(
    min_nodes: int, restarts: bool
) -> None:
    # --nodes=1-2 --gres=gpu:8 ran on a and b; a died. b's 8 healthy GPUs are room enough for one node: Slurm
    # starts it again on 1, not on the 2 it last held (c's 4 free GPUs are no whole node).
    job = replace(wide_on("a", "b"), min_nodes=min_nodes)
    inventory = StaticInventory([eight("a", 0), eight("b", 0), eight("c", 4)], [job], {})
    assert can_restart(inventory, [WIDE], lost_on("a")) is restarts


@pytest.mark.parametrize(
    ("queued", "restarts"), [(0, True), (1, False)], ids=["queue-empty", "one-gpu-ahead"]
)
def test_free_gpus_go_to_the_pending_jobs_ahead_of_a_stopped_job_first(queued: int, restarts: bool) -> None:
    # duo lost n1's 4 GPUs and n3 has exactly 4 free: a pending job ahead of it asking one takes one first.
    duo = replace(duo_on("n1", "n2"), queued_ahead=queued)
    inventory = StaticInventory([node("n1", 0), node("n2", 0), node("n3", 4)], [duo], {"c1": 4})
    assert can_restart(inventory, [DUO], gpus("n1")) is restarts
