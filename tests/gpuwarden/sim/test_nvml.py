from __future__ import annotations

import threading

import pynvml
import pytest

from gpuwarden.clock import FakeClock
from gpuwarden.sim import Fleet, SimNvml, parse_fault


def test_calls_before_init_raise_uninitialized(fleet: Fleet) -> None:
    sim = SimNvml(fleet, "node-01")
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        sim.nvmlDeviceGetCount()
    sim.nvmlInit()
    assert sim.nvmlDeviceGetCount() == 8
    sim.nvmlShutdown()
    with pytest.raises(pynvml.NVMLError_Uninitialized):
        sim.nvmlDeviceGetCount()


def test_constants_structs_and_error_classes_come_from_pynvml(nvml: SimNvml) -> None:
    assert nvml.NVML_CLOCK_SM == pynvml.NVML_CLOCK_SM
    assert nvml.NVMLError_GpuIsLost is pynvml.NVMLError_GpuIsLost
    assert nvml.c_nvmlGpmMetricsGet_t is pynvml.c_nvmlGpmMetricsGet_t


def test_unimplemented_pynvml_function_raises_function_not_found(nvml: SimNvml) -> None:
    with pytest.raises(pynvml.NVMLError_FunctionNotFound):
        nvml.nvmlDeviceGetFanSpeed(nvml.nvmlDeviceGetHandleByIndex(0))


def test_identity_calls_return_strings_and_pynvml_structs(nvml: SimNvml, fleet: Fleet) -> None:
    handle = nvml.nvmlDeviceGetHandleByIndex(3)
    gpu = fleet.gpu("node-01", 3)
    assert nvml.nvmlDeviceGetName(handle) == "NVIDIA H100 80GB HBM3"
    assert nvml.nvmlDeviceGetUUID(handle) == gpu.uuid
    assert nvml.nvmlDeviceGetSerial(handle) == gpu.serial
    pci = nvml.nvmlDeviceGetPciInfo(handle)
    assert isinstance(pci, pynvml.nvmlPciInfo_t)
    assert pci.busId == gpu.pci_bus_id  # pynvml structs decode char arrays to str
    assert nvml.nvmlDeviceGetArchitecture(handle) == pynvml.NVML_DEVICE_ARCH_HOPPER
    assert nvml.nvmlDeviceGetHandleByUUID(gpu.uuid) is handle
    assert nvml.nvmlDeviceGetIndex(handle) == 3
    assert isinstance(nvml.nvmlSystemGetDriverVersion(), str)


def test_bad_index_is_invalid_argument_and_unknown_uuid_not_found(nvml: SimNvml) -> None:
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        nvml.nvmlDeviceGetHandleByIndex(8)
    with pytest.raises(pynvml.NVMLError_NotFound):
        nvml.nvmlDeviceGetHandleByUUID("GPU-00000000-0000-0000-0000-000000000000")


def test_gauges_have_pynvml_shapes(nvml: SimNvml) -> None:
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    util = nvml.nvmlDeviceGetUtilizationRates(handle)
    assert isinstance(util, pynvml.c_nvmlUtilization_t)
    memory = nvml.nvmlDeviceGetMemoryInfo(handle)
    assert isinstance(memory, pynvml.c_nvmlMemory_t)
    assert memory.total == memory.used + memory.free
    memory_v2 = nvml.nvmlDeviceGetMemoryInfo(handle, version=pynvml.nvmlMemory_v2)
    assert isinstance(memory_v2, pynvml.c_nvmlMemory_v2_t) and memory_v2.reserved > 0
    violation = nvml.nvmlDeviceGetViolationStatus(handle, pynvml.NVML_PERF_POLICY_POWER)
    assert isinstance(violation, pynvml.c_nvmlViolationTime_t)
    assert nvml.nvmlDeviceGetRemappedRows(handle) == (0, 0, 0, 0)


def test_retired_pages_are_not_supported_on_hopper(nvml: SimNvml) -> None:
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        nvml.nvmlDeviceGetRetiredPages(handle, pynvml.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        nvml.nvmlDeviceGetRetiredPagesPendingStatus(handle)


def test_field_values_fill_supported_fields_and_mark_the_rest_not_supported(nvml: SimNvml) -> None:
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    ids = [
        pynvml.NVML_FI_DEV_ECC_DBE_VOL_TOTAL,
        pynvml.NVML_FI_DEV_MEMORY_TEMP,
        pynvml.NVML_FI_DEV_GET_GPU_RECOVERY_ACTION,
        pynvml.NVML_FI_DEV_RETIRED_DBE,
    ]
    values = nvml.nvmlDeviceGetFieldValues(handle, ids)
    assert [v.fieldId for v in values] == ids
    assert [v.nvmlReturn for v in values] == [0, 0, 0, pynvml.NVML_ERROR_NOT_SUPPORTED]
    assert values[1].valueType == pynvml.NVML_VALUE_TYPE_UNSIGNED_INT
    assert 20 < values[1].value.uiVal < 100


def test_xid_burst_is_delivered_event_by_event(nvml: SimNvml, fleet: Fleet) -> None:
    event_set = nvml.nvmlEventSetCreate()
    for i in range(8):
        nvml.nvmlDeviceRegisterEvents(
            nvml.nvmlDeviceGetHandleByIndex(i), pynvml.nvmlEventTypeXidCriticalError, event_set
        )
    for _ in range(5):
        fleet.inject(parse_fault({"kind": "xid", "node": "node-01", "gpu": 2, "xid": 13}))
    fleet.inject(
        parse_fault({"kind": "xid", "node": "node-01", "gpu": 4, "xid": 31, "params": {"count": 20}})
    )
    got = []
    for _ in range(25):
        data = nvml.nvmlEventSetWait(event_set, 1000)
        assert isinstance(data, pynvml.c_nvmlEventData_t)
        assert data.eventType == pynvml.nvmlEventTypeXidCriticalError
        got.append((nvml.nvmlDeviceGetIndex(data.device), data.eventData))
    assert got == [(2, 13)] * 5 + [(4, 31)] * 20
    with pytest.raises(pynvml.NVMLError_Timeout):
        nvml.nvmlEventSetWait(event_set, 10)
    nvml.nvmlEventSetFree(event_set)


def test_event_wait_wakes_when_another_thread_injects(nvml: SimNvml, fleet: Fleet) -> None:
    event_set = nvml.nvmlEventSetCreate()
    nvml.nvmlDeviceRegisterEvents(
        nvml.nvmlDeviceGetHandleByIndex(1), pynvml.nvmlEventTypeXidCriticalError, event_set
    )
    injector = threading.Thread(
        target=fleet.inject, args=(parse_fault({"kind": "xid", "node": "node-01", "gpu": 1, "xid": 79}),)
    )
    injector.start()
    data = nvml.nvmlEventSetWait(event_set, 10_000)
    injector.join()
    assert data.eventData == 79


def test_xid_79_makes_the_gpu_lost_and_a_reset_brings_it_back(nvml: SimNvml, fleet: Fleet) -> None:
    handle = nvml.nvmlDeviceGetHandleByIndex(5)
    other = nvml.nvmlDeviceGetHandleByIndex(6)
    fleet.inject(parse_fault({"kind": "xid", "node": "node-01", "gpu": 5, "xid": 79}))
    for call in (
        lambda: nvml.nvmlDeviceGetPowerUsage(handle),
        lambda: nvml.nvmlDeviceGetUUID(handle),
        lambda: nvml.nvmlDeviceGetFieldValues(handle, [pynvml.NVML_FI_DEV_MEMORY_TEMP]),
    ):
        with pytest.raises(pynvml.NVMLError_GpuIsLost):
            call()
    assert nvml.nvmlDeviceGetPowerUsage(other) > 0
    assert fleet.gpu_speed_factor("node-01", 5) == 0.0
    fleet.reset_gpu("node-01", 5)
    assert nvml.nvmlDeviceGetPowerUsage(handle) > 0
    assert fleet.active_faults() == []


def test_fail_makes_one_function_raise_the_chosen_error_on_one_gpu(nvml: SimNvml) -> None:
    nvml.fail("nvmlDeviceGetPowerUsage", pynvml.NVMLError_NoPermission, gpu_index=2)
    with pytest.raises(pynvml.NVMLError_NoPermission):
        nvml.nvmlDeviceGetPowerUsage(nvml.nvmlDeviceGetHandleByIndex(2))
    assert nvml.nvmlDeviceGetPowerUsage(nvml.nvmlDeviceGetHandleByIndex(3)) > 0
    nvml.clear_failures()
    assert nvml.nvmlDeviceGetPowerUsage(nvml.nvmlDeviceGetHandleByIndex(2)) > 0


def test_hang_blocks_a_call_until_released(nvml: SimNvml) -> None:
    nvml.hang("nvmlDeviceGetTemperature", 60.0)
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    result: list[int] = []
    worker = threading.Thread(target=lambda: result.append(nvml.nvmlDeviceGetTemperature(handle, 0)))
    worker.start()
    worker.join(0.2)
    assert worker.is_alive() and result == []
    nvml.release_hangs()
    worker.join(10)
    assert not worker.is_alive() and result and result[0] > 0


def test_calls_on_a_down_node_fail(fleet: Fleet, clock: FakeClock) -> None:
    sim = SimNvml(fleet, "node-02")
    sim.nvmlInit()
    fleet.inject(parse_fault({"kind": "node_down", "node": "node-02"}))
    with pytest.raises(pynvml.NVMLError_Unknown):
        sim.nvmlDeviceGetCount()
    fleet.reboot_node("node-02")
    assert sim.nvmlDeviceGetCount() == 8
