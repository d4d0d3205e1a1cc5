"""The metric-family table: every family the exporter can emit, with its help, type and NVML source.

DCGM-compatible families keep dcgm-exporter's exact names (and its units: MiB, MHz, W, mJ, ns) so that
Grafana dashboard 12239 and existing alert rules work unchanged. Families that DCGM lacks use the
``gpuwarden_`` prefix, base units and ``_total`` on counters. The dashboards stage may read this table.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from gpuwarden import mig

# Labels of dcgm-exporter, in its order. MIG instances add GPU_I_PROFILE and GPU_I_ID.
DCGM_GPU_LABELS = ("gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname")
MIG_LABELS = ("GPU_I_PROFILE", "GPU_I_ID")
# gpuwarden's own families drop the camelCase modelName (promtool's lint rejects it); join on UUID.
OWN_GPU_LABELS = ("gpu", "UUID", "pci_bus_id", "device", "Hostname")
# Workload attribution labels (only present when known).
ATTRIBUTION_LABELS = ("namespace", "pod", "container", "pod_uid", "slurm_job")


class Kind(enum.StrEnum):
    """Prometheus metric type."""

    GAUGE = "gauge"
    COUNTER = "counter"


@dataclass(frozen=True, slots=True)
class Family:
    """One metric family: name, help, type and where its value comes from."""

    name: str
    help: str
    kind: Kind
    source: str
    # The name on sample lines: gpuwarden counters end in ``_total``, DCGM names are kept as is.
    sample_name: str = field(init=False)
    # True for dcgm-exporter-compatible families (NVIDIA's names and labels).
    dcgm: bool = field(init=False)

    def __post_init__(self) -> None:
        dcgm = self.name.startswith("DCGM_")
        object.__setattr__(self, "dcgm", dcgm)
        suffix = "_total" if self.kind is Kind.COUNTER and not dcgm else ""
        object.__setattr__(self, "sample_name", self.name + suffix)


def _g(name: str, help_: str, source: str) -> Family:
    return Family(name, help_, Kind.GAUGE, source)


def _c(name: str, help_: str, source: str) -> Family:
    return Family(name, help_, Kind.COUNTER, source)


# --- DCGM-compatible families -----------------------------------------------------------------------

SM_CLOCK = _g("DCGM_FI_DEV_SM_CLOCK", "SM clock frequency (in MHz).", "nvmlDeviceGetClockInfo(SM)")
MEM_CLOCK = _g("DCGM_FI_DEV_MEM_CLOCK", "Memory clock frequency (in MHz).", "nvmlDeviceGetClockInfo(MEM)")
GPU_TEMP = _g("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", "nvmlDeviceGetTemperature(GPU)")
MEMORY_TEMP = _g("DCGM_FI_DEV_MEMORY_TEMP", "Memory temperature (in C).", "field NVML_FI_DEV_MEMORY_TEMP")
POWER_USAGE = _g("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", "nvmlDeviceGetPowerUsage / 1000")
TOTAL_ENERGY = _c(
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
    "Total energy consumption since the driver was loaded (in mJ).",
    "field NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
)
PCIE_REPLAY = _c(
    "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
    "Total number of PCIe retries.",
    "field NVML_FI_DEV_PCIE_REPLAY_COUNTER",
)
GPU_UTIL = _g("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", "nvmlDeviceGetUtilizationRates.gpu")
MEM_COPY_UTIL = _g(
    "DCGM_FI_DEV_MEM_COPY_UTIL", "Memory utilization (in %).", "nvmlDeviceGetUtilizationRates.memory"
)
ENC_UTIL = _g("DCGM_FI_DEV_ENC_UTIL", "Encoder utilization (in %).", "nvmlDeviceGetEncoderUtilization")
DEC_UTIL = _g("DCGM_FI_DEV_DEC_UTIL", "Decoder utilization (in %).", "nvmlDeviceGetDecoderUtilization")
FB_FREE = _g("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).", "nvmlDeviceGetMemoryInfo.free")
FB_USED = _g(
    "DCGM_FI_DEV_FB_USED",
    "Framebuffer memory used (in MiB).",
    "nvmlDeviceGetMemoryInfo(nvmlMemory_v2).used: without the reserved memory (old drivers: v1, with it)",
)
FB_RESERVED = _g(
    "DCGM_FI_DEV_FB_RESERVED",
    "Framebuffer memory reserved (in MiB).",
    "nvmlDeviceGetMemoryInfo(nvmlMemory_v2).reserved",
)
FB_TOTAL = _g("DCGM_FI_DEV_FB_TOTAL", "Framebuffer memory total (in MiB).", "nvmlDeviceGetMemoryInfo.total")
XID_ERRORS = _g(
    "DCGM_FI_DEV_XID_ERRORS",
    "Value of the last XID error encountered (0: none since the exporter started).",
    "nvmlEventSetWait (XidCriticalError)",
)
NVLINK_BANDWIDTH_TOTAL = _g(
    "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL",
    "NVLink data throughput, transmitted plus received, all links, since the previous collection "
    "(in MB/s, as DCGM computes it: MiB/s).",
    "fields NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX + _RX (scopeId UINT_MAX: all links), difference / time",
)
NVLINK_DATA_BYTES = _c(
    "gpuwarden_nvlink_data_bytes",
    "NVLink data payload over all links of the GPU, by direction (NVML's counter, from driver load).",
    "fields NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX / _RX (scopeId UINT_MAX) x 1024",
)
ECC_SBE_VOL = _c(
    "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
    "Total single-bit volatile ECC errors.",
    "field NVML_FI_DEV_ECC_SBE_VOL_TOTAL",
)
ECC_DBE_VOL = _c(
    "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
    "Total double-bit volatile ECC errors.",
    "field NVML_FI_DEV_ECC_DBE_VOL_TOTAL",
)
ECC_SBE_AGG = _c(
    "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL",
    "Total single-bit persistent (aggregate) ECC errors.",
    "field NVML_FI_DEV_ECC_SBE_AGG_TOTAL",
)
ECC_DBE_AGG = _c(
    "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL",
    "Total double-bit persistent (aggregate) ECC errors.",
    "field NVML_FI_DEV_ECC_DBE_AGG_TOTAL",
)
RETIRED_SBE = _c(
    "DCGM_FI_DEV_RETIRED_SBE", "Total pages retired for single-bit errors.", "field NVML_FI_DEV_RETIRED_SBE"
)
RETIRED_DBE = _c(
    "DCGM_FI_DEV_RETIRED_DBE", "Total pages retired for double-bit errors.", "field NVML_FI_DEV_RETIRED_DBE"
)
RETIRED_PENDING = _g(
    "DCGM_FI_DEV_RETIRED_PENDING", "Pages pending retirement (1: yes).", "field NVML_FI_DEV_RETIRED_PENDING"
)
REMAPPED_COR = _c(
    "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
    "Rows remapped for correctable errors.",
    "field NVML_FI_DEV_REMAPPED_COR",
)
REMAPPED_UNC = _c(
    "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
    "Rows remapped for uncorrectable errors.",
    "field NVML_FI_DEV_REMAPPED_UNC",
)
ROW_REMAP_PENDING = _g(
    "DCGM_FI_DEV_ROW_REMAP_PENDING",
    "A row remap is pending and needs a GPU reset (1: yes).",
    "field NVML_FI_DEV_REMAPPED_PENDING",
)
ROW_REMAP_FAILURE = _g(
    "DCGM_FI_DEV_ROW_REMAP_FAILURE",
    "Row remapping failed; the GPU needs service (1: yes).",
    "field NVML_FI_DEV_REMAPPED_FAILURE",
)
NVLINK_CRC_FLIT = _c(
    "DCGM_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL",
    "Total NVLink flow-control CRC errors, all links.",
    "field NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL",
)
NVLINK_CRC_DATA = _c(
    "DCGM_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL",
    "Total NVLink data CRC errors, all links.",
    "field NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL",
)
NVLINK_REPLAY = _c(
    "DCGM_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL",
    "Total NVLink replay errors, all links.",
    "field NVML_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL",
)
NVLINK_RECOVERY = _c(
    "DCGM_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL",
    "Total NVLink recovery errors, all links.",
    "field NVML_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL",
)
CLOCK_THROTTLE_REASONS = _g(
    "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS",
    "Current clock throttle (event) reasons, a bitmask of nvmlClocksEventReason*.",
    "nvmlDeviceGetCurrentClocksEventReasons (old drivers: ...ThrottleReasons)",
)
POWER_VIOLATION = _c(
    "DCGM_FI_DEV_POWER_VIOLATION",
    "Throttling duration due to power constraints (in ns).",
    "field NVML_FI_DEV_PERF_POLICY_POWER",
)
THERMAL_VIOLATION = _c(
    "DCGM_FI_DEV_THERMAL_VIOLATION",
    "Throttling duration due to thermal constraints (in ns).",
    "field NVML_FI_DEV_PERF_POLICY_THERMAL",
)
SYNC_BOOST_VIOLATION = _c(
    "DCGM_FI_DEV_SYNC_BOOST_VIOLATION",
    "Throttling duration due to sync-boost constraints (in ns).",
    "field NVML_FI_DEV_PERF_POLICY_SYNC_BOOST",
)
BOARD_LIMIT_VIOLATION = _c(
    "DCGM_FI_DEV_BOARD_LIMIT_VIOLATION",
    "Throttling duration due to board limit constraints (in ns).",
    "field NVML_FI_DEV_PERF_POLICY_BOARD_LIMIT",
)
LOW_UTIL_VIOLATION = _c(
    "DCGM_FI_DEV_LOW_UTIL_VIOLATION",
    "Throttling duration due to low utilization (in ns).",
    "field NVML_FI_DEV_PERF_POLICY_LOW_UTILIZATION",
)
RELIABILITY_VIOLATION = _c(
    "DCGM_FI_DEV_RELIABILITY_VIOLATION",
    "Throttling duration due to reliability constraints (in ns).",
    "field NVML_FI_DEV_PERF_POLICY_RELIABILITY",
)
CLOCKS_EVENT_REASONS = _g(
    "DCGM_FI_DEV_CLOCKS_EVENT_REASONS",
    "Current clock event reasons, a bitmask of nvmlClocksEventReason* (DCGM 3.3+'s name for field 112).",
    "nvmlDeviceGetCurrentClocksEventReasons (old drivers: ...ThrottleReasons)",
)
PCIE_TX_THROUGHPUT = _g(
    "DCGM_FI_DEV_PCIE_TX_THROUGHPUT",
    "PCIe data transmitted by the GPU (in KB/s): GPM's rate where the GPU has GPM, else NVML's 20 ms sample.",
    "nvmlDeviceGetPcieThroughput(NVML_PCIE_UTIL_TX_BYTES)",
)
PCIE_RX_THROUGHPUT = _g(
    "DCGM_FI_DEV_PCIE_RX_THROUGHPUT",
    "PCIe data received by the GPU (in KB/s): GPM's rate where the GPU has GPM, else NVML's 20 ms sample.",
    "nvmlDeviceGetPcieThroughput(NVML_PCIE_UTIL_RX_BYTES)",
)
PROF_GR_ENGINE_ACTIVE = _g(
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
    "Ratio of time the graphics engine is active.",
    "GPM NVML_GPM_METRIC_GRAPHICS_UTIL / 100",
)
PROF_SM_ACTIVE = _g(
    "DCGM_FI_PROF_SM_ACTIVE",
    "The ratio of cycles an SM has at least 1 warp assigned.",
    "GPM NVML_GPM_METRIC_SM_UTIL / 100",
)
PROF_SM_OCCUPANCY = _g(
    "DCGM_FI_PROF_SM_OCCUPANCY",
    "The ratio of resident warps to the maximum on an SM.",
    "GPM NVML_GPM_METRIC_SM_OCCUPANCY / 100",
)
PROF_PIPE_TENSOR_ACTIVE = _g(
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE",
    "Ratio of cycles the tensor pipes are active.",
    "GPM NVML_GPM_METRIC_ANY_TENSOR_UTIL / 100",
)
PROF_DRAM_ACTIVE = _g(
    "DCGM_FI_PROF_DRAM_ACTIVE",
    "Ratio of cycles the device memory interface is active sending or receiving data.",
    "GPM NVML_GPM_METRIC_DRAM_BW_UTIL / 100",
)
PROF_PCIE_TX_BYTES = _g(
    "DCGM_FI_PROF_PCIE_TX_BYTES",
    "The rate of data transmitted over the PCIe bus, headers and payloads, in bytes per second.",
    "GPM NVML_GPM_METRIC_PCIE_TX_PER_SEC (MiB/s) x 2^20",
)
PROF_PCIE_RX_BYTES = _g(
    "DCGM_FI_PROF_PCIE_RX_BYTES",
    "The rate of data received over the PCIe bus, headers and payloads, in bytes per second.",
    "GPM NVML_GPM_METRIC_PCIE_RX_PER_SEC (MiB/s) x 2^20",
)

# --- gpuwarden families ------------------------------------------------------------------------------

GPU_UP = _g(
    "gpuwarden_gpu_up",
    "1 when the GPU answered NVML in the last collection, 0 when it is lost or needs a reset.",
    "nvmlDeviceGetHandleByIndex + every per-GPU call",
)
RECOVERY_ACTION = _g(
    "gpuwarden_gpu_recovery_action",
    "The driver's recommended recovery action (0 none, 1 GPU reset, 2 node reboot, 3 drain P2P, "
    "4 drain and reset, 5 recover IMEX domain, 6 bus reset, 7 system reboot).",
    "field NVML_FI_DEV_GET_GPU_RECOVERY_ACTION",
)
CLOCK_EVENT_REASON = _g(
    "gpuwarden_gpu_clock_event_reason_active",
    "1 while the named clock event (throttle) reason holds, else 0.",
    "nvmlDeviceGetCurrentClocksEventReasons, decoded",
)
XID_TOTAL = _c(
    "gpuwarden_xid_errors",
    "XID errors received as NVML events, by XID code; every event counts.",
    "nvmlEventSetWait (XidCriticalError)",
)
XID_LAST_SEEN = _g(
    "gpuwarden_xid_last_seen_timestamp_seconds",
    "When the exporter last received this XID code from the GPU (Unix seconds).",
    "nvmlEventSetWait receipt time",
)
XID_WATCHER_UP = _g(
    "gpuwarden_xid_watcher_up",
    "1 while this host's XID watcher waits on its NVML event set; 0 when it has none or its waits keep "
    "failing (XIDs are not seen).",
    "XidWatcher",
)
XID_WATCHER_GPUS = _g(
    "gpuwarden_xid_watcher_gpus",
    "GPUs registered for XID events; fewer than count(gpuwarden_gpu_up == 1) means some XIDs are not seen.",
    "XidWatcher",
)
XID_WATCHER_ERRORS = _c(
    "gpuwarden_xid_watcher_errors",
    "Failed NVML event-set creations, XID registrations and event waits of the XID watcher.",
    "XidWatcher",
)
POD_RESOURCES_ERRORS = _c(
    "gpuwarden_pod_resources_errors",
    "Failed reads of the kubelet's pod-resources API (exporter.kubelet_pod_resources_socket); meanwhile the "
    "GPUs' pod labels are those of its last good read.",
    "kubelet pod-resources List",
)
PROCESS_MEMORY = _g(
    "gpuwarden_process_memory_used_bytes",
    "GPU memory used by one process, with its pod or Slurm job when known.",
    "nvmlDeviceGetComputeRunningProcesses + /proc/<pid>/cgroup",
)
NVML_CALL_ERRORS = _c(
    "gpuwarden_nvml_call_errors",
    "NVML calls that failed, by function and NVML error, and by GPU index (gpu) for a call made for one GPU "
    "(NotSupported is not an error).",
    "every NVML call",
)
COLLECTION_DURATION = _g(
    "gpuwarden_collection_duration_seconds",
    "Wall time of the last completed NVML collection of this host.",
    "collection loop",
)
COLLECTION_CPU = _g(
    "gpuwarden_collection_cpu_seconds",
    "CPU time of the last completed NVML collection of this host.",
    "collection loop",
)
LAST_SUCCESS = _g(
    "gpuwarden_collection_last_success_timestamp_seconds",
    "When the last collection of this host completed (Unix seconds); 0 until the first one has.",
    "collection loop",
)
STALE = _g(
    "gpuwarden_exporter_stale",
    "1 while this host's GPU values are not from the current collection: it overran its deadline (a hung "
    "NVML call), failed, or NVML answered nothing (see gpuwarden_nvml_up).",
    "collection loop",
)
NVML_UP = _g(
    "gpuwarden_nvml_up",
    "1 when NVML answered in this host's last collection; 0 when not one call did (driver unloaded or "
    "wedged, node going down): its GPU series are then absent.",
    "every NVML call of a collection",
)
OVERRUNS = _c(
    "gpuwarden_collection_overruns",
    "Collections that overran their deadline, by the NVML function that was running (a hung call).",
    "collection loop",
)
COLLECTION_FAILURES = _c(
    "gpuwarden_collection_failures",
    "Collections that ended in an unexpected exception (a bug; NVML errors are counted per call).",
    "collection loop",
)

NVLINK_LINK_STATUS = _g(
    "DCGM_FI_DEV_NVLINK_LINK_STATUS",
    "State of one NVLink (label link): 1 active, 0 inactive (down), as NVML_FI_DEV_NVLINK_GET_STATE.",
    "nvmlDeviceGetNvLinkState (links counted once by NVML_FI_DEV_NVLINK_LINK_COUNT)",
)
TRAINING_PUSHES = _c(
    "gpuwarden_exporter_training_pushes",
    "Training metric groups (one per job and rank) this exporter pushed to the Pushgateway.",
    "push_to_gateway (tracing.pushgateway_url)",
)
TRAINING_PUSH_FAILURES = _c(
    "gpuwarden_exporter_training_push_failures",
    "Training metric groups whose push failed, by reason: http_<status> (the gateway refused it), "
    "unreachable (refused, timed out, unresolvable) or error.",
    "push_to_gateway (tracing.pushgateway_url)",
)
TRAINING_LAST_PUSH_SUCCESS = _g(
    "gpuwarden_exporter_training_last_push_success_timestamp_seconds",
    "When a training metric group last reached the Pushgateway (Unix seconds); absent before the first.",
    "push_to_gateway (tracing.pushgateway_url)",
)

FAMILIES: tuple[Family, ...] = tuple(v for v in list(globals().values()) if isinstance(v, Family))
BY_NAME: dict[str, Family] = {f.name: f for f in FAMILIES}

# What a MIG instance's series (GPU_I_ID) carry besides its own framebuffer and GPM (DCGM_FI_PROF_*)
# families. dcgm-exporter reads every field of its CSV for each GPU instance, and DCGM answers a device-level
# field there with the whole GPU's value, so temperature, power, energy, clocks, ECC, row remaps, PCIe,
# NVLink, violations, the throttle mask and the last XID repeat on each instance (its issues #317, #713,
# #257); DCGM_FI_DEV_{GPU,MEM_COPY,ENC,DEC}_UTIL are "not supported for MIG configurations" (issues #430,
# #50): NVML answers NotSupported for them on a MIG-enabled GPU, so they are on no series of one anyway.
# Which those are is written once, in ``gpuwarden.mig``: the anomaly service and chart queries read it too.
MIG_INSTANCE_OWN: frozenset[Family] = frozenset(f for f in FAMILIES if f.dcgm and mig.instance_own(f.name))
MIG_UNSUPPORTED: frozenset[Family] = frozenset(f for f in FAMILIES if f.name in mig.MIG_UNSUPPORTED)
MIG_REPEATED: tuple[Family, ...] = tuple(
    f for f in FAMILIES if f.dcgm and f not in MIG_INSTANCE_OWN and f not in MIG_UNSUPPORTED
)

# NVML field ids read in one nvmlDeviceGetFieldValues call, and the family each feeds with its scale.
# (Constants from nvml.h; the NVML_FI_* names are in the comments.)
FIELD_FAMILIES: tuple[tuple[int, Family, float], ...] = (
    (82, MEMORY_TEMP, 1.0),  # NVML_FI_DEV_MEMORY_TEMP
    (83, TOTAL_ENERGY, 1.0),  # NVML_FI_DEV_TOTAL_ENERGY_CONSUMPTION (mJ)
    (94, PCIE_REPLAY, 1.0),  # NVML_FI_DEV_PCIE_REPLAY_COUNTER
    (3, ECC_SBE_VOL, 1.0),  # NVML_FI_DEV_ECC_SBE_VOL_TOTAL
    (4, ECC_DBE_VOL, 1.0),  # NVML_FI_DEV_ECC_DBE_VOL_TOTAL
    (5, ECC_SBE_AGG, 1.0),  # NVML_FI_DEV_ECC_SBE_AGG_TOTAL
    (6, ECC_DBE_AGG, 1.0),  # NVML_FI_DEV_ECC_DBE_AGG_TOTAL
    (29, RETIRED_SBE, 1.0),  # NVML_FI_DEV_RETIRED_SBE
    (30, RETIRED_DBE, 1.0),  # NVML_FI_DEV_RETIRED_DBE
    (31, RETIRED_PENDING, 1.0),  # NVML_FI_DEV_RETIRED_PENDING
    (142, REMAPPED_COR, 1.0),  # NVML_FI_DEV_REMAPPED_COR
    (143, REMAPPED_UNC, 1.0),  # NVML_FI_DEV_REMAPPED_UNC
    (144, ROW_REMAP_PENDING, 1.0),  # NVML_FI_DEV_REMAPPED_PENDING
    (145, ROW_REMAP_FAILURE, 1.0),  # NVML_FI_DEV_REMAPPED_FAILURE
    (38, NVLINK_CRC_FLIT, 1.0),  # NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL
    (45, NVLINK_CRC_DATA, 1.0),  # NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL
    (52, NVLINK_REPLAY, 1.0),  # NVML_FI_DEV_NVLINK_REPLAY_ERROR_COUNT_TOTAL
    (59, NVLINK_RECOVERY, 1.0),  # NVML_FI_DEV_NVLINK_RECOVERY_ERROR_COUNT_TOTAL
    (74, POWER_VIOLATION, 1.0),  # NVML_FI_DEV_PERF_POLICY_POWER (ns)
    (75, THERMAL_VIOLATION, 1.0),  # NVML_FI_DEV_PERF_POLICY_THERMAL (ns)
    (76, SYNC_BOOST_VIOLATION, 1.0),  # NVML_FI_DEV_PERF_POLICY_SYNC_BOOST (ns)
    (77, BOARD_LIMIT_VIOLATION, 1.0),  # NVML_FI_DEV_PERF_POLICY_BOARD_LIMIT (ns)
    (78, LOW_UTIL_VIOLATION, 1.0),  # NVML_FI_DEV_PERF_POLICY_LOW_UTILIZATION (ns)
    (79, RELIABILITY_VIOLATION, 1.0),  # NVML_FI_DEV_PERF_POLICY_RELIABILITY (ns)
    (230, RECOVERY_ACTION, 1.0),  # NVML_FI_DEV_GET_GPU_RECOVERY_ACTION
)
# NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX / _RX (cumulative KiB). Their scopeId is a link id; UINT_MAX asks
# for the sum of all links (nvml.h), which DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL and the byte counters need.
NVLINK_ALL_LINKS = 0xFFFFFFFF
NVLINK_THROUGHPUT_FIELDS = ((138, NVLINK_ALL_LINKS, "tx"), (139, NVLINK_ALL_LINKS, "rx"))

# GPM's PCIe rates (MiB/s) also give DCGM_FI_DEV_PCIE_*_THROUGHPUT (KB/s) without NVML's 20 ms sampling call.
GPM_PCIE_THROUGHPUT: dict[int, Family] = {20: PCIE_TX_THROUGHPUT, 21: PCIE_RX_THROUGHPUT}
# GPM metric ids (NVML_GPM_METRIC_*), the DCGM profiling family each feeds and the scale to its unit.
GPM_FAMILIES: tuple[tuple[int, Family, float], ...] = (
    (1, PROF_GR_ENGINE_ACTIVE, 0.01),  # NVML_GPM_METRIC_GRAPHICS_UTIL (percent -> ratio)
    (2, PROF_SM_ACTIVE, 0.01),  # NVML_GPM_METRIC_SM_UTIL
    (3, PROF_SM_OCCUPANCY, 0.01),  # NVML_GPM_METRIC_SM_OCCUPANCY
    (5, PROF_PIPE_TENSOR_ACTIVE, 0.01),  # NVML_GPM_METRIC_ANY_TENSOR_UTIL
    (10, PROF_DRAM_ACTIVE, 0.01),  # NVML_GPM_METRIC_DRAM_BW_UTIL
    (20, PROF_PCIE_TX_BYTES, 1024.0 * 1024.0),  # NVML_GPM_METRIC_PCIE_TX_PER_SEC (MiB/s -> B/s)
    (21, PROF_PCIE_RX_BYTES, 1024.0 * 1024.0),  # NVML_GPM_METRIC_PCIE_RX_PER_SEC
)

# Clock event (throttle) reason bits and their label values.
CLOCK_EVENT_REASONS: tuple[tuple[int, str], ...] = (
    (0x1, "gpu_idle"),
    (0x2, "applications_clocks_setting"),
    (0x4, "sw_power_cap"),
    (0x8, "hw_slowdown"),
    (0x10, "sync_boost"),
    (0x20, "sw_thermal_slowdown"),
    (0x40, "hw_thermal_slowdown"),
    (0x80, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
)
