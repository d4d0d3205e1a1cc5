"""The collector's MIG part: each MIG instance's own series, and its GPU's device-level values again.

A GPU in MIG mode is also served as a whole (dcgm-exporter's ``--devices g+i`` shape); each of its
instances gets ``GPU_I_PROFILE``/``GPU_I_ID`` labels, its own framebuffer and GPM values, the pod the
kubelet assigned its ``MIG-`` UUID to, and the GPU's device-level DCGM values (``fields.MIG_REPEATED``)
repeated under its labels, as dcgm-exporter serves them. The utilisations not supported for MIG
(``fields.MIG_UNSUPPORTED``) are left off the GPU's own series too. Framebuffer info (``_memory``) lives
here because the GPU and its instances read it alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import pynvml

from exporters import fields as fams
from exporters.attribution import PodRef, WorkloadMemory, shared, workload_labels
from exporters.collected import FamilyBuilder, Gpm, Gpu
from exporters.gpm import GpmSampling
from exporters.nvml_calls import (
    ARGUMENT_VERSION_MISMATCH,
    FUNCTION_NOT_FOUND,
    NOT_FOUND,
    NOT_SUPPORTED,
    error_name,
)
from gpuwarden.clock import Clock

_MIB = 1024 * 1024
_MIG_ENABLED = 1
_MEMORY_V2 = "nvmlDeviceGetMemoryInfo_v2"  # the key of the v2 call (pynvml: version=nvmlMemory_v2)


class PodAssignments(Protocol):
    """GPU UUID -> containers the kubelet assigned it to (``exporters.podresources``)."""

    def pods_for(self, uuid: str) -> Sequence[PodRef]:
        """Containers holding this GPU (empty when none or unknown)."""
        ...


class MigInstances(GpmSampling):
    """The collector's MIG part (and framebuffer info, which GPUs and instances read alike)."""

    _clock: Clock
    _pods: PodAssignments | None
    _workloads: WorkloadMemory

    def _memory(self, handle: Any) -> Any:
        """Framebuffer info: v2 (``used`` without the driver's reserved memory, as DCGM reads it), else v1."""
        version = getattr(self._nvml, "nvmlMemory_v2", pynvml.nvmlMemory_v2)
        mem, code = self._attempt(_MEMORY_V2, "nvmlDeviceGetMemoryInfo", handle, version)
        if code is None:
            return mem
        if code == ARGUMENT_VERSION_MISMATCH:
            self._missing.add(_MEMORY_V2)  # a driver that does not know the v2 struct: v1 from now on
        elif code not in (NOT_SUPPORTED, FUNCTION_NOT_FOUND):
            return None  # a real error, counted: leave the series out rather than switch meaning for a pass
        return self._call("nvmlDeviceGetMemoryInfo", handle)

    def _mig_enabled(self, handle: Any) -> bool:
        """Whether the GPU is in MIG mode now (read once per pass: its workload labels depend on it too)."""
        mode = self._call("nvmlDeviceGetMigMode", handle)
        return mode is not None and int(mode[0]) == _MIG_ENABLED

    def _mig(
        self, gpu: Gpu, out: FamilyBuilder, mark: dict[str, int], parent: dict[str, str], enabled: bool
    ) -> None:
        """The MIG instances' series: their own framebuffer and GPM values, and the GPU's device-level DCGM
        values (``parent``'s since ``mark``) again under each instance's labels, as dcgm-exporter serves
        them, so ``DCGM_FI_DEV_GPU_TEMP{GPU_I_ID!=""}`` and joins on a MIG pod's series find them."""
        if not enabled:
            gpu.mig_labels = []
            self._retire_mig_gpm(gpu, set())
            return
        # On no series of a MIG GPU, whatever NVML answers: it answers NotSupported in MIG mode, and a value
        # from one that answers anyway (the simulator served 0) is no utilisation of the whole GPU.
        out.drop_with(mark, parent, fams.MIG_UNSUPPORTED)
        device = out.added_with(mark, parent, fams.MIG_REPEATED)
        slots = self._call("nvmlDeviceGetMaxMigDeviceCount", gpu.handle) or 0
        seen: set[str] = set()
        instances: list[dict[str, str]] = []
        for slot in range(int(slots)):
            try:
                mig = self._nvml.nvmlDeviceGetMigDeviceHandleByIndex(gpu.handle, slot)
            except pynvml.NVMLError as exc:
                if getattr(exc, "value", None) not in (NOT_FOUND, NOT_SUPPORTED):
                    self._count_error("nvmlDeviceGetMigDeviceHandleByIndex", error_name(exc.value))
                continue
            gi = self._call("nvmlDeviceGetGpuInstanceId", mig)
            if gi is None:
                continue
            uuid = text(self._call("nvmlDeviceGetUUID", mig) or "")
            name = text(self._call("nvmlDeviceGetName", mig) or "")
            profile = name.rsplit("MIG ", 1)[-1] if "MIG " in name else ""
            labels = {**gpu.labels, "GPU_I_PROFILE": profile, "GPU_I_ID": str(gi), **self._mig_pod(uuid)}
            instances.append(labels)
            out.add_again(device, labels)
            add_framebuffer(
                out, labels, self._memory(mig)
            )  # the instance's FB_TOTAL, as DCGM 3.1.3+ reads it
            if gpu.gpm is not None:
                # By the instance's UUID: one destroyed and re-created (MIG reconfigured while running) gets
                # the same instance id but a new UUID, and must not be rated against the old one's sample.
                key = uuid or f"gi-{gi}"
                seen.add(key)
                gpm = gpu.mig_gpm.get(key)
                if gpm is None:
                    gpm = gpu.mig_gpm[key] = Gpm(self._new_metrics_get())
                self._gpm_sample(gpm, out, labels, "nvmlGpmMigSampleGet", gpu.handle, int(gi))
        gpu.mig_labels = instances
        self._retire_mig_gpm(gpu, seen)

    def _retire_mig_gpm(self, gpu: Gpu, seen: set[str]) -> None:
        """Free the GPM samples of MIG instances that are gone (destroyed, or MIG turned off)."""
        for key in [k for k in gpu.mig_gpm if k not in seen]:
            self._free_gpm(gpu.mig_gpm.pop(key))

    def _mig_pod(self, uuid: str) -> dict[str, str]:
        """The pod labels of one MIG device: the kubelet assigns MIG devices by their own ``MIG-`` UUID,
        never by the parent GPU's, so without this no MIG series named its pod (dcgm-exporter's do)."""
        if self._pods is None or not uuid:
            return {}
        pods = list(self._pods.pods_for(uuid))
        current = workload_labels((), pods)
        return self._workloads.labels(uuid, current, self._clock.monotonic(), ambiguous=shared((), pods))


def add_framebuffer(out: FamilyBuilder, labels: dict[str, str], mem: Any) -> None:
    """The framebuffer families of one GPU or MIG instance from its memory info (None: left out)."""
    if mem is None:
        return
    out.add(fams.FB_FREE, labels, mem.free // _MIB)
    out.add(fams.FB_USED, labels, mem.used // _MIB)
    out.add(fams.FB_TOTAL, labels, mem.total // _MIB)
    if hasattr(mem, "reserved"):
        out.add(fams.FB_RESERVED, labels, mem.reserved // _MIB)


def text(value: str | bytes) -> str:
    """An NVML string answer as ``str`` (pynvml answers bytes on some versions)."""
    return value.decode() if isinstance(value, bytes) else str(value)
