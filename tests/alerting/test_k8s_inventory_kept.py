"""Pods the Kubernetes inventory keeps placed after they end: lost with their node, failed, replaced or
expired, and found again after a restart."""

from __future__ import annotations

from datetime import UTC, datetime

from gpuwarden.clock import FakeClock
from gpuwarden.model import WorkloadKind
from tests.alerting.k8s_objects import SERVICE, FakeApi, inventory, llama, node, pod, serving_cluster


def test_a_pod_lost_with_its_node_stays_placed_until_it_is_replaced_or_a_while_passed() -> None:
    api, clock = FakeApi(), FakeClock(1000.0)
    serving_cluster(api)
    reader = inventory(api, clock, keep_ended_seconds=600)
    reader.read()
    # g2 dies; the node controller evicts its pod and the Deployment creates a replacement, not yet bound.
    api.objects["nodes"][1] = node("g2", ready=False)
    api.objects["pods"] = [p for p in api.objects["pods"] if p["spec"]["nodeName"] != "g2"]
    api.objects["pods"].append(llama(9, None, phase="Pending"))
    clock.advance(60)
    inv = reader.read()
    [info] = inv.workloads()
    assert len(info.units) == 4 and {("k1", "g2", 0)} <= info.gpus  # the incident of g2's failure finds llama
    assert inv.find_workload(WorkloadKind.POD, "llama-7f9c-2", "serving") == SERVICE
    # The replacement runs on g5: the service is whole again, the lost replica no longer counts.
    api.objects["nodes"].append(node("g5"))
    api.objects["pods"][-1] = llama(9, "g5")
    clock.advance(60)
    [info] = reader.read().workloads()
    assert len(info.units) == 4 and not {("k1", "g2", 0)} <= info.gpus
    # The replacement dies with g5: one replica is missing, the latest lost, until keep_ended_seconds.
    api.objects["nodes"][-1] = node("g5", ready=False)
    api.objects["pods"].pop()
    [info] = reader.read().workloads()
    assert len(info.units) == 4 and {("k1", "g5", 0)} <= info.gpus and not {("k1", "g2", 0)} <= info.gpus
    clock.advance(601)
    [info] = reader.read().workloads()
    assert len(info.units) == 3


def test_pods_ending_on_a_healthy_node_are_not_kept_unless_they_failed() -> None:
    api = FakeApi()
    serving_cluster(api)
    reader = inventory(api)
    reader.read()
    pods = api.objects["pods"]
    pods[0]["status"]["phase"] = "Failed"  # its own failure on Ready g1 (an XID it died of): kept
    pods[1]["status"]["phase"] = "Succeeded"  # it ended as meant: gone
    pods[2]["metadata"]["deletionTimestamp"] = "2026-11-29T12:00:00Z"  # terminating on g3 (a rollout)
    pods[3]["status"] |= {"phase": "Failed", "reason": "NodeLost"}  # failed for its node's sake: kept
    [info] = reader.read().workloads()
    assert {n for _, n, _ in info.gpus} == {"g1", "g4"} and info.kept == 2
    del pods[1]  # deleted from a healthy node (a scale-down): gone
    [info] = reader.read().workloads()
    assert {n for _, n, _ in info.gpus} == {"g1", "g4"}


def test_a_pod_first_seen_failed_is_kept_only_when_it_failed_within_the_while() -> None:
    api, clock = FakeApi(), FakeClock(datetime(2026, 11, 29, 12, 0, tzinfo=UTC).timestamp())
    api.objects["nodes"] = [node("g1"), node("g2")]
    done = {"containerStatuses": [{"state": {"terminated": {"finishedAt": "2026-11-29T11:50:00Z"}}}]}
    old = {"containerStatuses": [{"state": {"terminated": {"finishedAt": "2026-11-28T09:00:00Z"}}}]}
    api.objects["pods"] = [
        pod("t", "recent-0", "g1", 8, ("Job", "recent"), phase="Failed"),
        pod("t", "stale-0", "g2", 8, ("Job", "stale"), phase="Failed"),
    ]
    api.objects["pods"][0]["status"] |= done
    api.objects["pods"][1]["status"] |= old
    read = inventory(api, clock, keep_ended_seconds=3600).read()  # a serve that just started
    assert [(w.ref.name, w.state, w.kept) for w in read.workload_list] == [("recent", "stopped", 1)]
    clock.advance(3001)  # an hour after it failed
    assert inventory(api, clock, keep_ended_seconds=3600).read().workload_list == []


def test_a_pending_replacement_does_not_make_the_service_whole_and_an_expired_loss_stays_gone() -> None:
    api, clock = FakeApi(), FakeClock(1000.0)
    serving_cluster(api)
    reader = inventory(api, clock, keep_ended_seconds=600)
    reader.read()
    # g2 dies; its pod stays listed Terminating; the replacement is bound to g5 at once, still Pending.
    api.objects["nodes"][1] = node("g2", ready=False)
    api.objects["nodes"].append(node("g5"))
    api.objects["pods"][1]["metadata"]["deletionTimestamp"] = "2026-11-29T12:00:00Z"
    api.objects["pods"].append(llama(9, "g5", phase="Pending"))
    [info] = reader.read().workloads()
    assert len(info.units) == 4 and {("k1", "g2", 0)} <= info.gpus  # 3 serving + the lost one; not 5
    assert "llama-7f9c-9" in info.pods  # the Pending replacement is known by name
    api.objects["pods"][-1] = llama(9, "g5")  # it runs: whole again
    [info] = reader.read().workloads()
    assert len(info.units) == 4 and not {("k1", "g2", 0)} <= info.gpus
    clock.advance(601)  # past keep_ended_seconds while g2's pod is still listed: not kept a second time
    reader.read()
    api.objects["pods"][-1] = llama(9, "g5", phase="Pending")  # even if the replacement stops serving
    [info] = reader.read().workloads()
    assert not {("k1", "g2", 0)} <= info.gpus


def test_after_a_restart_pods_left_on_a_dead_node_are_still_found() -> None:
    api = FakeApi()
    serving_cluster(api)
    api.objects["nodes"][2] = node("g3", rack="r2", ready=False)
    api.objects["pods"][2]["status"]["phase"] = "Unknown"  # the node stopped reporting
    [info] = inventory(api).read().workloads()  # a reader that never saw it running
    assert {n for _, n, _ in info.gpus} == {"g1", "g2", "g3", "g4"}


def _vllm(i: int, on: str, uid: str, phase: str = "Running") -> dict:
    """Pod ``vllm-<i>`` of the vllm StatefulSet: created again under the same name, with a new uid."""
    made = pod("serving", f"vllm-{i}", on, 8, ("StatefulSet", "vllm"), {"app": "vllm"}, phase)
    made["metadata"]["uid"] = uid
    return made


def test_a_statefulset_pod_lost_with_its_node_stays_placed_while_its_namesake_replacement_is_pending() -> (
    None
):
    # The StatefulSet creates the replacement under the lost pod's name: the lost replica was dropped as
    # soon as the new pod was bound (Pending, pulling its image), so g2's incident named no workload.
    api, clock = FakeApi(), FakeClock(1000.0)
    api.objects["nodes"] = [node(f"g{i}") for i in range(1, 6)]
    api.objects["pods"] = [_vllm(i, f"g{i + 1}", f"uid-{i}") for i in range(4)]
    reader = inventory(api, clock, keep_ended_seconds=600)
    reader.read()
    api.objects["nodes"][1] = node("g2", ready=False)  # g2 dies; vllm-1 is force-deleted and created again
    api.objects["pods"][1] = _vllm(1, "g5", "uid-1b", phase="Pending")
    clock.advance(60)
    inv = reader.read()
    [info] = inv.workloads()
    assert len(info.units) == 4 and info.kept == 1 and {("k1", "g2", 0)} <= info.gpus
    assert info.pods.count("vllm-1") == 1
    api.objects["pods"][1] = _vllm(1, "g5", "uid-1b")  # the replacement runs: whole again
    clock.advance(60)
    [info] = reader.read().workloads()
    assert len(info.units) == 4 and info.kept == 0 and not {("k1", "g2", 0)} <= info.gpus


def test_a_namesake_of_a_pod_whose_loss_expired_is_kept_when_its_own_node_dies() -> None:
    # vllm-1 stays listed Unknown on dead g2 past keep_ended_seconds, then is created again on g5; when g5
    # died too, the new vllm-1 was taken for the expired one and not kept.
    api, clock = FakeApi(), FakeClock(1000.0)
    api.objects["nodes"] = [node(f"g{i}") for i in range(1, 6)]
    api.objects["pods"] = [_vllm(i, f"g{i + 1}", f"uid-{i}") for i in range(4)]
    reader = inventory(api, clock, keep_ended_seconds=600)
    reader.read()
    api.objects["nodes"][1] = node("g2", ready=False)
    api.objects["pods"][1]["status"]["phase"] = "Unknown"
    reader.read()
    clock.advance(601)
    reader.read()  # the loss expired while the pod is still listed
    api.objects["pods"][1] = _vllm(1, "g5", "uid-1b")
    clock.advance(60)
    reader.read()
    api.objects["nodes"][4] = node("g5", ready=False)
    api.objects["pods"][1]["status"]["phase"] = "Unknown"
    clock.advance(60)
    [info] = reader.read().workloads()
    assert len(info.units) == 4 and info.kept == 1 and {("k1", "g5", 0)} <= info.gpus


def _with_uids(api: FakeApi) -> None:
    """Each node's metadata.uid, as the API gives it."""
    for n in api.objects["nodes"]:
        n["metadata"]["uid"] = f"uid-{n['metadata']['name']}"


def test_a_pod_gone_with_a_node_deleted_and_registered_again_between_two_reads_is_lost() -> None:
    # GKE's auto-repair recreates g2's VM under its name, between two reads: g2 is Ready at both, and llama's
    # replica there was taken as a scale-down, the service whole at 3 replicas. It went with the old g2.
    api, clock = FakeApi(), FakeClock(1000.0)
    serving_cluster(api)
    _with_uids(api)
    reader = inventory(api, clock)
    reader.read()
    api.objects["nodes"][1]["metadata"]["uid"] = "uid-g2-again"
    del api.objects["pods"][1]
    clock.advance(30)
    (llama_read,) = reader.read().workload_list
    assert (len(llama_read.units), llama_read.kept) == (4, 1) and ("k1", "g2", 0) in llama_read.gpus
    # a pod gone from a node that is the same object is not lost: a scale-down
    del api.objects["pods"][0]
    clock.advance(30)
    (llama_read,) = reader.read().workload_list
    assert (len(llama_read.units), llama_read.kept) == (3, 1) and ("k1", "g1", 0) not in llama_read.gpus
