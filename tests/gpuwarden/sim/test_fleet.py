"""Each fault kind shows through SimNvml the way it would on a real GPU, and recovery really repairs it."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pynvml
import pytest

from gpuwarden.clock import FakeClock
from gpuwarden.errors import InputError
from gpuwarden.sim import Fleet, SimNvml, build_fleet, parse_fault
from gpuwarden.sim import fleet as fleet_module

GPU = 2  # a training rank on node-01
Probe = Callable[[SimNvml, Any], float]


def _field(field_id: int) -> Probe:
    def probe(sim: SimNvml, handle: Any) -> float:
        value = sim.nvmlDeviceGetFieldValues(handle, [field_id])[0]
        return float(
            value.value.ullVal
            if value.valueType == pynvml.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG
            else value.value.uiVal
        )

    return probe


def _reasons(sim: SimNvml, handle: Any) -> float:
    return float(sim.nvmlDeviceGetCurrentClocksEventReasons(handle))


@dataclass(frozen=True)
class Case:
    payload: dict[str, Any]
    probe: Probe
    broken: Callable[[float], bool]
    healthy: Callable[[float], bool]
    repair: str  # reset_gpu, reboot_node or clear
    seconds: float = 60.0


CASES = {
    "hung": Case(
        {"kind": "hung"},
        lambda s, h: s.nvmlDeviceGetUtilizationRates(h).gpu * 1000 - s.nvmlDeviceGetPowerUsage(h) / 1000,
        lambda v: v > 100_000 - 300,  # 100 % busy at low power
        lambda v: v < 100_000 - 300,
        "reset_gpu",
    ),
    "straggler": Case(
        {"kind": "straggler", "params": {"factor": 0.5}},
        lambda s, h: s.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM),
        lambda v: v < 1100,
        lambda v: v > 1800,
        "reset_gpu",
    ),
    "memory_leak": Case(
        {"kind": "memory_leak", "params": {"rate": 100}},
        lambda s, h: s.nvmlDeviceGetMemoryInfo(h).used / 2**30,
        lambda v: v > 76,
        lambda v: v < 74,
        "reset_gpu",
    ),
    "ecc_sbe_storm": Case(
        {"kind": "ecc_sbe_storm", "params": {"rate": 10}},
        lambda s, h: s.nvmlDeviceGetTotalEccErrors(h, 0, pynvml.NVML_VOLATILE_ECC),
        lambda v: v >= 500,
        lambda v: v < 5,
        "reset_gpu",
    ),
    "thermal_runaway": Case(
        {"kind": "thermal_runaway", "params": {"rate": 0.05}},
        lambda s, h: s.nvmlDeviceGetTemperature(h, 0),
        lambda v: v >= 87,
        lambda v: v < 80,
        "reboot_node",
        seconds=300.0,
    ),
    "hw_thermal_slowdown": Case(
        {"kind": "hw_thermal_slowdown"},
        _reasons,
        lambda v: int(v) & pynvml.nvmlClocksEventReasonHwThermalSlowdown != 0,
        lambda v: int(v) & pynvml.nvmlClocksEventReasonHwThermalSlowdown == 0,
        "reset_gpu",
    ),
    "power_brake": Case(
        {"kind": "power_brake"},
        _reasons,
        lambda v: int(v) & pynvml.nvmlClocksEventReasonHwPowerBrakeSlowdown != 0,
        lambda v: int(v) & pynvml.nvmlClocksEventReasonHwPowerBrakeSlowdown == 0,
        "reboot_node",
    ),
    "nvlink_down": Case(
        {"kind": "nvlink_down", "link": 3},
        lambda s, h: s.nvmlDeviceGetNvLinkState(h, 3),
        lambda v: v == 0,
        lambda v: v == 1,
        "reset_gpu",
    ),
    "nvlink_crc_burst": Case(
        {"kind": "nvlink_crc_burst", "link": 1, "params": {"rate": 100}},
        _field(pynvml.NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL),
        lambda v: v >= 5000,
        lambda v: v == 0,
        "reset_gpu",
    ),
    "xid-48-dbe": Case(
        {"kind": "xid", "xid": 48},
        _field(pynvml.NVML_FI_DEV_REMAPPED_PENDING),
        lambda v: v == 1,
        lambda v: v == 0,
        "reset_gpu",
    ),
    "xid-154-recovery-action": Case(
        {"kind": "xid", "xid": 154, "params": {"action": 4}},
        _field(pynvml.NVML_FI_DEV_GET_GPU_RECOVERY_ACTION),
        lambda v: v == pynvml.NVML_GPU_RECOVERY_ACTION_DRAIN_AND_RESET,
        lambda v: v == pynvml.NVML_GPU_RECOVERY_ACTION_NONE,
        "reset_gpu",
    ),
    "xid-64-remap-failure": Case(
        {"kind": "xid", "xid": 64},
        _field(pynvml.NVML_FI_DEV_REMAPPED_FAILURE),
        lambda v: v == 1,
        lambda v: v == 0,
        "clear",
    ),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_fault_is_observable_through_nvml_and_its_repair_fixes_it(
    case: Case, fleet: Fleet, nvml: SimNvml, clock: FakeClock
) -> None:
    handle = nvml.nvmlDeviceGetHandleByIndex(GPU)
    assert case.healthy(case.probe(nvml, handle)), "healthy before the fault"
    fault_id = fleet.inject(parse_fault({"node": "node-01", "gpu": GPU, **case.payload}))
    clock.advance(case.seconds)
    assert case.broken(case.probe(nvml, handle)), "the fault shows"
    if case.repair == "reset_gpu":
        fleet.reset_gpu("node-01", GPU)
    elif case.repair == "reboot_node":
        fleet.reboot_node("node-01")
    else:
        fleet.clear_fault(fault_id)
    clock.advance(case.seconds * 2)
    assert case.healthy(case.probe(nvml, handle)), "repaired"
    record = next(r for r in fleet.fault_log if r.id == fault_id)
    assert record.ended_at is not None and not record.active


def test_row_remap_failure_survives_reset_and_reboot(fleet: Fleet, nvml: SimNvml) -> None:
    fault_id = fleet.inject(parse_fault({"kind": "xid", "node": "node-01", "gpu": 1, "xid": 64}))
    fleet.reset_gpu("node-01", 1)
    fleet.reboot_node("node-01")
    assert nvml.nvmlDeviceGetRemappedRows(nvml.nvmlDeviceGetHandleByIndex(1))[3] == 1
    assert [r.id for r in fleet.active_faults()] == [fault_id]


def test_double_bit_error_counts_and_reset_clears_only_volatile(fleet: Fleet, nvml: SimNvml) -> None:
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    fleet.inject(parse_fault({"kind": "xid", "node": "node-01", "gpu": 0, "xid": 48}))
    unc = pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED
    assert nvml.nvmlDeviceGetTotalEccErrors(handle, unc, pynvml.NVML_VOLATILE_ECC) == 1
    assert nvml.nvmlDeviceGetTotalEccErrors(handle, unc, pynvml.NVML_AGGREGATE_ECC) == 1
    assert nvml.nvmlDeviceGetRemappedRows(handle)[1:3] == (1, 1)
    fleet.reset_gpu("node-01", 0)
    assert nvml.nvmlDeviceGetTotalEccErrors(handle, unc, pynvml.NVML_VOLATILE_ECC) == 0
    assert nvml.nvmlDeviceGetTotalEccErrors(handle, unc, pynvml.NVML_AGGREGATE_ECC) == 1
    assert nvml.nvmlDeviceGetRemappedRows(handle)[2] == 0


def test_gpu_lost_without_xid_raises_gpu_is_lost(fleet: Fleet, nvml: SimNvml) -> None:
    fleet.inject(parse_fault({"kind": "gpu_lost", "node": "node-01", "gpu": 6}))
    with pytest.raises(pynvml.NVMLError_GpuIsLost):
        nvml.nvmlDeviceGetTemperature(nvml.nvmlDeviceGetHandleByIndex(6), 0)


def test_a_hung_rank_stalls_the_whole_job_until_reset(fleet: Fleet, clock: FakeClock) -> None:
    job = fleet.training_jobs()[0]
    clock.advance(30)
    before = job.steps_completed
    assert before > 0 and job.last_progress_time(5) == clock.time()
    fleet.inject(parse_fault({"kind": "hung", "node": "node-02", "gpu": 1}))
    stalled_at = clock.time()
    clock.advance(120)
    fleet.advance()
    assert job.steps_completed <= before + 1
    assert job.last_progress_time(0) <= stalled_at
    assert math.isinf(job.step_seconds(0))
    assert fleet.gpu_speed_factor("node-02", 1) == 0.0
    fleet.reset_gpu("node-02", 1)
    clock.advance(30)
    fleet.advance()
    assert job.last_progress_time(0) == clock.time()
    assert job.steps_completed > before + 5


@pytest.mark.parametrize("repair", ["clear", "reset_gpu"])
def test_a_hang_ended_by_clear_or_reset_serves_again_before_the_next_step(
    fleet: Fleet, clock: FakeClock, repair: str
) -> None:
    # An inference server on the GPU answered 503 after `sim clear` until the next simulated second: 10 s of
    # real time at --sim-speedup 0.1, 100 s at 0.01; and 200 for as long after the hang began.
    clock.advance(0.5)
    fault_id = fleet.inject(parse_fault({"kind": "hung", "node": "node-01", "gpu": 4}))
    assert fleet.gpu_speed_factor("node-01", 4) == 0.0  # no step has run since
    clock.advance(2)
    assert fleet.gpu_speed_factor("node-01", 4) == 0.0
    clock.advance(0.5)
    if repair == "clear":
        fleet.clear_fault(fault_id)
    else:
        fleet.reset_gpu("node-01", 4)
    assert fleet.gpu_speed_factor("node-01", 4) == 1.0
    clock.advance(1)
    assert fleet.gpu_speed_factor("node-01", 4) > 0.9


def test_a_straggler_slows_every_rank_but_computes_slowly_itself(fleet: Fleet, clock: FakeClock) -> None:
    job = fleet.training_jobs()[0]
    clock.advance(10)
    healthy = job.step_seconds(0)
    fleet.inject(parse_fault({"kind": "straggler", "node": "node-01", "gpu": 3, "params": {"factor": 0.5}}))
    clock.advance(10)
    fleet.advance()
    assert job.step_seconds(0) == pytest.approx(job.step_seconds(3))
    assert job.step_seconds(0) > 1.8 * healthy
    assert job.compute_seconds(3) > 1.8 * job.compute_seconds(0)
    assert 0.0 < fleet.gpu_speed_factor("node-01", 3) < 0.6


def test_node_down_stops_its_gpus_and_reboot_brings_them_back(fleet: Fleet, clock: FakeClock) -> None:
    fleet.inject(parse_fault({"kind": "node_down", "node": "node-02"}))
    assert not fleet.node("node-02").up
    assert all(fleet.gpu_speed_factor("node-02", i) == 0.0 for i in range(8))
    assert fleet.gpu_speed_factor("node-01", 0) > 0.9
    with pytest.raises(InputError, match="down"):
        fleet.reset_gpu("node-02", 0)
    fleet.reboot_node("node-02")
    assert fleet.node("node-02").up
    assert fleet.gpu_speed_factor("node-02", 4) > 0.9


def test_drain_idles_the_node_and_undrain_brings_workloads_back(
    fleet: Fleet, nvml: SimNvml, clock: FakeClock
) -> None:
    handle = nvml.nvmlDeviceGetHandleByIndex(4)  # an inference replica
    fleet.drain_node("node-01")
    clock.advance(60)
    node = fleet.node("node-01")
    assert node.cordoned and node.drained
    assert nvml.nvmlDeviceGetUtilizationRates(handle).gpu == 0
    assert nvml.nvmlDeviceGetComputeRunningProcesses(handle) == []
    assert fleet.gpu_speed_factor("node-01", 4) == 0.0
    fleet.undrain_node("node-01")
    clock.advance(60)
    assert nvml.nvmlDeviceGetUtilizationRates(handle).gpu > 10
    assert len(nvml.nvmlDeviceGetComputeRunningProcesses(handle)) == 1


def test_actions_through_inject_are_logged_as_instant_entries(fleet: Fleet) -> None:
    fault_id = fleet.inject(parse_fault({"kind": "drain_node", "node": "node-02"}))
    record = fleet.fault_log[-1]
    assert record.id == fault_id and record.kind == "drain_node"
    assert record.started_at == record.ended_at
    assert fleet.node("node-02").drained


def test_duration_ends_a_fault_on_its_own(fleet: Fleet, clock: FakeClock) -> None:
    fault_id = fleet.inject(
        parse_fault({"kind": "hung", "node": "node-01", "gpu": 0, "params": {"duration": 30}})
    )
    clock.advance(29)
    assert [r.id for r in fleet.active_faults()] == [fault_id]
    clock.advance(2)
    assert fleet.active_faults() == []
    assert fleet.fault_log[0].end_reason == "duration"
    assert fleet.fault_log[0].ended_at == pytest.approx(fleet.fault_log[0].started_at + 30)


def test_one_off_xid_ends_at_once_but_stays_in_the_log(fleet: Fleet) -> None:
    fleet.inject(parse_fault({"kind": "xid", "node": "node-01", "gpu": 0, "xid": 13}))
    assert fleet.active_faults() == []
    assert fleet.fault_log[0].to_dict()["xid"] == 13
    assert fleet.fault_log[0].to_dict()["target"] == "gpu/node-01/0"


def test_clearing_unknown_or_ended_faults_is_an_input_error(fleet: Fleet) -> None:
    with pytest.raises(InputError, match="unknown"):
        fleet.clear_fault("f-9999")
    fault_id = fleet.inject(parse_fault({"kind": "hung", "node": "node-01", "gpu": 0}))
    fleet.clear_fault(fault_id)
    with pytest.raises(InputError, match="already ended"):
        fleet.clear_fault(fault_id)


def test_inject_checks_the_target_exists(fleet: Fleet) -> None:
    with pytest.raises(InputError) as info:
        fleet.inject(parse_fault({"kind": "hung", "node": "node-09", "gpu": 0}))
    assert info.value.field == "node"
    with pytest.raises(InputError) as info:
        fleet.inject(parse_fault({"kind": "hung", "node": "node-01", "gpu": 8}))
    assert info.value.field == "gpu"
    with pytest.raises(InputError) as info:
        fleet.inject(parse_fault({"kind": "nvlink_down", "node": "node-01", "gpu": 0, "link": 18}))
    assert info.value.field == "link"
    assert fleet.fault_log == []


def test_speed_factor_is_one_for_a_healthy_gpu_and_lower_when_throttled() -> None:
    fleet = build_fleet(1, 8, clock=FakeClock())
    assert fleet.gpu_speed_factor("node-01", 7) == 1.0
    fleet.inject(parse_fault({"kind": "power_brake", "node": "node-01"}))
    fleet.clock.sleep(5)
    assert 0.0 < fleet.gpu_speed_factor("node-01", 0) < 0.5


def test_thermal_runaway_is_bounded_and_a_drained_gpu_cools_down(
    fleet: Fleet, nvml: SimNvml, clock: FakeClock
) -> None:
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    fleet.inject(
        parse_fault({"kind": "thermal_runaway", "node": "node-01", "gpu": 0, "params": {"rate": 0.1}})
    )
    clock.advance(600)
    hot = nvml.nvmlDeviceGetTemperature(handle, 0)
    assert hot >= 87
    assert nvml.nvmlDeviceGetCurrentClocksEventReasons(handle) & (
        pynvml.nvmlClocksEventReasonSwThermalSlowdown | pynvml.nvmlClocksEventReasonHwThermalSlowdown
    )
    assert nvml.nvmlDeviceGetViolationStatus(handle, pynvml.NVML_PERF_POLICY_THERMAL).violationTime > 0
    assert fleet.gpu_speed_factor("node-01", 0) < 0.9
    clock.advance(3600)
    assert nvml.nvmlDeviceGetTemperature(handle, 0) < 110  # bounded: the cooler failed, physics did not
    fleet.drain_node("node-01")
    clock.advance(600)
    assert nvml.nvmlDeviceGetTemperature(handle, 0) < 60


def test_reset_restarts_the_energy_counter_like_nvml(fleet: Fleet, nvml: SimNvml, clock: FakeClock) -> None:
    handle = nvml.nvmlDeviceGetHandleByIndex(0)
    clock.advance(60)
    before = nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    fleet.reset_gpu("node-01", 0)
    assert nvml.nvmlDeviceGetTotalEnergyConsumption(handle) < before
    clock.advance(10)
    assert nvml.nvmlDeviceGetTotalEnergyConsumption(handle) > 0


def test_a_gpu_off_the_bus_cools_like_an_idle_one_and_comes_back_at_idle_temperature(
    fleet: Fleet, nvml: SimNvml, clock: FakeClock
) -> None:
    handle = nvml.nvmlDeviceGetHandleByIndex(0)  # a training rank: hot while its job runs
    clock.advance(60)
    hot = nvml.nvmlDeviceGetTemperature(handle, 0)
    fleet.inject(parse_fault({"kind": "gpu_lost", "node": "node-01", "gpu": 0}))
    clock.advance(600)  # its job is stalled: every other rank idles and cools meanwhile
    fleet.reset_gpu("node-01", 0)
    back = nvml.nvmlDeviceGetTemperature(nvml.nvmlDeviceGetHandleByIndex(0), 0)
    peer = nvml.nvmlDeviceGetTemperature(nvml.nvmlDeviceGetHandleByIndex(1), 0)
    assert back < hot - 10
    assert abs(back - peer) <= 3


# --- readers on other threads while the fleet steps ---------------------------------------------------

_FIELDS = [pynvml.NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION, pynvml.NVML_FI_DEV_MEMORY_TEMP]
_READ_GPUS = (1, 6)  # stepped before and after GPU 4, where the step pauses


class _WatchedLock:
    """The fleet's lock, telling the test when some thread has to wait for it."""

    def __init__(self, waiting: threading.Event) -> None:
        self._lock = threading.RLock()
        self._waiting = waiting

    def __enter__(self) -> None:
        if not self._lock.acquire(blocking=False):
            self._waiting.set()
            self._lock.acquire()

    def __exit__(self, *_exc: object) -> None:
        self._lock.release()


def _stamped_reads(sim: SimNvml) -> list[tuple[int, int, int, int]]:
    """(GPU, stamp, energy, memory temperature) from field values, and (GPU, stamp, power violation ns)."""
    reads: list[tuple[int, int, int, int]] = []
    for index in _READ_GPUS:
        handle = sim.nvmlDeviceGetHandleByIndex(index)
        energy, mem_temp = sim.nvmlDeviceGetFieldValues(handle, _FIELDS)
        reads.append((index, energy.timestamp, energy.value.ullVal, mem_temp.value.uiVal))
        violation = sim.nvmlDeviceGetViolationStatus(handle, pynvml.NVML_PERF_POLICY_POWER)
        reads.append((index, violation.referenceTime, violation.violationTime, -1))
    return reads


class _Reader:
    """A thread reading ``_stamped_reads``; ``waiting`` is set once it waits for the fleet lock or is done."""

    def __init__(self, fleet: Fleet, sim: SimNvml) -> None:
        self.waiting = threading.Event()
        fleet._lock = _WatchedLock(self.waiting)  # type: ignore[assignment]
        self.got: list[tuple[int, int, int, int]] = []
        self.thread = threading.Thread(target=self._read, args=(sim,))

    def _read(self, sim: SimNvml) -> None:
        self.got.extend(_stamped_reads(sim))
        self.waiting.set()

    def finish(self) -> list[tuple[int, int, int, int]]:
        self.thread.join(10)
        return self.got


def _undisturbed(reads: list[tuple[int, int, int, int]]) -> list[tuple[int, int, int, int]]:
    """What a fleet of the same seed, read alone, reports in the same reads at each read's own stamp."""
    expected = []
    for at, (_, stamp, *_) in enumerate(reads):
        clock = FakeClock()
        sim = SimNvml(build_fleet(2, 8, seed=7, clock=clock, mig_gpus=[("node-02", 7)]), "node-01")
        sim.nvmlInit()
        clock.advance(stamp / 1e6 - clock.time())
        expected.append(_stamped_reads(sim)[at])
    return expected


def _pause_mid_step(monkeypatch: pytest.MonkeyPatch, at: float, pause: Callable[[], object]) -> None:
    """Run ``pause`` once, inside the step that ends at ``at``, between node-01's GPU 3 and GPU 4."""
    real_step_gpu, real_step = fleet_module.step_gpu, Fleet._step
    ending: list[float] = []  # the end of the step in progress; emptied once paused

    def step_gpu(gpu: Any, *args: Any) -> float:
        if ending and ending[0] >= at and (gpu.node, gpu.index) == ("node-01", 4):
            ending.clear()
            pause()
        return real_step_gpu(gpu, *args)

    def step(self: Fleet, now: float, dt: float, *, jobs: bool = True) -> None:
        if ending:
            ending[0] = now
        real_step(self, now, dt, jobs=jobs)

    ending.append(0.0)
    monkeypatch.setattr(fleet_module, "step_gpu", step_gpu)
    monkeypatch.setattr(Fleet, "_step", step)


def test_a_reader_arriving_during_the_last_catch_up_step_sees_values_of_its_own_stamp(
    fleet: Fleet, nvml: SimNvml, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader = _Reader(fleet, nvml)
    # The reader comes in while the step is half done, and is let run until it waits or has read.
    _pause_mid_step(monkeypatch, clock.time() + 3, lambda: (reader.thread.start(), reader.waiting.wait(10)))
    clock.advance(3)
    fleet.advance()
    got = reader.finish()
    assert got and got == _undisturbed(got)


def test_a_reader_that_found_no_step_due_does_not_read_a_step_half_done(
    fleet: Fleet, nvml: SimNvml, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    checked, go = threading.Event(), threading.Event()
    reader = _Reader(fleet, nvml)
    real_check = nvml._check

    def check(name: str, gpu_index: int | None = None) -> None:
        real_check(name, gpu_index)
        if name == "nvmlDeviceGetFieldValues" and not checked.is_set():  # no step was due; now one is
            checked.set()
            go.wait(10)

    nvml._check = check  # type: ignore[method-assign]
    reader.thread.start()
    checked.wait(10)
    _pause_mid_step(monkeypatch, clock.time() + 1, lambda: (go.set(), reader.waiting.wait(10)))
    clock.advance(1)
    fleet.advance()
    got = reader.finish()
    assert got and got == _undisturbed(got)


def test_stamped_reads_of_an_undisturbed_fleet_match_a_fresh_fleet_of_the_same_seed(
    nvml: SimNvml, clock: FakeClock
) -> None:
    clock.advance(2)
    nvml.nvmlDeviceGetCount()
    clock.advance(1)
    got = _stamped_reads(nvml)
    assert got == _undisturbed(got)
