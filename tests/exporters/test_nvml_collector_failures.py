"""NvmlCollector when NVML fails: calls left out and counted, NotSupported, lost and down GPUs, init
failures, NaN, infinite and not-available answers, and where each error is counted."""

from __future__ import annotations

import logging
from typing import Any

import pynvml
import pytest

from exporters import fields as fams
from exporters.nvml_collector import NvmlCollector, init_nvml
from gpuwarden.clock import FakeClock
from gpuwarden.errors import SourceError
from gpuwarden.sim import SimNvml, parse_fault
from tests.exporters.nvml_scrapes import _FieldUnsupported, gpu_labels, scrape, value

from .conftest import NODE

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


def test_a_driver_without_field_values_still_serves_the_violations_from_the_old_call(nvml: SimNvml) -> None:
    """The fallback to nvmlDeviceGetViolationStatus ran only after a field-value answer: a driver without
    nvmlDeviceGetFieldValues (FunctionNotFound) lost the power and thermal violations it still answers."""
    nvml.fail("nvmlDeviceGetFieldValues", pynvml.NVMLError_FunctionNotFound)
    collector = NvmlCollector(nvml, hostname=NODE)
    for _ in range(2):  # the first pass retires the call, the next does without it
        registry = scrape(collector)
    labels = gpu_labels(registry, 0)
    status = nvml.nvmlDeviceGetViolationStatus(
        nvml.nvmlDeviceGetHandleByIndex(0), pynvml.NVML_PERF_POLICY_POWER
    )
    assert value(registry, "DCGM_FI_DEV_POWER_VIOLATION", labels) == status.violationTime
    assert value(registry, "DCGM_FI_DEV_THERMAL_VIOLATION", labels) is not None
    assert value(registry, "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", labels) is None  # field values only


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


class _FieldsNotAvailable(_FieldUnsupported):
    """The simulated NVML answering memory temperature and energy as NVML's not-available value."""

    def nvmlDeviceGetFieldValues(self, handle: Any, ids: list[Any]) -> Any:
        values = self._inner.nvmlDeviceGetFieldValues(handle, ids)
        for fv in values:
            if fv.fieldId == pynvml.NVML_FI_DEV_MEMORY_TEMP:
                fv.value.uiVal = 0xFFFFFFFF
            elif fv.fieldId == pynvml.NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION:
                fv.value.ullVal = 2**64 - 1
        return values


def test_a_not_available_field_value_is_left_out_and_counted_not_exported(nvml: SimNvml) -> None:
    """The README's promise held for the calls read one by one, not for the field values: the memory
    temperature was served as 4294967295 and the energy counter as 1.8e19 mJ."""
    registry = scrape(NvmlCollector(_FieldsNotAvailable(nvml, set()), hostname=NODE))
    labels = gpu_labels(registry, 0)
    assert value(registry, "DCGM_FI_DEV_MEMORY_TEMP", labels) is None
    assert value(registry, "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", labels) is None
    assert value(registry, "DCGM_FI_DEV_PCIE_REPLAY_COUNTER", labels) is not None  # the others are kept
    for family in ("DCGM_FI_DEV_MEMORY_TEMP", "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"):
        errors = {"Hostname": NODE, "gpu": "0", "error": "NotAvailable"}
        errors["function"] = f"nvmlDeviceGetFieldValues({family})"
        assert value(registry, "gpuwarden_nvml_call_errors_total", errors) == 1.0


def _said(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name.startswith("exporters.")]


def test_a_call_that_keeps_failing_is_logged_once_and_counted_at_every_collection(
    nvml: SimNvml, caplog: pytest.LogCaptureFixture
) -> None:
    """A GPU's Timeout or NoPermission was counted without a word in the log; said at every collection it
    would bury the log (every 5 s per GPU)."""
    caplog.set_level(logging.INFO, logger="exporters")
    for gpu in (2, 3):
        nvml.fail("nvmlDeviceGetTemperature", pynvml.NVMLError_Timeout, gpu_index=gpu)
    collector = NvmlCollector(nvml, hostname=NODE)
    for _ in range(3):
        registry = scrape(collector)
    [line] = _said(caplog)
    assert "function=nvmlDeviceGetTemperature error=Timeout gpu=2 host=node-01" in line
    errors = {"Hostname": NODE, "gpu": "3", "function": "nvmlDeviceGetTemperature", "error": "Timeout"}
    assert value(registry, "gpuwarden_nvml_call_errors_total", errors) == 3.0


def test_a_gpu_going_down_and_coming_back_is_logged_once_each_way(
    nvml: SimNvml, caplog: pytest.LogCaptureFixture
) -> None:
    """gpuwarden_gpu_up went to 0 for a GPU that fell off the bus with nothing in the exporter's log."""
    caplog.set_level(logging.INFO, logger="exporters")
    collector = NvmlCollector(nvml, hostname=NODE)
    scrape(collector)
    uuid = nvml.nvmlDeviceGetUUID(nvml.nvmlDeviceGetHandleByIndex(1))
    nvml.fail("nvmlDeviceGetMigMode", pynvml.NVMLError_GpuIsLost, gpu_index=1)
    for _ in range(3):
        scrape(collector)
    assert _said(caplog) == [
        f"gpu not answering gpu=1 gpu_uuid={uuid} host={NODE} reason=nvmlDeviceGetMigMode answered GpuIsLost"
    ]
    nvml.clear_failures()
    for _ in range(2):
        registry = scrape(collector)
    assert _said(caplog)[1:] == [f"gpu answers again gpu=1 gpu_uuid={uuid} host={NODE}"]
    assert value(registry, "gpuwarden_gpu_up", gpu_labels(registry, 1, own=True)) == 1.0


def test_nvml_answering_nothing_is_one_line_when_it_stops_and_one_when_it_answers_again(
    nvml: SimNvml, caplog: pytest.LogCaptureFixture
) -> None:
    """A driver reload fails every call of a pass: said per function and GPU, it is a burst of lines that
    says one thing."""
    caplog.set_level(logging.INFO, logger="exporters")
    collector = NvmlCollector(nvml, hostname=NODE)
    scrape(collector)
    nvml.nvmlShutdown()  # under the exporter, as a driver reload does
    nvml.fail("nvmlInit", pynvml.NVMLError_DriverNotLoaded, times=2)
    for _ in range(3):
        registry = scrape(collector)
    assert _said(caplog) == [
        f"nvml answers no call host={NODE} first_error=nvmlDeviceGetCount Uninitialized; no GPU is served"
        " until it does",
        f"nvml was not initialised; initialised it again host={NODE}",
        f"nvml answers again host={NODE}",
    ]
    assert value(registry, "gpuwarden_gpu_up", gpu_labels(registry, 0, own=True)) == 1.0


def test_a_host_wide_call_answering_gpu_is_lost_leaves_every_gpu_served(
    nvml: SimNvml, caplog: pytest.LogCaptureFixture
) -> None:
    """GpuIsLost from nvmlDeviceGetCount ended the whole pass: every GPU's series gone, gpuwarden_nvml_up
    still 1, the host fresh to the loop, and a traceback at every collection."""
    caplog.set_level(logging.INFO, logger="exporters")
    collector = NvmlCollector(nvml, hostname=NODE)
    scrape(collector)
    nvml.fail("nvmlDeviceGetCount", pynvml.NVMLError_GpuIsLost)
    for _ in range(2):
        registry = scrape(collector)
    assert value(registry, "gpuwarden_gpu_up", gpu_labels(registry, 7, own=True)) == 1.0
    assert value(registry, "DCGM_FI_DEV_GPU_TEMP", gpu_labels(registry, 7)) is not None
    errors = {"Hostname": NODE, "function": "nvmlDeviceGetCount", "error": "GpuIsLost"}
    assert value(registry, "gpuwarden_nvml_call_errors_total", errors) == 2.0
    assert _said(caplog) == [
        f"nvml call failed function=nvmlDeviceGetCount error=GpuIsLost gpu=- host={NODE}; said once,"
        " counted in gpuwarden_nvml_call_errors_total"
    ]


class _Broken:
    """NVML whose binding raises something that is no NVMLError (a bug, a ctypes failure)."""

    def __init__(self, inner: SimNvml) -> None:
        self.inner, self.broken = inner, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def nvmlDeviceGetCount(self) -> int:
        if self.broken:
            raise RuntimeError("binding broke")
        return int(self.inner.nvmlDeviceGetCount())


def test_a_pass_cut_short_before_any_answer_reads_as_nvml_down_not_fresh(nvml: SimNvml) -> None:
    """The collection boundary kept the last pass's nvml_answered: a pass that failed before NVML answered
    anything served no GPU with gpuwarden_nvml_up 1, and the loop called the host fresh."""
    broken = _Broken(nvml)
    collector = NvmlCollector(broken, hostname=NODE)
    scrape(collector)
    broken.broken = True
    registry = scrape(collector)
    assert not collector.nvml_answered
    assert value(registry, "gpuwarden_nvml_up", {"Hostname": NODE}) == 0.0
