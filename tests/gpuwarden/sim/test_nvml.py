from __future__ import annotations

import contextlib
import inspect
import threading

import pynvml
import pytest

from exporters.gpm import min_rate_interval
from exporters.nvml_collector import NvmlCollector
from gpuwarden.clock import FakeClock
from gpuwarden.errors import InputError
from gpuwarden.sim import Fleet, SimNvml, build_fleet, parse_fault


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


def test_memory_v2_splits_used_from_reserved_and_checks_its_struct_version(nvml: SimNvml) -> None:
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    v1 = nvml.nvmlDeviceGetMemoryInfo(handle)
    v2 = nvml.nvmlDeviceGetMemoryInfo(handle, pynvml.nvmlMemory_v2)
    assert v2.version == pynvml.nvmlMemory_v2
    assert (v2.total, v2.free) == (v1.total, v1.free)
    assert v2.used + v2.reserved == v1.used
    assert v2.total == v2.used + v2.reserved + v2.free
    with pytest.raises(pynvml.NVMLError_ArgumentVersionMismatch):
        nvml.nvmlDeviceGetMemoryInfo(handle, version=1)  # NVML checks the struct's version


def test_nvlink_throughput_fields_are_per_link_or_all_links_by_scope(nvml: SimNvml, clock: FakeClock) -> None:
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    clock.advance(30)
    tx = pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX
    links = nvml.nvmlDeviceGetFieldValues(handle, [pynvml.NVML_FI_DEV_NVLINK_LINK_COUNT])[0].value.uiVal
    values = nvml.nvmlDeviceGetFieldValues(handle, [(tx, 0xFFFFFFFF)] + [(tx, link) for link in range(links)])
    total, per_link = values[0].value.ullVal, [v.value.ullVal for v in values[1:]]
    assert total > 0 and values[0].scopeId == 0xFFFFFFFF
    assert abs(sum(per_link) - total) <= links  # each link rounds down
    bare = nvml.nvmlDeviceGetFieldValues(handle, [tx])[0]  # scopeId 0: link 0
    assert bare.value.ullVal == per_link[0] < total
    beyond = nvml.nvmlDeviceGetFieldValues(handle, [(tx, links)])[0]
    assert beyond.nvmlReturn == pynvml.NVML_ERROR_INVALID_ARGUMENT


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


def test_a_node_down_for_a_while_answers_again_once_its_time_is_up(fleet: Fleet, clock: FakeClock) -> None:
    # Only this node's own calls move the fleet here (an exporter simulating one node): the step that ends
    # the fault is due at the call, so the call must see the node back, as NVML would at that time.
    sim = SimNvml(fleet, "node-02")
    sim.nvmlInit()
    fleet.inject(parse_fault({"kind": "node_down", "node": "node-02", "params": {"duration": 30}}))
    clock.advance(10)
    with pytest.raises(pynvml.NVMLError_Unknown):
        sim.nvmlDeviceGetCount()
    clock.advance(21)
    assert sim.nvmlDeviceGetCount() == 8
    sim.nvmlShutdown()
    fleet.inject(parse_fault({"kind": "node_down", "node": "node-02", "params": {"duration": 30}}))
    clock.advance(31)
    sim.nvmlInit()  # an exporter starting after the node came back
    assert sim.nvmlDeviceGetCount() == 8


def test_mig_gpu_exposes_instances_with_profile_names_and_ids(fleet: Fleet) -> None:
    sim = SimNvml(fleet, "node-02")
    sim.nvmlInit()
    parent = sim.nvmlDeviceGetHandleByIndex(7)
    assert sim.nvmlDeviceGetMigMode(parent) == [pynvml.NVML_DEVICE_MIG_ENABLE] * 2
    assert sim.nvmlDeviceGetMaxMigDeviceCount(parent) == 7
    instances = []
    for slot in range(7):
        try:
            mig = sim.nvmlDeviceGetMigDeviceHandleByIndex(parent, slot)
        except pynvml.NVMLError_NotFound:
            continue
        assert sim.nvmlDeviceIsMigDeviceHandle(mig)
        assert sim.nvmlDeviceGetDeviceHandleFromMigDeviceHandle(mig) is parent
        instances.append(
            (
                sim.nvmlDeviceGetName(mig),
                sim.nvmlDeviceGetGpuInstanceId(mig),
                sim.nvmlDeviceGetComputeInstanceId(mig),
                sim.nvmlDeviceGetUUID(mig)[:4],
            )
        )
        assert sim.nvmlDeviceGetMemoryInfo(mig).total < sim.nvmlDeviceGetMemoryInfo(parent).total
        with pytest.raises(pynvml.NVMLError_NotSupported):
            sim.nvmlDeviceGetUtilizationRates(mig)
    for unsupported in (  # in MIG mode, on the GPU itself too, as real NVML answers
        sim.nvmlDeviceGetUtilizationRates,
        sim.nvmlDeviceGetEncoderUtilization,
        sim.nvmlDeviceGetDecoderUtilization,
    ):
        with pytest.raises(pynvml.NVMLError_NotSupported):
            unsupported(parent)
    assert instances == [
        ("NVIDIA H100 80GB HBM3 MIG 3g.40gb", 1, 0, "MIG-"),
        ("NVIDIA H100 80GB HBM3 MIG 2g.20gb", 5, 0, "MIG-"),
        ("NVIDIA H100 80GB HBM3 MIG 1g.10gb", 13, 0, "MIG-"),
    ]


def test_non_mig_gpu_reports_mig_disabled_and_rejects_instance_calls(nvml: SimNvml) -> None:
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    assert nvml.nvmlDeviceGetMigMode(handle) == [pynvml.NVML_DEVICE_MIG_DISABLE] * 2
    assert not nvml.nvmlDeviceIsMigDeviceHandle(handle)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        nvml.nvmlDeviceGetGpuInstanceId(handle)
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        nvml.nvmlDeviceGetMigDeviceHandleByIndex(handle, 0)


def test_field_values_accept_field_and_scope_pairs(nvml: SimNvml, fleet: Fleet) -> None:
    fleet.inject(parse_fault({"kind": "nvlink_down", "node": "node-01", "gpu": 0, "link": 2}))
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    values = nvml.nvmlDeviceGetFieldValues(
        handle,
        [(pynvml.NVML_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL, 0), pynvml.NVML_FI_DEV_NVLINK_LINK_COUNT],
    )
    assert values[0].nvmlReturn == pynvml.NVML_SUCCESS and values[0].value.ullVal == 1
    assert values[1].value.uiVal == 18
    assert nvml.nvmlDeviceGetNvLinkErrorCounter(handle, 2, pynvml.NVML_NVLINK_ERROR_DL_RECOVERY) == 1
    with pytest.raises(pynvml.NVMLError_InvalidArgument):
        nvml.nvmlDeviceGetNvLinkState(handle, 18)


def test_older_gpu_models_differ_where_nvml_does(clock: FakeClock) -> None:
    volta = build_fleet(1, 2, clock=clock, gpu_model="Tesla V100-SXM2-32GB")
    sim = SimNvml(volta, "node-01")
    sim.nvmlInit()
    handle = sim.nvmlDeviceGetHandleByIndex(0)
    assert sim.nvmlDeviceGetRetiredPagesPendingStatus(handle) == 0
    with pytest.raises(pynvml.NVMLError_NotSupported):
        sim.nvmlDeviceGetRemappedRows(handle)
    assert sim.nvmlGpmQueryDeviceSupport(handle).isSupportedDevice == 0
    with pytest.raises(pynvml.NVMLError_NotSupported):
        sim.nvmlGpmSampleGet(handle, sim.nvmlGpmSampleAlloc())


def test_fail_with_times_raises_only_that_many_times(nvml: SimNvml) -> None:
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    nvml.fail("nvmlDeviceGetFieldValues", pynvml.NVMLError_Timeout, times=2)
    for _ in range(2):
        with pytest.raises(pynvml.NVMLError_Timeout):
            nvml.nvmlDeviceGetFieldValues(handle, [pynvml.NVML_FI_DEV_MEMORY_TEMP])
    assert nvml.nvmlDeviceGetFieldValues(handle, [pynvml.NVML_FI_DEV_MEMORY_TEMP])[0].nvmlReturn == 0


def test_fail_rejects_a_function_the_simulator_does_not_have(nvml: SimNvml) -> None:
    with pytest.raises(InputError, match="nvmlDeviceGetPowerUsag"):
        nvml.fail("nvmlDeviceGetPowerUsag", pynvml.NVMLError_Unknown)


def test_concurrent_injection_and_reads_stay_consistent(fleet: Fleet, clock: FakeClock) -> None:
    sims = [SimNvml(fleet, name) for name in ("node-01", "node-02")]
    for sim in sims:
        sim.nvmlInit()
    errors: list[BaseException] = []

    def read(sim: SimNvml) -> None:
        try:
            for _ in range(300):
                for i in range(8):
                    with contextlib.suppress(pynvml.NVMLError_GpuIsLost):
                        sim.nvmlDeviceGetFieldValues(
                            sim.nvmlDeviceGetHandleByIndex(i), [pynvml.NVML_FI_DEV_MEMORY_TEMP]
                        )
        except BaseException as exc:  # the test reports any failure of the reader thread
            errors.append(exc)

    readers = [threading.Thread(target=read, args=(sim,)) for sim in sims]
    for thread in readers:
        thread.start()
    for k in range(100):
        fleet.inject(parse_fault({"kind": "xid", "node": f"node-0{1 + k % 2}", "gpu": k % 8, "xid": 79}))
        clock.advance(1)
        fleet.reboot_node(f"node-0{1 + k % 2}")
    for thread in readers:
        thread.join(30)
    assert errors == []
    assert len(fleet.fault_log) == 200
    assert fleet.active_faults() == []


def test_every_simulated_call_has_the_parameter_names_of_pynvml() -> None:
    checked = 0
    for name in dir(SimNvml):
        if not name.startswith("nvml"):
            continue
        real = getattr(pynvml, name, None)
        assert real is not None, f"{name} is not a pynvml function"
        ours = list(inspect.signature(getattr(SimNvml, name)).parameters)[1:]
        assert ours == list(inspect.signature(real).parameters), name
        checked += 1
    assert checked >= 54


def test_a_failure_set_on_an_alias_hits_the_call_pynvml_routes_it_to(nvml: SimNvml) -> None:
    nvml.fail("nvmlEventSetWait", pynvml.NVMLError_Unknown)
    event_set = nvml.nvmlEventSetCreate()
    with pytest.raises(pynvml.NVMLError_Unknown):
        nvml.nvmlEventSetWait_v2(event_set, 0)
    nvml.fail("nvmlDeviceGetComputeRunningProcesses_v3", pynvml.NVMLError_NoPermission)
    with pytest.raises(pynvml.NVMLError_NoPermission):
        nvml.nvmlDeviceGetComputeRunningProcesses(nvml.nvmlDeviceGetHandleByIndex(0))
    nvml.fail("nvmlInit", pynvml.NVMLError_DriverNotLoaded)
    with pytest.raises(pynvml.NVMLError_DriverNotLoaded):
        nvml.nvmlInitWithFlags(0)


def test_double_bit_xid_also_raises_a_dbe_event_for_sets_that_asked(nvml: SimNvml, fleet: Fleet) -> None:
    xid_only = nvml.nvmlEventSetCreate()
    both = nvml.nvmlEventSetCreate()
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    nvml.nvmlDeviceRegisterEvents(handle, pynvml.nvmlEventTypeXidCriticalError, xid_only)
    nvml.nvmlDeviceRegisterEvents(
        handle, pynvml.nvmlEventTypeXidCriticalError | pynvml.nvmlEventTypeDoubleBitEccError, both
    )
    fleet.inject(parse_fault({"kind": "xid", "node": "node-01", "gpu": 0, "xid": 48}))
    assert nvml.nvmlEventSetWait(xid_only, 100).eventData == 48
    with pytest.raises(pynvml.NVMLError_Timeout):
        nvml.nvmlEventSetWait(xid_only, 0)
    kinds = [nvml.nvmlEventSetWait(both, 100).eventType for _ in range(2)]
    assert kinds == [pynvml.nvmlEventTypeXidCriticalError, pynvml.nvmlEventTypeDoubleBitEccError]


def test_events_before_registration_are_not_replayed(nvml: SimNvml, fleet: Fleet) -> None:
    fleet.inject(parse_fault({"kind": "xid", "node": "node-01", "gpu": 1, "xid": 31}))
    event_set = nvml.nvmlEventSetCreate()
    nvml.nvmlDeviceRegisterEvents(
        nvml.nvmlDeviceGetHandleByIndex(1), pynvml.nvmlEventTypeXidCriticalError, event_set
    )
    with pytest.raises(pynvml.NVMLError_Timeout):
        nvml.nvmlEventSetWait(event_set, 0)
    with pytest.raises(pynvml.NVMLError_NotSupported):
        nvml.nvmlDeviceRegisterEvents(nvml.nvmlDeviceGetHandleByIndex(1), 0x4000, event_set)


def test_every_violation_field_answers_in_ns_like_the_violation_status(
    nvml: SimNvml, clock: FakeClock
) -> None:
    # A real H200 answers all six NVML_FI_DEV_PERF_POLICY_* fields; an idle GPU's low-utilisation time grows.
    handle = nvml.nvmlDeviceGetHandleByIndex(7)
    clock.advance(30)
    fields = nvml.nvmlDeviceGetFieldValues(handle, list(range(74, 80)))
    assert [int(f.nvmlReturn) for f in fields] == [0] * 6
    for policy, fv in enumerate(fields):
        status = nvml.nvmlDeviceGetViolationStatus(handle, policy).violationTime
        assert fv.value.ullVal == status, policy
    assert fields[pynvml.NVML_PERF_POLICY_LOW_UTILIZATION].value.ullVal >= 29e9  # GPU 7 runs nothing


def test_field_values_asked_twice_are_separate_arrays_that_follow_the_gpu(
    nvml: SimNvml, fleet: Fleet, clock: FakeClock
) -> None:
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    ids = [
        pynvml.NVML_FI_DEV_ECC_SBE_VOL_TOTAL,
        pynvml.NVML_FI_DEV_RETIRED_DBE,
        [pynvml.NVML_FI_DEV_MEMORY_TEMP, 0],
    ]
    before = nvml.nvmlDeviceGetFieldValues(handle, ids)
    fleet.inject(parse_fault({"kind": "xid", "node": "node-01", "gpu": 0, "xid": 92}))  # 100 SBEs at once
    clock.advance(5)
    after = nvml.nvmlDeviceGetFieldValues(handle, ids)
    assert after[0].value.ullVal == before[0].value.ullVal + 100
    assert after[0].timestamp == before[0].timestamp + 5_000_000
    assert [v.nvmlReturn for v in after] == [0, pynvml.NVML_ERROR_NOT_SUPPORTED, 0]
    assert after[2].fieldId == pynvml.NVML_FI_DEV_MEMORY_TEMP and after[2].value.uiVal > 0


def test_field_values_of_every_gpu_carry_the_step_each_was_read_at(
    nvml: SimNvml, fleet: Fleet, clock: FakeClock
) -> None:
    # The stamped array is made once per step and shared by the GPUs read at it: a read after the next step
    # must carry that step's time, and the arrays handed out before must keep theirs.
    ids = [pynvml.NVML_FI_DEV_ECC_SBE_VOL_TOTAL, pynvml.NVML_FI_DEV_RETIRED_DBE]
    handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(2)]
    first = [nvml.nvmlDeviceGetFieldValues(h, ids) for h in handles]
    then = int(fleet.stepped_to * 1e6)
    clock.advance(3)
    later = nvml.nvmlDeviceGetFieldValues(handles[1], ids)
    assert [fv.timestamp for fv in later] == [then + 3_000_000] * 2
    assert [fv.timestamp for values in first for fv in values] == [then] * 4
    assert [int(fv.nvmlReturn) for fv in later] == [0, pynvml.NVML_ERROR_NOT_SUPPORTED]


def test_rates_over_collections_between_simulated_steps_read_the_gpus_steady_work(
    nvml: SimNvml, clock: FakeClock
) -> None:
    # The state moves once per simulated second; its answers are stamped with the time it stands at, as
    # NVML stamps a sample, so a collection every second that falls just before or after a step neither
    # reads a busy GPU idle (no step between two reads) nor twice as busy (two steps in one interval).
    collector = NvmlCollector(nvml, hostname="node-01", clock=clock, min_rate_interval=min_rate_interval(1.0))
    reads: dict[str, list[float]] = {"DCGM_FI_PROF_SM_ACTIVE": [], "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL": []}
    busy = None
    for step in (0.2, 0.7, 0.9, 0.7, 1.6):
        clock.advance(step)
        samples = {(s.name, s.labels.get("gpu")): s.value for m in collector.collect() for s in m.samples}
        if busy is None:
            busy = next(str(i) for i in range(8) if samples[("DCGM_FI_DEV_GPU_UTIL", str(i))] > 80)
            continue
        for name, values in reads.items():
            if (name, busy) in samples:
                values.append(samples[(name, busy)])
    sm_active, bandwidth = reads["DCGM_FI_PROF_SM_ACTIVE"], reads["DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL"]
    assert len(sm_active) == 4 and min(sm_active) > 0.5 and max(sm_active) < 0.99
    assert len(bandwidth) >= 3 and max(bandwidth) < 1.1 * min(bandwidth)
