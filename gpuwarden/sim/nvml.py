"""``SimNvml``: the ``pynvml`` API for one simulated node.

Same function names and signatures as ``pynvml`` (nvidia-ml-py), same return shapes (pynvml's own
ctypes structs, tuples, lists and ints, strings as ``str``), pynvml's constants and ``NVMLError_*``
classes reachable as attributes, and those exception classes raised. Handles are opaque ctypes
pointers (``c_nvmlDevice_t``) that are never dereferenced, so they also fit ``c_nvmlEventData_t.device``.
A function pynvml has but the simulator does not implement raises ``NVMLError_FunctionNotFound``, as
an old driver would.

Calls are cheap: the fleet advances at most once per clock step, and a call allocates no more than
the struct it returns.
"""

from __future__ import annotations

import ctypes
from collections.abc import Sequence
from typing import Any

import pynvml

from gpuwarden.sim.dynamics import RESERVED_FB_BYTES
from gpuwarden.sim.fields import fill_field_values
from gpuwarden.sim.nvml_base import NO_INSTANCE, NvmlBase
from gpuwarden.sim.nvml_events import NvmlEvents
from gpuwarden.sim.nvml_gpm import NvmlGpm
from gpuwarden.sim.topology import MAX_MIG_DEVICES

VIDEO_SAMPLING_PERIOD_US = 100_000  # what an idle H200 answers for its encoder and decoder
# The members of pynvml's process struct, in order: what ``nvmlStructToFriendlyObject`` copies out of it.
_PROCESS_FIELDS = tuple(name for name, *_ in pynvml.c_nvmlProcessInfo_t._fields_)


class SimNvml(NvmlEvents, NvmlGpm, NvmlBase):
    """The pynvml API, served from one node of a simulated ``Fleet``."""

    # --- handles and identity --------------------------------------------------------------------

    def nvmlDeviceGetCount(self) -> int:
        """GPUs on this node (a lost GPU still counts)."""
        self._check("nvmlDeviceGetCount")
        return len(self._devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any:
        """The handle of GPU ``index``."""
        self._check("nvmlDeviceGetHandleByIndex", index)
        if not isinstance(index, int) or not 0 <= index < len(self._devices):
            raise pynvml.NVMLError_InvalidArgument()
        return self._devices[index].handle

    def nvmlDeviceGetHandleByUUID(self, uuid: str | bytes) -> Any:
        """The handle of a GPU or MIG device by UUID."""
        self._check("nvmlDeviceGetHandleByUUID")
        text = uuid.decode() if isinstance(uuid, bytes) else uuid
        for dev in self._by_id.values():
            if not dev.stale and (dev.mig.uuid if dev.mig else dev.gpu.uuid) == text:
                return dev.handle
        raise pynvml.NVMLError_NotFound()

    def nvmlDeviceGetHandleByPciBusId(self, pciBusId: str | bytes) -> Any:
        """The handle of a GPU by PCI bus id (either domain width)."""
        self._check("nvmlDeviceGetHandleByPciBusId")
        text = (pciBusId.decode() if isinstance(pciBusId, bytes) else pciBusId).upper()
        for dev in self._devices:
            if dev.gpu.pci_bus_id.endswith(text[-12:]):
                return dev.handle
        raise pynvml.NVMLError_NotFound()

    def nvmlDeviceGetIndex(self, handle: Any) -> int:
        """The GPU's index: its place in NVML's enumeration (one less for each GPU ``remove``d before it)."""
        dev = self._dev(handle, "nvmlDeviceGetIndex", mig_ok=True)
        gpu = self._devices[dev.gpu.index] if dev.gpu.index < len(self._devices) else None
        if gpu is not None and gpu.gpu is dev.gpu:
            return dev.gpu.index
        return next(i for i, d in enumerate(self._devices) if d.gpu is dev.gpu)

    def nvmlDeviceGetName(self, handle: Any) -> str:
        """Product name; MIG devices add `` MIG <profile>`` like NVML."""
        dev = self._dev(handle, "nvmlDeviceGetName", mig_ok=True)
        return f"{dev.gpu.name} MIG {dev.mig.profile}" if dev.mig else dev.gpu.name

    def nvmlDeviceGetUUID(self, handle: Any) -> str:
        """``GPU-...`` (or ``MIG-...``) UUID."""
        dev = self._dev(handle, "nvmlDeviceGetUUID", mig_ok=True)
        return dev.mig.uuid if dev.mig else dev.gpu.uuid

    def nvmlDeviceGetSerial(self, handle: Any) -> str:
        """Board serial number."""
        return self._dev(handle, "nvmlDeviceGetSerial").gpu.serial

    def nvmlDeviceGetMinorNumber(self, handle: Any) -> int:
        """The /dev/nvidiaN number."""
        return self._dev(handle, "nvmlDeviceGetMinorNumber").gpu.minor_number

    def nvmlDeviceGetPciInfo_v3(self, handle: Any) -> Any:
        """PCI identity as pynvml's ``nvmlPciInfo_t``."""
        gpu = self._dev(handle, "nvmlDeviceGetPciInfo_v3").gpu
        info = pynvml.nvmlPciInfo_t()
        bus_id = gpu.pci_bus_id.encode()
        info.busId = bus_id
        info.busIdLegacy = bus_id[:16]
        info.domain = 0
        info.bus = int(gpu.pci_bus_id[9:11], 16)
        info.device = 0
        info.pciDeviceId = gpu.model.pci_device_id
        info.pciSubSystemId = gpu.model.pci_subsystem_id
        return info

    def nvmlDeviceGetPciInfo(self, handle: Any) -> Any:
        """Same as ``nvmlDeviceGetPciInfo_v3``."""
        return self.nvmlDeviceGetPciInfo_v3(handle)

    def nvmlDeviceGetArchitecture(self, device: Any) -> int:
        """``NVML_DEVICE_ARCH_*``."""
        return self._dev(device, "nvmlDeviceGetArchitecture").gpu.model.architecture

    def nvmlDeviceGetPersistenceMode(self, handle: Any) -> int:
        """Persistence mode is on, as on every managed GPU node."""
        self._dev(handle, "nvmlDeviceGetPersistenceMode")
        return int(pynvml.NVML_FEATURE_ENABLED)

    def nvmlDeviceGetPerformanceState(self, handle: Any) -> int:
        """P0 when busy, P8 when idle."""
        gpu = self._dev(handle, "nvmlDeviceGetPerformanceState").gpu
        return 0 if gpu.state.util_gpu > 1 else 8

    # --- gauges ----------------------------------------------------------------------------------

    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> Any:
        """GPU and memory utilisation in percent (``c_nvmlUtilization_t``); NotSupported on a MIG-enabled GPU,
        as NVML documents ("querying device utilization rates is not currently supported")."""
        gpu = self._dev(handle, "nvmlDeviceGetUtilizationRates").gpu
        if gpu.mig:
            raise pynvml.NVMLError_NotSupported()
        s = gpu.state
        return pynvml.c_nvmlUtilization_t(int(s.util_gpu + 0.5), int(s.util_mem + 0.5))

    def nvmlDeviceGetMemoryInfo(self, handle: Any, version: int | None = None) -> Any:
        """Framebuffer in bytes: ``c_nvmlMemory_t``, whose ``used`` counts the driver's reserved memory, or
        with ``version=nvmlMemory_v2`` a ``c_nvmlMemory_v2_t``, whose ``used`` leaves it to ``reserved``."""
        dev = self._dev(handle, "nvmlDeviceGetMemoryInfo", mig_ok=True)
        total = dev.mig.memory_total if dev.mig else dev.gpu.model.memory_total
        used = dev.gpu.state.fb_used
        if dev.mig:
            used = min(total, int(used * dev.mig.memory_total / dev.gpu.model.memory_total))
        if not version:
            return pynvml.c_nvmlMemory_t(total, total - used, used)
        if version != pynvml.nvmlMemory_v2:
            raise pynvml.NVMLError_ArgumentVersionMismatch()
        # Positional (version, total, reserved, free, used): pynvml's __setattr__ is a Python call per field.
        return pynvml.c_nvmlMemory_v2_t(
            version, total, RESERVED_FB_BYTES, total - used, max(0, used - RESERVED_FB_BYTES)
        )

    def nvmlDeviceGetEncoderUtilization(self, handle: Any) -> list[int]:
        """``[utilization %, sampling period us]`` of the video encoder: idle, no fleet workload encodes.
        NotSupported on a MIG-enabled GPU, as NVML documents ("querying encoder utilization is not currently
        supported"); answering 0 there served a utilisation the exporter says no MIG GPU has."""
        if self._dev(handle, "nvmlDeviceGetEncoderUtilization").gpu.mig:
            raise pynvml.NVMLError_NotSupported()
        return [0, VIDEO_SAMPLING_PERIOD_US]

    def nvmlDeviceGetDecoderUtilization(self, handle: Any) -> list[int]:
        """``[utilization %, sampling period us]`` of the video decoder: idle, as on the H200 we measured.
        NotSupported on a MIG-enabled GPU, like the encoder's and the GPU's utilisation (DCGM: "not supported
        for MIG configurations"; NVML's reference says so for those two, nothing for this one)."""
        if self._dev(handle, "nvmlDeviceGetDecoderUtilization").gpu.mig:
            raise pynvml.NVMLError_NotSupported()
        return [0, VIDEO_SAMPLING_PERIOD_US]

    def nvmlDeviceGetTemperature(self, handle: Any, sensor: int) -> int:
        """GPU temperature in C (``NVML_TEMPERATURE_GPU``)."""
        gpu = self._dev(handle, "nvmlDeviceGetTemperature").gpu
        if sensor != pynvml.NVML_TEMPERATURE_GPU:
            raise pynvml.NVMLError_InvalidArgument()
        return int(gpu.state.temp_c + 0.5)

    def nvmlDeviceGetPowerUsage(self, handle: Any) -> int:
        """Power draw in mW."""
        return int(self._dev(handle, "nvmlDeviceGetPowerUsage").gpu.state.power_mw)

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: Any) -> int:
        """Enforced power limit in mW."""
        return self._dev(handle, "nvmlDeviceGetEnforcedPowerLimit").gpu.model.power_limit_mw

    def nvmlDeviceGetPowerManagementLimit(self, handle: Any) -> int:
        """Configured power limit in mW."""
        return self._dev(handle, "nvmlDeviceGetPowerManagementLimit").gpu.model.power_limit_mw

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: Any) -> int:
        """Energy in mJ since the driver loaded (restarts after a GPU reset)."""
        return int(self._dev(handle, "nvmlDeviceGetTotalEnergyConsumption").gpu.state.energy_mj)

    def nvmlDeviceGetClockInfo(self, handle: Any, type: int) -> int:
        """Current clock in MHz for ``NVML_CLOCK_GRAPHICS/SM/MEM/VIDEO``."""
        gpu = self._dev(handle, "nvmlDeviceGetClockInfo").gpu
        s = gpu.state
        if type in (pynvml.NVML_CLOCK_SM, pynvml.NVML_CLOCK_GRAPHICS):
            return int(s.sm_clock)
        if type == pynvml.NVML_CLOCK_MEM:
            return int(s.mem_clock)
        if type == pynvml.NVML_CLOCK_VIDEO:
            return int(s.sm_clock * 0.89)
        raise pynvml.NVMLError_InvalidArgument()

    def nvmlDeviceGetMaxClockInfo(self, handle: Any, type: int) -> int:
        """Maximum clock in MHz."""
        model = self._dev(handle, "nvmlDeviceGetMaxClockInfo").gpu.model
        if type in (pynvml.NVML_CLOCK_SM, pynvml.NVML_CLOCK_GRAPHICS):
            return model.sm_clock_max
        if type == pynvml.NVML_CLOCK_MEM:
            return model.mem_clock_max
        if type == pynvml.NVML_CLOCK_VIDEO:
            return int(model.sm_clock_max * 0.89)
        raise pynvml.NVMLError_InvalidArgument()

    def nvmlDeviceGetPcieThroughput(self, device: Any, counter: int) -> int:
        """PCIe throughput in KB/s for ``NVML_PCIE_UTIL_TX_BYTES/RX_BYTES``."""
        s = self._dev(device, "nvmlDeviceGetPcieThroughput").gpu.state
        if counter == pynvml.NVML_PCIE_UTIL_TX_BYTES:
            return int(s.pcie_tx_kbs)
        if counter == pynvml.NVML_PCIE_UTIL_RX_BYTES:
            return int(s.pcie_rx_kbs)
        raise pynvml.NVMLError_InvalidArgument()

    def nvmlDeviceGetPcieReplayCounter(self, handle: Any) -> int:
        """PCIe replays since the driver loaded."""
        return self._dev(handle, "nvmlDeviceGetPcieReplayCounter").gpu.state.pcie_replay

    def nvmlDeviceGetFieldValues(self, handle: Any, fieldIds: Sequence[int | tuple[int, int]]) -> Any:
        """A ``c_nvmlFieldValue_t`` array; unsupported fields carry ``nvmlReturn = NOT_SUPPORTED``."""
        gpu = self._dev(handle, "nvmlDeviceGetFieldValues").gpu
        with self._fleet.state_lock:  # the stamp and every value from one step
            return fill_field_values(gpu, fieldIds, int(self._fleet.stepped_to * 1e6))

    # --- reliability -----------------------------------------------------------------------------

    def nvmlDeviceGetEccMode(self, handle: Any) -> list[int]:
        """``[current, pending]`` ECC mode: both enabled."""
        self._dev(handle, "nvmlDeviceGetEccMode")
        return [1, 1]

    def nvmlDeviceGetTotalEccErrors(self, handle: Any, errorType: int, counterType: int) -> int:
        """ECC error total for corrected/uncorrected x volatile/aggregate."""
        s = self._dev(handle, "nvmlDeviceGetTotalEccErrors").gpu.state
        table = {
            (pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED, pynvml.NVML_VOLATILE_ECC): s.ecc_sbe_vol,
            (pynvml.NVML_MEMORY_ERROR_TYPE_CORRECTED, pynvml.NVML_AGGREGATE_ECC): s.ecc_sbe_agg,
            (pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, pynvml.NVML_VOLATILE_ECC): s.ecc_dbe_vol,
            (pynvml.NVML_MEMORY_ERROR_TYPE_UNCORRECTED, pynvml.NVML_AGGREGATE_ECC): s.ecc_dbe_agg,
        }
        value = table.get((errorType, counterType))
        if value is None:
            raise pynvml.NVMLError_InvalidArgument()
        return value

    def nvmlDeviceGetRemappedRows(self, device: Any) -> tuple[int, int, int, int]:
        """``(corrRows, uncRows, isPending, failureOccurred)``; NotSupported before Ampere."""
        gpu = self._dev(device, "nvmlDeviceGetRemappedRows").gpu
        if gpu.model.retired_pages:
            raise pynvml.NVMLError_NotSupported()
        s = gpu.state
        return (s.remap_corr, s.remap_unc, s.remap_pending, s.remap_failure)

    def nvmlDeviceGetRetiredPages(self, device: Any, sourceFilter: int) -> list[int]:
        """Retired page addresses; NotSupported on Ampere and later (row remapping replaced it)."""
        gpu = self._dev(device, "nvmlDeviceGetRetiredPages").gpu
        if not gpu.model.retired_pages:
            raise pynvml.NVMLError_NotSupported()
        return []

    def nvmlDeviceGetRetiredPagesPendingStatus(self, device: Any) -> int:
        """Whether pages wait for retirement; NotSupported on Ampere and later."""
        gpu = self._dev(device, "nvmlDeviceGetRetiredPagesPendingStatus").gpu
        if not gpu.model.retired_pages:
            raise pynvml.NVMLError_NotSupported()
        return 0

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: Any) -> int:
        """Bitmask of ``nvmlClocksEventReason*``."""
        return self._dev(handle, "nvmlDeviceGetCurrentClocksEventReasons").gpu.state.clock_reasons

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: Any) -> int:
        """Old name of ``nvmlDeviceGetCurrentClocksEventReasons``."""
        return self._dev(handle, "nvmlDeviceGetCurrentClocksThrottleReasons").gpu.state.clock_reasons

    def nvmlDeviceGetSupportedClocksEventReasons(self, handle: Any) -> int:
        """Every reason bit the GPU can report."""
        self._dev(handle, "nvmlDeviceGetSupportedClocksEventReasons")
        return int(pynvml.nvmlClocksEventReasonAll)

    def nvmlDeviceGetSupportedClocksThrottleReasons(self, handle: Any) -> int:
        """Old name of ``nvmlDeviceGetSupportedClocksEventReasons``."""
        self._dev(handle, "nvmlDeviceGetSupportedClocksThrottleReasons")
        return int(pynvml.nvmlClocksThrottleReasonAll)

    def nvmlDeviceGetViolationStatus(self, device: Any, perfPolicyType: int) -> Any:
        """Time (ns) held back by a policy (power, thermal, low utilisation) as ``c_nvmlViolationTime_t``."""
        s = self._dev(device, "nvmlDeviceGetViolationStatus").gpu.state
        if not 0 <= perfPolicyType < pynvml.NVML_PERF_POLICY_COUNT:
            raise pynvml.NVMLError_InvalidArgument()
        with self._fleet.state_lock:  # the time and the stamp from one step
            if perfPolicyType == pynvml.NVML_PERF_POLICY_POWER:
                value = s.violation_power_ns
            elif perfPolicyType == pynvml.NVML_PERF_POLICY_THERMAL:
                value = s.violation_thermal_ns
            elif perfPolicyType == pynvml.NVML_PERF_POLICY_LOW_UTILIZATION:
                value = s.violation_low_util_ns
            else:
                value = 0
            stamp = int(self._fleet.stepped_to * 1e6)
        return pynvml.c_nvmlViolationTime_t(stamp, value)

    # --- NVLink ----------------------------------------------------------------------------------

    def nvmlDeviceGetNvLinkState(self, device: Any, link: int) -> int:
        """1 when the link is active, 0 when down."""
        gpu = self._dev(device, "nvmlDeviceGetNvLinkState").gpu
        if not 0 <= link < len(gpu.nvlink_up):
            raise pynvml.NVMLError_InvalidArgument()
        return 1 if gpu.nvlink_up[link] else 0

    def nvmlDeviceGetNvLinkErrorCounter(self, device: Any, link: int, counter: int) -> int:
        """``NVML_NVLINK_ERROR_DL_REPLAY/RECOVERY/CRC_FLIT/CRC_DATA/ECC_DATA`` count on one link."""
        gpu = self._dev(device, "nvmlDeviceGetNvLinkErrorCounter").gpu
        if not 0 <= link < len(gpu.nvlink_errors) or not 0 <= counter < 5:
            raise pynvml.NVMLError_InvalidArgument()
        return gpu.nvlink_errors[link][counter]

    # --- processes -------------------------------------------------------------------------------

    def nvmlDeviceGetComputeRunningProcesses_v3(self, handle: Any) -> list[Any]:
        """Compute processes as pynvml's friendly objects: ``pid``, ``usedGpuMemory`` (bytes), ids."""
        gpu = self._dev(handle, "nvmlDeviceGetComputeRunningProcesses_v3").gpu
        used = max(0, gpu.state.fb_used - RESERVED_FB_BYTES)
        # The object nvmlStructToFriendlyObject makes of c_nvmlProcessInfo_t(pid, used, NO_INSTANCE,
        # NO_INSTANCE), built from its numbers directly: each struct member read back went through pynvml's
        # Python-level __getattribute__, once per GPU per collection.
        return [
            pynvml.nvmlFriendlyObject(
                dict(zip(_PROCESS_FIELDS, (pid, used, NO_INSTANCE, NO_INSTANCE), strict=True))
            )
            for pid in gpu.pids
        ]

    def nvmlDeviceGetComputeRunningProcesses_v2(self, handle: Any) -> list[Any]:
        """Same as ``_v3``."""
        return self.nvmlDeviceGetComputeRunningProcesses_v3(handle)

    def nvmlDeviceGetComputeRunningProcesses(self, handle: Any) -> list[Any]:
        """Same as ``_v3``."""
        return self.nvmlDeviceGetComputeRunningProcesses_v3(handle)

    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: Any) -> list[Any]:
        """No graphics processes on a compute node."""
        self._dev(handle, "nvmlDeviceGetGraphicsRunningProcesses")
        return []

    # --- MIG -------------------------------------------------------------------------------------

    def nvmlDeviceGetMigMode(self, device: Any) -> list[int]:
        """``[current, pending]`` MIG mode; NotSupported on GPUs without MIG."""
        gpu = self._dev(device, "nvmlDeviceGetMigMode").gpu
        if gpu.model.architecture < pynvml.NVML_DEVICE_ARCH_AMPERE:
            raise pynvml.NVMLError_NotSupported()
        mode = pynvml.NVML_DEVICE_MIG_ENABLE if gpu.mig else pynvml.NVML_DEVICE_MIG_DISABLE
        return [mode, mode]

    def nvmlDeviceGetMaxMigDeviceCount(self, device: Any) -> int:
        """How many MIG devices the GPU can hold."""
        gpu = self._dev(device, "nvmlDeviceGetMaxMigDeviceCount").gpu
        if gpu.model.architecture < pynvml.NVML_DEVICE_ARCH_AMPERE:
            raise pynvml.NVMLError_NotSupported()
        return MAX_MIG_DEVICES

    def nvmlDeviceGetMigDeviceHandleByIndex(self, device: Any, index: int) -> Any:
        """The handle of MIG device ``index``; NotFound for an empty slot."""
        gpu = self._dev(device, "nvmlDeviceGetMigDeviceHandleByIndex").gpu
        if not gpu.mig:
            raise pynvml.NVMLError_InvalidArgument()
        devices = self._mig[gpu.index]
        if not 0 <= index < MAX_MIG_DEVICES:
            raise pynvml.NVMLError_InvalidArgument()
        if index >= len(devices):
            raise pynvml.NVMLError_NotFound()
        return devices[index].handle

    def nvmlDeviceIsMigDeviceHandle(self, device: Any) -> Any:
        """``c_uint`` 1 for a MIG handle (pynvml returns the ctypes value)."""
        dev = self._dev(device, "nvmlDeviceIsMigDeviceHandle", mig_ok=True)
        return ctypes.c_uint(1 if dev.mig else 0)

    def nvmlDeviceGetGpuInstanceId(self, device: Any) -> int:
        """GPU instance id of a MIG handle."""
        dev = self._dev(device, "nvmlDeviceGetGpuInstanceId", mig_ok=True)
        if dev.mig is None:
            raise pynvml.NVMLError_InvalidArgument()
        return dev.mig.gpu_instance_id

    def nvmlDeviceGetComputeInstanceId(self, device: Any) -> int:
        """Compute instance id of a MIG handle."""
        dev = self._dev(device, "nvmlDeviceGetComputeInstanceId", mig_ok=True)
        if dev.mig is None:
            raise pynvml.NVMLError_InvalidArgument()
        return dev.mig.compute_instance_id

    def nvmlDeviceGetDeviceHandleFromMigDeviceHandle(self, migDevice: Any) -> Any:
        """The parent GPU's handle."""
        dev = self._dev(migDevice, "nvmlDeviceGetDeviceHandleFromMigDeviceHandle", mig_ok=True)
        if dev.mig is None:
            raise pynvml.NVMLError_InvalidArgument()
        return dev.parent
