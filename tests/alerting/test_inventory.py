from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from alerting import scenarios
from alerting.faults import classify
from alerting.inventory import (
    NodeInfo,
    StaticInventory,
    WorkloadInfo,
    in_cluster,
    merge_inventories,
    workloads_on,
)
from alerting.inventory_file import inventory_data, load_inventory
from alerting.topology import locate
from gpuwarden.errors import ConfigError
from gpuwarden.model import (
    WorkloadKind,
    WorkloadRef,
    add_workloads,
    shares_workload,
    workload_from_dict,
    workload_to_dict,
)


def test_inventory_file_round_trips_nodes_workloads_and_spare(tmp_path: Path) -> None:
    original = scenarios.fleet_inventory(racks=8, spare_gpus=12)
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(inventory_data(original)))
    loaded = load_inventory(path)
    assert loaded.node("r07-n03") == original.node("r07-n03")
    assert loaded.gpu_by_uuid(scenarios.gpu_uuid("r07-n03", 5)) == ("c1", "r07-n03", 5)
    assert {w.ref for w in workloads_on(loaded, [("c1", "r07-n01", 0)])} == {scenarios.TRAINING_JOB}
    assert loaded.spare_gpus("c1") == 12
    assert len(loaded.nodes_in("c1", "r07")) == 8


def test_bad_gpu_reference_in_inventory_names_the_field(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_text(
        yaml.safe_dump({"workloads": [{"kind": "training_job", "name": "j", "units": [["nocolon"]]}]})
    )
    with pytest.raises(ConfigError, match=r"workloads\[0\]\.units"):
        load_inventory(path)


@pytest.mark.parametrize(
    ("data", "field", "words"),
    [
        (
            {"nodes": [{"name": "n1", "cluster": "c", "rack": "r", "gpus": 8}] * 2},
            "nodes[1].name",
            "listed twice",
        ),
        (
            {
                "nodes": [{"name": "n1", "cluster": "c", "rack": "r", "gpus": 8}],
                "workloads": [{"kind": "training_job", "name": "j", "units": [["n1:7"], ["n1:99"]]}],
            },
            "workloads[0].units[1][0]",
            "n1 has 8 GPUs",
        ),
        ({"spare_gpus": {"c": -3}}, "spare_gpus.c", "-3 is less than 0, the least allowed; write 0 or more"),
    ],
    ids=["duplicate-node", "gpu-index-past-the-node", "negative-spare"],
)
def test_an_inventory_that_contradicts_itself_is_refused_naming_the_field(
    tmp_path: Path, data: dict[str, object], field: str, words: str
) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError) as info:
        load_inventory(path)
    assert info.value.field == field and words in str(info.value)


def test_unknown_inventory_key_is_an_error_with_its_line(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_text("nodes: []\nrackz: []\n")
    with pytest.raises(ConfigError, match=r"inventory.yaml:2: rackz"):
        load_inventory(path)


def test_a_key_given_twice_in_an_inventory_is_refused_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yaml"
    node = "  - {name: %s, cluster: c, rack: r, gpus: 8}\n"
    path.write_text("nodes:\n" + node % "n1" + "nodes:\n" + node % "n2")  # YAML keeps the last: n1 lost
    with pytest.raises(ConfigError, match=r"inventory.yaml:3: duplicate key 'nodes' \(first at line 1\)"):
        load_inventory(path)


NODE = "  - {name: %s, cluster: c, rack: r, gpus: 2, gpu_uuids: [%s]}\n"
JOB = "workloads:\n  - {kind: training_job, name: %s, units: %s}\n"


@pytest.mark.parametrize(
    ("text", "line", "field", "words"),
    [
        (
            "nodes:\n" + NODE % ("n1", "U1") + NODE % ("n2", "U1"),
            3,
            "nodes[1].gpu_uuids[0]",
            "also nodes[0]'s",
        ),
        ("nodes:\n" + NODE % ("n1", "U1, U1"), 2, "nodes[0]", "GPU UUID 'U1' is listed twice"),
        ("nodes:\n" + NODE % ("n1", "U1, U2, U3"), 2, "nodes[0]", "3 gpu_uuids for 2 gpus"),
        ("nodes:\n" + NODE % ("''", "U1"), 2, "nodes[0].name", "empty; write a value"),
        (
            "nodes:\n  - {name: n1, cluster: '', rack: r, gpus: 2}\n",
            2,
            "nodes[0].cluster",
            "empty; write a value",
        ),
        ("nodes:\n  - {name: n1, cluster: c, rack: r, gpus: 100000000000}\n", 2, "nodes[0].gpus", "4096"),
        (JOB % ("j", "[]"), 2, "workloads[0]", "no units and no pods"),
        (JOB % ("j", "[[]]"), 2, "workloads[0].units[0]", "a unit with no GPU: list its GPUs, or say"),
        (JOB % ("''", "[[n1:0]]"), 2, "workloads[0].name", "empty; write a value"),
        (JOB % ("j", "[[n1:0]]") + JOB[11:] % ("j", "[[n2:0]]"), 3, "workloads[1].name", "listed twice"),
        (JOB % ("j", "[[n1:0, 'n1:\u00b2']]"), 2, "workloads[0].units[0][1]", 'must be "node:index"'),
        ("spare_gpus: {'': 3}\n", 1, "spare_gpus", "key '': empty; write a name"),
    ],
    ids=[
        *("uuid-on-two-nodes", "uuid-twice-on-a-node", "more-uuids-than-gpus", "node-name-empty"),
        *("node-cluster-empty", "gpus-absurd", "no-units-no-pods", "empty-unit", "workload-name-empty"),
        *("workload-twice", "superscript-index", "spare-of-no-cluster"),
    ],
)
def test_an_inventory_that_contradicts_itself_is_refused_at_its_line(
    tmp_path: Path, text: str, line: int, field: str, words: str
) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_inventory(path)
    assert (info.value.line, info.value.field) == (line, field) and words in str(info.value)


def test_pending_pods_alone_still_make_a_workload_known_by_name(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_text("workloads:\n  - {kind: inference_service, name: s, units: [], pods: [s-0]}\n")
    assert [w.ref.name for w in load_inventory(path).workloads()] == ["s"]  # as an export writes one


def test_an_export_reads_back_when_a_source_knows_more_uuids_than_gpus_or_a_unit_without_gpus(
    tmp_path: Path,
) -> None:
    node = NodeInfo("n1", "c", "r", 1, ("U0", "U1"))  # the device plugin reports one GPU fewer
    ref = WorkloadRef(WorkloadKind.INFERENCE_SERVICE, "ns", "s", "c")
    service = WorkloadInfo(ref, (frozenset({("c", "n1", 0)}), frozenset()), pods=("s-0", "s-1"))
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(inventory_data(StaticInventory([node], [service]))))
    again = load_inventory(path)
    assert again.gpu_by_uuid("U1") == ("c", "n1", 1) and again.workloads()[0].pods == ("s-0", "s-1")


def test_inventory_lookups_answer_what_a_scan_of_the_lists_answers() -> None:
    inv = scenarios.fleet_inventory(racks=8)
    for cluster, rack in (("c1", "r07"), ("c1", None), ("c9", None), ("c1", "r99")):
        scan = [n for n in inv.node_list if n.cluster == cluster and rack in (None, n.rack)]
        assert list(inv.nodes_in(cluster, rack)) == scan
    for gpus in (
        [("c1", "r07-n01", 0)],
        [("c1", "r01-n02", 0), ("c1", "r08-n08", 7)],
        [("c1", "r03-n01", 0)],
        [],
    ):
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
                WorkloadRef(WorkloadKind.TRAINING_JOB, "", "llm (41)"), (frozenset({("", "t1", 0)}),), ("41",)
            )
        ],
        {"slurm-a": 7},
    )
    serving = StaticInventory(
        [NodeInfo("k1-n1", "k8s-b", "r9", 8), NodeInfo("shared", "k8s-b", "r9", 4)],
        [
            WorkloadInfo(
                WorkloadRef(WorkloadKind.INFERENCE_SERVICE, "serving", "llama"),
                (frozenset({("", "k1-n1", 0)}),),
            )
        ],
        {"k8s-b": 3},
    )
    merged = merge_inventories([training, serving])
    # Two clusters may each have a node "shared": both stay, each found in its cluster, neither by name alone.
    assert [(n.cluster, n.name) for n in merged.node_list] == [
        ("slurm-a", "t1"),
        ("slurm-a", "shared"),
        ("k8s-b", "k1-n1"),
        ("k8s-b", "shared"),
    ]
    assert merged.node("shared") is None and merged.node("shared", "k8s-b").gpu_count == 4  # type: ignore[union-attr]
    assert merged.node("t1") == merged.node("t1", "slurm-a") is not None
    assert merged.spare_gpus("slurm-a") == 7 and merged.spare_gpus("k8s-b") == 3
    assert merged.find_workload(WorkloadKind.TRAINING_JOB, "41") is not None
    # GPU keys read without a cluster take that of the one node of their name.
    assert [w.ref.name for w in merged.workloads_on([("k8s-b", "k1-n1", 0)])] == ["llama"]
    assert merged.placement(merged.workloads()[0].ref) == {("slurm-a", "t1", 0)}
    # The same node listed by two sources in one cluster is the first source's.
    again = merge_inventories([serving, StaticInventory([NodeInfo("shared", "k8s-b", "r9", 8)])])
    assert [n.gpu_count for n in again.node_list if n.name == "shared"] == [4]
    assert merge_inventories([serving]) is serving


def _slurm_cluster(cluster: str, node: str, job_name: str) -> StaticInventory:
    """One Slurm cluster whose job 1234 runs on its node, as the Slurm source gives it."""
    ref = WorkloadRef(WorkloadKind.TRAINING_JOB, "", f"{job_name} (1234)")
    units = tuple(frozenset({("", node, i)}) for i in range(4))
    jobs = in_cluster([WorkloadInfo(ref, units, aliases=("1234", job_name))], cluster)
    return StaticInventory([NodeInfo(node, cluster, "r1", 8)], jobs, {cluster: 4})


def test_the_same_job_id_in_two_slurm_clusters_is_two_workloads_each_found_from_its_alerts() -> None:
    both = merge_inventories([_slurm_cluster("east", "e1", "pretrain"), _slurm_cluster("west", "w1", "eval")])
    east, west = (w.ref for w in both.workloads())
    assert (east.cluster, west.cluster) == ("east", "west")
    assert both.find_workload(WorkloadKind.TRAINING_JOB, "1234", cluster="west") == west
    assert both.find_workload(WorkloadKind.TRAINING_JOB, "1234", cluster="east") == east
    assert both.find_workload(WorkloadKind.TRAINING_JOB, "1234") is None  # which one: it cannot say
    stall = {"alertname": "TrainingJobStalled", "cluster": "west", "slurm_job": "1234"}
    assert locate(stall, classify(stall), both).workloads == {west}
    by_node = {"alertname": "TrainingJobStalled", "node": "e1", "slurm_job": "1234"}  # its node's cluster
    assert locate(by_node, classify(by_node), both).workloads == {east}


def test_a_job_of_the_same_name_and_id_in_two_clusters_keeps_its_own_gpus() -> None:
    both = merge_inventories([_slurm_cluster("east", "e1", "llm"), _slurm_cluster("west", "w1", "llm")])
    east, west = (w.ref for w in both.workloads())
    assert east != west and east.name == west.name
    assert {gpu[:2] for gpu in both.placement(east)} == {("east", "e1")}
    assert {gpu[:2] for gpu in both.placement(west)} == {("west", "w1")}
    assert both.find_workload(WorkloadKind.TRAINING_JOB, "llm (1234)", cluster="west") == west


def test_a_workload_of_no_known_cluster_answers_in_every_cluster() -> None:
    ref = WorkloadRef(WorkloadKind.INFERENCE_SERVICE, "serving", "chat")
    inv = StaticInventory([], [WorkloadInfo(ref, ())])
    assert inv.find_workload(ref.kind, "chat", cluster="anywhere") == ref
    alert = {"alertname": "InferenceErrorRate", "cluster": "c9", "namespace": "serving", "service": "chat"}
    assert locate(alert, classify(alert), inv).workloads == {ref}
    assert locate(alert, classify(alert), None).workloads == {replace(ref, cluster="c9")}


def test_an_inventory_file_gives_workloads_their_cluster_or_that_of_their_nodes(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "nodes": [
                    {"name": "a1", "cluster": "east", "rack": "r1", "gpus": 2},
                    {"name": "b1", "cluster": "west", "rack": "r1", "gpus": 2},
                ],
                "workloads": [
                    {"kind": "training_job", "name": "on-a", "units": [["a1:0"], ["a1:1"]]},
                    {"kind": "training_job", "name": "across", "units": [["a1:0"], ["b1:0"]]},
                    {"kind": "training_job", "name": "said", "cluster": "west", "units": [["z9:1"]]},
                ],
            }
        )
    )
    inv = load_inventory(path)
    assert [w.ref.cluster for w in inv.workloads()] == ["east", "", "west"]
    assert [set(w.gpus) for w in inv.workloads()] == [
        {("east", "a1", 0), ("east", "a1", 1)},
        {("east", "a1", 0), ("west", "b1", 0)},
        {("west", "z9", 1)},  # a node the file does not list: in the workload's cluster
    ]
    written = inventory_data(inv)
    assert [w.get("cluster") for w in written["workloads"]] == ["east", None, "west"]
    path.write_text(yaml.safe_dump(written))
    assert [w.gpus for w in load_inventory(path).workloads()] == [w.gpus for w in inv.workloads()]


def test_an_inventory_file_keeps_nodes_of_one_name_in_two_clusters_apart(tmp_path: Path) -> None:
    nodes = [
        {"name": "gpu001", "cluster": "east", "rack": "r1", "gpus": 8},
        {"name": "gpu001", "cluster": "west", "rack": "r1", "gpus": 4},
    ]
    job = {"kind": "training_job", "name": "llm", "cluster": "west", "units": [["gpu001:3"]]}
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump({"nodes": nodes, "workloads": [job]}))
    inv = load_inventory(path)
    assert [w.gpus for w in inv.workloads()] == [{("west", "gpu001", 3)}]
    assert inv.node("gpu001") is None and inv.node("gpu001", "west").gpu_count == 4  # type: ignore[union-attr]
    cases = [
        ({**job, "units": [["gpu001:5"]]}, "workloads[0].units[0][0]", "node gpu001 has 4 GPUs"),
        ({**job, "cluster": ""}, "workloads[0].cluster", "clusters east and west both have a node gpu001"),
        (
            {**job, "cluster": "north"},
            "workloads[0].units[0][0]",
            "listed in cluster east, west, not in the workload",
        ),
    ]
    for bad, field, words in cases:
        path.write_text(yaml.safe_dump({"nodes": nodes, "workloads": [bad]}))
        with pytest.raises(ConfigError) as caught:
            load_inventory(path)
        assert caught.value.field == field and words in str(caught.value)
    path.write_text(yaml.safe_dump({"nodes": [*nodes, nodes[1]]}))
    with pytest.raises(
        ConfigError, match=r"node 'gpu001' of cluster 'west' is listed twice \(also nodes\[1\]\)"
    ):
        load_inventory(path)


def test_workloads_match_by_name_in_the_same_or_an_unknown_cluster() -> None:
    job = WorkloadRef(WorkloadKind.TRAINING_JOB, "", "1234")
    east, west = replace(job, cluster="east"), replace(job, cluster="west")
    assert shares_workload([east], [job]) and shares_workload([job], [west])
    assert not shares_workload([east], [west])
    assert not shares_workload([east], [replace(west, name="999", cluster="east")])
    assert add_workloads(frozenset({east}), [job, west]) == {east, west}
    assert workload_from_dict(workload_to_dict(west)) == west
    assert "cluster" not in workload_to_dict(job)  # stored as before clusters were
    assert workload_from_dict({"kind": "training_job", "namespace": "", "name": "1234"}) == job


def _chat_in(*clusters: str) -> StaticInventory:
    """A service `chat` in each of these clusters ("" for a file's workload of no known cluster)."""
    nodes = [NodeInfo(f"{c or 'x'}1", c or "x", "r1", 8) for c in clusters]
    refs = [WorkloadRef(WorkloadKind.INFERENCE_SERVICE, "serving", "chat", c) for c in clusters]
    units = [(frozenset({(n.cluster, n.name, 0)}),) for n in nodes]
    return StaticInventory(nodes, [WorkloadInfo(r, u) for r, u in zip(refs, units, strict=True)])


def test_a_name_two_clusters_share_names_neither_to_an_alert_that_does_not_say_which() -> None:
    inv = _chat_in("a", "b")
    chat_a, chat_b = (w.ref for w in inv.workloads())
    assert inv.find_workload(WorkloadKind.INFERENCE_SERVICE, "chat") is None
    down = {"alertname": "InferenceServiceDown", "namespace": "serving", "service": "chat"}
    unplaced = locate(down, classify(down), inv).workloads
    assert unplaced == {replace(chat_a, cluster="")}  # neither a's nor b's: no GPUs, no wrong incident
    assert locate({**down, "cluster": "b"}, classify(down), inv).workloads == {chat_b}
    assert locate({**down, "node": "a1"}, classify(down), inv).workloads == {chat_a}


def test_a_workload_of_the_alerts_cluster_beats_one_of_no_known_cluster_listed_first() -> None:
    inv = _chat_in("", "b")
    unknown, chat_b = (w.ref for w in inv.workloads())
    assert inv.find_workload(WorkloadKind.INFERENCE_SERVICE, "chat", cluster="b") == chat_b
    assert inv.find_workload(WorkloadKind.INFERENCE_SERVICE, "chat", cluster="c") == unknown


def test_a_cluster_label_the_inventory_does_not_know_still_finds_the_workload_by_name() -> None:
    # Prometheus says cluster="gpu-prod"; Slurm's ClusterName is "gpuprod".
    inv = _slurm_cluster("gpuprod", "n1", "pretrain")
    (job,) = (w.ref for w in inv.workloads())
    for labels in (
        {"alertname": "NodeDown", "cluster": "gpu-prod", "node": "n1", "slurm_job": "1234"},
        {"alertname": "TrainingJobStalled", "cluster": "gpu-prod", "slurm_job": "1234"},
    ):
        assert locate(labels, classify(labels), inv).workloads == {job}
    # The node is the inventory's: its cluster names the path, so alerts of both spellings meet there.
    down = {"alertname": "NodeDown", "cluster": "gpu-prod", "node": "n1"}
    assert locate(down, classify(down), inv).path == ("gpuprod", "r1", "n1")
    assert locate({**down, "cluster": "elsewhere", "node": "n9"}, classify(down), inv).path == (
        "elsewhere",
        "?",
        "n9",
    )


def test_a_gpu_named_by_uuid_alone_is_found_in_its_own_cluster() -> None:
    nodes = [NodeInfo("gpu001", c, "r1", 2, (f"GPU-{c}-0", f"GPU-{c}-1")) for c in ("east", "west")]
    inv = StaticInventory(nodes)
    xid = {"alertname": "GpuXid", "xid": "79", "UUID": "GPU-west-1"}
    assert locate(xid, classify(xid), inv).path == ("west", "r1", "gpu001", "1")
    assert locate({**xid, "cluster": "east"}, classify(xid), inv).path[:1] == ("east",)  # not west's GPU
    ambiguous = {"alertname": "NodeDown", "node": "gpu001"}  # which gpu001: it cannot say
    assert locate(ambiguous, classify(ambiguous), inv).path == ("", "?", "gpu001")


def test_a_workload_of_a_known_cluster_takes_the_place_of_the_same_one_of_no_known_cluster() -> None:
    job = WorkloadRef(WorkloadKind.TRAINING_JOB, "", "1234")
    east, west = replace(job, cluster="east"), replace(job, cluster="west")
    assert add_workloads(frozenset({job}), [east]) == {east}
    assert add_workloads(frozenset(), [job, east, west]) == add_workloads(frozenset(), [west, job, east])
    assert add_workloads(frozenset(), [job, east, west]) == {east, west}
    assert add_workloads(frozenset({east}), [job]) == {east}
    assert str(west) == "training_job//1234@west" and str(job) == "training_job//1234"


def test_a_root_workload_stored_before_clusters_is_the_same_root_cause_after() -> None:
    from alerting.showing import same_target  # noqa: PLC0415 - the one rule, tested alone

    stored = {"type": "workload", "kind": "training_job", "namespace": "research", "name": "llm-70b"}
    assert same_target(stored, {**stored, "cluster": "c1"})
    assert not same_target({**stored, "cluster": "c2"}, {**stored, "cluster": "c1"})
    assert not same_target({**stored, "name": "other"}, {**stored, "cluster": "c1"})
    assert not same_target(None, stored)


def test_an_exported_inventory_reads_back_when_a_node_reports_fewer_gpus_than_its_pods_hold(
    tmp_path: Path,
) -> None:
    # The device plugin now counts 7 (one GPU fell off the bus); a pod still holds index 7.
    ref = WorkloadRef(WorkloadKind.INFERENCE_SERVICE, "serving", "chat", "k")
    inv = StaticInventory([NodeInfo("g1", "k", "r1", 7)], [WorkloadInfo(ref, (frozenset({("k", "g1", 7)}),))])
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(inventory_data(inv)))
    again = load_inventory(path)
    assert again.placement(ref) == {("k", "g1", 7)} and again.node("g1").gpu_count == 8  # type: ignore[union-attr]


def test_a_gpu_uuid_the_inventory_knows_wins_over_a_node_it_does_not() -> None:
    inv = scenarios.fleet_inventory()
    uuid = scenarios.gpu_uuid("r01-n03", 3)
    scraped_by_ip = {"alertname": "GPULost", "UUID": uuid, "instance": "10.0.0.1:9400", "gpu": "0"}
    assert locate(scraped_by_ip, classify(scraped_by_ip), inv).path == ("c1", "r01", "r01-n03", "3")
    named = {**scraped_by_ip, "Hostname": "r01-n05", "gpu": "6"}  # a node it knows: the labels stand
    assert locate(named, classify(named), inv).path == ("c1", "r01", "r01-n05", "6")


def test_a_fully_qualified_instance_is_the_node_of_its_short_name() -> None:
    inv = scenarios.fleet_inventory()
    down = {"alertname": "NodeDown", "instance": "r07-n01.dc1.example.com:9100", "job": "node"}
    assert locate(down, classify(down), inv).path == ("c1", "r07", "r07-n01")
    ip = {"alertname": "NodeDown", "instance": "10.1.2.3:9100", "job": "node"}  # an address, kept as is
    assert locate(ip, classify(ip), inv).path == ("", "?", "10.1.2.3")


def test_kube_state_metrics_alerts_are_about_their_pod_not_the_exporter_host_or_service() -> None:
    inv = scenarios.fleet_inventory()
    ksm = {"instance": "10.244.3.17:8080", "job": "kube-state-metrics", "service": "kube-state-metrics"}
    crash = {
        "alertname": "KubePodCrashLooping",
        "cluster": "c1",
        **ksm,
        "namespace": "serving",
        "pod": "chat-0",
    }
    where = locate(crash, classify(crash), inv)
    assert where.path == () and {w.name for w in where.workloads} == {"chat-0"}
    node = {"alertname": "KubeNodeNotReady", "cluster": "c1", **ksm, "node": "r01-n02"}
    where = locate(node, classify(node), inv)
    assert where.path == ("c1", "r01", "r01-n02") and where.workloads == frozenset()  # no made-up service


def test_an_exporter_that_stopped_answering_is_not_its_node_down() -> None:
    for job, kind in (("dcgm-exporter", "exporter_stale"), ("node", "node_down"), ("", "node_down")):
        labels = {"alertname": "InstanceDown", "instance": "r07-n03:9400", **({"job": job} if job else {})}
        assert classify(labels).value == kind


@pytest.mark.parametrize(
    "text",
    ["", "# exported by hand, nodes to come\n", "null\n", "~\n"],
    ids=["zero-bytes", "comments-only", "null", "tilde"],
)
def test_an_empty_inventory_file_is_refused_naming_the_file(tmp_path: Path, text: str) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_text(text)  # what `inventory export > inventory.yaml` leaves when serve is down
    with pytest.raises(ConfigError) as info:
        load_inventory(path)
    assert str(path) in str(info.value) and "empty" in str(info.value)
    assert "--file" in str(info.value)  # says how to write one that is never cut short
