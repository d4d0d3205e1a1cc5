"""What the NvmlCollector tests share: one collection frozen in a fresh registry, a GPU's labels, a value, and
the simulated NVML without some fields."""

from __future__ import annotations

from typing import Any

import pynvml
from prometheus_client import CollectorRegistry, Metric

from exporters.nvml_collector import NvmlCollector
from gpuwarden.sim import SimNvml


class _Snapshot:
    """One collection, frozen, so that every get_sample_value reads the same scrape."""

    def __init__(self, families: list[Metric]) -> None:
        self._families = families

    def collect(self) -> list[Metric]:
        return self._families


def scrape(collector: NvmlCollector) -> CollectorRegistry:
    """Run one collection and return a fresh registry holding its result."""
    registry = CollectorRegistry()
    registry.register(_Snapshot(collector.collect()))
    return registry


def gpu_labels(registry: CollectorRegistry, index: int, *, own: bool = False) -> dict[str, str]:
    """The label set of one GPU: from its DCGM_FI_DEV_GPU_UTIL series, or its gpuwarden_gpu_up one."""
    name = "gpuwarden_gpu_up" if own else "DCGM_FI_DEV_GPU_UTIL"
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name == name and sample.labels["gpu"] == str(index):
                return dict(sample.labels)
    raise AssertionError(f"gpu {index} has no {name} series")


def value(registry: CollectorRegistry, name: str, labels: dict[str, str]) -> float | None:
    return registry.get_sample_value(name, labels)


class _FieldUnsupported:
    """The simulated NVML with some field ids answering NotSupported (a driver without them)."""

    def __init__(self, inner: SimNvml, field_ids: set[int]) -> None:
        self._inner = inner
        self._ids = field_ids

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def nvmlDeviceGetFieldValues(self, handle: Any, ids: list[Any]) -> Any:
        values = self._inner.nvmlDeviceGetFieldValues(handle, ids)
        for fv in values:
            if fv.fieldId in self._ids:
                fv.nvmlReturn = pynvml.NVML_ERROR_NOT_SUPPORTED
        return values
