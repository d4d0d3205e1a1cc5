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
import itertools
import threading
from dataclasses import dataclass
from typing import Any

import pynvml

from gpuwarden.errors import InputError
from gpuwarden.sim.dynamics import RESERVED_FB_BYTES
from gpuwarden.sim.events import EventQueue
from gpuwarden.sim.fields import fill_field_values, gpm_snapshot, gpm_value
from gpuwarden.sim.fleet import STEP_SECONDS, Fleet
from gpuwarden.sim.topology import MAX_MIG_DEVICES, MigDevice, SimGpu, SimNode

DRIVER_VERSION = "550.90.07"
NVML_VERSION = "12.550.90.07"
CUDA_DRIVER_VERSION = 12040
SUPPORTED_EVENTS = 0x1 | 0x2 | 0x4 | 0x8 | 0x10  # SBE, DBE, PState, Xid, Clock
_NO_INSTANCE = 0xFFFFFFFF
# Names in pynvml that start with ``nvml`` but are helpers, not library calls.
_PYNVML_HELPERS = frozenset(
    {"nvmlExceptionClass", "nvmlStructToFriendlyObject", "nvmlFriendlyObject", "nvmlFriendlyObjectToStruct"}
)
_addresses = itertools.count(0x5151_0000_0000, 0x10)  # fake, never dereferenced handle addresses


def _pointer(kind: Any) -> Any:
    return ctypes.cast(ctypes.c_void_p(next(_addresses)), kind)


def _address(pointer: Any) -> int | None:
    try:
        return ctypes.cast(pointer, ctypes.c_void_p).value
    except (TypeError, ctypes.ArgumentError):
        return None


@dataclass(slots=True)
class _Device:
    gpu: SimGpu
    handle: Any
    mig: MigDevice | None = None
    parent: Any = None


@dataclass(slots=True)
class _Failure:
    error: type[Exception]
    gpu_index: int | None
    remaining: int | None


class SimNvml:
    """The pynvml API, served from one node of a simulated ``Fleet``."""

    def __init__(self, fleet: Fleet, node_name: str) -> None:
        self._fleet = fleet
        self._node: SimNode = fleet.node(node_name)
        self.node_name = node_name
        self._init_count = 0
        self._by_id: dict[int, _Device] = {}
        self._by_addr: dict[int, _Device] = {}
        self._devices: list[_Device] = []
        self._mig: dict[int, list[_Device]] = {}
        for gpu in self._node.gpus:
            dev = self._register(_Device(gpu, _pointer(pynvml.c_nvmlDevice_t)))
            self._devices.append(dev)
            self._mig[gpu.index] = [
                self._register(_Device(gpu, _pointer(pynvml.c_nvmlDevice_t), mig, dev.handle))
                for mig in gpu.mig
            ]
        self._event_sets: dict[int, EventQueue] = {}
        self._gpm_samples: dict[int, tuple[_Device, float, dict[str, float]] | None] = {}
        self._failures: dict[str, list[_Failure]] = {}
        self._hangs: dict[str, float] = {}
        self._release = threading.Event()

    def _register(self, dev: _Device) -> _Device:
        self._by_id[id(dev.handle)] = dev
        address = _address(dev.handle)
        if address is not None:
            self._by_addr[address] = dev
        return dev

    # --- test controls ---------------------------------------------------------------------------

    def fail(
        self,
        function_name: str,
        error_class: type[Exception],
        gpu_index: int | None = None,
        times: int | None = None,
    ) -> None:
        """Make ``function_name`` raise ``error_class`` (one GPU or all), ``times`` times or until cleared."""
        if not callable(getattr(type(self), function_name, None)):
            raise InputError(f"SimNvml has no function {function_name!r}", field="function_name")
        self._failures.setdefault(function_name, []).append(_Failure(error_class, gpu_index, times))

    def hang(self, function_name: str, seconds: float) -> None:
        """Make ``function_name`` block for ``seconds`` real seconds (or until ``release_hangs``)."""
        if not callable(getattr(type(self), function_name, None)):
            raise InputError(f"SimNvml has no function {function_name!r}", field="function_name")
        self._release.clear()
        self._hangs[function_name] = seconds

    def release_hangs(self) -> None:
        """Wake every call blocked by ``hang`` and stop hanging."""
        self._hangs.clear()
        self._release.set()

    def clear_failures(self) -> None:
        """Undo every ``fail`` and ``hang``."""
        self._failures.clear()
        self.release_hangs()

    def _hook(self, name: str, gpu_index: int | None) -> None:
        seconds = self._hangs.get(name)
        if seconds:
            self._release.wait(seconds)
        for failure in self._failures.get(name, ()):
            if failure.gpu_index is not None and failure.gpu_index != gpu_index:
                continue
            if failure.remaining is not None:
                if failure.remaining <= 0:
                    continue
                failure.remaining -= 1
            raise failure.error()

    # --- plumbing --------------------------------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        """pynvml's constants, structs and exception classes; unimplemented calls raise FunctionNotFound."""
        value = getattr(pynvml, name)
        if name.startswith("nvml") and callable(value) and name not in _PYNVML_HELPERS:

            def not_found(*_args: Any, **_kwargs: Any) -> Any:
                raise pynvml.NVMLError_FunctionNotFound()

            return not_found
        return value

    def _check(self, name: str, gpu_index: int | None = None) -> None:
        if self._failures or self._hangs:
            self._hook(name, gpu_index)
        if self._init_count <= 0:
            raise pynvml.NVMLError_Uninitialized()
        if not self._node.up:
            raise pynvml.NVMLError_Unknown()
        fleet = self._fleet
        if fleet.clock.time() - fleet._t >= STEP_SECONDS:
            fleet.advance()

    def _dev(self, handle: Any, name: str, *, mig_ok: bool = False) -> _Device:
        dev = self._by_id.get(id(handle))
        if dev is None:
            address = _address(handle)
            dev = self._by_addr.get(address) if address is not None else None
            if dev is None:
                raise pynvml.NVMLError_InvalidArgument()
        self._check(name, dev.gpu.index)
        if dev.gpu.lost:
            raise pynvml.NVMLError_GpuIsLost()
        if dev.mig is not None and not mig_ok:
            raise pynvml.NVMLError_NotSupported()
        return dev

    def _gpu(self, handle: Any, name: str) -> SimGpu:
        return self._dev(handle, name).gpu

    # --- lifecycle and system --------------------------------------------------------------------

    def nvmlInitWithFlags(self, flags: int) -> None:
        """Initialise (reference counted, like NVML)."""
        if self._failures or self._hangs:
            self._hook("nvmlInitWithFlags", None)
        if not self._node.up:
            raise pynvml.NVMLError_DriverNotLoaded()
        self._init_count += 1

    def nvmlInit(self) -> None:
        """Initialise with no flags."""
        if self._failures or self._hangs:
            self._hook("nvmlInit", None)
        self.nvmlInitWithFlags(0)

    def nvmlShutdown(self) -> None:
        """Drop one reference; the last one closes every event set."""
        if self._init_count <= 0:
            raise pynvml.NVMLError_Uninitialized()
        self._init_count -= 1
        if self._init_count == 0:
            for queue in self._event_sets.values():
                self._fleet.unsubscribe(queue)
                queue.close()
            self._event_sets.clear()

    def nvmlErrorString(self, result: int) -> str:
        """The message of an NVML return code."""
        return str(pynvml.NVMLError(result))

    def nvmlSystemGetDriverVersion(self) -> str:
        """The simulated driver version."""
        self._check("nvmlSystemGetDriverVersion")
        return DRIVER_VERSION

    def nvmlSystemGetNVMLVersion(self) -> str:
        """The simulated NVML version."""
        self._check("nvmlSystemGetNVMLVersion")
        return NVML_VERSION

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        """CUDA driver version as NVML encodes it (12040 = 12.4)."""
        self._check("nvmlSystemGetCudaDriverVersion")
        return CUDA_DRIVER_VERSION

    def nvmlSystemGetCudaDriverVersion_v2(self) -> int:
        """Same as ``nvmlSystemGetCudaDriverVersion``."""
        return self.nvmlSystemGetCudaDriverVersion()

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
            if (dev.mig.uuid if dev.mig else dev.gpu.uuid) == text:
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
        """The GPU's index."""
        return self._dev(handle, "nvmlDeviceGetIndex", mig_ok=True).gpu.index

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
        return self._gpu(handle, "nvmlDeviceGetSerial").serial

    def nvmlDeviceGetMinorNumber(self, handle: Any) -> int:
        """The /dev/nvidiaN number."""
        return self._gpu(handle, "nvmlDeviceGetMinorNumber").minor_number

    def nvmlDeviceGetPciInfo_v3(self, handle: Any) -> Any:
        """PCI identity as pynvml's ``nvmlPciInfo_t``."""
        gpu = self._gpu(handle, "nvmlDeviceGetPciInfo_v3")
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
        return self._gpu(device, "nvmlDeviceGetArchitecture").model.architecture

    def nvmlDeviceGetPersistenceMode(self, handle: Any) -> int:
        """Persistence mode is on, as on every managed GPU node."""
        self._gpu(handle, "nvmlDeviceGetPersistenceMode")
        return int(pynvml.NVML_FEATURE_ENABLED)

    def nvmlDeviceGetPerformanceState(self, handle: Any) -> int:
        """P0 when busy, P8 when idle."""
        gpu = self._gpu(handle, "nvmlDeviceGetPerformanceState")
        return 0 if gpu.state.util_gpu > 1 else 8

    # --- gauges ----------------------------------------------------------------------------------

    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> Any:
        """GPU and memory utilisation in percent (``c_nvmlUtilization_t``)."""
        s = self._gpu(handle, "nvmlDeviceGetUtilizationRates").state
        return pynvml.c_nvmlUtilization_t(int(s.util_gpu + 0.5), int(s.util_mem + 0.5))

    def nvmlDeviceGetMemoryInfo(self, handle: Any, version: int | None = None) -> Any:
        """Framebuffer total/free/used in bytes (``c_nvmlMemory_t``, or ``_v2_t`` with ``version``)."""
        dev = self._dev(handle, "nvmlDeviceGetMemoryInfo", mig_ok=True)
        total = dev.mig.memory_total if dev.mig else dev.gpu.model.memory_total
        used = dev.gpu.state.fb_used
        if dev.mig:
            used = min(total, int(used * dev.mig.memory_total / dev.gpu.model.memory_total))
        if not version:
            return pynvml.c_nvmlMemory_t(total, total - used, used)
        memory = pynvml.c_nvmlMemory_v2_t()
        memory.version = version
        memory.total = total
        memory.reserved = RESERVED_FB_BYTES
        memory.used = max(0, used - RESERVED_FB_BYTES)
        memory.free = total - used
        return memory

    def nvmlDeviceGetTemperature(self, handle: Any, sensor: int) -> int:
        """GPU temperature in C (``NVML_TEMPERATURE_GPU``)."""
        gpu = self._gpu(handle, "nvmlDeviceGetTemperature")
        if sensor != pynvml.NVML_TEMPERATURE_GPU:
            raise pynvml.NVMLError_InvalidArgument()
        return int(gpu.state.temp_c + 0.5)

    def nvmlDeviceGetPowerUsage(self, handle: Any) -> int:
        """Power draw in mW."""
        return int(self._gpu(handle, "nvmlDeviceGetPowerUsage").state.power_mw)

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: Any) -> int:
        """Enforced power limit in mW."""
        return self._gpu(handle, "nvmlDeviceGetEnforcedPowerLimit").model.power_limit_mw

    def nvmlDeviceGetPowerManagementLimit(self, handle: Any) -> int:
        """Configured power limit in mW."""
        return self._gpu(handle, "nvmlDeviceGetPowerManagementLimit").model.power_limit_mw

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: Any) -> int:
        """Energy in mJ since the driver loaded (restarts after a GPU reset)."""
        return int(self._gpu(handle, "nvmlDeviceGetTotalEnergyConsumption").state.energy_mj)

    def nvmlDeviceGetClockInfo(self, handle: Any, type: int) -> int:
        """Current clock in MHz for ``NVML_CLOCK_GRAPHICS/SM/MEM/VIDEO``."""
        gpu = self._gpu(handle, "nvmlDeviceGetClockInfo")
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
        model = self._gpu(handle, "nvmlDeviceGetMaxClockInfo").model
        if type in (pynvml.NVML_CLOCK_SM, pynvml.NVML_CLOCK_GRAPHICS):
            return model.sm_clock_max
        if type == pynvml.NVML_CLOCK_MEM:
            return model.mem_clock_max
        if type == pynvml.NVML_CLOCK_VIDEO:
            return int(model.sm_clock_max * 0.89)
        raise pynvml.NVMLError_InvalidArgument()

    def nvmlDeviceGetPcieThroughput(self, device: Any, counter: int) -> int:
        """PCIe throughput in KB/s for ``NVML_PCIE_UTIL_TX_BYTES/RX_BYTES``."""
        s = self._gpu(device, "nvmlDeviceGetPcieThroughput").state
        if counter == pynvml.NVML_PCIE_UTIL_TX_BYTES:
            return int(s.pcie_tx_kbs)
        if counter == pynvml.NVML_PCIE_UTIL_RX_BYTES:
            return int(s.pcie_rx_kbs)
        raise pynvml.NVMLError_InvalidArgument()

    def nvmlDeviceGetPcieReplayCounter(self, handle: Any) -> int:
        """PCIe replays since the driver loaded."""
        return self._gpu(handle, "nvmlDeviceGetPcieReplayCounter").state.pcie_replay

    def nvmlDeviceGetFieldValues(self, handle: Any, fieldIds: list[int]) -> Any:
        """A ``c_nvmlFieldValue_t`` array; unsupported fields carry ``nvmlReturn = NOT_SUPPORTED``."""
        gpu = self._gpu(handle, "nvmlDeviceGetFieldValues")
        return fill_field_values(gpu, fieldIds, int(self._fleet.clock.time() * 1e6))

    # --- reliability -----------------------------------------------------------------------------

    def nvmlDeviceGetEccMode(self, handle: Any) -> list[int]:
        """``[current, pending]`` ECC mode: both enabled."""
        self._gpu(handle, "nvmlDeviceGetEccMode")
        return [1, 1]

    def nvmlDeviceGetTotalEccErrors(self, handle: Any, errorType: int, counterType: int) -> int:
        """ECC error total for corrected/uncorrected x volatile/aggregate."""
        s = self._gpu(handle, "nvmlDeviceGetTotalEccErrors").state
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
        gpu = self._gpu(device, "nvmlDeviceGetRemappedRows")
        if gpu.model.retired_pages:
            raise pynvml.NVMLError_NotSupported()
        s = gpu.state
        return (s.remap_corr, s.remap_unc, s.remap_pending, s.remap_failure)

    def nvmlDeviceGetRetiredPages(self, device: Any, sourceFilter: int) -> list[int]:
        """Retired page addresses; NotSupported on Ampere and later (row remapping replaced it)."""
        gpu = self._gpu(device, "nvmlDeviceGetRetiredPages")
        if not gpu.model.retired_pages:
            raise pynvml.NVMLError_NotSupported()
        return []

    def nvmlDeviceGetRetiredPagesPendingStatus(self, device: Any) -> int:
        """Whether pages wait for retirement; NotSupported on Ampere and later."""
        gpu = self._gpu(device, "nvmlDeviceGetRetiredPagesPendingStatus")
        if not gpu.model.retired_pages:
            raise pynvml.NVMLError_NotSupported()
        return 0

    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: Any) -> int:
        """Bitmask of ``nvmlClocksEventReason*``."""
        return self._gpu(handle, "nvmlDeviceGetCurrentClocksEventReasons").state.clock_reasons

    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: Any) -> int:
        """Old name of ``nvmlDeviceGetCurrentClocksEventReasons``."""
        return self._gpu(handle, "nvmlDeviceGetCurrentClocksThrottleReasons").state.clock_reasons

    def nvmlDeviceGetSupportedClocksEventReasons(self, handle: Any) -> int:
        """Every reason bit the GPU can report."""
        self._gpu(handle, "nvmlDeviceGetSupportedClocksEventReasons")
        return int(pynvml.nvmlClocksEventReasonAll)

    def nvmlDeviceGetSupportedClocksThrottleReasons(self, handle: Any) -> int:
        """Old name of ``nvmlDeviceGetSupportedClocksEventReasons``."""
        self._gpu(handle, "nvmlDeviceGetSupportedClocksThrottleReasons")
        return int(pynvml.nvmlClocksThrottleReasonAll)

    def nvmlDeviceGetViolationStatus(self, device: Any, perfPolicyType: int) -> Any:
        """Time (ns) spent throttled for power or thermal reasons (``c_nvmlViolationTime_t``)."""
        s = self._gpu(device, "nvmlDeviceGetViolationStatus").state
        if perfPolicyType == pynvml.NVML_PERF_POLICY_POWER:
            value = s.violation_power_ns
        elif perfPolicyType == pynvml.NVML_PERF_POLICY_THERMAL:
            value = s.violation_thermal_ns
        elif 0 <= perfPolicyType < pynvml.NVML_PERF_POLICY_COUNT:
            value = 0
        else:
            raise pynvml.NVMLError_InvalidArgument()
        return pynvml.c_nvmlViolationTime_t(int(self._fleet.clock.time() * 1e6), value)

    # --- NVLink ----------------------------------------------------------------------------------

    def nvmlDeviceGetNvLinkState(self, device: Any, link: int) -> int:
        """1 when the link is active, 0 when down."""
        gpu = self._gpu(device, "nvmlDeviceGetNvLinkState")
        if not 0 <= link < len(gpu.nvlink_up):
            raise pynvml.NVMLError_InvalidArgument()
        return 1 if gpu.nvlink_up[link] else 0

    def nvmlDeviceGetNvLinkErrorCounter(self, device: Any, link: int, counter: int) -> int:
        """``NVML_NVLINK_ERROR_DL_REPLAY/RECOVERY/CRC_FLIT/CRC_DATA/ECC_DATA`` count on one link."""
        gpu = self._gpu(device, "nvmlDeviceGetNvLinkErrorCounter")
        if not 0 <= link < len(gpu.nvlink_errors) or not 0 <= counter < 5:
            raise pynvml.NVMLError_InvalidArgument()
        return gpu.nvlink_errors[link][counter]

    # --- processes -------------------------------------------------------------------------------

    def nvmlDeviceGetComputeRunningProcesses_v3(self, handle: Any) -> list[Any]:
        """Compute processes as pynvml's friendly objects: ``pid``, ``usedGpuMemory`` (bytes), ids."""
        gpu = self._gpu(handle, "nvmlDeviceGetComputeRunningProcesses_v3")
        used = max(0, gpu.state.fb_used - RESERVED_FB_BYTES)
        return [
            pynvml.nvmlStructToFriendlyObject(
                pynvml.c_nvmlProcessInfo_t(pid, used, _NO_INSTANCE, _NO_INSTANCE)
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
        self._gpu(handle, "nvmlDeviceGetGraphicsRunningProcesses")
        return []

    # --- MIG -------------------------------------------------------------------------------------

    def nvmlDeviceGetMigMode(self, device: Any) -> list[int]:
        """``[current, pending]`` MIG mode; NotSupported on GPUs without MIG."""
        gpu = self._gpu(device, "nvmlDeviceGetMigMode")
        if gpu.model.architecture < pynvml.NVML_DEVICE_ARCH_AMPERE:
            raise pynvml.NVMLError_NotSupported()
        mode = pynvml.NVML_DEVICE_MIG_ENABLE if gpu.mig else pynvml.NVML_DEVICE_MIG_DISABLE
        return [mode, mode]

    def nvmlDeviceGetMaxMigDeviceCount(self, device: Any) -> int:
        """How many MIG devices the GPU can hold."""
        gpu = self._gpu(device, "nvmlDeviceGetMaxMigDeviceCount")
        if gpu.model.architecture < pynvml.NVML_DEVICE_ARCH_AMPERE:
            raise pynvml.NVMLError_NotSupported()
        return MAX_MIG_DEVICES

    def nvmlDeviceGetMigDeviceHandleByIndex(self, device: Any, index: int) -> Any:
        """The handle of MIG device ``index``; NotFound for an empty slot."""
        gpu = self._gpu(device, "nvmlDeviceGetMigDeviceHandleByIndex")
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

    # --- GPM -------------------------------------------------------------------------------------

    def nvmlGpmQueryDeviceSupport(self, device: Any) -> Any:
        """``c_nvmlGpmSupport_t``; supported on Hopper and later."""
        gpu = self._gpu(device, "nvmlGpmQueryDeviceSupport")
        support = pynvml.c_nvmlGpmSupport_t()
        support.version = pynvml.NVML_GPM_SUPPORT_VERSION
        support.isSupportedDevice = 1 if gpu.model.gpm else 0
        return support

    def nvmlGpmSampleAlloc(self) -> Any:
        """A new, empty GPM sample."""
        self._check("nvmlGpmSampleAlloc")
        sample = _pointer(pynvml.c_nvmlGpmSample_t)
        address = _address(sample)
        assert address is not None
        self._gpm_samples[address] = None
        return sample

    def nvmlGpmSampleFree(self, gpmSample: Any) -> None:
        """Release a sample."""
        self._check("nvmlGpmSampleFree")
        if self._gpm_samples.pop(_address(gpmSample) or 0, 0) == 0:
            raise pynvml.NVMLError_InvalidArgument()

    def nvmlGpmSampleGet(self, device: Any, gpmSample: Any) -> Any:
        """Record the GPU's activity counters into ``gpmSample``."""
        dev = self._dev(device, "nvmlGpmSampleGet", mig_ok=True)
        return self._gpm_take(dev, gpmSample)

    def nvmlGpmMigSampleGet(self, device: Any, gpuInstanceId: int, gpmSample: Any) -> Any:
        """Record one MIG instance's counters (the parent's, in this simulator)."""
        dev = self._dev(device, "nvmlGpmMigSampleGet")
        if not any(m.gpu_instance_id == gpuInstanceId for m in dev.gpu.mig):
            raise pynvml.NVMLError_InvalidArgument()
        return self._gpm_take(dev, gpmSample)

    def _gpm_take(self, dev: _Device, sample: Any) -> Any:
        if not dev.gpu.model.gpm:
            raise pynvml.NVMLError_NotSupported()
        address = _address(sample)
        if address is None or address not in self._gpm_samples:
            raise pynvml.NVMLError_InvalidArgument()
        self._gpm_samples[address] = (dev, self._fleet.clock.time(), gpm_snapshot(dev.gpu.state))
        return sample

    def nvmlGpmMetricsGet(self, metricsGet: Any) -> Any:
        """Fill ``c_nvmlGpmMetricsGet_t.metrics[i].value`` (percent) from ``sample1`` and ``sample2``."""
        self._check("nvmlGpmMetricsGet")
        if metricsGet.version != pynvml.NVML_GPM_METRICS_GET_VERSION:
            raise pynvml.NVMLError_ArgumentVersionMismatch()
        if metricsGet.numMetrics > pynvml.NVML_GPM_METRIC_MAX:
            raise pynvml.NVMLError_InvalidArgument()
        first = self._gpm_samples.get(_address(metricsGet.sample1) or 0)
        second = self._gpm_samples.get(_address(metricsGet.sample2) or 0)
        if first is None or second is None or first[0] is not second[0]:
            raise pynvml.NVMLError_InvalidArgument()
        dev = second[0]
        if dev.gpu.lost:
            raise pynvml.NVMLError_GpuIsLost()
        for i in range(metricsGet.numMetrics):
            metric = metricsGet.metrics[i]
            value = gpm_value(metric.metricId, first[1:], second[1:], dev.gpu.state, 1.0)
            if value is None:
                metric.nvmlReturn = pynvml.NVML_ERROR_NOT_SUPPORTED
            else:
                metric.nvmlReturn = pynvml.NVML_SUCCESS
                metric.value = value
        return metricsGet

    # --- events ----------------------------------------------------------------------------------

    def nvmlEventSetCreate(self) -> Any:
        """A new event set."""
        self._check("nvmlEventSetCreate")
        event_set = _pointer(pynvml.c_nvmlEventSet_t)
        self._event_sets[_address(event_set) or 0] = EventQueue()
        return event_set

    def _queue(self, eventSet: Any) -> EventQueue:
        queue = self._event_sets.get(_address(eventSet) or 0)
        if queue is None:
            raise pynvml.NVMLError_InvalidArgument()
        return queue

    def nvmlDeviceGetSupportedEventTypes(self, handle: Any) -> int:
        """Event types this GPU can deliver."""
        self._gpu(handle, "nvmlDeviceGetSupportedEventTypes")
        return SUPPORTED_EVENTS

    def nvmlDeviceRegisterEvents(self, handle: Any, eventTypes: int, eventSet: Any) -> None:
        """Deliver this GPU's events of ``eventTypes`` to ``eventSet`` from now on."""
        gpu = self._gpu(handle, "nvmlDeviceRegisterEvents")
        if eventTypes & ~SUPPORTED_EVENTS:
            raise pynvml.NVMLError_NotSupported()
        self._fleet.subscribe(gpu.node, gpu.index, self._queue(eventSet), eventTypes)

    def nvmlEventSetWait_v2(self, eventSet: Any, timeoutms: int) -> Any:
        """Block up to ``timeoutms`` real milliseconds for the next event; NVMLError_Timeout if none."""
        self._check("nvmlEventSetWait_v2")
        queue = self._queue(eventSet)
        event = queue.get(max(0, timeoutms) / 1000.0)
        if event is None:
            raise pynvml.NVMLError_Timeout()
        data = pynvml.c_nvmlEventData_t()
        if event.node == self.node_name and 0 <= event.index < len(self._devices):
            data.device = self._devices[event.index].handle
        data.eventType = event.event_type
        data.eventData = event.data
        data.gpuInstanceId = _NO_INSTANCE
        data.computeInstanceId = _NO_INSTANCE
        return data

    def nvmlEventSetWait(self, eventSet: Any, timeoutms: int) -> Any:
        """Same as ``nvmlEventSetWait_v2``."""
        return self.nvmlEventSetWait_v2(eventSet, timeoutms)

    def nvmlEventSetFree(self, eventSet: Any) -> None:
        """Release an event set and wake its waiters."""
        self._check("nvmlEventSetFree")
        queue = self._event_sets.pop(_address(eventSet) or 0, None)
        if queue is None:
            raise pynvml.NVMLError_InvalidArgument()
        self._fleet.unsubscribe(queue)
        queue.close()
