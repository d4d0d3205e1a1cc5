"""The batched counters when an older driver does not know some field ids: those are left out of that GPU's
calls, the other counters stay."""

from __future__ import annotations

from typing import Any

import pynvml
import pytest

from exporters import fields as fams
from exporters.nvlink import NVLINK_LINK_COUNT
from exporters.nvml_collector import NvmlCollector
from gpuwarden.clock import FakeClock
from gpuwarden.sim import SimNvml
from tests.exporters.nvml_scrapes import gpu_labels, scrape, value

from .conftest import NODE

RECOVERY = pynvml.NVML_FI_DEV_GET_GPU_RECOVERY_ACTION  # 230: newer than the driver below


class _OlderDriver:
    """The simulated NVML as a driver older than field 230 answers it: per field (what NVML documents), or by
    refusing the whole call (``whole``), as a driver or shim may."""

    def __init__(self, inner: SimNvml, *, whole: bool) -> None:
        self._inner = inner
        self._whole = whole
        self.calls: list[list[Any]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def nvmlDeviceGetFieldValues(self, handle: Any, ids: list[Any]) -> Any:
        self.calls.append(list(ids))
        if self._whole and RECOVERY in ids:
            raise pynvml.NVMLError_InvalidArgument()
        values = self._inner.nvmlDeviceGetFieldValues(handle, ids)
        for fv in values:
            if fv.fieldId == RECOVERY:
                fv.nvmlReturn = pynvml.NVML_ERROR_INVALID_ARGUMENT
        return values


@pytest.mark.parametrize("whole", [False, True], ids=["per-field", "whole-call"])
def test_a_field_id_unknown_to_an_older_driver_is_left_out_and_the_other_counters_stay(
    nvml: SimNvml, clock: FakeClock, whole: bool
) -> None:
    """Refused for the whole call, every counter of the GPU was lost (ECC, row remaps, NVLink errors, energy);
    refused per field, that field was asked for and counted as an error at every collection, for ever."""
    older = _OlderDriver(nvml, whole=whole)
    collector = NvmlCollector(older, hostname=NODE)
    for _ in range(3):
        clock.advance(5)
        registry = scrape(collector)
    labels = gpu_labels(registry, 0)
    assert value(registry, "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", labels) is not None
    assert value(registry, "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", labels) is not None
    assert value(registry, fams.RECOVERY_ACTION.name, gpu_labels(registry, 0, own=True)) is None
    errors = {
        "Hostname": NODE,
        "gpu": "0",
        "function": f"nvmlDeviceGetFieldValues({fams.RECOVERY_ACTION.name})",
        "error": "InvalidArgument",
    }
    assert value(registry, "gpuwarden_nvml_call_errors_total", errors) == 1.0  # once, not once a collection
    assert RECOVERY not in older.calls[-1]


def test_a_whole_call_refused_for_every_field_leaves_nothing_out(nvml: SimNvml, clock: FakeClock) -> None:
    """When each field alone is refused too, the device is what NVML refuses: no field is retired for it, and
    the field-by-field search is not made again at every collection."""

    class Refusing(_OlderDriver):
        def nvmlDeviceGetFieldValues(self, handle: Any, ids: list[Any]) -> Any:
            self.calls.append(list(ids))
            raise pynvml.NVMLError_InvalidArgument()

    refusing = Refusing(nvml, whole=True)
    collector = NvmlCollector(refusing, hostname=NODE)
    scrape(collector)
    first = len(refusing.calls)
    clock.advance(5)
    scrape(collector)
    later = refusing.calls[first:]
    assert sum(ids == refusing.calls[0] for ids in later) == 8  # the whole call once per GPU, none left out
    assert [ids for ids in later if len(ids) == 1 and ids != [NVLINK_LINK_COUNT]] == []  # no second search
