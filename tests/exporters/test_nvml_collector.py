"""NvmlCollector against the simulated NVML: labels, families, and every NVML error class it can meet."""

from __future__ import annotations

import re
from typing import Any

import pynvml
import pytest
from prometheus_client import CollectorRegistry, Metric

from exporters import fields as fams
from exporters.attribution import PodRef
from exporters.gpm import min_rate_interval
from exporters.nvml_collector import NvmlCollector, init_nvml
from exporters.xid import XidLedger
from gpuwarden.clock import FakeClock
from gpuwarden.config import KubernetesInventoryConfig
from gpuwarden.errors import SourceError
from gpuwarden.sim import SimNvml, build_fleet, parse_fault
from gpuwarden.sim.topology import MigDevice

from .conftest import NODE


class _Snapshot:
    """One collection, frozen, so that every get_sample_value reads the same scrape."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families


def scrape(collector: NvmlCollector) -> CollectorRegistry:
    """Run one collection and return a fresh registry holding its result."""
    registry = CollectorRegistry()
    registry.register(_Snapshot(collector.collect()))
    return registry


def gpu_labels(registry: CollectorRegistry, index: int, *, own: bool = False) -> dict[str, str]:
    """The label set of one GPU: from its DCGM_FI_DEV_GPU_UTIL series, or its gpuwarden_gpu_up one."""
    name = "gpuwarden_gpu_up" if own else "DCGM_FI_DEV_GPU_UTIL"
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name == name and sample.labels["gpu"] == str(index):
                return dict(sample.labels)
    raise AssertionError(f"gpu {index} has no {name} series")


def value(registry: CollectorRegistry, name: str, labels: dict[str, str]) -> float | None:
    return registry.get_sample_value(name, labels)


def test_registering_the_collector_does_not_call_nvml(nvml: SimNvml) -> None:
    nvml.fail("nvmlDeviceGetCount", pynvml.NVMLError_Unknown)
    collector = NvmlCollector(nvml, hostname=NODE)
    CollectorRegistry().register(collector)
    errors = [
        s for m in collector.collect() for s in m.samples if s.name == "gpuwarden_nvml_call_errors_total"
    ]
    count_errors = [s.value for s in errors if s.labels["function"] == "nvmlDeviceGetCount"]
    assert count_errors == [1.0]  # the first call happened in collect(), not in register()


def test_each_gpu_carries_the_dcgm_exporter_labels_in_order(nvml: SimNvml) -> None:
    families = NvmlCollector(nvml, hostname=NODE).collect()
    util = next(m for m in families if m.name == "DCGM_FI_DEV_GPU_UTIL")
    assert len(util.samples) == 8
    first = util.samples[0].labels
    assert list(first) == [
        "gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname", "DCGM_FI_DRIVER_VERSION",
    ]  # fmt: skip
    assert first["gpu"] == "0" and first["device"] == "nvidia0" and first["Hostname"] == NODE
    assert first["DCGM_FI_DRIVER_VERSION"] == nvml.nvmlSystemGetDriverVersion()
    assert first["UUID"].startswith("GPU-") and first["modelName"] == "NVIDIA H100 80GB HBM3"
    assert first["pci_bus_id"].count(":") == 2


def test_an_h100_reports_every_family_the_issue_lists(nvml: SimNvml, clock: FakeClock) -> None:
    collector = NvmlCollector(nvml, hostname=NODE, clock=clock)
    collector.collect()
    clock.advance(5)  # GPM ratios need two samples
    names = {m.name for m in collector.collect()}
    required = {
        "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_MEM_COPY_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE",
        "DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_MEMORY_TEMP", "DCGM_FI_DEV_POWER_USAGE",
        "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "DCGM_FI_DEV_SM_CLOCK", "DCGM_FI_DEV_MEM_CLOCK",
        "DCGM_FI_DEV_PCIE_REPLAY_COUNTER", "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL",
        "DCGM_FI_PROF_GR_ENGINE_ACTIVE", "DCGM_FI_PROF_SM_ACTIVE", "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE",
        "DCGM_FI_PROF_DRAM_ACTIVE", "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL",
        "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
        "DCGM_FI_DEV_ROW_REMAP_PENDING", "DCGM_FI_DEV_ROW_REMAP_FAILURE",
        "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL", "DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL",
        "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL", "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS",
        "DCGM_FI_DEV_POWER_VIOLATION", "DCGM_FI_DEV_THERMAL_VIOLATION", "gpuwarden_gpu_up",
        "gpuwarden_gpu_recovery_action", "gpuwarden_process_memory_used_bytes",
    }  # fmt: skip
    assert required - names == set()
    assert all(n in fams.BY_NAME for n in names)


def test_profiling_ratios_lie_between_zero_and_one(nvml: SimNvml, clock: FakeClock) -> None:
    collector = NvmlCollector(nvml, hostname=NODE, clock=clock)
    collector.collect()  # first GPM sample
    clock.advance(5)
    registry = scrape(collector)
    tensor = [
        s.value for m in registry.collect() for s in m.samples if s.name == "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE"
    ]
    assert len(tensor) == 8
    assert all(0.0 <= v <= 1.0 for v in tensor) and any(v > 0 for v in tensor)


def test_power_is_reported_in_watts_and_memory_in_mib(nvml: SimNvml) -> None:
    registry = scrape(NvmlCollector(nvml, hostname=NODE))
    labels = gpu_labels(registry, 0)
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    assert value(registry, "DCGM_FI_DEV_POWER_USAGE", labels) == pytest.approx(
        nvml.nvmlDeviceGetPowerUsage(handle) / 1000, rel=0.05
    )
    total = value(registry, "DCGM_FI_DEV_FB_TOTAL", labels)
    assert total == nvml.nvmlDeviceGetMemoryInfo(handle).total // 2**20


# --- every NVML error class the collector can meet ---------------------------------------------------

FIELD_FAILURES = [
    "Unknown", "Timeout", "NoPermission", "InsufficientSize", "InvalidArgument", "Memory", "NoData",
    "CorruptedInforom", "IrqIssue", "OperatingSystem", "InsufficientResources", "NotReady", "InUse",
    "InsufficientPower", "NotFound", "LibRmVersionMismatch", "ArgumentVersionMismatch", "Deprecated",
    "InvalidState", "Uninitialized",
]  # fmt: skip


@pytest.mark.parametrize("error", FIELD_FAILURES, ids=FIELD_FAILURES)
def test_a_failing_call_leaves_its_series_out_and_counts_the_error(nvml: SimNvml, error: str) -> None:
    nvml.fail("nvmlDeviceGetTemperature", getattr(pynvml, f"NVMLError_{error}"), gpu_index=2)
    registry = scrape(NvmlCollector(nvml, hostname=NODE))
    lost, healthy = gpu_labels(registry, 2), gpu_labels(registry, 3)
    assert value(registry, "DCGM_FI_DEV_GPU_TEMP", lost) is None
    assert value(registry, "DCGM_FI_DEV_GPU_TEMP", healthy) is not None
    assert value(registry, "DCGM_FI_DEV_GPU_UTIL", lost) is not None  # only that field is gone
    assert value(registry, "gpuwarden_gpu_up", gpu_labels(registry, 2, own=True)) == 1.0
    errors = {"Hostname": NODE, "gpu": "2", "function": "nvmlDeviceGetTemperature", "error": error}
    assert value(registry, "gpuwarden_nvml_call_errors_total", errors) == 1.0


def test_not_supported_means_the_series_is_absent_and_no_error(nvml: SimNvml) -> None:
    nvml.fail("nvmlDeviceGetPowerUsage", pynvml.NVMLError_NotSupported)
    registry = scrape(NvmlCollector(nvml, hostname=NODE))
    assert not [s for m in registry.collect() for s in m.samples if s.name == "DCGM_FI_DEV_POWER_USAGE"]
    assert not [
        s
        for m in registry.collect()
        for s in m.samples
        if s.name.startswith("gpuwarden_nvml_call") and s.labels["function"] == "nvmlDeviceGetPowerUsage"
    ]
    assert len(gpu_labels(registry, 0)) == 7  # the GPU itself still reports


@pytest.mark.parametrize(
    "error", ["GpuIsLost", "ResetRequired", "GpuNotFound"], ids=["GpuIsLost", "ResetRequired", "GpuNotFound"]
)
def test_a_lost_gpu_reads_up_zero_with_its_labels_kept(nvml: SimNvml, error: str) -> None:
    collector = NvmlCollector(nvml, hostname=NODE)
    healthy = scrape(collector)
    before = gpu_labels(healthy, 5, own=True)
    dcgm = gpu_labels(healthy, 5)
    nvml.fail("nvmlDeviceGetUtilizationRates", getattr(pynvml, f"NVMLError_{error}"), gpu_index=5)
    registry = scrape(collector)
    assert value(registry, "gpuwarden_gpu_up", before) == 0.0
    assert value(registry, "DCGM_FI_DEV_GPU_UTIL", dcgm) is None
    assert value(registry, "DCGM_FI_DEV_FB_USED", dcgm) is None  # nothing after the loss is reported
    procs = [
        s for m in registry.collect() for s in m.samples if s.name == "gpuwarden_process_memory_used_bytes"
    ]
    assert procs and not [s for s in procs if s.labels["gpu"] == "5"]  # nor what was read before it
    others = [gpu_labels(registry, i, own=True) for i in (0, 1, 2, 3, 4, 6, 7)]
    assert [value(registry, "gpuwarden_gpu_up", labels) for labels in others] == [1.0] * 7


def test_a_gpu_that_fell_off_the_bus_in_the_simulator_is_down(nvml: SimNvml, fleet: Any) -> None:
    collector = NvmlCollector(nvml, hostname=NODE)
    labels = gpu_labels(scrape(collector), 1, own=True)
    fleet.inject(parse_fault({"kind": "xid", "node": NODE, "gpu": 1, "xid": 79}))
    assert value(scrape(collector), "gpuwarden_gpu_up", labels) == 0.0
    fleet.reset_gpu(NODE, 1)
    assert value(scrape(collector), "gpuwarden_gpu_up", labels) == 1.0


def test_function_not_found_degrades_to_the_old_throttle_reason_call(nvml: SimNvml) -> None:
    nvml.fail("nvmlDeviceGetCurrentClocksEventReasons", pynvml.NVMLError_FunctionNotFound)
    collector = NvmlCollector(nvml, hostname=NODE)
    collector.collect()
    registry = scrape(collector)
    labels = gpu_labels(registry, 0)
    errors = {
        "Hostname": NODE,
        "gpu": "0",  # the first GPU to call it; then retired for all
        "function": "nvmlDeviceGetCurrentClocksEventReasons",
        "error": "FunctionNotFound",
    }
    assert value(registry, "gpuwarden_nvml_call_errors_total", errors) == 1.0  # tried once, then retired
    assert value(registry, "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", labels) is not None


@pytest.mark.parametrize(
    ("field", "member", "answer", "error"),
    [
        (pynvml.NVML_FI_DEV_ECC_SBE_VOL_TOTAL, "nvmlReturn", pynvml.NVML_ERROR_UNKNOWN, "Unknown"),
        # a driver newer than the installed pynvml, answering with a value type it does not list: read as
        # another type it would be garbled; failing the pass lost that GPU and every GPU after it
        (pynvml.NVML_FI_DEV_MEMORY_TEMP, "valueType", pynvml.NVML_VALUE_TYPE_COUNT, "UnknownValueType"),
    ],
    ids=["error", "value-type-newer-than-pynvml"],
)
def test_a_field_value_error_leaves_only_that_field_out(
    nvml: SimNvml, field: int, member: str, answer: int, error: str
) -> None:
    class OneBadField(_FieldUnsupported):
        def nvmlDeviceGetFieldValues(self, handle: Any, ids: list[Any]) -> Any:
            values = self._inner.nvmlDeviceGetFieldValues(handle, ids)
            for fv in values:
                if fv.fieldId in self._ids:
                    setattr(fv, member, answer)
            return values

    registry = scrape(NvmlCollector(OneBadField(nvml, {field}), hostname=NODE))
    family = next(fam.name for fid, fam, _ in fams.FIELD_FAMILIES if fid == field)
    for index in range(8):
        labels = gpu_labels(registry, index)
        assert value(registry, "gpuwarden_gpu_up", gpu_labels(registry, index, own=True)) == 1.0
        assert value(registry, family, labels) is None
        assert value(registry, "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", labels) is not None
    errors = {"Hostname": NODE, "function": f"nvmlDeviceGetFieldValues({family})", "error": error}
    for index in range(8):  # once under each GPU
        assert value(registry, "gpuwarden_nvml_call_errors_total", {**errors, "gpu": str(index)}) == 1.0
    failed = {"Hostname": NODE, "function": "collect", "error": "Exception"}
    assert value(registry, "gpuwarden_nvml_call_errors_total", failed) is None


def test_collect_never_raises_even_when_nvml_is_uninitialised(nvml: SimNvml) -> None:
    collector = NvmlCollector(nvml, hostname=NODE)
    collector.collect()
    nvml.nvmlShutdown()
    nvml.fail("nvmlInitWithFlags", pynvml.NVMLError_DriverNotLoaded)  # nor can it be initialised again
    families = collector.collect()
    # Not one call answered: the exporter is blind and reports no GPU (as if it were gone), only errors.
    assert not [s for m in families for s in m.samples if s.name.startswith(("DCGM_", "gpuwarden_gpu"))]
    errors = [s for m in families for s in m.samples if s.name == "gpuwarden_nvml_call_errors_total"]
    uninitialised = {s.labels["function"] for s in errors if s.labels["error"] == "Uninitialized"}
    assert {
        "nvmlDeviceGetCount",
        "nvmlDeviceGetUtilizationRates",
        "nvmlDeviceGetFieldValues",
    } <= uninitialised
    assert {"function": "nvmlInit", "error": "DriverNotLoaded"} in [
        {k: s.labels[k] for k in ("function", "error")} for s in errors
    ]


@pytest.mark.parametrize(
    ("error", "words"),
    [
        ("DriverNotLoaded", "driver is not loaded"),
        ("LibraryNotFound", "libnvidia-ml.so"),
        ("NoPermission", "permission"),
        ("Uninitialized", "Uninitialized"),
    ],
    ids=["DriverNotLoaded", "LibraryNotFound", "NoPermission", "Uninitialized"],
)
def test_init_failures_become_one_clear_source_error(nvml: SimNvml, error: str, words: str) -> None:
    nvml.fail("nvmlInit", getattr(pynvml, f"NVMLError_{error}"))
    with pytest.raises(SourceError, match=words) as caught:
        init_nvml(nvml)
    assert "\n" not in str(caught.value)
    assert not caught.value.retryable


def test_the_real_binding_without_a_driver_fails_init_cleanly() -> None:
    with pytest.raises(SourceError, match="LibraryNotFound"):
        init_nvml(pynvml)


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


def test_a_gpu_whose_every_call_fails_reads_up_zero_until_it_answers_again(nvml: SimNvml) -> None:
    # Every call on GPU 4 fails with Unknown, never GpuIsLost: it does not answer, so it is not up.
    collector = NvmlCollector(nvml, hostname=NODE)
    labels = gpu_labels(scrape(collector), 4, own=True)
    for name in dir(type(nvml)):
        if name.startswith("nvml") and name != "nvmlDeviceGetCount" and callable(getattr(nvml, name)):
            nvml.fail(name, pynvml.NVMLError_Unknown, gpu_index=4)
    first = scrape(collector)
    assert value(first, "gpuwarden_gpu_up", labels) == 0.0
    assert value(first, "gpuwarden_gpu_up", gpu_labels(first, 3, own=True)) == 1.0
    nvml.clear_failures()
    assert value(scrape(collector), "gpuwarden_gpu_up", labels) == 1.0


def test_a_down_node_reports_no_gpu_as_if_its_exporter_were_gone(nvml: SimNvml, fleet: Any) -> None:
    # A down node's NVML fails every call with Unknown: its collector must not say its GPUs are up.
    collector = NvmlCollector(nvml, hostname=NODE)
    labels = [gpu_labels(scrape(collector), i, own=True) for i in range(8)]
    fleet.inject(parse_fault({"kind": "node_down", "node": NODE}))
    down = scrape(collector)
    assert [value(down, "gpuwarden_gpu_up", each) for each in labels] == [None] * 8
    fleet.reboot_node(NODE)
    up = scrape(collector)
    assert [value(up, "gpuwarden_gpu_up", each) for each in labels] == [1.0] * 8


class _FieldUnsupported:
    """The simulated NVML with some field ids answering NotSupported (a driver without them)."""

    def __init__(self, inner: SimNvml, field_ids: set[int]) -> None:
        self._inner = inner
        self._ids = field_ids

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def nvmlDeviceGetFieldValues(self, handle: Any, ids: list[Any]) -> Any:
        values = self._inner.nvmlDeviceGetFieldValues(handle, ids)
        for fv in values:
            if fv.fieldId in self._ids:
                fv.nvmlReturn = pynvml.NVML_ERROR_NOT_SUPPORTED
        return values


@pytest.mark.parametrize("fallback", [False, True], ids=["field", "violation-status"])
def test_throttle_durations_are_nanoseconds_as_dcgm_exports_them(
    nvml: SimNvml, fleet: Any, clock: FakeClock, fallback: bool
) -> None:
    # NVML and DCGM count throttled time in ns; dcgm-exporter passes DCGM's value on unchanged, so
    # rate(DCGM_FI_DEV_THERMAL_VIOLATION[5m]) / 1e9 is the throttled share of time on either exporter.
    fleet.inject(parse_fault({"kind": "hw_thermal_slowdown", "node": NODE, "gpu": 3}))
    clock.advance(10)
    source: Any = _FieldUnsupported(nvml, {pynvml.NVML_FI_DEV_PERF_POLICY_THERMAL}) if fallback else nvml
    families = NvmlCollector(source, hostname=NODE).collect()
    registry = CollectorRegistry()
    registry.register(_Snapshot(families))
    handle = nvml.nvmlDeviceGetHandleByIndex(3)
    status = nvml.nvmlDeviceGetViolationStatus(handle, pynvml.NVML_PERF_POLICY_THERMAL)
    throttled = value(registry, "DCGM_FI_DEV_THERMAL_VIOLATION", gpu_labels(registry, 3))
    assert throttled == status.violationTime
    assert throttled is not None and 9e9 <= throttled <= 11e9  # 10 s of throttling, in ns
    help_text = next(m.documentation for m in families if m.name == "DCGM_FI_DEV_THERMAL_VIOLATION")
    assert "(in ns)" in help_text


def test_an_idle_gpu_uses_no_framebuffer_and_shows_the_driver_reserve_apart(
    nvml: SimNvml, fleet: Any, clock: FakeClock
) -> None:
    # DCGM reads NVML's v2 memory info: FB_USED leaves out what the driver reserves (about 0.6 GiB on an
    # H200), which is DCGM_FI_DEV_FB_RESERVED; "FB_USED == 0" finds idle GPUs on either exporter.
    fleet.drain_node(NODE)
    clock.advance(120)
    registry = scrape(NvmlCollector(nvml, hostname=NODE, clock=clock))
    labels = gpu_labels(registry, 0)
    reserved = nvml.nvmlDeviceGetMemoryInfo(nvml.nvmlDeviceGetHandleByIndex(0), pynvml.nvmlMemory_v2).reserved
    assert value(registry, "DCGM_FI_DEV_FB_USED", labels) == 0
    assert value(registry, "DCGM_FI_DEV_FB_RESERVED", labels) == reserved // 2**20 > 0


def test_a_busy_gpu_splits_its_framebuffer_into_used_reserved_and_free(nvml: SimNvml) -> None:
    registry = scrape(NvmlCollector(nvml, hostname=NODE))
    busy = [i for i in range(8) if (value(registry, "DCGM_FI_DEV_FB_USED", gpu_labels(registry, i)) or 0) > 0]
    assert busy, "the simulated node runs no workload"
    labels = gpu_labels(registry, busy[0])
    v1 = nvml.nvmlDeviceGetMemoryInfo(nvml.nvmlDeviceGetHandleByIndex(busy[0]))
    used = value(registry, "DCGM_FI_DEV_FB_USED", labels)
    reserved = value(registry, "DCGM_FI_DEV_FB_RESERVED", labels)
    assert used is not None and reserved is not None
    assert abs(used + reserved - v1.used / 2**20) <= 1  # v1's used is both together
    free = value(registry, "DCGM_FI_DEV_FB_FREE", labels)
    total = value(registry, "DCGM_FI_DEV_FB_TOTAL", labels)
    assert free is not None and total is not None and abs(used + reserved + free - total) <= 2


class _NoMemoryV2:
    """A driver older than nvmlDeviceGetMemoryInfo_v2: pynvml raises FunctionNotFound for the v2 call."""

    def __init__(self, inner: SimNvml, error: type[Exception]) -> None:
        self._inner = inner
        self._error = error

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def nvmlDeviceGetMemoryInfo(self, handle: Any, version: int | None = None) -> Any:
        if version:
            raise self._error()
        return self._inner.nvmlDeviceGetMemoryInfo(handle)


@pytest.mark.parametrize(
    "error",
    [
        pynvml.NVMLError_FunctionNotFound,
        pynvml.NVMLError_NotSupported,
        pynvml.NVMLError_ArgumentVersionMismatch,
    ],
    ids=["FunctionNotFound", "NotSupported", "ArgumentVersionMismatch"],
)
def test_without_the_v2_memory_call_the_v1_numbers_are_served(nvml: SimNvml, error: type[Exception]) -> None:
    collector = NvmlCollector(_NoMemoryV2(nvml, error), hostname=NODE)
    collector.collect()
    registry = scrape(collector)
    labels = gpu_labels(registry, 0)
    v1 = nvml.nvmlDeviceGetMemoryInfo(nvml.nvmlDeviceGetHandleByIndex(0))
    assert value(registry, "DCGM_FI_DEV_FB_USED", labels) == v1.used // 2**20
    assert value(registry, "DCGM_FI_DEV_FB_RESERVED", labels) is None


def test_a_transient_error_of_the_v2_memory_call_does_not_switch_to_v1(nvml: SimNvml) -> None:
    nvml.fail("nvmlDeviceGetMemoryInfo", pynvml.NVMLError_Unknown, gpu_index=0, times=1)
    collector = NvmlCollector(nvml, hostname=NODE)
    first = scrape(collector)
    assert value(first, "DCGM_FI_DEV_FB_USED", gpu_labels(first, 0)) is None  # left out, counted
    errors = {"Hostname": NODE, "gpu": "0", "function": "nvmlDeviceGetMemoryInfo_v2", "error": "Unknown"}
    assert value(first, "gpuwarden_nvml_call_errors_total", errors) == 1.0
    second = scrape(collector)
    assert value(second, "DCGM_FI_DEV_FB_RESERVED", gpu_labels(second, 0)) is not None  # v2 again


def prof_gpus(registry: CollectorRegistry) -> set[str]:
    return {
        s.labels["gpu"] for m in registry.collect() for s in m.samples if s.name == "DCGM_FI_PROF_SM_ACTIVE"
    }


def test_a_transient_error_asking_for_gpm_support_is_asked_again(nvml: SimNvml, clock: FakeClock) -> None:
    # One Unknown from nvmlGpmQueryDeviceSupport (a GPU recovering answers so) used to turn the profiling
    # families off for that GPU until the exporter restarted.
    nvml.fail("nvmlGpmQueryDeviceSupport", pynvml.NVMLError_Unknown, gpu_index=0, times=1)
    collector = NvmlCollector(nvml, hostname=NODE, clock=clock)
    for _ in range(3):
        registry = scrape(collector)
        clock.advance(5)
    assert prof_gpus(registry) == {str(i) for i in range(8)}


def test_not_supported_gpm_is_not_asked_again(nvml: SimNvml, clock: FakeClock) -> None:
    nvml.fail("nvmlGpmQueryDeviceSupport", pynvml.NVMLError_NotSupported, gpu_index=0, times=1)
    collector = NvmlCollector(nvml, hostname=NODE, clock=clock)
    for _ in range(3):
        registry = scrape(collector)
        clock.advance(5)
    assert "0" not in prof_gpus(registry)


def test_a_lost_gpu_frees_its_gpm_samples_and_profiles_again_after_a_reset(
    nvml: SimNvml, fleet: Any, clock: FakeClock
) -> None:
    collector = NvmlCollector(nvml, hostname=NODE, clock=clock)
    for _ in range(2):
        collector.collect()
        clock.advance(5)
    held = nvml.gpm_samples_allocated
    assert held == 16  # two per GPU, swapped each collection
    fleet.inject(parse_fault({"kind": "gpu_lost", "node": NODE, "gpu": 1}))
    collector.collect()
    assert nvml.gpm_samples_allocated == held - 2
    fleet.reset_gpu(NODE, 1)
    for _ in range(2):
        clock.advance(5)
        registry = scrape(collector)
    assert "1" in prof_gpus(registry) and nvml.gpm_samples_allocated == held


def test_nvlink_bandwidth_is_the_rate_over_all_links_as_dcgm_computes_it(
    nvml: SimNvml, fleet: Any, clock: FakeClock
) -> None:
    # DCGM differences NVML's cumulative KiB counters (TX + RX, scopeId UINT_MAX = every link) and divides
    # by the time between reads: MB/s (MiB/s), a gauge. A bare field id reads link 0 only.
    state = fleet.gpu(NODE, 0).state
    collector = NvmlCollector(nvml, hostname=NODE, clock=clock)
    first = scrape(collector)
    assert value(first, "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", gpu_labels(first, 0)) is None  # one read
    before = state.nvlink_tx_kib + state.nvlink_rx_kib
    clock.advance(10)
    registry = scrape(collector)
    after = state.nvlink_tx_kib + state.nvlink_rx_kib
    rate = value(registry, "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", gpu_labels(registry, 0))
    assert rate == pytest.approx((after - before) / 10 / 1024, rel=1e-3)
    assert rate > 1000  # a training GPU moves GB/s over NVLink
    own = gpu_labels(registry, 0, own=True)
    tx = value(registry, "gpuwarden_nvlink_data_bytes_total", {**own, "direction": "tx"})
    assert tx == pytest.approx(int(state.nvlink_tx_kib) * 1024)


def test_gpuwarden_families_leave_out_the_dcgm_only_labels(nvml: SimNvml) -> None:
    registry = scrape(NvmlCollector(nvml, hostname=NODE))
    own = gpu_labels(registry, 0, own=True)
    assert "modelName" not in own and "DCGM_FI_DRIVER_VERSION" not in own


def test_without_a_driver_version_the_label_is_left_out(nvml: SimNvml) -> None:
    nvml.fail("nvmlSystemGetDriverVersion", pynvml.NVMLError_Unknown)
    registry = scrape(NvmlCollector(nvml, hostname=NODE))
    assert "DCGM_FI_DRIVER_VERSION" not in gpu_labels(registry, 0)


def test_pcie_throughput_is_served_under_both_dcgm_names(nvml: SimNvml, fleet: Any, clock: FakeClock) -> None:
    # dcgm-exporter's default CSV has DCGM_FI_DEV_PCIE_{TX,RX}_THROUGHPUT (KB/s, from NVML); its DCP CSV
    # has DCGM_FI_PROF_PCIE_{TX,RX}_BYTES (B/s, from GPM on Hopper).
    collector = NvmlCollector(nvml, hostname=NODE, clock=clock)
    state = fleet.gpu(NODE, 0).state
    collector.collect()
    rx_before = state.pcie_rx_bytes
    clock.advance(10)
    registry = scrape(collector)
    labels = gpu_labels(registry, 0)
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    rx_kbs = nvml.nvmlDeviceGetPcieThroughput(handle, pynvml.NVML_PCIE_UTIL_RX_BYTES)
    assert value(registry, "DCGM_FI_DEV_PCIE_RX_THROUGHPUT", labels) == rx_kbs > 0
    assert value(registry, "DCGM_FI_DEV_PCIE_TX_THROUGHPUT", labels) is not None
    rx_bytes = value(registry, "DCGM_FI_PROF_PCIE_RX_BYTES", labels)
    assert rx_bytes == pytest.approx((state.pcie_rx_bytes - rx_before) / 10, rel=1e-3)
    assert value(registry, "DCGM_FI_PROF_PCIE_TX_BYTES", labels) is not None


def test_with_gpm_the_pcie_throughput_comes_from_it_not_from_nvml_s_20_ms_sampling_call(
    nvml: SimNvml, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # nvmlDeviceGetPcieThroughput samples for 20 ms per direction: 42 ms of wall time per GPU on an H200.
    # Once GPM answers its PCIe rates, they give DCGM_FI_DEV_PCIE_*_THROUGHPUT (MiB/s as KB/s).
    calls: list[int] = []
    real = nvml.nvmlDeviceGetPcieThroughput
    monkeypatch.setattr(nvml, "nvmlDeviceGetPcieThroughput", lambda h, c: calls.append(c) or real(h, c))
    collector = NvmlCollector(nvml, hostname=NODE, clock=clock)
    for _ in range(2):  # discovery and the first GPM sample, then the first GPM rates
        collector.collect()
        clock.advance(10)
    calls.clear()
    registry = scrape(collector)
    assert calls == []
    labels = gpu_labels(registry, 0)
    rx_bytes = value(registry, "DCGM_FI_PROF_PCIE_RX_BYTES", labels)
    assert rx_bytes is not None and rx_bytes > 0
    assert value(registry, "DCGM_FI_DEV_PCIE_RX_THROUGHPUT", labels) == pytest.approx(rx_bytes / 1024)
    series = [s for m in registry.collect() for s in m.samples if s.name == "DCGM_FI_DEV_PCIE_TX_THROUGHPUT"]
    assert len(series) == len({tuple(sorted(s.labels.items())) for s in series}) > 0  # once per GPU
    nvml.fail("nvmlGpmMetricsGet", pynvml.NVMLError_Unknown, times=2)  # GPM stops answering: NVML again
    clock.advance(10)
    collector.collect()
    clock.advance(10)
    registry = scrape(collector)
    assert calls and value(registry, "DCGM_FI_DEV_PCIE_RX_THROUGHPUT", gpu_labels(registry, 0)) is not None


def test_the_clock_event_reasons_carry_dcgm_s_new_name_too(nvml: SimNvml) -> None:
    registry = scrape(NvmlCollector(nvml, hostname=NODE))
    labels = gpu_labels(registry, 0)
    mask = value(registry, "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", labels)
    assert mask is not None and value(registry, "DCGM_FI_DEV_CLOCKS_EVENT_REASONS", labels) == mask


def test_encoder_and_decoder_utilisation_are_served_without_errors(nvml: SimNvml) -> None:
    registry = scrape(NvmlCollector(nvml, hostname=NODE))
    labels = gpu_labels(registry, 0)
    assert value(registry, "DCGM_FI_DEV_ENC_UTIL", labels) == 0
    assert value(registry, "DCGM_FI_DEV_DEC_UTIL", labels) == 0
    errors = [
        s for m in registry.collect() for s in m.samples if s.name == "gpuwarden_nvml_call_errors_total"
    ]
    assert errors == []  # every call the collector makes is one the simulator answers


def test_no_rate_is_computed_over_the_milliseconds_between_two_close_collections(
    nvml: SimNvml, clock: FakeClock
) -> None:
    """A busy GPU read DCGM_FI_PROF_* 0 right after every exporter start: two passes a few ms apart."""
    collector = NvmlCollector(nvml, hostname=NODE, clock=clock, min_rate_interval=1.0)
    collector.collect()
    clock.advance(0.005)
    soon = scrape(collector)
    labels = gpu_labels(soon, 0)
    for name in (
        "DCGM_FI_PROF_SM_ACTIVE",
        "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
        "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL",
    ):
        assert value(soon, name, labels) is None, name
    assert value(soon, "DCGM_FI_DEV_PCIE_TX_THROUGHPUT", labels) is not None  # NVML's own call stands in
    clock.advance(5)
    later = scrape(collector)
    labels = gpu_labels(later, 0)
    sm_active = value(later, "DCGM_FI_PROF_SM_ACTIVE", labels)
    assert sm_active is not None and sm_active > 0
    bandwidth = value(later, "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", labels)
    assert bandwidth is not None and bandwidth > 1000


def test_the_shortest_rate_interval_follows_the_collection_interval_within_nvml_s_bounds() -> None:
    assert min_rate_interval(5.0) == 1.0
    assert min_rate_interval(1.0) == 0.5
    assert min_rate_interval(0.05) == 0.1  # GPM asks for more than 100 ms between its two samples


def link_states(registry: CollectorRegistry, gpu: int) -> dict[str, float]:
    return {
        s.labels["link"]: s.value
        for m in registry.collect()
        for s in m.samples
        if s.name == "DCGM_FI_DEV_NVLINK_LINK_STATUS" and s.labels["gpu"] == str(gpu)
    }


def test_a_downed_nvlink_reads_0_on_its_own_series_for_as_long_as_it_is_down(
    nvml: SimNvml, fleet: Any, clock: FakeClock
) -> None:
    """The error counters move once when a link goes down; its state says so on every collection."""
    collector = NvmlCollector(nvml, hostname=NODE, clock=clock)
    links = len(fleet.gpu(NODE, 2).nvlink_up)
    assert link_states(scrape(collector), 2) == {str(i): 1.0 for i in range(links)}
    fleet.inject(parse_fault({"kind": "nvlink_down", "node": NODE, "gpu": 2, "link": 0}))
    for _ in range(3):
        clock.advance(5)
        states = link_states(scrape(collector), 2)
        assert states["0"] == 0.0 and all(states[str(i)] == 1.0 for i in range(1, links))
    registry = scrape(collector)
    labels = {**gpu_labels(registry, 2), "link": "0"}
    assert value(registry, "DCGM_FI_DEV_NVLINK_LINK_STATUS", labels) == 0.0  # DCGM labels, and the link


def test_a_gpu_without_nvlink_is_asked_for_its_links_once_not_every_collection(
    nvml: SimNvml, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked: list[int] = []
    real = nvml.nvmlDeviceGetFieldValues

    def without_nvlink(handle: Any, ids: list[Any]) -> Any:
        values = real(handle, ids)
        for fid, fv in zip(ids, values, strict=True):
            if fid == pynvml.NVML_FI_DEV_NVLINK_LINK_COUNT:
                asked.append(fid)
                fv.nvmlReturn = pynvml.NVML_ERROR_NOT_SUPPORTED
        return values

    monkeypatch.setattr(nvml, "nvmlDeviceGetFieldValues", without_nvlink)
    states: list[int] = []
    monkeypatch.setattr(nvml, "nvmlDeviceGetNvLinkState", lambda h, link: states.append(link) or 1)
    collector = NvmlCollector(nvml, hostname=NODE)
    for _ in range(3):
        registry = scrape(collector)
    assert len(asked) == 8 and states == []  # once per GPU, then never again
    assert link_states(registry, 0) == {}
    errors = [
        s for m in registry.collect() for s in m.samples if s.name == "gpuwarden_nvml_call_errors_total"
    ]
    assert errors == []


def call_errors(registry: CollectorRegistry, function: str) -> dict[str, float]:
    return {
        s.labels["error"]: s.value
        for m in registry.collect()
        for s in m.samples
        if s.name == "gpuwarden_nvml_call_errors_total" and s.labels["function"] == function
    }


def test_a_link_whose_state_read_fails_is_left_out_alone_and_counted(nvml: SimNvml, fleet: Any) -> None:
    collector = NvmlCollector(nvml, hostname=NODE)
    links = len(fleet.gpu(NODE, 2).nvlink_up)
    scrape(collector)
    nvml.fail("nvmlDeviceGetNvLinkState", pynvml.NVMLError_Unknown, gpu_index=2, times=1)  # link 0 only
    registry = scrape(collector)
    assert link_states(registry, 2) == {str(i): 1.0 for i in range(1, links)}
    assert link_states(registry, 3) == {str(i): 1.0 for i in range(links)}
    assert call_errors(registry, "nvmlDeviceGetNvLinkState") == {"Unknown": 1.0}
    assert link_states(scrape(collector), 2) == {str(i): 1.0 for i in range(links)}  # asked again


def test_a_driver_without_the_link_state_call_is_asked_once_then_never(nvml: SimNvml, fleet: Any) -> None:
    nvml.fail("nvmlDeviceGetNvLinkState", pynvml.NVMLError_FunctionNotFound)
    collector = NvmlCollector(nvml, hostname=NODE)
    for _ in range(3):
        registry = scrape(collector)
    assert link_states(registry, 0) == {}
    assert call_errors(registry, "nvmlDeviceGetNvLinkState") == {"FunctionNotFound": 1.0}
    assert value(registry, "gpuwarden_gpu_up", gpu_labels(registry, 0, own=True)) == 1.0


def test_a_gpu_lost_while_its_links_are_read_reads_up_zero_with_none_of_its_series(nvml: SimNvml) -> None:
    collector = NvmlCollector(nvml, hostname=NODE)
    healthy = scrape(collector)
    own, dcgm = gpu_labels(healthy, 3, own=True), gpu_labels(healthy, 3)
    nvml.fail("nvmlDeviceGetNvLinkState", pynvml.NVMLError_GpuIsLost, gpu_index=3, times=1)
    registry = scrape(collector)
    assert value(registry, "gpuwarden_gpu_up", own) == 0.0
    assert link_states(registry, 3) == {} and value(registry, "DCGM_FI_DEV_GPU_TEMP", dcgm) is None
    assert link_states(registry, 4) != {}


class _NonFinite(_FieldUnsupported):
    """The simulated NVML answering NaN for the memory temperature field (as a double) and NaN and +Inf for
    two GPM metrics of every GPU."""

    def nvmlDeviceGetFieldValues(self, handle: Any, ids: list[Any]) -> Any:
        values = self._inner.nvmlDeviceGetFieldValues(handle, ids)
        for fv in values:
            if fv.fieldId == pynvml.NVML_FI_DEV_MEMORY_TEMP:
                fv.valueType = pynvml.NVML_VALUE_TYPE_DOUBLE
                fv.value.dVal = float("nan")
        return values

    def nvmlGpmMetricsGet(self, metrics_get: Any) -> Any:
        answer = self._inner.nvmlGpmMetricsGet(metrics_get)
        for i, (_, family, _) in enumerate(fams.GPM_FAMILIES):
            if family in (fams.PROF_SM_ACTIVE, fams.PROF_SM_OCCUPANCY):
                metrics_get.metrics[i].value = float("nan" if family is fams.PROF_SM_ACTIVE else "inf")
        return answer


def test_nan_and_infinite_answers_are_left_out_and_counted_not_exported(
    nvml: SimNvml, clock: FakeClock
) -> None:
    # One NaN series made avg() and sum() over the whole fleet NaN in Prometheus (dashboard 12239's gauges).
    collector = NvmlCollector(_NonFinite(nvml, set()), hostname=NODE, clock=clock)
    collector.collect()
    clock.advance(5)
    registry = scrape(collector)
    values = [s.value for m in registry.collect() for s in m.samples]
    assert all(v == v and abs(v) != float("inf") for v in values)
    labels = gpu_labels(registry, 0)
    for family in ("DCGM_FI_DEV_MEMORY_TEMP", "DCGM_FI_PROF_SM_ACTIVE", "DCGM_FI_PROF_SM_OCCUPANCY"):
        assert value(registry, family, labels) is None, family
    assert value(registry, "DCGM_FI_PROF_DRAM_ACTIVE", labels) is not None
    host = {"Hostname": NODE, "error": "NonFiniteValue"}
    for function in (
        "nvmlDeviceGetFieldValues(DCGM_FI_DEV_MEMORY_TEMP)",
        "nvmlGpmMetricsGet(DCGM_FI_PROF_SM_ACTIVE)",
        "nvmlGpmMetricsGet(DCGM_FI_PROF_SM_OCCUPANCY)",
    ):
        for index in range(8):  # each GPU's under its index
            errors = {**host, "gpu": str(index), "function": function}
            assert value(registry, "gpuwarden_nvml_call_errors_total", errors) >= 1.0


class _NotAvailable:
    """The simulated NVML answering NVML_VALUE_NOT_AVAILABLE (0xFFFFFFFF, with success) for GPU 2's
    temperature and utilisation, as dcgm-exporter once served a utilisation of 4294967295 (DCGM issue 199)."""

    def __init__(self, inner: SimNvml) -> None:
        self._inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _gpu2(self, handle: Any) -> bool:
        return bool(self._inner.nvmlDeviceGetIndex(handle) == 2)

    def nvmlDeviceGetTemperature(self, handle: Any, sensor: int) -> Any:
        real = self._inner.nvmlDeviceGetTemperature(handle, sensor)
        return 0xFFFFFFFF if self._gpu2(handle) else real

    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> Any:
        real = self._inner.nvmlDeviceGetUtilizationRates(handle)
        if self._gpu2(handle):
            real.gpu = 0xFFFFFFFF
        return real


def test_a_not_available_reading_is_left_out_and_counted_not_exported_as_4294967295(
    nvml: SimNvml, clock: FakeClock
) -> None:
    registry = scrape(NvmlCollector(_NotAvailable(nvml), hostname=NODE, clock=clock))
    assert all(s.value != 0xFFFFFFFF for m in registry.collect() for s in m.samples)
    (labels,) = [  # from the same answer's other reading, which is kept
        dict(s.labels)
        for m in registry.collect()
        for s in m.samples
        if s.name == "DCGM_FI_DEV_MEM_COPY_UTIL" and s.labels["gpu"] == "2"
    ]
    assert value(registry, "DCGM_FI_DEV_GPU_TEMP", labels) is None
    assert value(registry, "DCGM_FI_DEV_GPU_UTIL", labels) is None
    assert value(registry, "DCGM_FI_DEV_POWER_USAGE", labels) is not None
    assert value(registry, "DCGM_FI_DEV_GPU_TEMP", gpu_labels(registry, 1)) is not None
    host = {"Hostname": NODE, "error": "NotAvailable", "gpu": "2"}
    for function in ("nvmlDeviceGetTemperature", "nvmlDeviceGetUtilizationRates"):
        assert value(registry, "gpuwarden_nvml_call_errors_total", {**host, "function": function}) == 1.0


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


def test_a_mig_enabled_gpu_has_no_utilisation_series_as_nvml_answers_not_supported(clock: FakeClock) -> None:
    # NVML: "On MIG-enabled GPUs, querying device utilization rates is not currently supported."
    fleet = build_fleet(1, 2, seed=7, clock=clock, mig_gpus=[(NODE, 0)])
    sim = SimNvml(fleet, NODE)
    sim.nvmlInit()
    registry = scrape(NvmlCollector(sim, hostname=NODE, clock=clock))
    utils = {
        s.labels["gpu"] for m in registry.collect() for s in m.samples if s.name == "DCGM_FI_DEV_GPU_UTIL"
    }
    assert utils == {"1"}
    errors = [
        s for m in registry.collect() for s in m.samples if s.name == "gpuwarden_nvml_call_errors_total"
    ]
    assert errors == []


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
    assert {s.labels["gpu"] for s in by_name["DCGM_FI_DEV_GPU_UTIL"].samples} == {"1"}
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


def test_a_failing_call_is_counted_under_the_gpu_it_read_and_a_host_wide_one_under_none(
    nvml: SimNvml,
) -> None:
    nvml.fail("nvmlDeviceGetPowerUsage", pynvml.NVMLError_Unknown, gpu_index=5)
    nvml.fail("nvmlSystemGetDriverVersion", pynvml.NVMLError_Unknown)
    registry = scrape(NvmlCollector(nvml, hostname=NODE))
    errors = {
        tuple(sorted(s.labels.items()))
        for m in registry.collect()
        for s in m.samples
        if s.name == "gpuwarden_nvml_call_errors_total"
    }
    failed = {"Hostname": NODE, "error": "Unknown"}
    assert tuple(sorted({**failed, "function": "nvmlDeviceGetPowerUsage", "gpu": "5"}.items())) in errors
    assert tuple(sorted({**failed, "function": "nvmlSystemGetDriverVersion"}.items())) in errors
    assert {dict(e).get("gpu") for e in errors} == {"5", None}  # only the GPU that failed is named
