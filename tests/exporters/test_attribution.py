"""Attribution from /proc/<pid>/cgroup: kubelet (cgroupfs and systemd, v1 and v2) and Slurm layouts."""

from __future__ import annotations

from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Metric

from exporters.attribution import (
    PodRef,
    ProcCgroupResolver,
    ProcessIdentity,
    parse_cgroup,
    workload_labels,
)
from exporters.nvml_collector import NvmlCollector
from gpuwarden.sim import SimNvml

from .conftest import NODE

UID = "0f3c2b1a-9d8e-4c7b-8a6f-5e4d3c2b1a09"
UID_ = UID.replace("-", "_")
CID = "4f1e0c9b8a7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6a5b4c3d2e1f"

CASES = [
    ("v1-cgroupfs-besteffort", f"11:memory:/kubepods/besteffort/pod{UID}/{CID}\n", ProcessIdentity(UID, CID)),
    (
        "v1-cgroupfs-burstable",
        f"4:cpu,cpuacct:/kubepods/burstable/pod{UID}/{CID}\n",
        ProcessIdentity(UID, CID),
    ),
    ("v1-cgroupfs-guaranteed", f"7:devices:/kubepods/pod{UID}/{CID}\n", ProcessIdentity(UID, CID)),
    (
        "v2-systemd-burstable-containerd",
        f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_}.slice/cri-containerd-{CID}.scope\n",
        ProcessIdentity(UID, CID),
    ),
    (
        "v2-systemd-besteffort-crio",
        f"0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_}.slice/crio-{CID}.scope\n",
        ProcessIdentity(UID, CID),
    ),
    (
        "v1-systemd-guaranteed-docker",
        f"12:pids:/kubepods.slice/kubepods-pod{UID_}.slice/docker-{CID}.scope\n1:name=systemd:/init.scope\n",
        ProcessIdentity(UID, CID),
    ),
    ("v2-cgroupfs-burstable", f"0::/kubepods/burstable/pod{UID}/{CID}\n", ProcessIdentity(UID, CID)),
    ("pod-cgroup-without-container", f"0::/kubepods/burstable/pod{UID}\n", ProcessIdentity(UID, "")),
    (
        "slurm-v1-task",
        "10:memory:/slurm/uid_1000/job_4242/step_0/task_1\n9:cpuset:/slurm/uid_1000/job_4242/step_0\n",
        ProcessIdentity(slurm_job="4242", slurm_step="0"),
    ),
    (
        "slurm-v1-batch-step",
        "5:freezer:/slurm/uid_0/job_17/step_batch\n",
        ProcessIdentity(slurm_job="17", slurm_step="batch"),
    ),
    (
        "slurm-v2",
        "0::/system.slice/slurmstepd.scope/job_99/step_3/user/task_0\n",
        ProcessIdentity(slurm_job="99", slurm_step="3"),
    ),
    ("plain-host-process", "0::/user.slice/user-1000.slice/session-2.scope\n", ProcessIdentity()),
    ("systemd-service", "0::/system.slice/nvidia-persistenced.service\n", ProcessIdentity()),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_cgroup_paths_name_the_pod_or_job(text: str, expected: ProcessIdentity) -> None:
    assert parse_cgroup(text) == expected


def test_a_gpu_with_one_pod_gets_its_labels_and_a_shared_gpu_gets_none() -> None:
    one = [ProcessIdentity(UID, CID), ProcessIdentity(UID, CID)]
    assert workload_labels(one) == {"pod_uid": UID, "container": CID}
    other = ProcessIdentity("11111111-2222-3333-4444-555555555555", "ab" * 32)
    assert workload_labels([*one, other]) == {}
    ref = PodRef("llm", "vllm-0", "server")
    assert workload_labels(one, [ref]) == {
        "namespace": "llm",
        "pod": "vllm-0",
        "container": "server",
        "pod_uid": UID,
    }
    assert workload_labels([ProcessIdentity(slurm_job="7")]) == {"slurm_job": "7"}


def write_proc(root: Path, pid: int, text: str) -> None:
    (root / str(pid)).mkdir(parents=True)
    (root / str(pid) / "cgroup").write_text(text)


def test_the_resolver_reads_a_fake_proc_tree_and_forgets_exited_pids(tmp_path: Path) -> None:
    write_proc(tmp_path, 10, f"0::/kubepods/burstable/pod{UID}/{CID}\n")
    resolver = ProcCgroupResolver(tmp_path)
    assert resolver.resolve(10).pod_uid == UID
    assert resolver.resolve(11) == ProcessIdentity()  # no such process
    (tmp_path / "10" / "cgroup").write_text("0::/slurm/uid_1/job_5/step_0\n")
    assert resolver.resolve(10).pod_uid == UID  # cached while the PID runs on a GPU
    resolver.retain([])
    assert resolver.resolve(10).slurm_job == "5"  # a reused PID is read afresh


def test_process_memory_and_gpu_families_carry_pod_and_job_labels(nvml: SimNvml, tmp_path: Path) -> None:
    pids = {}
    for index in range(8):
        procs = nvml.nvmlDeviceGetComputeRunningProcesses(nvml.nvmlDeviceGetHandleByIndex(index))
        if procs:
            pids[index] = procs[0].pid
    assert len(pids) >= 2, "the simulated node should run work on several GPUs"
    k8s_gpu, slurm_gpu = sorted(pids)[:2]
    write_proc(tmp_path, pids[k8s_gpu], f"0::/kubepods/burstable/pod{UID}/{CID}\n")
    write_proc(tmp_path, pids[slurm_gpu], "0::/system.slice/slurmstepd.scope/job_321/step_0/user/task_0\n")
    families = NvmlCollector(nvml, hostname=NODE, resolver=ProcCgroupResolver(tmp_path)).collect()

    class Fixed:
        def collect(self) -> list[Metric]:
            return families

    registry = CollectorRegistry()
    registry.register(Fixed())
    samples = [s for m in registry.collect() for s in m.samples]
    mem = {s.labels["gpu"]: s.labels for s in samples if s.name == "gpuwarden_process_memory_used_bytes"}
    assert mem[str(k8s_gpu)]["pod_uid"] == UID and mem[str(k8s_gpu)]["container"] == CID
    assert mem[str(k8s_gpu)]["pid"] == str(pids[k8s_gpu])
    assert mem[str(slurm_gpu)]["slurm_job"] == "321" and "pod_uid" not in mem[str(slurm_gpu)]
    util = {s.labels["gpu"]: s.labels for s in samples if s.name == "DCGM_FI_DEV_GPU_UTIL"}
    assert util[str(k8s_gpu)]["pod_uid"] == UID
    assert util[str(slurm_gpu)]["slurm_job"] == "321"
    ups = {s.labels["gpu"]: s.labels for s in samples if s.name == "gpuwarden_gpu_up"}
    assert "pod_uid" not in ups[str(k8s_gpu)]  # health series keep stable labels
