"""Plumbing of ``SimNvml``: handles, init/shutdown, system calls and the test controls (fail, hang)."""

from __future__ import annotations

import ctypes
import itertools
import threading
from dataclasses import dataclass
from typing import Any

import pynvml

from gpuwarden.errors import InputError
from gpuwarden.sim.events import EventQueue
from gpuwarden.sim.fleet import STEP_SECONDS, Fleet
from gpuwarden.sim.topology import MigDevice, SimGpu, SimNode

DRIVER_VERSION = "550.90.07"
NVML_VERSION = "12.550.90.07"
CUDA_DRIVER_VERSION = 12040
SUPPORTED_EVENTS = 0x1 | 0x2 | 0x4 | 0x8 | 0x10  # SBE, DBE, PState, Xid, Clock
NO_INSTANCE = 0xFFFFFFFF
# Names in pynvml that start with ``nvml`` but are helpers, not library calls.
_PYNVML_HELPERS = frozenset(
    {"nvmlExceptionClass", "nvmlStructToFriendlyObject", "nvmlFriendlyObject", "nvmlFriendlyObjectToStruct"}
)
# Calls that pynvml implements by calling another one: a failure or hang set on either hits both.
ALIASES = {
    "nvmlInit": "nvmlInitWithFlags",
    "nvmlSystemGetCudaDriverVersion_v2": "nvmlSystemGetCudaDriverVersion",
    "nvmlDeviceGetPciInfo": "nvmlDeviceGetPciInfo_v3",
    "nvmlDeviceGetComputeRunningProcesses": "nvmlDeviceGetComputeRunningProcesses_v3",
    "nvmlDeviceGetComputeRunningProcesses_v2": "nvmlDeviceGetComputeRunningProcesses_v3",
    "nvmlEventSetWait": "nvmlEventSetWait_v2",
}
_addresses = itertools.count(0x5151_0000_0000, 0x10)  # fake, never dereferenced handle addresses


def fake_pointer(kind: Any) -> Any:
    """A ctypes pointer of ``kind`` with a unique address that nobody dereferences: an opaque handle."""
    return ctypes.cast(ctypes.c_void_p(next(_addresses)), kind)


def pointer_address(pointer: Any) -> int | None:
    """The address a ctypes pointer holds, or ``None`` for something that is not a pointer."""
    try:
        return ctypes.cast(pointer, ctypes.c_void_p).value
    except (TypeError, ctypes.ArgumentError):
        return None


@dataclass(slots=True)
class DeviceEntry:
    """What a device handle stands for: a GPU, or one MIG instance of it."""

    gpu: SimGpu
    handle: Any
    mig: MigDevice | None = None
    parent: Any = None
    stale: bool = False  # replaced by ``SimNvml.rescan``: answers GpuIsLost


@dataclass(slots=True)
class FailureRule:
    """One ``SimNvml.fail`` rule."""

    error: type[Exception]
    gpu_index: int | None
    remaining: int | None


class NvmlBase:
    """Handles, lifecycle and test controls shared by every group of simulated NVML calls."""

    """The pynvml API, served from one node of a simulated ``Fleet``."""

    def __init__(self, fleet: Fleet, node_name: str) -> None:
        self._fleet = fleet
        self._node: SimNode = fleet.node(node_name)
        self.node_name = node_name
        self._init_count = 0
        self._by_id: dict[int, DeviceEntry] = {}
        self._by_addr: dict[int, DeviceEntry] = {}
        self._devices: list[DeviceEntry] = []
        self._mig: dict[int, list[DeviceEntry]] = {}
        for gpu in self._node.gpus:
            dev = self._register(DeviceEntry(gpu, fake_pointer(pynvml.c_nvmlDevice_t)))
            self._devices.append(dev)
            self._mig[gpu.index] = [
                self._register(DeviceEntry(gpu, fake_pointer(pynvml.c_nvmlDevice_t), mig, dev.handle))
                for mig in gpu.mig
            ]
        self._event_sets: dict[int, EventQueue] = {}
        self._gpm_samples: dict[int, tuple[DeviceEntry, float, dict[str, float]] | None] = {}
        self._failures: dict[str, list[FailureRule]] = {}
        self._hangs: dict[str, float] = {}
        self._release = threading.Event()

    def _register(self, dev: DeviceEntry) -> DeviceEntry:
        self._by_id[id(dev.handle)] = dev
        address = pointer_address(dev.handle)
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
        function_name = ALIASES.get(function_name, function_name)
        self._failures.setdefault(function_name, []).append(FailureRule(error_class, gpu_index, times))

    def reconfigure_mig(self, gpu_index: int, instances: list[MigDevice]) -> None:
        """Replace GPU ``gpu_index``'s MIG instances while running (``nvidia-smi mig -dgi``/``-cgi``): the
        old instances' handles stop answering, the new ones get new handles."""
        gpu = self._devices[gpu_index].gpu
        for dev in self._mig[gpu_index]:
            self._by_id.pop(id(dev.handle), None)
            address = pointer_address(dev.handle)
            if address is not None:
                self._by_addr.pop(address, None)
        gpu.mig = list(instances)
        parent = self._devices[gpu_index].handle
        self._mig[gpu_index] = [
            self._register(DeviceEntry(gpu, fake_pointer(pynvml.c_nvmlDevice_t), mig, parent))
            for mig in gpu.mig
        ]

    def rescan(self, gpu_index: int) -> Any:
        """Stand for a PCI rescan (or ``nvmlDeviceDiscoverGpus``) that brings GPU ``gpu_index`` back after it
        fell off the bus: it answers under a new handle, which it returns ("all device handles are no longer
        guaranteed to be valid post discovery"); the old one answers GpuIsLost, and the event sets it was
        registered on get its events no more."""
        old = self._devices[gpu_index]
        old.stale = True
        new = self._register(DeviceEntry(old.gpu, fake_pointer(pynvml.c_nvmlDevice_t)))
        self._devices[gpu_index] = new
        for dev in self._mig[gpu_index]:
            dev.parent = new.handle
        for queue in self._event_sets.values():
            self._fleet.unsubscribe(queue, (old.gpu.node, old.gpu.index))
        return new.handle

    def remove(self, nvml_index: int) -> None:
        """Stand for a GPU that a PCI rescan (or ``nvmlDeviceRemoveGpu``) does not bring back: NVML counts one
        GPU fewer and the GPUs after it answer one index lower (NVML enumerates in bus order), so another GPU
        answers at its index; its handle answers GpuIsLost. ``nvml_index`` is NVML's index now."""
        old = self._devices.pop(nvml_index)
        old.stale = True
        for queue in self._event_sets.values():
            self._fleet.unsubscribe(queue, (old.gpu.node, old.gpu.index))

    def _device_of(self, gpu_index: int) -> DeviceEntry | None:
        """The enumerated device of the fleet's GPU ``gpu_index`` (None once removed)."""
        dev = self._devices[gpu_index] if gpu_index < len(self._devices) else None
        if dev is not None and dev.gpu.index == gpu_index:
            return dev
        return next((d for d in self._devices if d.gpu.index == gpu_index), None)

    def hang(self, function_name: str, seconds: float) -> None:
        """Make ``function_name`` block for ``seconds`` real seconds (or until ``release_hangs``)."""
        if not callable(getattr(type(self), function_name, None)):
            raise InputError(f"SimNvml has no function {function_name!r}", field="function_name")
        self._release.clear()
        self._hangs[ALIASES.get(function_name, function_name)] = seconds

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
        fleet = self._fleet  # _catch_up, inlined: every NVML call lands here
        if fleet.clock.time() - fleet.stepped_to >= STEP_SECONDS:
            fleet.advance()
        if not self._node.up:
            raise pynvml.NVMLError_Unknown()

    def _catch_up(self) -> None:
        """Bring the fleet to now before the call reads it: a step due now may end a fault (a node down for a
        while is up again), so the node's state is read only after it."""
        fleet = self._fleet  # every NVML call lands here: skip the call into the fleet when no step is due
        if fleet.clock.time() - fleet.stepped_to >= STEP_SECONDS:
            fleet.advance()

    def _dev(self, handle: Any, name: str, *, mig_ok: bool = False) -> DeviceEntry:
        dev = self._by_id.get(id(handle))
        if dev is None:
            address = pointer_address(handle)
            dev = self._by_addr.get(address) if address is not None else None
            if dev is None:
                raise pynvml.NVMLError_InvalidArgument()
        # _check, inlined (the same steps in the same order): a collection makes ~30 device calls per GPU.
        gpu = dev.gpu
        if self._failures or self._hangs:
            self._hook(name, gpu.index)
        if self._init_count <= 0:
            raise pynvml.NVMLError_Uninitialized()
        fleet = self._fleet
        if fleet.clock.time() - fleet.stepped_to >= STEP_SECONDS:
            fleet.advance()
        if not self._node.up:
            raise pynvml.NVMLError_Unknown()
        if gpu.lost or dev.stale:
            raise pynvml.NVMLError_GpuIsLost()
        if dev.mig is not None and not mig_ok:
            raise pynvml.NVMLError_NotSupported()
        return dev

    # --- lifecycle and system --------------------------------------------------------------------

    def nvmlInitWithFlags(self, flags: int) -> None:
        """Initialise (reference counted, like NVML)."""
        if self._failures or self._hangs:
            self._hook("nvmlInitWithFlags", None)
        self._catch_up()
        if not self._node.up:
            raise pynvml.NVMLError_DriverNotLoaded()
        self._init_count += 1

    def nvmlInit(self) -> None:
        """Initialise with no flags."""
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
