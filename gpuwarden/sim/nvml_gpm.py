"""GPM calls of ``SimNvml`` (Hopper and later): samples of activity counters and metrics between two."""

from __future__ import annotations

import ctypes
from typing import Any

import pynvml

from gpuwarden.sim.fields import gpm_snapshot, gpm_value
from gpuwarden.sim.nvml_base import DeviceEntry, NvmlBase, fake_pointer, pointer_address

_raw_getattr = ctypes.Structure.__getattribute__
_raw_setattr = ctypes.Structure.__setattr__


class NvmlGpm(NvmlBase):
    """``nvmlGpm*``: what DCGM's profiling fields (SM, tensor, DRAM activity) are computed from."""

    def nvmlGpmQueryDeviceSupport(self, device: Any) -> Any:
        """``c_nvmlGpmSupport_t``; supported on Hopper and later."""
        gpu = self._dev(device, "nvmlGpmQueryDeviceSupport").gpu
        support = pynvml.c_nvmlGpmSupport_t()
        support.version = pynvml.NVML_GPM_SUPPORT_VERSION
        support.isSupportedDevice = 1 if gpu.model.gpm else 0
        return support

    @property
    def gpm_samples_allocated(self) -> int:
        """GPM samples allocated and not freed (a test control: a leak shows here)."""
        return len(self._gpm_samples)

    def nvmlGpmSampleAlloc(self) -> Any:
        """A new, empty GPM sample."""
        self._check("nvmlGpmSampleAlloc")
        sample = fake_pointer(pynvml.c_nvmlGpmSample_t)
        address = pointer_address(sample)
        assert address is not None
        self._gpm_samples[address] = None
        return sample

    def nvmlGpmSampleFree(self, gpmSample: Any) -> None:
        """Release a sample."""
        self._check("nvmlGpmSampleFree")
        if self._gpm_samples.pop(pointer_address(gpmSample) or 0, 0) == 0:
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

    def _gpm_take(self, dev: DeviceEntry, sample: Any) -> Any:
        if not dev.gpu.model.gpm:
            raise pynvml.NVMLError_NotSupported()
        address = pointer_address(sample)
        if address is None or address not in self._gpm_samples:
            raise pynvml.NVMLError_InvalidArgument()
        with self._fleet.state_lock:  # the counters and their time from one step
            self._gpm_samples[address] = (dev, self._fleet.stepped_to, gpm_snapshot(dev.gpu.state))
        return sample

    def nvmlGpmMetricsGet(self, metricsGet: Any) -> Any:
        """Fill ``c_nvmlGpmMetricsGet_t.metrics[i].value`` (percent) from ``sample1`` and ``sample2``."""
        self._check("nvmlGpmMetricsGet")
        # Numbers and pointers only: ctypes' own attribute access gives what pynvml's printable wrapper would,
        # for less.
        get, put = _raw_getattr, _raw_setattr
        if get(metricsGet, "version") != pynvml.NVML_GPM_METRICS_GET_VERSION:
            raise pynvml.NVMLError_ArgumentVersionMismatch()
        count = get(metricsGet, "numMetrics")
        if count > pynvml.NVML_GPM_METRIC_MAX:
            raise pynvml.NVMLError_InvalidArgument()
        first = self._gpm_samples.get(pointer_address(get(metricsGet, "sample1")) or 0)
        second = self._gpm_samples.get(pointer_address(get(metricsGet, "sample2")) or 0)
        if first is None or second is None or first[0] is not second[0]:
            raise pynvml.NVMLError_InvalidArgument()
        dev = second[0]
        if dev.gpu.lost:
            raise pynvml.NVMLError_GpuIsLost()
        metrics, state, since, until = get(metricsGet, "metrics"), dev.gpu.state, first[1:], second[1:]
        for i in range(count):
            metric = metrics[i]
            value = gpm_value(get(metric, "metricId"), since, until, state, 1.0)
            if value is None:
                put(metric, "nvmlReturn", pynvml.NVML_ERROR_NOT_SUPPORTED)
            else:
                put(metric, "nvmlReturn", pynvml.NVML_SUCCESS)
                put(metric, "value", value)
        return metricsGet
