"""What the collector keeps per GPU between collections, and the families of one collection."""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import Metric
from prometheus_client.samples import Sample

from exporters import fields as fams

# ``Sample`` is a NamedTuple whose generated ``__new__`` (a Python function filling in its defaults) cost more
# than the rest of ``FamilyBuilder.add``, 573 times a collection of 8 GPUs. ``tuple.__new__`` with the
# defaults appended builds the same tuple (its fields after ``value`` vary by prometheus_client version).
_new_tuple = tuple.__new__
_SAMPLE_DEFAULTS = tuple(Sample._field_defaults[name] for name in Sample._fields[3:])


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
    mig_gpm: dict[str, Gpm] = field(default_factory=dict)  # by MIG device UUID (else instance id)
    mig_labels: list[dict[str, str]] = field(default_factory=list)  # its MIG instances' labels, last pass
    nvlink_prev: tuple[float, int] | None = None  # (KiB over all links, NVML timestamp in us)
    nvlinks: int | None = None  # its NVLink count (0: none, or NotSupported); None until NVML says
    workload: dict[str, str] = field(default_factory=dict)  # namespace/pod/container/slurm_job labels
    up: bool | None = None  # whether it answered last pass (None: not read yet), to log its changes once
    no_handle: str = ""  # why NVML gave no handle for it, and what to check (said while it has none)
    refused_fields: frozenset[Any] = frozenset()  # field ids its driver answered InvalidArgument: not asked
    fields_probed: bool = False  # its field ids were asked one by one after the whole call was refused
    # (labels, workload, both merged): the merged dict is served again while the other two are the same dicts.
    labelled: tuple[dict[str, str], dict[str, str], dict[str, str]] | None = None
    _derived: dict[str, tuple[dict[str, str], tuple[str, ...], list[dict[str, str]]]] = field(
        default_factory=dict
    )

    def label_sets(self, base: dict[str, str], name: str, values: tuple[str, ...]) -> list[dict[str, str]]:
        """``base`` plus the label ``name`` at each of ``values``, as the same dicts as the last collection's
        while ``base`` and ``values`` read the same, so a render finds their texts by identity (a GPU has a
        label set per NVLink link and per clock-event reason). Compared once per GPU and name, not per
        value. The dicts are shared between collections: never change them."""
        kept = self._derived.get(name)
        if kept is not None and (kept[0] is base or kept[0] == base) and kept[1] == values:
            if kept[0] is not base:
                self._derived[name] = (base, values, kept[2])  # the next collection compares with this base
            return kept[2]
        made = [{**base, name: value} for value in values]
        self._derived[name] = (base, values, made)
        return made


class FamilyBuilder:
    """Families of one collection, created on first sample, emitted in table order."""

    def __init__(self) -> None:
        self._metrics: dict[str, Metric] = {}
        # Each family's sample list by name, in the order of ``_metrics``: ``add`` appends without going
        # through the Metric, and ``mark``/``grew`` (twice per GPU) measure them all in one C-level pass.
        self._samples: dict[str, list[Sample]] = {}
        self._lists: list[list[Sample]] = []

    def add(self, family: fams.Family, labels: Mapping[str, str], value: float) -> None:
        """One sample of ``family``."""
        samples = self._samples.get(family.name)
        if samples is None:
            samples = self._create(family)
        sample = (family.sample_name, labels, value) + _SAMPLE_DEFAULTS  # noqa: RUF005 - cheaper than *unpacking
        samples.append(_new_tuple(Sample, sample))

    def add_each(self, family: fams.Family, samples: Iterable[tuple[Mapping[str, str], float]]) -> None:
        """Samples of ``family`` from (labels, value) pairs (a GPU's links, its clock-event reasons)."""
        kept = self._samples.get(family.name)
        if kept is None:
            kept = self._create(family)
        name, tail = family.sample_name, _SAMPLE_DEFAULTS
        rows = [(name, labels, value) + tail for labels, value in samples]  # noqa: RUF005 - as in add()
        kept.extend([_new_tuple(Sample, row) for row in rows])

    def added_with(
        self, mark: Mapping[str, int], labels: Mapping[str, str], families: Iterable[fams.Family]
    ) -> list[tuple[Metric, Sample]]:
        """The samples of ``families`` added since ``mark`` under ``labels`` itself (the same dict, not an
        equal one): what one GPU's pass gave under its DCGM labels."""
        found: list[tuple[Metric, Sample]] = []
        for family in families:
            metric = self._metrics.get(family.name)
            if metric is not None:
                found += [
                    (metric, s) for s in metric.samples[mark.get(family.name, 0) :] if s.labels is labels
                ]
        return found

    def drop_with(
        self, mark: Mapping[str, int], labels: Mapping[str, str], families: Iterable[fams.Family]
    ) -> None:
        """Drop the samples of ``families`` added since ``mark`` under ``labels`` itself (the same dict)."""
        for family in families:
            metric = self._metrics.get(family.name)
            if metric is not None:
                start = mark.get(family.name, 0)
                metric.samples[start:] = [s for s in metric.samples[start:] if s.labels is not labels]

    def add_again(self, samples: Iterable[tuple[Metric, Sample]], labels: Mapping[str, str]) -> None:
        """Each of ``samples`` once more, under ``labels`` (a MIG instance repeating its GPU's values)."""
        for metric, sample in samples:
            metric.samples.append(_new_tuple(Sample, (sample.name, labels, sample.value, *sample[3:])))

    def _create(self, family: fams.Family) -> list[Sample]:
        metric = self._metrics[family.name] = Metric(family.name, family.help, family.kind.value)
        samples: list[Sample] = metric.samples
        self._samples[family.name] = samples
        self._lists.append(samples)
        return samples

    def mark(self) -> dict[str, int]:
        """Remember how many samples each family has, to drop a lost GPU's partial samples."""
        return dict(zip(self._samples, map(len, self._lists), strict=True))

    def grew(self, mark: dict[str, int]) -> bool:
        """True when a sample was added since ``mark`` (a mark of this builder: families are only ever added,
        in order, so the families it names come first, in its order)."""
        marked = len(mark)
        return any(map(operator.gt, map(len, self._lists), mark.values())) or any(
            map(len, self._lists[marked:])
        )

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
