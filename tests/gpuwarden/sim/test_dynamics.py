"""Dynamics sanity: determinism, idle vs busy, temperature lagging power, counters that only grow."""

from __future__ import annotations

import random

import pynvml

from gpuwarden.clock import FakeClock
from gpuwarden.sim import Fleet, SimNvml, build_fleet, parse_fault
from gpuwarden.sim.dynamics import Demand, GpuEffects, step_gpu
from gpuwarden.sim.topology import build_nodes

IDLE_GPU = 7  # the spare on each node
TRAIN_GPU = 0


def _reading(seed: int, times: list[float]) -> list[tuple[int, ...]]:
    clock = FakeClock()
    fleet = build_fleet(2, 8, seed=seed, clock=clock)
    sim = SimNvml(fleet, "node-02")
    sim.nvmlInit()
    out: list[tuple[int, ...]] = []
    for t in times:
        clock.advance(t)
        for i in range(8):
            h = sim.nvmlDeviceGetHandleByIndex(i)
            out.append(
                (
                    sim.nvmlDeviceGetUtilizationRates(h).gpu,
                    sim.nvmlDeviceGetPowerUsage(h),
                    sim.nvmlDeviceGetTemperature(h, 0),
                    sim.nvmlDeviceGetTotalEnergyConsumption(h),
                    sim.nvmlDeviceGetPcieThroughput(h, pynvml.NVML_PCIE_UTIL_RX_BYTES),
                )
            )
    return out


def test_same_seed_and_clock_times_give_identical_readings() -> None:
    times = [1.0, 2.5, 30.0, 0.2, 600.0, 7200.0]
    assert _reading(11, times) == _reading(11, times)
    assert _reading(11, times) != _reading(12, times)


def test_how_often_one_reads_does_not_change_the_values() -> None:
    often = FakeClock()
    rarely = FakeClock()
    a = build_fleet(seed=1, clock=often)
    b = build_fleet(seed=1, clock=rarely)
    for _ in range(100):
        often.advance(1)
        a.gpu_speed_factor("node-01", 0)
    rarely.advance(100)
    b.advance()
    for node, index in (("node-01", 0), ("node-01", 4), ("node-02", 7)):
        assert a.gpu(node, index).state == b.gpu(node, index).state


def test_idle_gpus_look_idle_and_busy_ones_busy(nvml: SimNvml) -> None:
    idle = nvml.nvmlDeviceGetHandleByIndex(IDLE_GPU)
    busy = nvml.nvmlDeviceGetHandleByIndex(TRAIN_GPU)
    assert nvml.nvmlDeviceGetUtilizationRates(idle).gpu == 0
    assert nvml.nvmlDeviceGetPowerUsage(idle) < 100_000
    assert nvml.nvmlDeviceGetClockInfo(idle, pynvml.NVML_CLOCK_SM) < 500
    assert nvml.nvmlDeviceGetCurrentClocksEventReasons(idle) & pynvml.nvmlClocksEventReasonGpuIdle
    assert nvml.nvmlDeviceGetComputeRunningProcesses(idle) == []
    assert nvml.nvmlDeviceGetMemoryInfo(idle).used < 2**30
    assert nvml.nvmlDeviceGetUtilizationRates(busy).gpu > 85
    assert nvml.nvmlDeviceGetPowerUsage(busy) > 500_000
    assert nvml.nvmlDeviceGetClockInfo(busy, pynvml.NVML_CLOCK_SM) > 1800
    assert nvml.nvmlDeviceGetTemperature(busy, 0) > nvml.nvmlDeviceGetTemperature(idle, 0) + 20
    procs = nvml.nvmlDeviceGetComputeRunningProcesses(busy)
    assert len(procs) == 1 and procs[0].usedGpuMemory > 60 * 2**30 and procs[0].pid > 0


def test_temperature_follows_power_with_a_lag() -> None:
    gpu = build_nodes(1, 1, seed=0, racks_per_cluster=1, clusters=1, gpu_model="NVIDIA H100 80GB HBM3")[
        0
    ].gpus[0]
    fx = GpuEffects()
    rng = random.Random(0)
    for _ in range(300):
        step_gpu(gpu, fx, Demand(), 1.0, rng)
    idle_temp = gpu.state.temp_c
    temps = []
    for _ in range(120):
        step_gpu(gpu, fx, Demand(0.95, "train", 70 * 2**30), 1.0, rng)
        temps.append(gpu.state.temp_c)
    assert gpu.state.power_mw > 500_000  # power jumps at once
    assert temps[0] < idle_temp + 5  # temperature does not
    assert temps[30] > temps[5] > temps[0]
    assert temps[-1] - temps[-2] < temps[1] - temps[0]  # and settles
    assert 60 < temps[-1] < 85


def test_energy_and_traffic_counters_never_go_backwards(
    fleet: Fleet, nvml: SimNvml, clock: FakeClock
) -> None:
    handle = nvml.nvmlDeviceGetHandleByIndex(TRAIN_GPU)
    fields = [
        pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX,
        pynvml.NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION,
    ]
    last = (nvml.nvmlDeviceGetTotalEnergyConsumption(handle), 0, 0)
    for _ in range(50):
        clock.advance(7)
        values = nvml.nvmlDeviceGetFieldValues(handle, fields)
        now = (
            nvml.nvmlDeviceGetTotalEnergyConsumption(handle),
            values[0].value.ullVal,
            values[1].value.ullVal,
        )
        assert all(n >= p for n, p in zip(now, last, strict=True))
        last = now
    assert last[0] > 0 and last[1] > 0


def test_energy_counter_grows_by_power_times_time(nvml: SimNvml, clock: FakeClock) -> None:
    handle = nvml.nvmlDeviceGetHandleByIndex(IDLE_GPU)
    before = nvml.nvmlDeviceGetTotalEnergyConsumption(handle)
    power_mw = nvml.nvmlDeviceGetPowerUsage(handle)
    clock.advance(100)
    grown = nvml.nvmlDeviceGetTotalEnergyConsumption(handle) - before
    assert 0.8 * power_mw * 100 < grown < 1.2 * power_mw * 100


def test_gpm_ratios_average_activity_between_two_samples(nvml: SimNvml, clock: FakeClock) -> None:
    busy = nvml.nvmlDeviceGetHandleByIndex(TRAIN_GPU)
    idle = nvml.nvmlDeviceGetHandleByIndex(IDLE_GPU)
    assert nvml.nvmlGpmQueryDeviceSupport(busy).isSupportedDevice == 1
    results = {}
    for name, handle in (("busy", busy), ("idle", idle)):
        first, second = nvml.nvmlGpmSampleAlloc(), nvml.nvmlGpmSampleAlloc()
        nvml.nvmlGpmSampleGet(handle, first)
        clock.advance(10)
        nvml.nvmlGpmSampleGet(handle, second)
        request = pynvml.c_nvmlGpmMetricsGet_t()
        request.version = pynvml.NVML_GPM_METRICS_GET_VERSION
        request.sample1, request.sample2 = first, second
        ids = [
            pynvml.NVML_GPM_METRIC_GRAPHICS_UTIL,
            pynvml.NVML_GPM_METRIC_SM_UTIL,
            pynvml.NVML_GPM_METRIC_ANY_TENSOR_UTIL,
            pynvml.NVML_GPM_METRIC_DRAM_BW_UTIL,
            pynvml.NVML_GPM_METRIC_FP64_UTIL,
        ]
        request.numMetrics = len(ids)
        for i, metric_id in enumerate(ids):
            request.metrics[i].metricId = metric_id
        nvml.nvmlGpmMetricsGet(request)
        results[name] = [(request.metrics[i].nvmlReturn, request.metrics[i].value) for i in range(len(ids))]
        nvml.nvmlGpmSampleFree(first)
        nvml.nvmlGpmSampleFree(second)
    busy_values = [v for _, v in results["busy"][:4]]
    assert busy_values[0] > 85 and 30 < busy_values[2] < busy_values[1] < busy_values[0]
    assert all(v == 0 for _, v in results["idle"][:4])
    assert results["busy"][4][0] == pynvml.NVML_ERROR_NOT_SUPPORTED


def test_hung_gpu_is_fully_busy_with_no_tensor_work(fleet: Fleet, nvml: SimNvml, clock: FakeClock) -> None:
    fleet.inject(parse_fault({"kind": "hung", "node": "node-01", "gpu": 4}))
    clock.advance(30)
    handle = nvml.nvmlDeviceGetHandleByIndex(4)
    assert nvml.nvmlDeviceGetUtilizationRates(handle).gpu == 100
    assert nvml.nvmlDeviceGetPowerUsage(handle) < 250_000
    assert fleet.gpu("node-01", 4).state.tensor_active == 0.0
