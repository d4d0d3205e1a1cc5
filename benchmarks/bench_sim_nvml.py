"""CPU cost of SimNvml: one exporter-like collection of 8 (and 64) GPUs, about 40 NVML calls per GPU.

Prints one JSON line. Target from the exporter issue: a full 8-GPU collection in <= 5 ms CPU, so the
simulator itself must stay well below that.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

import pynvml

from gpuwarden.clock import SystemClock
from gpuwarden.sim import SimNvml, build_fleet

FIELDS = [
    pynvml.NVML_FI_DEV_ECC_SBE_VOL_TOTAL,
    pynvml.NVML_FI_DEV_ECC_DBE_VOL_TOTAL,
    pynvml.NVML_FI_DEV_ECC_SBE_AGG_TOTAL,
    pynvml.NVML_FI_DEV_ECC_DBE_AGG_TOTAL,
    pynvml.NVML_FI_DEV_MEMORY_TEMP,
    pynvml.NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL,
    pynvml.NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL,
    pynvml.NVML_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL,
    pynvml.NVML_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL,
    pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX,
    pynvml.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX,
    pynvml.NVML_FI_DEV_GET_GPU_RECOVERY_ACTION,
    pynvml.NVML_FI_DEV_REMAPPED_COR,
    pynvml.NVML_FI_DEV_REMAPPED_UNC,
    pynvml.NVML_FI_DEV_REMAPPED_PENDING,
    pynvml.NVML_FI_DEV_REMAPPED_FAILURE,
]
GPM_IDS = [
    pynvml.NVML_GPM_METRIC_GRAPHICS_UTIL,
    pynvml.NVML_GPM_METRIC_SM_UTIL,
    pynvml.NVML_GPM_METRIC_ANY_TENSOR_UTIL,
    pynvml.NVML_GPM_METRIC_DRAM_BW_UTIL,
]


def collect(sim: SimNvml, handles: list[Any], samples: list[list[Any]]) -> int:
    """One collection; returns the number of NVML calls made."""
    calls = 0
    for i, h in enumerate(handles):
        sim.nvmlDeviceGetUtilizationRates(h)
        sim.nvmlDeviceGetMemoryInfo(h)
        sim.nvmlDeviceGetTemperature(h, pynvml.NVML_TEMPERATURE_GPU)
        sim.nvmlDeviceGetPowerUsage(h)
        sim.nvmlDeviceGetEnforcedPowerLimit(h)
        sim.nvmlDeviceGetTotalEnergyConsumption(h)
        sim.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_SM)
        sim.nvmlDeviceGetClockInfo(h, pynvml.NVML_CLOCK_MEM)
        sim.nvmlDeviceGetPcieThroughput(h, pynvml.NVML_PCIE_UTIL_TX_BYTES)
        sim.nvmlDeviceGetPcieThroughput(h, pynvml.NVML_PCIE_UTIL_RX_BYTES)
        sim.nvmlDeviceGetPcieReplayCounter(h)
        sim.nvmlDeviceGetFieldValues(h, FIELDS)
        sim.nvmlDeviceGetRemappedRows(h)
        sim.nvmlDeviceGetCurrentClocksEventReasons(h)
        sim.nvmlDeviceGetViolationStatus(h, pynvml.NVML_PERF_POLICY_POWER)
        sim.nvmlDeviceGetViolationStatus(h, pynvml.NVML_PERF_POLICY_THERMAL)
        sim.nvmlDeviceGetComputeRunningProcesses(h)
        sim.nvmlDeviceGetMigMode(h)
        calls += 18
        for link in range(18):
            sim.nvmlDeviceGetNvLinkState(h, link)
        calls += 18
        first, second = samples[i]
        sim.nvmlGpmSampleGet(h, second)
        request = pynvml.c_nvmlGpmMetricsGet_t()
        request.version = pynvml.NVML_GPM_METRICS_GET_VERSION
        request.numMetrics = len(GPM_IDS)
        request.sample1, request.sample2 = first, second
        for k, metric_id in enumerate(GPM_IDS):
            request.metrics[k].metricId = metric_id
        sim.nvmlGpmMetricsGet(request)
        samples[i] = [second, first]
        calls += 2
    return calls


def measure(nodes: int, gpus: int, rounds: int = 200) -> dict[str, float]:
    """Median CPU milliseconds per collection of one node's ``gpus`` GPUs on a live (system) clock."""
    fleet = build_fleet(nodes, gpus, clock=SystemClock())
    sim = SimNvml(fleet, "node-01")
    sim.nvmlInit()
    handles = [sim.nvmlDeviceGetHandleByIndex(i) for i in range(gpus)]
    samples = [[sim.nvmlGpmSampleAlloc(), sim.nvmlGpmSampleAlloc()] for _ in handles]
    for h, (first, _) in zip(handles, samples, strict=True):
        sim.nvmlGpmSampleGet(h, first)
    calls = collect(sim, handles, samples)
    times = []
    for _ in range(rounds):
        start = time.process_time()
        collect(sim, handles, samples)
        times.append(time.process_time() - start)
    times.sort()
    median_ms = times[len(times) // 2] * 1000
    return {"ms": round(median_ms, 3), "calls": calls, "us_per_call": round(median_ms * 1000 / calls, 2)}


def main() -> None:
    """Print one JSON line."""
    eight = measure(2, 8)
    sixty_four = measure(8, 16, rounds=50)  # 16 GPUs per node x 4 rounds ~ 64 GPUs of calls
    print(
        json.dumps(
            {
                "benchmark": "sim_nvml_collection",
                "gpus_8_cpu_ms": eight["ms"],
                "gpus_8_calls": eight["calls"],
                "us_per_call": eight["us_per_call"],
                "gpus_16_cpu_ms": sixty_four["ms"],
                "gpus_64_cpu_ms_estimate": round(sixty_four["ms"] * 4, 3),
                "target_gpus_8_ms": 5.0,
            }
        )
    )


if __name__ == "__main__":
    argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args()  # --help; no option
    main()
