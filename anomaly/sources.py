"""Where samples come from: the ``Source`` protocol, source health, and the in-process source.

A source returns ``Frame``s: one per query, a matrix of values (series x steps) on a shared time grid with
one label set per series. Missing points are NaN; where a sample itself is NaN (Prometheus answers ``NaN``
for 0/0), the frame says which cells hold one (``Frame.present``). Sources never raise out of ``read``: a
failure becomes an empty result and an unhealthy ``SourceHealth``, so a Prometheus outage cannot crash the
scoring loop.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Literal, Protocol, runtime_checkable

import numpy as np
from prometheus_client.metrics_core import Metric

from anomaly.snapshot import State
from anomaly.thresholds import BoolArray, FloatArray, IntArray
from gpuwarden.clock import Clock
from gpuwarden.jsonload import collector_paused

logger = logging.getLogger(__name__)
_NAME, _LABELS, _VALUE = itemgetter(0), itemgetter(1), itemgetter(2)  # prometheus_client Sample fields

SeriesKind = Literal["gauge", "counter"]


@dataclass(frozen=True, slots=True)
class Frame:
    """Samples of one query: ``values[series, step]`` at ``timestamps[step]``."""

    query: str
    labels: Sequence[Mapping[str, str]]
    timestamps: FloatArray
    values: FloatArray
    kind: SeriesKind = "gauge"
    present: BoolArray | None = None
    """Which cells hold a sample (``values``' shape), where some sample is NaN: a cell without one is NaN
    too. None: every cell that is not NaN holds one (an infinite value is a sample)."""
    partial: FloatArray | None = None
    """Where a range query's window was still filling (``anomaly.rangeedges`` blanked the point to NaN in
    ``values``), the value Prometheus answered over the part filled, NaN at every other cell; None when no
    point was blanked. Only a rule that asks whether a series answered at all reads it (``GpuLost``)."""

    @property
    def samples(self) -> BoolArray:
        """Which cells hold a sample: ``present``, else every cell not NaN."""
        return self.present if self.present is not None else ~np.isnan(self.values)

    def sampled(self, steps: BoolArray) -> BoolArray:
        """Which series hold a sample at any of the ``steps`` (a mask of its timestamps)."""
        cells = self.present[:, steps] if self.present is not None else ~np.isnan(self.values[:, steps])
        return np.asarray(cells.any(axis=1), np.bool_)

    def rows(self, rows: IntArray | list[int], labels: Sequence[Mapping[str, str]]) -> Frame:
        """The frame of its rows ``rows`` (``labels``: their label sets), every step."""
        present = None if self.present is None else self.present[rows]
        partial = None if self.partial is None else self.partial[rows]
        return Frame(self.query, labels, self.timestamps, self.values[rows], self.kind, present, partial)

    def merged(self, inverse: IntArray, firsts: IntArray) -> Frame:
        """One row per series where a series came as several rows (a proxy that concatenates an HA pair's
        answers without dedup): ``inverse``, each row's place among the series; ``firsts``, each series'
        first row. At each step the largest of its samples: a counter's lagging replica is behind, and the
        last one read, whichever it was, read a counter 5, 4, 5, 4 (a reset and new errors at every read)."""
        shape = (firsts.size, self.timestamps.size)
        values = np.full(shape, np.nan)
        np.fmax.at(values, inverse, self.values)
        present = None
        if self.present is not None:
            present = np.zeros(shape, np.bool_)
            np.logical_or.at(present, inverse, self.present)
        partial = None
        if self.partial is not None:
            partial = np.full(shape, np.nan)
            np.fmax.at(partial, inverse, self.partial)
        labels = [self.labels[i] for i in firsts.tolist()]
        return Frame(self.query, labels, self.timestamps, values, self.kind, present, partial)


def one_row_each(frame: Frame, rows: Sequence[int] | IntArray) -> tuple[Frame, IntArray]:
    """``frame`` with one row per series (``rows``: each row's, an id or a place) and the series of its rows:
    as given where none came twice, else ``Frame.merged``, its rows in the series' order."""
    places, firsts, inverse = np.unique(rows, return_index=True, return_inverse=True)
    if places.size == len(rows):
        return frame, np.asarray(rows, np.int64)
    return frame.merged(inverse, firsts), places


def joined(parts: Sequence[Frame]) -> Frame:
    """Consecutive parts of one query's read (in time order, none overlapping) as one frame; a series missing
    from a part is NaN there, holding no sample."""
    rows: dict[tuple[tuple[str, str], ...], int] = {}
    labels: list[dict[str, str]] = []
    for part in parts:
        for lab in part.labels:
            key = tuple(sorted(lab.items()))
            if key not in rows:
                rows[key] = len(labels)
                labels.append(dict(lab))
    grid = np.concatenate([part.timestamps for part in parts])
    values = np.full((len(labels), grid.size), np.nan)
    present = np.zeros(values.shape, np.bool_) if any(p.present is not None for p in parts) else None
    partial = np.full(values.shape, np.nan) if any(p.partial is not None for p in parts) else None
    col = 0
    for part in parts:
        once, at = one_row_each(part, [rows[tuple(sorted(lab.items()))] for lab in part.labels])
        values[at, col : col + once.timestamps.size] = once.values
        if present is not None:
            present[at, col : col + once.timestamps.size] = once.samples
        if partial is not None and once.partial is not None:
            partial[at, col : col + once.timestamps.size] = once.partial
        col += once.timestamps.size
    return Frame(parts[0].query, labels, grid, values, parts[0].kind, present, partial)


@dataclass(slots=True)
class QueryHealth:
    """Read health of one query of a source; ``series``: what its last good read returned."""

    up: bool = True
    last_success: float | None = None
    last_error: str = ""
    errors_total: int = 0
    series: int = 0
    answer_step: float | None = None
    """The step its answers come on where coarser than the step asked (``anomaly.coarsesteps``), else None."""
    part_steps: int | None = None
    """The most steps one request of it asks where its server refused more (a query limit: it is read in
    parts, ``anomaly.promhttp``; tried twice as long after ``GROW_AFTER`` clean reads), else None."""

    def succeeded(self, at: float, series: int) -> None:
        """Record a good read of the query."""
        self.up = True
        self.last_success = at
        self.series = series

    def failed(self, error: str) -> None:
        """Record a failed read of the query."""
        self.up = False
        self.last_error = error
        self.errors_total += 1


@dataclass(slots=True)
class SourceHealth:
    """What the service reports about its own input.

    ``up`` is False when nothing could be read; a source whose queries are read one by one (PromQL) stays up
    while one of them fails, and reports each in ``queries``. ``last_series`` is the last good read that
    returned any series: a Prometheus that has lost every exporter answers, with nothing.
    """

    name: str
    up: bool = True
    server: str = ""  # where it reads from, a password hidden (a Prometheus URL); empty for in-process
    last_success: float | None = None
    last_error: str = ""
    consecutive_failures: int = 0
    errors_total: int = 0
    series: int = 0
    last_series: float | None = None
    queries: dict[str, QueryHealth] = field(default_factory=dict)

    def succeeded(self, at: float, series: int) -> None:
        """Record a good read."""
        self.up = True
        self.last_success = at
        self.consecutive_failures = 0
        self.series = series
        if series:
            self.last_series = at

    @property
    def empty(self) -> bool:
        """Up, but its reads return no series at all where they returned some."""
        return self.up and self.series == 0 and self.last_series is not None

    def failed(self, error: str) -> None:
        """Record a failed read."""
        self.up = False
        self.last_error = error
        self.consecutive_failures += 1
        self.errors_total += 1


class Source(Protocol):
    """Anything the scoring loop can read samples from."""

    name: str

    def read(self, start: float, end: float) -> list[Frame]:
        """Samples in ``(start, end]``; never raises, reports failures through ``health``."""
        ...

    def health(self) -> SourceHealth:
        """Current health of this source."""
        ...


@runtime_checkable
class ResumableSource(Source, Protocol):
    """A source that reads each query on from its own last good read (``PromQLSource``)."""

    def resume(self, read: Mapping[str, float], default: float) -> None:
        """Read each query this source has not read yet from ``read[query]`` (where the process before
        this one last read it), else from ``default``, as it reads a query after a failed read of it."""
        ...


@runtime_checkable
class SavedSource(Source, Protocol):
    """A source whose own learnt state (``PromQLSource``'s answer steps) is kept in the state snapshot."""

    def state(self) -> State:
        """What it has learnt, as copies (``anomaly.snapshot``)."""
        ...

    def restore(self, state: State | None) -> None:
        """Take up ``state`` (``state()``) before its first read; None: let go of one taken up, keeping what
        its own reads taught as without it."""
        ...


class SupportsCollect(Protocol):
    """prometheus_client's collector interface (a collector or a ``CollectorRegistry``)."""

    def collect(self) -> Iterable[Metric]:
        """Fresh metric families."""
        ...


@dataclass(slots=True)
class _Group:
    kind: SeriesKind
    labels: list[Mapping[str, str]] = field(default_factory=list)
    values: list[float] = field(default_factory=list)


class CollectorSource:
    """Reads in-process collectors (e.g. the exporter's NVML collector) without a Prometheus in between.

    Every sample becomes a series of the query named after the sample (``DCGM_FI_DEV_GPU_TEMP``,
    ``gpuwarden_xid_errors_total``); ``include`` limits which sample names are read.
    """

    def __init__(
        self,
        collectors: Sequence[SupportsCollect],
        clock: Clock,
        include: Iterable[str] | None = None,
        name: str = "in-process",
    ) -> None:
        self.name = name
        self._collectors = list(collectors)
        self._clock = clock
        self._include = frozenset(include) if include is not None else None
        self._health = SourceHealth(name=name)

    def health(self) -> SourceHealth:
        """Current health."""
        return self._health

    def read(self, start: float, end: float) -> list[Frame]:
        """One instant: whatever the collectors report now, stamped with the clock's time."""
        now = self._clock.time()
        groups: dict[str, _Group] = {}
        try:
            with collector_paused():  # a sample tuple and a label dict per series: no cycles among them
                for collector in self._collectors:
                    for family in collector.collect():
                        if family.samples:
                            self._add_family(family, groups)
        except Exception as exc:  # loop boundary: a collector must not crash scoring
            logger.exception("in-process source read failed", extra={"source": self.name})
            self._health.failed(f"{type(exc).__name__}: {exc}")
            return []
        stamps = np.array([now])
        frames = []
        for q, g in groups.items():
            values = np.array(g.values, dtype=np.float64).reshape(-1, 1)
            blank = ~np.isfinite(values)
            values[blank] = np.nan
            present = np.ones(values.shape, np.bool_) if blank.any() else None  # each series read a sample
            frames.append(Frame(q, g.labels, stamps, values, g.kind, present))
        self._health.succeeded(now, sum(len(g.values) for g in groups.values()))
        return frames

    def _add_family(self, family: Metric, groups: dict[str, _Group]) -> None:
        """Group a family's samples by sample name (columns of the sample tuples, no per-sample branch)."""
        kind: SeriesKind = "counter" if family.type == "counter" else "gauge"
        samples = family.samples
        distinct = set(map(_NAME, samples))
        labels, values = list(map(_LABELS, samples)), list(map(_VALUE, samples))
        for name in distinct:
            if name.endswith("_created"):
                continue
            if self._include is not None and name not in self._include:
                continue
            group = groups.setdefault(name, _Group(kind=kind))
            if len(distinct) == 1:
                group.labels.extend(labels)
                group.values.extend(values)
            else:
                rows = [i for i, s in enumerate(samples) if s.name == name]
                group.labels.extend(labels[i] for i in rows)
                group.values.extend(values[i] for i in rows)
