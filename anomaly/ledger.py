"""The last value of each GPU error signal, kept per GPU instead of per series.

The signature rules read counters (XIDs per code, double-bit ECC, NVLink errors) and the last-XID gauge. A
series is the wrong unit for them: attribution labels (``pod``, ``namespace``) come and go with the jobs on
a GPU, so one GPU's ECC count moves from series to series, and an XID counter series
(``gpuwarden_xid_errors_total{xid="79"}``) only exists once that XID has happened on that GPU, so its first
sample has no earlier one to be diffed against (Prometheus' ``increase()`` has the same blind spot). The
ledger keys each value by (query, GPU, XID code):

* a key seen before compares with its last value, whichever series carried it and however long ago: a
  relabel, a scrape gap or a series the index forgot (after ``forget_after_seconds``) shows nothing new, and
  an error that arrives with a relabel (the job it ended) still counts;
* a key never seen before is history (every key at the service's first read, so counts from before a
  restart raise nothing, and every key of a GPU met for the first time), unless the caller counts new keys
  from zero and the GPU was known before this tick: a new XID series on a GPU already watched is a new XID.
  A ledger taken up from a snapshot (``state``/``restore``) knows the keys and GPUs read before the restart:
  what they counted meanwhile is new.

A key is remembered for ``memory_seconds`` (7 days by default) after it was last read: the limit. An XID
series that returns later than that with its old count raises that count again if its GPU was read
meanwhile; a GPU unread that long is met anew and its values are history. ``expire`` names the GPUs it
forgot, so that a rule's own per-GPU state (when a counter was read, the links seen active) goes with them:
GPUs replaced or gone over months of fleet churn leave nothing behind.

A counter that jumps by more than ``increase(most=...)`` in one read is held for one read: counters only
grow, so a real jump is still there at the next read and counts then, whole; a garbage reading (dcgm-exporter
has served 808334905 for a field) is gone by then and counts nothing, nor does its fall back, which would
otherwise read as a reset and count the counter's whole value once more. A fall below the count (to 0, or
to a little less: Thanos switching to an HA replica a scrape behind, its counter-aware dedup being for
``rate()`` only) is held the same way: a reset if the next read is still below that count (0 again, or the
errors since the reset, which count), a glitch if it is back at the count or above (what is above counts).
A reset counts nothing at its 0 anyway, so holding a fall to 0 delays nothing; a reset whose errors are
already read with it is told one read late. The count from before the 0 is remembered while the
counter reads 0, for ``ZERO_MEMORY_READS`` reads (5, 0, 0, 5 is a glitch too); a value between 0 and it
is a reset and its errors, and ends the memory. It misses only a reset followed within those reads, in one
read, by exactly as many errors as the counter held. ``confirmed`` holds a gauge's reading that may be a
glitch (an XID code no XID has, the last-XID gauge's fall to 0) until the next read has the same value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from anomaly.series import Step, View
from anomaly.slots import Slots, grown
from anomaly.snapshot import State
from anomaly.thresholds import BoolArray, FloatArray, IntArray
from gpuwarden.model import NODE_LABELS

GpuKey = tuple[str, str]
_Key = tuple[str, GpuKey, str]
_SEEN = ""  # the query part of a GPU's own key, which says when the GPU was read at all
DEFAULT_MEMORY_SECONDS = 7 * 86400.0
# Reads of 0 after a count for which the count is remembered: a return to it within them is a glitch ending.
ZERO_MEMORY_READS = 4
# The per-key arrays (floats) and the per-series-id ones (int64) a snapshot keeps (``GpuValueLedger.state``).
_KEY_ARRAYS = ("last", "seen", "since", "held", "before_zero", "zero_reads")
_ID_ARRAYS = ("_key_of_id", "_gpu_of_id")
# A key's parts, each kept as numbers into a list of names: 80,000 keys as lists took 3 s to copy (the
# garbage collector walking the service's heap at each batch of new lists), while the ticks waited.
_KEY_PARTS = ("key_query", "key_gpu", "key_index", "key_xid")


def gpu_key(labels: Mapping[str, str]) -> GpuKey:
    """The GPU a series is about, whatever else its labels say (pod, exporter pod, instance): its UUID, else
    its node (the first of ``NODE_LABELS`` set, else ``instance``) and index."""
    uuid = labels.get("UUID") or labels.get("uuid")
    if uuid:
        return (uuid, "")
    node = next((labels[k] for k in NODE_LABELS if labels.get(k)), labels.get("instance", ""))
    return (node, labels.get("gpu", ""))


class Names:
    """Strings numbered in the order met: how a snapshot keeps many keys made of few distinct strings."""

    def __init__(self) -> None:
        self._index: dict[str | None, int] = {None: -1}

    def codes(self, names: Iterable[str | None], size: int) -> IntArray:
        """The number of each of ``size`` ``names`` (-1 for None). Numbered once per distinct name, then
        looked up in C: a Python step per name took 0.5 s for a 10,000-GPU fleet's NVLinks."""
        names = list(names)
        index = self._index
        for name in dict.fromkeys(names):
            index.setdefault(name, len(index) - 1)
        return np.fromiter(map(index.__getitem__, names), np.int64, size)

    def listed(self) -> list[str]:
        """The names, in the order of their numbers."""
        return [name for name in self._index if name is not None]


def decoded(names: Sequence[str], codes: IntArray) -> list[str | None]:
    """The names ``Names.codes`` gave ``codes`` (None for -1); ``ValueError`` for one out of range."""
    if (
        codes.ndim != 1
        or codes.dtype != np.int64
        or (codes.size and not -1 <= codes.min() <= codes.max() < len(names))
    ):
        raise ValueError(f"codes {codes.dtype}{codes.shape} are not numbers into the {len(names)} names")
    return [None if c < 0 else names[c] for c in codes.tolist()]


class GpuValueLedger:
    """Last values per (query, GPU, XID code), and when each GPU was first and last read."""

    def __init__(self, memory_seconds: float = DEFAULT_MEMORY_SECONDS) -> None:
        self.memory_seconds = memory_seconds
        self._slots: Slots[_Key] = Slots()
        self.last = np.full(1024, np.nan)  # the last finite value of a key
        self.seen = np.full(1024, np.nan)  # when a key was last read
        self.since = np.full(1024, np.nan)  # when a key was first read
        self.held = np.full(1024, np.nan)  # a jump too large to believe at once, until the next read
        self.before_zero = np.full(1024, np.nan)  # a count that fell to 0, while the 0 may be a glitch
        self.zero_reads = np.zeros(1024)  # reads of 0 since then
        self._key_of_id = np.full(1024, -1, np.int64)  # series id -> its key
        self._gpu_of_id = np.full(1024, -1, np.int64)  # series id -> its GPU's own key

    def __len__(self) -> int:
        return len(self._slots)

    def state(self) -> State:
        """Each key (numbers into one list of names), the free slots, and the arrays (copies) by key and by
        series id (``anomaly.snapshot``): taken up, the counts read before a restart are compared with, not
        history."""
        keys, names = self._slots.keys, Names()
        parts = (
            names.codes((None if k is None else k[0] for k in keys), len(keys)),
            names.codes((None if k is None else k[1][0] for k in keys), len(keys)),
            names.codes((None if k is None else k[1][1] for k in keys), len(keys)),
            names.codes((None if k is None else k[2] for k in keys), len(keys)),
        )
        arrays = {name.lstrip("_"): getattr(self, name).copy() for name in (*_KEY_ARRAYS, *_ID_ARRAYS)}
        arrays.update(zip(_KEY_PARTS, parts, strict=True))
        return State({"names": names.listed(), "free": self._slots.freed()}, arrays)

    def restore(self, state: State) -> None:
        """Take up ``state`` (``state()``); ``ValueError``, ``KeyError`` or ``IndexError`` when it does not
        fit, nothing taken up."""
        names = [str(n) for n in state.meta["names"]]
        query, gpu, index, xid = (decoded(names, state.arrays[part]) for part in _KEY_PARTS)
        keys: list[_Key | None] = [
            None if q is None or g is None or i is None or x is None else (q, (g, i), x)
            for q, g, i, x in zip(query, gpu, index, xid, strict=True)
        ]
        by_key = [state.arrays[name] for name in _KEY_ARRAYS]
        by_id = [state.arrays[name.lstrip("_")] for name in _ID_ARRAYS]
        size = by_key[0].size
        if any(a.shape != (size,) or a.dtype != np.float64 for a in by_key) or size < len(keys):
            raise ValueError(f"ledger: {len(keys)} keys, arrays of {[a.shape for a in by_key]}")
        if any(a.shape != by_id[0].shape or a.dtype != np.int64 or a.ndim != 1 for a in by_id) or any(
            a.size and not -1 <= a.min() <= a.max() < len(keys) for a in by_id
        ):
            raise ValueError(f"ledger: series ids of {[a.shape for a in by_id]}, not of {len(keys)} keys")
        self._slots = Slots.restored(keys, [int(i) for i in state.meta["free"]])
        for name, array in zip((*_KEY_ARRAYS, *_ID_ARRAYS), (*by_key, *by_id), strict=True):
            setattr(self, name, array)

    def forget(self, ids: IntArray) -> None:
        """Series ids the index freed: they may come back naming other series. Their keys are kept."""
        ids = ids[ids < self._key_of_id.size]
        self._key_of_id[ids] = -1
        self._gpu_of_id[ids] = -1

    def expire(self, now: float) -> set[GpuKey]:
        """Drop keys not read for ``memory_seconds``; return the GPUs forgotten with them (not read at all
        that long), whose other state the caller drops too: one expiry for every per-GPU memory."""
        used = self.seen[: len(self._slots.keys)]
        stale = np.flatnonzero(used < now - self.memory_seconds)
        gone: set[GpuKey] = set()
        if not stale.size:
            return gone
        for k in stale.tolist():
            name = self._slots.free(k)
            if name is not None and name[0] == _SEEN:
                gone.add(name[1])
        self.last[stale] = self.seen[stale] = self.since[stale] = self.held[stale] = np.nan
        self.before_zero[stale] = np.nan
        drop = np.isin(self._key_of_id, stale) | np.isin(self._gpu_of_id, stale)
        self._key_of_id[drop] = -1
        self._gpu_of_id[drop] = -1
        return gone

    def observe(self, step: Step, now: float) -> None:
        """Note the GPUs a step names (``gpuwarden_gpu_up``): from the next tick on they are known."""
        keys, gpus = self._map(step, now)
        self.seen[keys] = now
        self.seen[gpus] = now

    def update(
        self, step: Step, now: float, *, count_new: bool = False, counter: bool = False
    ) -> tuple[IntArray, FloatArray, FloatArray]:
        """Record a step; return (rows, their values, the last value of their keys before this step).

        One row per key with a finite value (the largest, when several series carry one GPU's key); of a
        ``counter``, a non-negative one (a negative count is no reading: an exporter's signed -1, "not
        available", was a reset and the count's return as many new errors). The previous value is NaN for a
        key never seen, or 0 with ``count_new`` when its GPU was known before.
        """
        keys, gpus = self._map(step, now)
        raw = step.raw
        rows = np.flatnonzero(np.isfinite(raw) & (raw >= 0) if counter else np.isfinite(raw))
        if rows.size > 1:
            rows = rows[np.lexsort((-raw[rows], keys[rows]))]  # by key, the largest value first
            k = keys[rows]
            first = np.ones(rows.size, bool)
            first[1:] = k[1:] != k[:-1]
            rows = rows[first]
        k = keys[rows]
        values = raw[rows]
        prev = self.last[k]
        if count_new:
            prev = np.where(np.isnan(prev) & (self.since[gpus[rows]] < now), 0.0, prev)
        self.last[k] = values
        self.seen[keys] = now
        self.seen[gpus] = now
        return rows, values, prev

    def increase(
        self, view: View, step: Step, *, count_new: bool = False, most: float = np.inf
    ) -> FloatArray:
        """A counter's increase per row over every step of its read this tick (NaN: nothing to compare).

        A query whose step is shorter than the tick, or the catch-up read after a source outage, has several
        steps: an error in any of them counts. A value below the last one is a reset: it is the increase.
        An increase above ``most`` in one step is held until the next step (see the module text).
        """
        total = np.full(len(step.ids), np.nan)
        for s in view.steps:
            if s.ids is not step.ids or s.query != step.query:
                continue
            rows, values, prev = self.update(s, view.time, count_new=count_new, counter=True)
            inc = np.where(values < prev, values, values - prev)
            if most < np.inf and rows.size:
                inc = self._hold(self._key_of_id[s.ids[rows]], values, prev, inc, most)
            before = total[rows]
            total[rows] = np.where(np.isnan(before), inc, before + np.nan_to_num(inc))
        return total

    def _hold(
        self, keys: IntArray, values: FloatArray, prev: FloatArray, inc: FloatArray, most: float
    ) -> FloatArray:
        """``inc`` with readings not yet believed held for one read: a jump above ``most``, and a fall below
        the count. A held reading counts nothing now and its key keeps its value from before it; at the next
        read a held jump counts whole when its counter stayed up (a real jump), a held fall is a reset when
        the counter still reads below its count from before (0 again, or new errors since the reset: they
        count), and otherwise the held reading is as if it had not been (a glitch, gone). The
        count from before a 0 is remembered while the counter reads 0, for ``ZERO_MEMORY_READS`` reads: back
        at it or above, the 0s were a glitch and only what is above counts."""
        inc = self._past_zeros(keys, values, prev, inc)
        held = self.held[keys]
        # What was held at the last read (NaN: nothing) lies above the count kept for it when it was a jump,
        # below when it was a fall; a jump still there is believed, and a fall still below is a reset.
        jump = (inc > most) & ~((held > prev) & (values >= held))
        fell = (values < prev) & ~(held < prev)
        hold = jump | fell
        self.held[keys] = np.where(hold, values, np.nan)
        if not hold.any():
            return inc
        self.last[keys[hold]] = prev[hold]
        return np.where(hold, 0.0, inc)

    def _past_zeros(
        self, keys: IntArray, values: FloatArray, prev: FloatArray, inc: FloatArray
    ) -> FloatArray:
        """``inc`` counted from the remembered count before a fall to 0 where the counter is back at it or
        above; remembers a new fall to 0, and forgets one that grew below its count (a reset) or read 0 for
        more than ``ZERO_MEMORY_READS`` reads."""
        before = self.before_zero[keys]
        back = values >= before  # NaN: nothing remembered
        inc = np.where(back, values - before, inc)
        zero = values == 0
        zeroed = zero & (prev > 0) & np.isnan(before)
        reads = np.where(zero & ~np.isnan(before), self.zero_reads[keys] + 1, 1.0)
        keep = (zeroed | (zero & ~np.isnan(before))) & (reads <= ZERO_MEMORY_READS)
        self.before_zero[keys] = np.where(keep, np.where(zeroed, prev, before), np.nan)
        self.zero_reads[keys] = np.where(keep, reads, 0.0)
        return inc

    def confirmed(
        self, step: Step, rows: IntArray, values: FloatArray, prev: FloatArray, suspect: BoolArray
    ) -> BoolArray:
        """Which ``rows`` of ``step`` (as ``update`` returned them) are believed: a ``suspect`` reading
        (a gauge's value that may be a glitch) only when its key read the same value at the
        last read as well. One not believed is held: its key keeps ``prev``, so that a reading that was
        never confirmed is, at the next read, as if it had not been."""
        keys = self._key_of_id[step.ids[rows]]
        hold: BoolArray = suspect & (values != self.held[keys])
        self.held[keys] = np.where(hold, values, np.nan)
        self.last[keys[hold]] = prev[hold]
        believed: BoolArray = ~hold
        return believed

    def _map(self, step: Step, now: float) -> tuple[IntArray, IntArray]:
        """The key and GPU key of every row; only series new to the ledger cost a label lookup."""
        ids = step.ids
        if ids.size:
            size = int(ids.max()) + 1
            self._key_of_id = grown(self._key_of_id, size, -1)
            self._gpu_of_id = grown(self._gpu_of_id, size, -1)
        missing = np.flatnonzero(self._key_of_id[ids] < 0)
        for i in missing.tolist():
            labels = step.labels[i]
            gpu = gpu_key(labels)
            sid = int(ids[i])
            self._key_of_id[sid] = self._key((step.query, gpu, labels.get("xid", "")), now)
            self._gpu_of_id[sid] = self._key((_SEEN, gpu, ""), now)
        return self._key_of_id[ids], self._gpu_of_id[ids]

    def _key(self, name: _Key, now: float) -> int:
        k = self._slots.index.get(name)
        if k is not None:
            return k
        k = self._slots.take(name)
        if k >= self.last.size:
            self.last = grown(self.last, k + 1, np.nan)
            self.seen = grown(self.seen, k + 1, np.nan)
            self.since = grown(self.since, k + 1, np.nan)
            self.held = grown(self.held, k + 1, np.nan)
            self.before_zero = grown(self.before_zero, k + 1, np.nan)
            self.zero_reads = grown(self.zero_reads, k + 1, 0.0)
        self.since[k] = self.seen[k] = now
        return k
