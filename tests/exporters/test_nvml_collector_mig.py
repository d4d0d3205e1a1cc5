"""NvmlCollector on MIG GPUs: instance labels and pods, reconfiguration while running, and the device-level
values and last XID each instance repeats as dcgm-exporter serves them."""

from __future__ import annotations

import re
from typing import Any

import pynvml
from prometheus_client import CollectorRegistry, Metric

from exporters import fields as fams
from exporters.attribution import PodRef
from exporters.nvml_collector import NvmlCollector
from exporters.simulated import SimCgroupResolver
from exporters.xid import XidLedger
from gpuwarden.clock import FakeClock
from gpuwarden.config import KubernetesInventoryConfig
from gpuwarden.mig import PER_INSTANCE_LABELS
from gpuwarden.sim import SimNvml, build_fleet
from gpuwarden.sim.topology import MigDevice
from tests.exporters.nvml_scrapes import scrape

from .conftest import NODE


def test_mig_instances_get_their_profile_and_instance_labels(clock: FakeClock) -> None:
    fleet = build_fleet(1, 8, seed=7, clock=clock, mig_gpus=[(NODE, 0)])
    sim = SimNvml(fleet, NODE)
    sim.nvmlInit()
    families = NvmlCollector(sim, hostname=NODE).collect()
    used = next(m for m in families if m.name == "DCGM_FI_DEV_FB_USED")
    mig = [s.labels for s in used.samples if "GPU_I_ID" in s.labels]
    assert mig, "no MIG instance series"
    assert all(s["gpu"] == "0" and s["GPU_I_PROFILE"] for s in mig)
    assert len({s["GPU_I_ID"] for s in mig}) == len(mig)


def _collected_with_mig_pods(clock: FakeClock, index: int) -> tuple[str, list[MigDevice], list[Metric]]:
    """One collection of a 2-GPU node whose GPU ``index`` is in MIG mode, each slice held by pod
    ``ml/trainer-<i>`` as the kubelet's pod-resources API names them: by the slice's own MIG- UUID. The GPU's
    UUID, its slices and the collected families."""
    fleet = build_fleet(1, 2, seed=7, clock=clock, mig_gpus=[(NODE, index)])
    sim = SimNvml(fleet, NODE)
    sim.nvmlInit()
    migs = list(fleet.gpu(NODE, index).mig)
    owners = {m.uuid: PodRef("ml", f"trainer-{i}", "main") for i, m in enumerate(migs)}

    class Kubelet:
        def pods_for(self, uuid: str) -> list[PodRef]:
            return [owners[uuid]] if uuid in owners else []

    families = NvmlCollector(sim, hostname=NODE, pods=Kubelet(), clock=clock).collect()
    return fleet.gpu(NODE, index).uuid, migs, families


def test_mig_instances_carry_the_pod_the_kubelet_assigned_their_mig_device(clock: FakeClock) -> None:
    # The kubelet's pod-resources API names MIG devices by their MIG- UUID, not the parent GPU's.
    _, migs, families = _collected_with_mig_pods(clock, 0)
    used = next(m for m in families if m.name == "DCGM_FI_DEV_FB_USED")
    by_instance = {s.labels.get("GPU_I_ID"): s.labels for s in used.samples if s.labels["gpu"] == "0"}
    for i, mig in enumerate(migs):
        labels = by_instance[str(mig.gpu_instance_id)]
        assert (labels.get("namespace"), labels.get("pod"), labels.get("container")) == (
            "ml",
            f"trainer-{i}",
            "main",
        )
    assert "pod" not in by_instance[None]  # the parent GPU is no single pod's


def test_a_mig_gpu_s_own_series_carry_no_workload_even_with_its_slices_processes_resolved(
    clock: FakeClock,
) -> None:
    """NVML lists every slice's processes on the MIG GPU itself; their cgroups gave the GPU's own series the
    pod_uid and container of one slice's pod, as if the whole GPU were that pod's."""
    fleet = build_fleet(1, 8, seed=0, clock=clock, mig_gpus=[(NODE, 4)])  # GPU 4 runs an inference pod
    sim = SimNvml(fleet, NODE)
    sim.nvmlInit()
    gpu = fleet.gpu(NODE, 4)
    first = next(iter(gpu.mig))
    owners = {first.uuid: PodRef("inference", "llm-chat-0", "server")}

    class Kubelet:  # as a real kubelet: the MIG device by its own UUID, never its GPU
        def pods_for(self, uuid: str) -> list[PodRef]:
            return [owners[uuid]] if uuid in owners else []

    ledger = XidLedger()
    ledger.record(gpu.uuid, 48, clock.time())
    resolver = SimCgroupResolver(fleet, NODE)
    assert resolver.resolve(next(iter(gpu.pids))).pod_uid  # the slices' processes do name a pod
    collector = NvmlCollector(sim, hostname=NODE, pods=Kubelet(), resolver=resolver, xids=ledger, clock=clock)
    samples = [
        (m.name, s.labels) for m in collector.collect() for s in m.samples if s.labels.get("gpu") == "4"
    ]
    workload = PER_INSTANCE_LABELS - {"GPU_I_ID", "GPU_I_PROFILE"}
    parent = [(name, labels) for name, labels in samples if "GPU_I_ID" not in labels]
    assert {name for name, _ in parent} >= {"DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_XID_ERRORS"}
    named = [
        (name, sorted(workload & set(labels)))
        for name, labels in parent
        if workload & set(labels) and name != fams.PROCESS_MEMORY.name  # a process names its own
    ]
    assert named == []
    power = [labels for name, labels in samples if name == "DCGM_FI_DEV_POWER_USAGE" and "GPU_I_ID" in labels]
    by_instance = {labels["GPU_I_ID"]: labels.get("pod") for labels in power}
    assert by_instance[str(first.gpu_instance_id)] == "llm-chat-0"  # its slice still names its pod


def test_the_series_serve_reads_gpu_assignments_from_carry_the_pods_of_mig_slices(clock: FakeClock) -> None:
    """serve's default ``gpu_assignment_query`` grouped ``DCGM_FI_DEV_GPU_TEMP``, which a MIG instance's
    series do not carry here (dcgm-exporter repeats device fields per instance): a pod on a MIG slice was
    never placed on its GPU. The query's metric must carry each slice's pod on its parent GPU's index."""
    query = KubernetesInventoryConfig.model_fields["gpu_assignment_query"].default
    [metric] = re.findall(r"\b(DCGM_FI_\w+)\b", query)
    parent, migs, families = _collected_with_mig_pods(clock, 1)
    [family] = [m for m in families if m.name == metric]
    placed = {
        (s.labels["Hostname"], s.labels["gpu"], s.labels["UUID"], s.labels["pod"])
        for s in family.samples
        if s.labels.get("pod")
    }
    assert placed == {(NODE, "1", parent, f"trainer-{i}") for i in range(len(migs))}


def test_mig_reconfigured_while_running_frees_old_instances_and_rates_new_ones_afresh(
    clock: FakeClock,
) -> None:
    fleet = build_fleet(1, 1, seed=7, clock=clock, mig_gpus=[(NODE, 0)])
    sim = SimNvml(fleet, NODE)
    sim.nvmlInit()
    collector = NvmlCollector(sim, hostname=NODE, clock=clock)
    for _ in range(2):
        collector.collect()
        clock.advance(5)
    assert sim.gpm_samples_allocated == 2 + 2 * 3  # the GPU's and each of its 3 instances'
    total = fleet.gpu(NODE, 0).model.memory_total
    # Every instance destroyed; one re-created with instance id 1 again (a new UUID, another profile).
    sim.reconfigure_mig(0, [MigDevice("7g.80gb", 1, 0, total, "MIG-6a1b5a43-2c56-4d3e-9f7a-1b2c3d4e5f60")])
    first = scrape(collector)

    def prof(registry: CollectorRegistry) -> dict[str, float]:
        return {
            s.labels["GPU_I_PROFILE"]: s.value
            for m in registry.collect()
            for s in m.samples
            if s.name == "DCGM_FI_PROF_SM_ACTIVE" and "GPU_I_ID" in s.labels
        }

    assert prof(first) == {}  # no rate across two different instances
    assert sim.gpm_samples_allocated == 2 + 1  # the destroyed instances' samples are freed
    clock.advance(5)
    assert set(prof(scrape(collector))) == {"7g.80gb"}


def _utilisation_gpus(registry: CollectorRegistry) -> dict[str, set[str]]:
    """The GPUs (``gpu`` label) on whose series each MIG-unsupported family is, by family."""
    found: dict[str, set[str]] = {family.name: set() for family in fams.MIG_UNSUPPORTED}
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name in found:
                found[sample.name].add(sample.labels["gpu"])
    return found


def test_a_mig_enabled_gpu_has_no_utilisation_series_as_nvml_answers_not_supported(clock: FakeClock) -> None:
    # NVML: "On MIG-enabled GPUs, querying device utilization rates is not currently supported", and the
    # same of the encoder's; the simulator answered the encoder's and decoder's 0 there.
    fleet = build_fleet(1, 2, seed=7, clock=clock, mig_gpus=[(NODE, 0)])
    sim = SimNvml(fleet, NODE)
    sim.nvmlInit()
    registry = scrape(NvmlCollector(sim, hostname=NODE, clock=clock))
    assert _utilisation_gpus(registry) == {family.name: {"1"} for family in fams.MIG_UNSUPPORTED}
    errors = [
        s for m in registry.collect() for s in m.samples if s.name == "gpuwarden_nvml_call_errors_total"
    ]
    assert errors == []


class _AnsweringNvml(SimNvml):
    """An NVML that answers the utilisations NVIDIA says are not supported in MIG mode, on every GPU."""

    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> Any:
        self._dev(handle, "nvmlDeviceGetUtilizationRates")
        return pynvml.c_nvmlUtilization_t(40, 30)

    def nvmlDeviceGetEncoderUtilization(self, handle: Any) -> list[int]:
        self._dev(handle, "nvmlDeviceGetEncoderUtilization")
        return [0, 167_000]

    def nvmlDeviceGetDecoderUtilization(self, handle: Any) -> list[int]:
        self._dev(handle, "nvmlDeviceGetDecoderUtilization")
        return [0, 167_000]


def test_a_mig_gpu_has_no_utilisation_series_even_when_nvml_answers_one(clock: FakeClock) -> None:
    fleet = build_fleet(1, 2, seed=7, clock=clock, mig_gpus=[(NODE, 0)])
    sim = _AnsweringNvml(fleet, NODE)
    sim.nvmlInit()
    registry = scrape(NvmlCollector(sim, hostname=NODE, clock=clock))
    assert _utilisation_gpus(registry) == {family.name: {"1"} for family in fams.MIG_UNSUPPORTED}
    power = [s.labels for m in registry.collect() for s in m.samples if s.name == "DCGM_FI_DEV_POWER_USAGE"]
    assert len([labels for labels in power if labels["gpu"] == "0"]) == 1 + len(fleet.gpu(NODE, 0).mig)


def _mig_node(clock: FakeClock) -> tuple[Any, list[Metric]]:
    """One collection of a 2-GPU node whose GPU 0 is in MIG mode (GPU 1 is not)."""
    fleet = build_fleet(1, 2, seed=7, clock=clock, mig_gpus=[(NODE, 0)])
    sim = SimNvml(fleet, NODE)
    sim.nvmlInit()
    return fleet, NvmlCollector(sim, hostname=NODE, clock=clock).collect()


def test_mig_instances_repeat_their_gpu_s_device_level_values_as_dcgm_exporter_serves_them(
    clock: FakeClock,
) -> None:
    """dcgm-exporter reads each DCGM field for every GPU instance and DCGM answers device-level fields with
    the GPU's value (its issues #317, #713): ``DCGM_FI_DEV_GPU_TEMP{GPU_I_ID!=""}`` or a join on a MIG pod's
    series found nothing here."""
    fleet, families = _mig_node(clock)
    instances = {str(m.gpu_instance_id) for m in fleet.gpu(NODE, 0).mig}
    by_name = {m.name: m for m in families}
    for family in (fams.GPU_TEMP, fams.POWER_USAGE, fams.SM_CLOCK, fams.TOTAL_ENERGY, fams.ECC_DBE_VOL):
        samples = [s for s in by_name[family.name].samples if s.labels["gpu"] == "0"]
        [parent] = [s.value for s in samples if "GPU_I_ID" not in s.labels]
        on_instances = {s.labels["GPU_I_ID"]: s.value for s in samples if "GPU_I_ID" in s.labels}
        assert on_instances == dict.fromkeys(instances, parent), family.name
        # The filter dcgm-exporter users apply to count each GPU once keeps one series per GPU.
        assert len([s for s in by_name[family.name].samples if "GPU_I_ID" not in s.labels]) == 2
    # Utilisation is not supported for MIG (dcgm-exporter issue #430): on no series of the MIG GPU.
    for family in fams.MIG_UNSUPPORTED:
        assert {s.labels["gpu"] for s in by_name[family.name].samples} == {"1"}, family.name
    # Its framebuffer is the instance's own, its total included (DCGM 3.1.3+ reports it per MIG device).
    totals = {
        s.labels.get("GPU_I_ID"): s.value
        for s in by_name["DCGM_FI_DEV_FB_TOTAL"].samples
        if s.labels["gpu"] == "0"
    }
    assert set(totals) == {None, *instances}
    assert all(0 < totals[i] < totals[None] for i in instances)


def test_the_last_xid_of_a_mig_gpu_is_on_each_of_its_instances_too(clock: FakeClock) -> None:
    fleet = build_fleet(1, 1, seed=7, clock=clock, mig_gpus=[(NODE, 0)])
    sim = SimNvml(fleet, NODE)
    sim.nvmlInit()
    ledger = XidLedger()
    ledger.record(fleet.gpu(NODE, 0).uuid, 48, clock.time())
    families = NvmlCollector(sim, hostname=NODE, xids=ledger, clock=clock).collect()
    [xid] = [m for m in families if m.name == "DCGM_FI_DEV_XID_ERRORS"]
    ids = sorted(s.labels.get("GPU_I_ID", "") for s in xid.samples)
    assert ids == sorted(["", *(str(m.gpu_instance_id) for m in fleet.gpu(NODE, 0).mig)])
    assert {(s.value, s.labels["err_code"]) for s in xid.samples} == {(48.0, "48")}
