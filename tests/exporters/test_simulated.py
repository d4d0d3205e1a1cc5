"""Attribution on the simulated fleet: replicas read as kubelet pods, training ranks as Slurm steps."""

from __future__ import annotations

from exporters.attribution import WorkloadMemory, parse_cgroup
from exporters.nvml_collector import NvmlCollector
from exporters.simulated import (
    SimCgroupResolver,
    SimPodAssignments,
    sim_cgroup,
    sim_collectors,
    sim_job_id,
    sim_pod_uid,
)
from gpuwarden.clock import FakeClock
from gpuwarden.sim import InferenceService, SimNvml, TrainingJob, build_fleet, parse_fault
from gpuwarden.sim.fleet import Fleet


def _first_nodes_collector(nodes: int, clock: FakeClock) -> tuple[Fleet, NvmlCollector]:
    """A seed-7 fleet of ``nodes`` 8-GPU nodes and a collector of its first node, attributing workloads."""
    fleet = build_fleet(nodes, 8, seed=7, clock=clock)
    node = fleet.nodes[0].name
    sim = SimNvml(fleet, node)
    sim.nvmlInit()
    collector = NvmlCollector(
        sim, hostname=node, resolver=SimCgroupResolver(fleet, node), pods=SimPodAssignments(fleet)
    )
    return fleet, collector


def test_simulated_gpus_carry_the_pod_or_job_of_their_workload() -> None:
    clock = FakeClock()
    fleet, collector = _first_nodes_collector(2, clock)
    node = fleet.nodes[0].name
    samples = [s for m in collector.collect() for s in m.samples]
    util = {int(s.labels["gpu"]): s.labels for s in samples if s.name == "DCGM_FI_DEV_GPU_UTIL"}
    mem = {int(s.labels["gpu"]): s.labels for s in samples if s.name == "gpuwarden_process_memory_used_bytes"}
    kinds = set()
    for index, labels in util.items():
        work = fleet.workload_on(node, index)
        if isinstance(work, InferenceService) and index in mem:
            kinds.add("pod")
            assert labels["namespace"] == work.namespace and labels["pod"].startswith(work.name + "-")
            assert labels["pod_uid"] == sim_pod_uid(work.namespace, labels["pod"])
            assert mem[index]["pod_uid"] == labels["pod_uid"] and mem[index]["container"] == "server"
        elif isinstance(work, TrainingJob) and index in mem:
            kinds.add("job")
            assert labels["slurm_job"] == str(sim_job_id(work)) and "pod_uid" not in labels
    assert kinds == {"pod", "job"}, "the seed should place both inference replicas and training ranks here"


def test_the_simulated_cgroup_text_goes_through_the_real_parser() -> None:
    fleet = build_fleet(1, 8, seed=7, clock=FakeClock())
    node = fleet.nodes[0].name
    texts = [sim_cgroup(fleet, node, i) for i in range(8)]
    parsed = [parse_cgroup(t) for t in texts]
    assert any("kubepods" in t for t in texts) and any("slurmstepd" in t for t in texts)
    for text, ident in zip(texts, parsed, strict=True):
        if "kubepods" in text:
            assert ident.pod_uid and len(ident.container_id) == 64
        elif "slurmstepd" in text:
            assert ident.slurm_job.isdigit() and ident.slurm_step == "0"


def test_sim_collectors_cover_every_node_and_pumped_xids_reach_the_right_gpu_counter() -> None:
    clock = FakeClock()
    fleet = build_fleet(2, 4, seed=7, clock=clock)
    nodes = sim_collectors(fleet, clock)
    assert len(nodes.collectors) == len(nodes.watchers) == 2
    fleet.inject(parse_fault({"kind": "xid", "node": "node-02", "gpu": 1, "xid": 31}))
    clock.advance(5)
    nodes.pump_xids()
    counts = {
        (s.labels["Hostname"], s.labels["gpu"]): s.value
        for collector in nodes.collectors
        for m in collector.collect()
        for s in m.samples
        if s.name == "gpuwarden_xid_errors_total" and s.labels.get("xid") == "31"
    }
    assert counts == {("node-02", "1"): 1.0}


def util_labels(collector: NvmlCollector, gpu: int) -> dict[str, str]:
    return next(
        dict(s.labels)
        for m in collector.collect()
        for s in m.samples
        if s.name == "DCGM_FI_DEV_GPU_UTIL" and s.labels["gpu"] == str(gpu)
    )


def test_workload_labels_outlive_their_processes_so_series_do_not_split() -> None:
    # A drain stops every process: pod_uid and slurm_job, read from processes' cgroups, used to vanish,
    # starting new series for ~35 families of each GPU. The kubelet still assigns the inference GPU to its
    # pod, so it keeps its pod_uid; the training GPU keeps its job for the grace period, then drops it.
    clock = FakeClock()
    fleet = build_fleet(1, 8, seed=7, clock=clock)
    node = fleet.nodes[0].name
    collector = sim_collectors(fleet, clock).collectors[0]
    infer = next(i for i in range(8) if isinstance(fleet.workload_on(node, i), InferenceService))
    train = next(i for i in range(8) if isinstance(fleet.workload_on(node, i), TrainingJob))
    before_infer, before_train = util_labels(collector, infer), util_labels(collector, train)
    assert before_infer.get("pod_uid") and before_train.get("slurm_job")
    fleet.drain_node(node)
    clock.advance(60)
    assert util_labels(collector, infer) == before_infer
    assert util_labels(collector, train) == before_train
    clock.advance(600)
    assert util_labels(collector, infer) == before_infer  # the kubelet's assignment holds it
    assert "slurm_job" not in util_labels(collector, train)  # the job is over


def test_another_workload_replaces_the_remembered_labels_at_once() -> None:
    memory = WorkloadMemory(grace_seconds=300)
    first = memory.labels("GPU-1", {"slurm_job": "17"}, 0.0)
    assert memory.labels("GPU-1", {}, 10.0) == first
    assert memory.labels("GPU-1", {"slurm_job": "18"}, 20.0) == {"slurm_job": "18"}
    pod = {"namespace": "ml", "pod": "a-0", "container": "server"}
    assert memory.labels("GPU-2", {**pod, "pod_uid": "u1"}, 0.0)["pod_uid"] == "u1"
    assert memory.labels("GPU-2", pod, 400.0)["pod_uid"] == "u1"  # the same pod, assigned by the kubelet
    assert memory.labels("GPU-2", {**pod, "pod_uid": "u2"}, 401.0)["pod_uid"] == "u2"  # re-created pod
    assert memory.labels("GPU-2", {}, 402.0, ambiguous=True) == {}  # shared: no single workload


def test_a_busy_gpus_labels_stay_one_dict_across_collections_for_the_render_to_find_by_identity() -> None:
    # The text render reuses a label set's text when it meets the same dict again; a GPU whose workload
    # stays must not get a new (equal) dict every collection, nor keep the old one once its labels change.
    clock = FakeClock()
    _, collector = _first_nodes_collector(1, clock)

    def util_labels() -> dict[str, dict[str, str]]:
        return {
            s.labels["gpu"]: s.labels
            for m in collector.collect()
            for s in m.samples
            if m.name.endswith("GPU_UTIL")
        }

    first = util_labels()
    clock.advance(10)
    second = util_labels()
    busy = [gpu for gpu, labels in first.items() if "pod" in labels or "slurm_job" in labels]
    assert busy, "the seed should place workloads on this node"
    assert all(second[gpu] is first[gpu] for gpu in busy)
    memory = WorkloadMemory(grace_seconds=300)
    job = memory.labels("GPU-1", {"slurm_job": "17"}, 0.0)
    assert memory.labels("GPU-1", {"slurm_job": "17"}, 5.0) is job
    assert memory.labels("GPU-1", {"slurm_job": "18"}, 6.0) == {"slurm_job": "18"}
    assert job == {"slurm_job": "17"}  # the dict handed out before is left as it was
