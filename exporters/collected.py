"""What the collector keeps per GPU between collections, and the families of one collection."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Metric
from prometheus_client.samples import Sample

from exporters import fields as fams


@dataclass
class Gpm:
    """GPM state of one GPU (or MIG instance): two samples, swapped each collection."""

    metrics_get: Any
    prev: Any = None
    prev_at: float = 0.0  # the collector's clock (monotonic) when ``prev`` was taken
    spare: Any = None
    pcie: bool = False  # its PCIe rates answered last pass: they give DCGM_FI_DEV_PCIE_*_THROUGHPUT


@dataclass
class Gpu:
    """One GPU of the host: identity, labels, and the state that spans collections."""

    index: int
    handle: Any
    uuid: str
    labels: dict[str, str]
    own: dict[str, str]
    gpm: Gpm | None = None
    gpm_checked: bool = False
    mig_gpm: dict[int, Gpm] = field(default_factory=dict)
    nvlink_prev: tuple[float, int] | None = None  # (KiB over all links, NVML timestamp in us)
    nvlinks: int | None = None  # its NVLink count (0: none, or NotSupported); None until NVML says
    workload: dict[str, str] = field(default_factory=dict)  # namespace/pod/container/slurm_job labels
    _derived: dict[tuple[str, str], tuple[dict[str, str], dict[str, str]]] = field(default_factory=dict)

    def with_label(self, base: dict[str, str], name: str, value: str) -> dict[str, str]:
        """``base`` plus the label ``name``, as the same dict as the last collection's while ``base`` reads
        the same, so a render finds its text by identity (a GPU has a label set per NVLink link and per
        clock-event reason). The dict is shared between collections: never change it."""
        kept = self._derived.get((name, value))
        if kept is not None and (kept[0] is base or kept[0] == base):
            self._derived[(name, value)] = (base, kept[1])  # the next collection compares with this base
            return kept[1]
        made = {**base, name: value}
        self._derived[(name, value)] = (base, made)
        return made


class FamilyBuilder:
    """Families of one collection, created on first sample, emitted in table order."""

    def __init__(self) -> None:
        self._metrics: dict[str, Metric] = {}

    def add(self, family: fams.Family, labels: Mapping[str, str], value: float) -> None:
        """One sample of ``family``."""
        metric = self._metrics.get(family.name)
        if metric is None:
            metric = self._metrics[family.name] = Metric(family.name, family.help, family.kind.value)
        metric.samples.append(Sample(family.sample_name, labels, value))  # type: ignore[arg-type]

    def mark(self) -> dict[str, int]:
        """Remember how many samples each family has, to drop a lost GPU's partial samples."""
        return {name: len(m.samples) for name, m in self._metrics.items()}

    def size(self) -> int:
        """Samples so far."""
        return sum(len(m.samples) for m in self._metrics.values())

    def rollback(self, mark: dict[str, int]) -> None:
        """Drop every sample added since ``mark``."""
        for name, metric in list(self._metrics.items()):
            del metric.samples[mark.get(name, 0) :]

    def families(self) -> list[Metric]:
        """The families with samples, in the table's order."""
        return [
            self._metrics[f.name]
            for f in fams.FAMILIES
            if f.name in self._metrics and self._metrics[f.name].samples
        ]
