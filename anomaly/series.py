"""Series bookkeeping: stable integer ids per (query, label set), counter rates, and the per-tick view.

Detectors keep their state in arrays indexed by these ids. A series unseen for ``forget_after`` seconds is
forgotten and its id recycled (detectors are told, so a reused id starts from a clean state). Counters are
turned into per-second rates; a counter that goes down was reset, and its new value is the increase since
the reset (Prometheus' ``rate`` semantics), so a restart never looks like a huge negative spike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from anomaly.relabels import GpuIdentity, followed, gpu_identity, metrics_answered, renamed_to
from anomaly.sentinels import blank_not_available
from anomaly.serieskeys import SeriesKey, series_key, sorted_keys
from anomaly.slots import Slots
from anomaly.snapshot import Arrays, State, rows_to_hold
from anomaly.sources import Frame, SeriesKind, one_row_each
from anomaly.thresholds import BoolArray, FloatArray, IntArray


class SeriesIndex:
    """Maps (query, labels) to dense integer ids and remembers when each was last seen."""

    def __init__(self) -> None:
        self._slots: Slots[SeriesKey] = Slots()
        self.labels: list[Mapping[str, str]] = []
        self.last_seen = np.zeros(0, np.float64)
        # Per query, its last label sets, their ids, and whether a series came twice among them.
        self._last: dict[str, tuple[Sequence[Mapping[str, str]], IntArray, bool]] = {}
        self._new: list[int] = []  # the ids assigned since the last ``expire``
        # The series the last ``expire`` forgot as answered under new labels (``_replaced``), each to the
        # series that answers for its GPU now: their alerts go on there.
        self.replaced: dict[SeriesKey, SeriesKey] = {}
        self._moved: dict[int, int] = {}  # the ids merged into others since the last ``expire`` (``follow``)

    def __len__(self) -> int:
        return len(self._slots)

    @property
    def keys(self) -> list[SeriesKey | None]:
        """Each id's (query, labels); None for a free id."""
        return self._slots.keys

    def id_of(self, key: SeriesKey) -> int | None:
        """The id of the series ``key`` names now; None once it was forgotten (``expire``)."""
        return self._slots.index.get(key)

    def id_key(self, sid: int) -> SeriesKey | None:
        """The (query, labels) series ``sid`` is now; None for an id not in use."""
        keys = self._slots.keys
        return keys[sid] if 0 <= sid < len(keys) else None

    def ids_for(self, query: str, labels: Sequence[Mapping[str, str]], now: float) -> IntArray:
        """Ids for every label set (new ones are assigned); marks them seen at ``now``.

        The last mapping of each query is kept: when a tick's label sets equal the previous tick's (the
        usual case; compared in C, by identity first), the ids are reused without hashing any label set.
        Label dicts must not be mutated in place after they were read.
        """
        cached = self._last.get(query)
        if cached is not None and len(cached[0]) == len(labels) and cached[0] == labels:
            self.last_seen[cached[1]] = now
            return cached[1]
        out = self._lookup(query, labels)
        out.flags.writeable = False
        repeated = np.unique(out).size < out.size
        self._last[query] = (labels if isinstance(labels, list) else list(labels), out, repeated)
        self.last_seen[out] = now
        return out

    def repeated(self, query: str) -> bool:
        """Whether a series came as several rows in the label sets ``ids_for`` was last given for ``query``
        (a proxy that concatenates an HA pair's answers without dedup; Prometheus never does)."""
        last = self._last.get(query)
        return last is not None and last[2]

    def _lookup(self, query: str, labels: Sequence[Mapping[str, str]]) -> IntArray:
        out = np.empty(len(labels), np.int64)
        ids = self._slots.index
        for i, lab in enumerate(labels):
            key = series_key(query, lab)
            sid = ids.get(key)
            if sid is None:
                sid = self._assign(key, lab)
            out[i] = sid
        return out

    def _assign(self, key: SeriesKey, labels: Mapping[str, str]) -> int:
        sid = self._slots.take(key)
        self._new.append(sid)
        if sid < len(self.labels):
            self.labels[sid] = labels
        else:
            self.labels.append(labels)
            if sid >= self.last_seen.size:
                grown = np.full(max(1024, 2 * self.last_seen.size), np.nan)
                grown[: self.last_seen.size] = self.last_seen
                self.last_seen = grown
        return sid

    def state(self) -> State:
        """Each id's query and label set (numbers into two tables: a GPU's labels are shared by its queries'
        series), when it was last seen, and the free ids (``anomaly.snapshot``)."""
        queries: dict[str, int] = {}
        label_sets: dict[tuple[tuple[str, str], ...], int] = {}
        keys = self.keys
        query_of, set_of = np.full(len(keys), -1, np.int32), np.full(len(keys), -1, np.int32)
        for sid, key in enumerate(keys):
            if key is not None:
                query_of[sid] = queries.setdefault(key[0], len(queries))
                set_of[sid] = label_sets.setdefault(key[1], len(label_sets))
        meta = {"queries": list(queries), "label_sets": list(label_sets), "free": self._slots.freed()}
        arrays: Arrays = {"query": query_of, "label_set": set_of, "last_seen": self.last_seen.copy()}
        return State(meta, arrays)

    def restore(self, state: State) -> None:
        """Take up ``state`` (``state()``): every id names the series it named when it was saved."""
        queries = [str(q) for q in state.meta["queries"]]
        label_sets = [tuple((str(n), str(v)) for n, v in items) for items in state.meta["label_sets"]]
        query_of, set_of = state.arrays["query"].tolist(), state.arrays["label_set"].tolist()
        last_seen = np.asarray(state.arrays["last_seen"], np.float64)
        if len(query_of) != len(set_of) or last_seen.size < len(query_of):
            raise ValueError(
                f"series index: {len(query_of)} ids, {len(set_of)} label sets, {last_seen.size} times"
            )
        keys: list[SeriesKey | None] = [
            None if q < 0 else (queries[q], label_sets[k]) for q, k in zip(query_of, set_of, strict=True)
        ]
        self._slots = Slots.restored(sorted_keys(keys, last_seen), [int(i) for i in state.meta["free"]])
        self.labels = [{} if k is None else dict(k[1]) for k in keys]
        self.last_seen = last_seen
        self._last.clear()
        self._new, self.replaced, self._moved = [], {}, {}

    def expire(self, now: float, forget_after: float, held: Callable[[str], bool] | None = None) -> IntArray:
        """Forget series not seen for ``forget_after`` seconds, but those of the queries ``held`` says are
        (not read this tick: their source down, their read failed); return their (now free) ids.

        A query that cannot be read tells nothing of its series: forgotten through a Prometheus outage
        longer than ``forget_after``, every series lost what its detectors had learnt (a week's seasonal
        profile) and started again from nothing at the read that caught the outage up, where a restart
        during the outage, which ran no tick meanwhile, kept them (restart fuzz, outages alone: 3 of 30
        seeds). Each is judged again at the next tick that reads its query."""
        used = self.last_seen[: len(self.keys)]
        gone = np.flatnonzero(used < now - forget_after)
        self.replaced = self._replaced()
        if self.replaced:
            gone = np.union1d(gone, np.array([self.id_of(k) for k in self.replaced], np.int64))
        if gone.size and held:
            keys = self.keys
            gone = np.array(
                [s for s in gone.tolist() if (key := keys[s]) is None or not held(key[0])], np.int64
            )
        if gone.size:
            self._last.clear()  # freed ids may be reassigned: no cached mapping may still name them
        for sid in gone.tolist():
            self._slots.free(sid)
        self.last_seen[gone] = np.nan
        return gone.astype(np.int64)

    def follow(self, moved: Mapping[int, int]) -> None:
        """Note the series a read merged into others (``anomaly.relabels.followed``: a GPU relabelled within
        it), each to the one that goes on: the next ``expire`` forgets them as replaced by it."""
        self._moved.update(moved)

    def _replaced(self) -> dict[SeriesKey, SeriesKey]:
        """The series whose GPU (``gpu_identity``) a read since the last ``expire`` answered under a new label
        set of the same query while it answered them no more: the same GPU relabelled (dcgm-exporter adding
        ``pod`` when a job lands, a relabel rule renaming its node), and those a read of several steps merged
        into their new labels' (``follow``). Kept until ``forget_after``, the new series warmed up anew beside
        them (a GPU mid-fault learnt the fault as its band and alerted when it recovered) and their alerts
        resolved ``forget_after`` later, mid-fault; forgotten now, detectors hand their state to the new
        series as to a GPU back under new labels. A GPU known by its node and index alone (no ``UUID``) is
        followed only from one series to one: two of them new, or two gone, may be two GPUs."""
        new, self._new = self._new, []
        moved, self._moved = self._moved, {}
        keys, labels = self.keys, self.labels
        out = {k: to for a, b in moved.items() if (k := keys[a]) is not None and (to := keys[b]) is not None}
        fresh: dict[tuple[str, GpuIdentity], dict[str, tuple[float, SeriesKey]]] = {}  # by metric name
        twice: set[tuple[str, GpuIdentity, str]] = (
            set()
        )  # a GPU without a UUID with two new series: ambiguous
        for sid in new:
            key = keys[sid] if sid < len(keys) else None
            if key is not None and sid not in moved and (gpu := gpu_identity(labels[sid])):
                by_name = fresh.setdefault((key[0], gpu), {})
                name = labels[sid].get("__name__", "")
                if name in by_name and not gpu[0]:
                    twice.add((key[0], gpu, name))
                by_name[name] = max(by_name.get(name, (-np.inf, key)), (float(self.last_seen[sid]), key))
        for query, gpu, name in twice:
            del fresh[(query, gpu)][name]
        newest = max((seen for by_name in fresh.values() for seen, _ in by_name.values()), default=None)
        if newest is None:
            return out
        # Only series read before the newest of them can be replaced: a few, where a loop over every series
        # took 0.15 s a tick at 250,000 series under pod churn (0.7 ms so).
        older = np.flatnonzero(self.last_seen[: len(keys)] < newest)
        found: dict[SeriesKey, list[SeriesKey]] = {}
        bare: set[SeriesKey] = set()  # the new series of GPUs without a UUID among them
        # Per query and GPU, its old series of a metric no new series of it has, and the metrics its other
        # old series went on in: a GPU renamed and relabelled at once (``renamed_to``).
        unmatched: dict[tuple[str, GpuIdentity], list[tuple[float, str, SeriesKey]]] = {}
        matched: dict[tuple[str, GpuIdentity], set[str]] = {}
        for sid in older.tolist():
            key = keys[sid]
            gpu = gpu_identity(labels[sid]) if key is not None else None
            if key is None or gpu is None or not fresh.get((key[0], gpu)):
                continue
            by_name = fresh[(key[0], gpu)]
            # The new series of its metric (a query of several: a GPU's temperature and power relabelled
            # together, each to its own), else the GPU's one new series (its metric renamed by an upgrade).
            name = labels[sid].get("__name__", "")
            now = by_name.get(name)
            if now is None and len(by_name) == 1:
                now = next(iter(by_name.values()))
            if now is None:
                unmatched.setdefault((key[0], gpu), []).append((float(self.last_seen[sid]), name, key))
                continue
            matched.setdefault((key[0], gpu), set()).add(name)
            # Not read at all where the new series was (both in one read: two pods on a shared GPU; a read
            # holding the change itself merged the old labels' rows into the new ones', ``follow``).
            if self.last_seen[sid] < now[0]:
                found.setdefault(now[1], []).append(key)
                if not gpu[0]:
                    bare.add(now[1])
        answered = metrics_answered(unmatched, lambda q: self._last[q][0] if q in self._last else [])
        for (query, gpu), olds in unmatched.items():
            by_name = fresh[(query, gpu)]
            read = {metric: seen for metric, (seen, _) in by_name.items()}
            last_read = [(seen, metric) for seen, metric, _ in olds]
            names = answered.get((query, gpu), [])
            renamed = renamed_to(last_read, read, matched.get((query, gpu), set()), names)
            if renamed is not None:
                found.setdefault(by_name[renamed][1], []).append(olds[0][2])
        for to, gone in found.items():
            if to not in bare or len(gone) == 1:
                out.update(dict.fromkeys(gone, to))
        return out


class CounterRates:
    """Per-second rates of counters with reset handling; state in arrays indexed by series id."""

    def __init__(self) -> None:
        self.last_value = np.full(1024, np.nan)
        self.last_time = np.full(1024, np.nan)

    def _grow(self, needed: int) -> None:
        if needed <= self.last_value.size:
            return
        size = max(needed, 2 * self.last_value.size)
        for name in ("last_value", "last_time"):
            old = getattr(self, name)
            new = np.full(size, np.nan)
            new[: old.size] = old
            setattr(self, name, new)

    def update(self, ids: IntArray, values: FloatArray, at: float) -> tuple[FloatArray, FloatArray]:
        """Return (increase since the last sample, per-second rate); no rate at a first sample or reset."""
        if ids.size:
            self._grow(int(ids.max()) + 1)
        prev = self.last_value[ids]
        dt = at - self.last_time[ids]
        ok = np.isfinite(values)
        reset = values < prev
        increase = np.where(reset, values, values - prev)  # a drop is a reset: count from zero
        increase = np.where(ok, increase, np.nan)
        with np.errstate(divide="ignore", invalid="ignore"):
            # The interval that spans a reset lost its pre-reset part: its rate is unknown, not low.
            rate = np.where((dt > 0) & ~reset, increase / dt, np.nan)
        self.last_value[ids] = np.where(ok, values, self.last_value[ids])
        self.last_time[ids] = np.where(ok, at, self.last_time[ids])
        return increase, rate

    def state(self) -> State:
        """The last value and time of every counter (``anomaly.snapshot``)."""
        return State(arrays={"last_value": self.last_value.copy(), "last_time": self.last_time.copy()})

    def restore(self, state: State) -> None:
        """Take up ``state`` (``state()``)."""
        value, at = state.arrays["last_value"], state.arrays["last_time"]
        if value.shape != at.shape:
            raise ValueError(f"counter rates: {value.shape} values but {at.shape} times")
        self.last_value, self.last_time = np.asarray(value, np.float64), np.asarray(at, np.float64)

    def reset(self, ids: IntArray) -> None:
        """Forget series."""
        ids = ids[ids < self.last_value.size]
        self.last_value[ids] = np.nan
        self.last_time[ids] = np.nan


class EvidenceBuffer:
    """The last ``depth`` (time, value) samples of every series, in arrays: the evidence window of alerts."""

    def __init__(self, depth: int = 10) -> None:
        self.depth = depth
        self.times = np.full((1024, depth), np.nan)
        self.values = np.full((1024, depth), np.nan)
        self.pos = np.zeros(1024, np.int64)

    def _grow(self, needed: int) -> None:
        if needed <= self.pos.size:
            return
        size = max(needed, 2 * self.pos.size)
        times = np.full((size, self.depth), np.nan)
        values = np.full((size, self.depth), np.nan)
        pos = np.zeros(size, np.int64)
        times[: self.pos.size], values[: self.pos.size], pos[: self.pos.size] = (
            self.times,
            self.values,
            self.pos,
        )
        self.times, self.values, self.pos = times, values, pos

    def push(self, ids: IntArray, values: FloatArray, at: float) -> None:
        """Append one sample per id (ids unique)."""
        if not ids.size:
            return
        self._grow(int(ids.max()) + 1)
        slot = self.pos[ids] % self.depth
        self.times[ids, slot] = at
        self.values[ids, slot] = values
        self.pos[ids] += 1

    def window(self, sid: int) -> list[tuple[float, float]]:
        """The series' remembered samples, oldest first, finite only."""
        if sid >= self.pos.size:
            return []
        order = (np.arange(self.depth) + self.pos[sid]) % self.depth
        return [
            (float(t), float(v))
            for t, v in zip(self.times[sid, order], self.values[sid, order], strict=True)
            if np.isfinite(t) and np.isfinite(v)
        ]

    def state(self) -> State:
        """The remembered samples of every series that has some (``anomaly.snapshot``)."""
        rows = np.flatnonzero(self.pos)
        arrays = {"rows": rows, "times": self.times[rows], "values": self.values[rows], "pos": self.pos[rows]}
        return State({"size": int(self.pos.size)}, arrays)

    def restore(self, state: State) -> None:
        """Take up ``state`` (``state()``)."""
        rows, times, values, pos = (state.arrays[k] for k in ("rows", "times", "values", "pos"))
        if times.shape != values.shape or times.shape != (rows.size, self.depth) or pos.shape != rows.shape:
            raise ValueError(f"evidence: {rows.size} rows, {times.shape} times, {values.shape} values")
        size = rows_to_hold("evidence", rows, int(state.meta["size"]), 1024)
        self.times, self.values, self.pos = (
            np.full((size, self.depth), np.nan),
            np.full((size, self.depth), np.nan),
            np.zeros(size, np.int64),
        )
        self.times[rows], self.values[rows], self.pos[rows] = times, values, pos

    def reset(self, ids: IntArray) -> None:
        """Forget series."""
        ids = ids[ids < self.pos.size]
        self.times[ids] = np.nan
        self.values[ids] = np.nan
        self.pos[ids] = 0


@dataclass(frozen=True, slots=True)
class Step:
    """One query at one time: ids, raw values and the values detectors score (rates for counters)."""

    query: str
    at: float
    ids: IntArray
    labels: Sequence[Mapping[str, str]]
    raw: FloatArray
    value: FloatArray
    increase: FloatArray
    kind: SeriesKind
    outside: BoolArray | None = None
    """Rows whose ``value`` is outside the query's ``data_range``: scored, never learned (a gap to every
    detector's state); None when no row is."""
    partial: FloatArray | None = None
    """Per row, what a range query answered over a window still filling where ``raw`` is NaN for it
    (``Frame.partial``), NaN at the other rows; None when no row's point was blanked so."""

    @property
    def outside_ids(self) -> IntArray:
        """The series ids of the rows outside the query's data range (none: empty), whose state a detector
        puts back after scoring them (``steps.unlearned``)."""
        return self.ids[self.outside] if self.outside is not None else self.ids[:0]

    @property
    def learnable(self) -> FloatArray:
        """``value`` with the rows outside the query's data range read as gaps (NaN): what detectors learn."""
        if self.outside is None:
            return self.value
        return np.where(self.outside, np.nan, self.value)


@dataclass(slots=True)
class View:
    """What one scoring tick read: every step in time order, and the newest step of each query."""

    time: float
    steps: list[Step] = field(default_factory=list)
    latest: dict[str, Step] = field(default_factory=dict)
    forgotten: IntArray = field(default_factory=lambda: np.zeros(0, np.int64))
    not_available: dict[str, int] = field(default_factory=dict)
    """Per query, the samples read as an NVML/DCGM not-available value and turned into gaps."""
    not_due: frozenset[str] = frozenset()
    """Queries a source reads on their own step that this tick did not read: no step of theirs fell in its
    window (``step_seconds`` longer than ``infer_every_seconds``). Nothing is known of their series: not gone,
    not normal, not an outage."""


def build_view(
    frames: Sequence[Frame],
    index: SeriesIndex,
    counters: CounterRates,
    now: float,
    ranges: Mapping[str, tuple[float, float]] | None = None,
) -> View:
    """Assign ids, read not-available values as gaps, turn counters into increases and rates, mark the values
    outside their query's ``ranges`` (``data_range``), and order the steps in time."""
    view = View(time=now)
    for read in frames:
        if not read.labels:
            continue
        ids = index.ids_for(read.query, read.labels, float(read.timestamps[-1]))
        # A series twice in the answer: the detectors would keep whichever row came last.
        frame, ids = one_row_each(read, ids) if index.repeated(read.query) else (read, ids)
        frame, ids, moved = followed(frame, ids)
        if moved:
            index.follow(moved)
        values, blanked = blank_not_available(frame.values)
        if blanked:
            view.not_available[frame.query] = view.not_available.get(frame.query, 0) + blanked
        bounds = ranges.get(frame.query) if ranges else None
        for j, at in enumerate(frame.timestamps.tolist()):
            raw = values[:, j]
            if frame.kind == "counter":
                increase, value = counters.update(ids, raw, at)
            else:
                increase, value = np.full(raw.shape, np.nan), raw
            outside = _outside(value, bounds) if bounds is not None else None
            partial = _partial(frame, j)
            step = Step(
                frame.query, at, ids, frame.labels, raw, value, increase, frame.kind, outside, partial
            )
            view.steps.append(step)
            view.latest[frame.query] = step
    view.steps.sort(key=lambda s: s.at)
    return view


def _partial(frame: Frame, col: int) -> FloatArray | None:
    """The column ``col`` of ``frame.partial``, not-available values read as gaps; None where none is set."""
    if frame.partial is None or np.isnan(frame.partial[:, col]).all():
        return None
    return blank_not_available(np.ascontiguousarray(frame.partial[:, col]))[0]


def _outside(value: FloatArray, bounds: tuple[float, float]) -> BoolArray | None:
    """Which values are outside ``[low, high]`` (NaN is a gap, not outside); None when none is."""
    with np.errstate(invalid="ignore"):
        outside: BoolArray = (value < bounds[0]) | (value > bounds[1])
    return outside if outside.any() else None
