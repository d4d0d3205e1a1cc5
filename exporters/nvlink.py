"""The collector's per-link NVLink state: a downed link stays visible for as long as it is down.

The error counters only move while a link fails; a link that stays down leaves the counters still and
the bandwidth total a little lower, which no rule can tell from a quieter job. DCGM reads the state per
link (``DCGM_FI_DEV_NVLINK_LINK_STATUS``, formerly ``DCGM_FI_DEV_NVLINK_GET_STATE``, field 1508, whose
values are NVML's: 1 active, 0 inactive); so does this collector, with a ``link`` label.

Cost: a GPU's link count is read once (``NVML_FI_DEV_NVLINK_LINK_COUNT``); a GPU without NVLink (the field
or the call answers NotSupported, or the count is 0) is never asked again, and one with links costs one
``nvmlDeviceGetNvLinkState`` per link and collection.
"""

from __future__ import annotations

from typing import Any

from exporters import fields as fams
from exporters.collected import FamilyBuilder, Gpu
from exporters.field_values import field_answers
from exporters.nvml_calls import (
    FUNCTION_NOT_FOUND,
    LOST_CODES,
    NOT_SUPPORTED,
    GpuLost,
    NvmlCalls,
    error_name,
)

NVLINK_LINK_COUNT = 91  # NVML_FI_DEV_NVLINK_LINK_COUNT
_COUNT_CALL = "nvmlDeviceGetFieldValues(NVLINK_LINK_COUNT)"
_LINK_NAMES: dict[int, tuple[str, ...]] = {}


def link_names(count: int) -> tuple[str, ...]:
    """The ``link`` label values of a GPU with ``count`` links, one tuple per count for the process."""
    names = _LINK_NAMES.get(count)
    if names is None:
        names = _LINK_NAMES[count] = tuple(str(link) for link in range(count))
    return names


class NvLinkStates(NvmlCalls):
    """The collector's NVLink-state part."""

    def _nvlink_states(self, gpu: Gpu, out: FamilyBuilder, labels: dict[str, str]) -> None:
        if gpu.nvlinks is None:
            gpu.nvlinks = self._nvlink_count(gpu.handle)  # None again: a transient error, asked next pass
        if not gpu.nvlinks:
            return
        states = self._call_each("nvmlDeviceGetNvLinkState", gpu.handle, range(gpu.nvlinks))
        link_labels = gpu.label_sets(labels, "link", link_names(gpu.nvlinks))
        pairs = zip(link_labels, states, strict=False)  # fewer states than links: retired part-way
        out.add_each(fams.NVLINK_LINK_STATUS, [(link, float(int(s))) for link, s in pairs if s is not None])

    def _nvlink_count(self, handle: Any) -> int | None:
        """Links of the GPU (0 when it has none), or None when NVML could not say this time."""
        values, code = self._attempt(_COUNT_CALL, "nvmlDeviceGetFieldValues", handle, [NVLINK_LINK_COUNT])
        if code in (NOT_SUPPORTED, FUNCTION_NOT_FOUND):
            return 0
        if values is None:
            return None
        ret, count, _ = field_answers(values)[0]
        if ret == NOT_SUPPORTED:
            return 0
        if ret in LOST_CODES:
            raise GpuLost(_COUNT_CALL, ret)
        if ret != 0:
            self._count_error(_COUNT_CALL, error_name(ret))
            return None
        return max(0, int(count))
