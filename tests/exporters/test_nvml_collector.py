"""NvmlCollector against the simulated NVML: registering, DCGM's labels and families, units, throttle
durations, framebuffer memory (v2 and v1), PCIe throughput and the clock event reasons."""

from __future__ import annotations

from typing import Any

import pynvml
import pytest
from prometheus_client import CollectorRegistry

from exporters import fields as fams
from exporters.nvml_collector import NvmlCollector
from gpuwarden.clock import FakeClock
from gpuwarden.sim import SimNvml, parse_fault
from tests.exporters.nvml_scrapes import _FieldUnsupported, _Snapshot, gpu_labels, scrape, value

from .conftest import NODE


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
