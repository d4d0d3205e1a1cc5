"""GPM profiling (Hopper and later): two NVML samples per GPU, metrics between them, DCGM_FI_PROF_*."""

from __future__ import annotations

import contextlib
import ctypes
import math
from collections.abc import Mapping
from typing import Any

from exporters import fields as fams
from exporters.collected import FamilyBuilder, Gpm, Gpu
from exporters.nvml_calls import FUNCTION_NOT_FOUND, NON_FINITE, NOT_SUPPORTED, GpuLost, NvmlCalls

_KB_PER_MIB = 1024.0  # NVML's PCIe "KB/s" are KiB/s
# A rate (GPM activity, NVLink bandwidth) needs a real interval between its two reads. Collected twice a few
# ms apart (the exporter's start used to do that) a busy GPU read 0: what the counters moved in those ms, not
# what the GPU does. NVML's utilisation samples span 1/6 s to 1 s and its GPM note asks for more than 100 ms
# between the two samples, so no rate is computed over less than MIN_RATE_INTERVAL_SECONDS (or half the
# collection interval when that is shorter, never under GPM_MIN_INTERVAL_SECONDS): the series is absent
# until then, and the older sample is kept so the next pass has a longer interval.
MIN_RATE_INTERVAL_SECONDS = 1.0
GPM_MIN_INTERVAL_SECONDS = 0.1
# ctypes' own member access: pynvml's printable structs wrap it in a Python-level __getattribute__ and
# __setattr__ (for decoding char arrays) that cost more than the read; the members used here are numbers and
# pointers, which both read and write the same either way.
_raw_get = ctypes.Structure.__getattribute__
_raw_set = ctypes.Structure.__setattr__


def min_rate_interval(collect_interval: float) -> float:
    """The shortest interval a rate is computed over, for a collector run every ``collect_interval`` s."""
    return max(GPM_MIN_INTERVAL_SECONDS, min(MIN_RATE_INTERVAL_SECONDS, collect_interval / 2))


class GpmSampling(NvmlCalls):
    """The collector's GPM part: support asked once per GPU (until it answers), samples swapped each pass."""

    _metrics_get_type: Any
    _min_rate_interval: float = MIN_RATE_INTERVAL_SECONDS
    _pass_at: float = 0.0  # the collector's monotonic clock at the start of this collection

    def _gpm_due(self, gpm: Gpm) -> bool:
        """True when a new sample may be taken: the first, or one a real interval after the last."""
        return gpm.prev is None or self._pass_at - gpm.prev_at >= self._min_rate_interval

    def _gpm(self, gpu: Gpu, out: FamilyBuilder, labels: dict[str, str]) -> None:
        if not gpu.gpm_checked:
            name = "nvmlGpmQueryDeviceSupport"
            support, code = self._attempt(name, name, gpu.handle)
            # Only an answer settles it (yes, or NotSupported / an old driver: no). Any other error (Unknown,
            # Timeout: common while a GPU recovers) is counted and the question asked again next pass.
            if code in (None, NOT_SUPPORTED, FUNCTION_NOT_FOUND):
                gpu.gpm_checked = True
                if support is not None and support.isSupportedDevice:
                    gpu.gpm = Gpm(self._new_metrics_get())
        if gpu.gpm is not None:
            self._gpm_sample(gpu.gpm, out, labels, "nvmlGpmSampleGet", gpu.handle, pcie=True)

    def _forget_gpm(self, gpu: Gpu) -> None:
        """Free a GPU's GPM samples (NVML allocates them) and ask about GPM support again when it is back."""
        for gpm in ([gpu.gpm] if gpu.gpm is not None else []) + list(gpu.mig_gpm.values()):
            self._free_gpm(gpm)
        gpu.gpm, gpu.gpm_checked, gpu.mig_gpm = None, False, {}

    def _free_gpm(self, gpm: Gpm) -> None:
        """Free the NVML samples of one GPU's or MIG instance's GPM state."""
        for sample in (gpm.prev, gpm.spare):
            if sample is not None:
                with contextlib.suppress(GpuLost):  # host memory: freed or not, the handle is dropped
                    self._call("nvmlGpmSampleFree", sample)

    def _new_metrics_get(self) -> Any:
        mg = self._metrics_get_type()
        mg.version = getattr(self._nvml, "NVML_GPM_METRICS_GET_VERSION", 1)
        mg.numMetrics = len(fams.GPM_FAMILIES)
        for i, (metric_id, _, _) in enumerate(fams.GPM_FAMILIES):
            mg.metrics[i].metricId = metric_id
        return mg

    def _gpm_sample(
        self,
        gpm: Gpm,
        out: FamilyBuilder,
        labels: Mapping[str, str],
        getter: str,
        *args: Any,
        pcie: bool = False,
    ) -> None:
        """One GPM sample, and the metrics since the last one. With ``pcie`` (a whole GPU, not a MIG
        instance) the PCIe rates also feed DCGM_FI_DEV_PCIE_*_THROUGHPUT in KB/s, so the collector need not
        call nvmlDeviceGetPcieThroughput, which samples for 20 ms per direction (42 ms a GPU on an H200)."""
        if not self._gpm_due(gpm):
            return  # too soon after the last sample: no rate (the collector made its own PCIe call)
        skipped = pcie and gpm.pcie  # the collector left its PCIe call out this pass
        if pcie:
            gpm.pcie = False  # until both PCIe rates answer below
        sample = gpm.spare if gpm.spare is not None else self._call("nvmlGpmSampleAlloc")
        if sample is None or self._call(getter, *args, sample) is None:
            gpm.spare = sample
            return
        if gpm.prev is not None:
            mg = gpm.metrics_get
            _raw_set(mg, "sample1", gpm.prev)
            _raw_set(mg, "sample2", sample)
            if self._call("nvmlGpmMetricsGet", mg) is not None:
                answered = 0
                metrics = _raw_get(mg, "metrics")
                for i, (metric_id, family, scale) in enumerate(fams.GPM_FAMILIES):
                    metric = metrics[i]
                    if int(_raw_get(metric, "nvmlReturn")) != 0:
                        continue
                    got = float(_raw_get(metric, "value"))
                    if not math.isfinite(got):  # NaN or Inf (across a reset, say): left out, counted
                        self._count_error(f"nvmlGpmMetricsGet({family.name})", NON_FINITE)
                        continue
                    out.add(family, labels, got * scale)
                    if pcie and metric_id in fams.GPM_PCIE_THROUGHPUT:
                        answered += 1
                        if skipped:
                            kbs = got * _KB_PER_MIB
                            out.add(fams.GPM_PCIE_THROUGHPUT[metric_id], labels, kbs)
                if pcie:
                    gpm.pcie = answered == len(fams.GPM_PCIE_THROUGHPUT)
        gpm.spare, gpm.prev, gpm.prev_at = gpm.prev, sample, self._pass_at
