"""The ``thermal`` detector's settings and per-GPU lines, in arrays by slot, and what keeps them: their
growth, a snapshot's state, forgetting (parked by GPU) and taking up again, the join of temperature and power
rows.

State is kept in arrays by slot, one slot per temperature series scored (given on its first score, freed
when the series is forgotten): indexed by series id, they reached the highest temperature id, so six GPUs
numbered after 200,000 other series held 20 MB. Power rows are joined on ``key_label`` (``UUID``), and the
temperature series' slots looked up, once, and reused while both queries keep the same series. A forgotten
series' state is parked by its GPU (``key_label``) for a day, and taken up again when that GPU reports under
a new series (its node back from an outage longer than the service's ``forget_after_seconds``).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence

import numpy as np

from anomaly.needs import POWER, TEMP
from anomaly.parked import ParkedRows
from anomaly.series import Step
from anomaly.slots import Slots
from anomaly.snapshot import State
from anomaly.thresholds import FloatArray, IntArray

_INT_BYTES = sys.getsizeof(2**40)  # a series id or slot as a Python int in the map
# A node down longer than this was out for repair (a cooler or the GPU's board replaced): learnt anew.
_PARKED_SECONDS = 86_400.0
_SETTLED_LAGS = 5.0  # lags after which a first-order lag is within 1 % of its step (e**-5 = 0.7 %)
FIELDS = (  # its per-slot arrays, in the order of a parked GPU's row
    "n",
    "last",
    "lagged",
    "slow",
    "cooling",
    "mp",
    "mt",
    "mpp",
    "mpt",
    "dev",
    "pmin",
    "pmax",
    "ptop",
    "held_for",
    "hot_at",
    "hot_in",
    "risen_at",
    "settled_t",
    "settled_p",
    "pbot",
    "fell_at",
    "low_t",
    "low_p",
    "cooled_at",
    "cooled_t",
    "cooled_p",
    "rest_t",
    "rest_p",
    "seen_at",
    "gapped_at",
    "seen_was",
)
# Its per-slot times (0: none).
_TIMES = ("last", "hot_at", "risen_at", "fell_at", "cooled_at", "seen_at", "gapped_at", "seen_was")


class ThermalLines:
    """The thermal detector's settings and per-GPU state, by slot (``anomaly.thermal.ThermalDetector``)."""

    def __init__(
        self,
        temp_query: str = TEMP,
        power_query: str = POWER,
        *,
        key_label: str = "UUID",
        lag_seconds: float = 20.0,
        alpha: float = 0.01,
        k: float = 6.0,
        min_deviation: float = 3.0,
        ridge_watts: float = 10.0,
        warmup: int = 60,
        hold_seconds: float = 6 * 3600.0,
        peer_labels: Sequence[str] = ("modelName",),
        min_peers: int = 3,
        peer_tolerance: float = 0.25,
        settle_seconds: float = 600.0,
    ) -> None:
        self.temp_query, self.power_query, self.key_label = temp_query, power_query, key_label
        self.lag_seconds, self.alpha, self.k = lag_seconds, alpha, k
        self.min_deviation, self.ridge, self.warmup = min_deviation, ridge_watts**2, warmup
        self.ridge_watts, self.hold_seconds = ridge_watts, hold_seconds
        self.peer_labels, self.min_peers, self.peer_tolerance = tuple(peer_labels), min_peers, peer_tolerance
        self.settle_seconds = settle_seconds
        self.n = np.zeros(0)
        self.last = np.zeros(0)
        self.lagged = np.zeros(0)
        self.slow = np.zeros(0)  # its power lagged by the longest lag it allows for (``_slowest_lag``)
        self.cooling = np.zeros(0)  # the temperature a GPU of the slowest lag would have (``_cooling``)
        self.mp = np.zeros(0)
        self.mt = np.zeros(0)
        self.mpp = np.zeros(0)
        self.mpt = np.zeros(0)
        self.dev = np.zeros(0)
        self.pmin = np.zeros(0)  # the lagged power range it learnt at (from samples inside the band)
        self.pmax = np.zeros(0)
        self.ptop = np.zeros(0)  # the highest of it reached by a scored sample (not by guesses alone)
        self.held_for = np.zeros(0)  # the seconds its current hold has been hot (the samples' gaps summed)
        self.hot_at = np.zeros(0)  # its last sample above the band at a learnt power
        self.hot_in = np.zeros(0)  # its current run of hot samples' last score where it began inside the
        # learnt range (or carried on there, ``_carried``), else 0
        self.risen_at = np.zeros(0)  # when its power rose above any its line scored at (0: it is not)
        self.settled_t = np.zeros(0)  # its temperature and lagged power when that power had stayed there
        self.settled_p = np.zeros(0)  # ``settle_seconds`` (``_climbing``)
        self.pbot = np.zeros(0)  # the lowest power a scored sample learnt at (``ptop``'s other end)
        self.fell_at = np.zeros(0)  # when its power fell below any its line scored at (0: it is not)
        self.low_t = np.zeros(0)  # the lowest temperature it cooled to there, and its power lagged at the
        self.low_p = np.zeros(0)  # slowest lag then (``_rewarming``)
        self.cooled_at = np.zeros(0)  # the read its cooling to that lowest began at: its time, temperature
        self.cooled_t = np.zeros(0)  # and power (the lower of its two lags; ``_unpowered``)
        self.cooled_p = np.zeros(0)
        self.rest_t = np.zeros(0)  # the temperature it settled at, at the lowest power it settled at in no
        self.rest_p = np.zeros(0)  # hot run, and that power lagged (0: none yet; ``_rested``)
        self.seen_at = np.zeros(0)  # when its settle clock started, less the time unread since (``_seen``)
        self.gapped_at = np.zeros(0)  # its first sample after its latest gap over the slowest lag (0: none)
        self.seen_was = np.zeros(0)  # ``seen_at`` before that gap restarted it, plus the gap (0: it did not,
        # or the gap was of ``settle_seconds`` or more: an outage's restart is never undone)
        self._join: tuple[IntArray, IntArray, IntArray, IntArray, IntArray, IntArray] | None = None
        self._slot: Slots[int] = Slots()  # temperature series id <-> its row of the arrays
        self._gpu: list[str | None] = []  # each slot's GPU (``key_label``), to park its state when forgotten
        self._parked = ParkedRows(_PARKED_SECONDS)  # forgotten GPUs' state, by ``key_label``
        self._read_at = 0.0  # the time of the tick before (0: none since started or restored)
        self._interval = 0.0  # the latest interval between ticks (0: none seen; ``_stepped_back``)

    def _grow(self, needed: int) -> None:
        if needed <= self.n.size:
            return
        size = max(needed, 2 * self.n.size, 64)
        for name in FIELDS:
            old = getattr(self, name)
            new = np.zeros(size)
            new[: old.size] = old
            setattr(self, name, new)

    def state_bytes(self) -> int:
        """Bytes of per-GPU state held: its arrays, a slot per temperature series scored (64 at least), the
        map of series ids to slots (its table and two integers an entry, and the list of slots' ids), each
        slot's GPU, and the state parked for forgotten GPUs."""
        index, keys = self._slot.index, self._slot.keys
        slots = sys.getsizeof(index) + _INT_BYTES * 2 * len(index) + sys.getsizeof(keys)
        gpus = sys.getsizeof(self._gpu)  # its strings are the labels' own
        arrays = sum(int(getattr(self, name).nbytes) for name in FIELDS)
        return slots + gpus + arrays + self._parked.nbytes()

    def state(self) -> State:
        """Each slot's line and its temperature series id, each slot's GPU, and the state parked for
        forgotten GPUs (``anomaly.snapshot``)."""
        sids = np.array([-1 if sid is None else sid for sid in self._slot.keys], np.int64)
        parked, parked_arrays = self._parked.state(np.float64, len(FIELDS))
        arrays = {name: getattr(self, name).copy() for name in FIELDS}
        arrays.update(slot_series=sids, **parked_arrays)
        meta = {"free": self._slot.freed(), "gpus": list(self._gpu), "parked": parked}
        return State(meta, arrays)

    def restore(self, state: State) -> None:
        """Take up ``state`` (``state()``)."""
        rows = state.arrays["n"].shape[0]
        for name in FIELDS:
            if state.arrays[name].shape != (rows,):
                raise ValueError(f"thermal {name}: shape {state.arrays[name].shape}, not ({rows},)")
        parked = ParkedRows.restored(
            _PARKED_SECONDS,
            "thermal",
            state.meta["parked"],
            state.arrays,
            dtype=np.float64,
            width=len(FIELDS),
        )
        sids = state.arrays["slot_series"].tolist()
        self._slot = Slots.restored(
            [None if s < 0 else int(s) for s in sids], [int(i) for i in state.meta["free"]]
        )
        for name in FIELDS:
            setattr(self, name, np.asarray(state.arrays[name], np.float64))
        self._gpu = [None if g is None else str(g) for g in state.meta["gpus"]]
        self._parked = parked
        self._join = None
        self._read_at, self._interval = 0.0, 0.0

    def forget(self, ids: IntArray) -> None:
        """Park the state of vanished series by GPU and free their slots (the cached join may name them).

        A node down longer than the service's ``forget_after_seconds`` lost its GPUs' lines: back, each
        warmed up anew and learnt what it read then for good, a cooler that failed while the node was down
        (the GPU at 100 C) included. A line is its GPU's hardware's: the same GPU, back, takes it up again."""
        if ids.size:
            self._join = None
        slots = [slot for sid in ids.tolist() if (slot := self._slot.index.get(sid)) is not None]
        for slot in slots:
            gpu, self._gpu[slot] = self._gpu[slot], None
            if gpu is not None and self.n[slot] > 0:
                row = np.array([getattr(self, name)[slot] for name in FIELDS])
                # At most as many GPUs as it has slots (550 B a GPU parked, 248 B a slot): 2.3x its state.
                self._parked.park(gpu, float(self.last[slot]), row, self.n.size)
            self._slot.free(slot)
        self.n[slots] = 0

    def _unpark(self, slots: IntArray, labels: Sequence[Mapping[str, str]], at: float) -> None:
        """Give each slot new to its series the state its GPU had when it was forgotten, if any was parked."""
        self._gpu += [None] * (self.n.size - len(self._gpu))
        for slot, lab in zip(slots.tolist(), labels, strict=True):
            # An empty key names no GPU: parked under "", one GPU's line went to another's next series.
            if self._gpu[slot] is not None or not (gpu := lab.get(self.key_label)):
                continue
            self._gpu[slot] = gpu
            row = self._parked.take(gpu, at)
            if row is not None:
                for name, value in zip(FIELDS, row.tolist(), strict=True):
                    getattr(self, name)[slot] = value

    def _stepped_back(self, slots: IntArray, at: float) -> None:
        """Undo a wall clock set back (an NTP correction, a VM restored) before tick ``at``: every GPU's kept
        times move back with it, as if one interval between ticks had passed since the tick before (the
        latest seen; none seen since started or restored, the slowest lag it allows for: the longest gap no
        outage, its lagged power caught up, so a job starting then reads low for a tick, never hot). A GPU
        still read after ``at`` was parked before the step (forgotten: its node down longer than
        ``forget_after_seconds``), unseen through it: moved to ``settle_seconds`` before ``at``, back from an
        outage. Neither time is kept in a snapshot: the tick before is the newest read after a restore.

        Read as they were, the times an hour ahead froze the sample's lagged power (a healthy job's start
        read 5.4 at the step), and the hour was added to every wait: a first job's heat stayed a guess, its
        failing cooler unflagged, for 70 minutes instead of 10. Moved to ``lag_seconds`` before the sample,
        each GPU's own: read every 60 s, its power lagged a third short (a job starting read 2.2), and a GPU
        unseen across the step (its node down) was taken for one read just before, its warming from the
        room for a climb (3.6, 7.6 lagging 90 s; parked, 1.6, 4.4): one shift for all keeps their gaps."""
        before, self._read_at = self._read_at, at
        live = self.n > 0
        if before <= 0.0 and live.any():  # the first tick since started or restored
            before = float(self.last[live].max())
        if 0.0 < before < at:
            self._interval = at - before
        interval = self._interval or self._slowest_lag()
        if before > at:
            self._shift(np.flatnonzero(live), at - interval - before)
        ahead = slots[(self.n[slots] > 0) & (self.last[slots] > at)]
        self._shift(ahead, at - max(interval, self.settle_seconds) - self.last[ahead])

    def _shift(self, slots: IntArray, by: FloatArray | float) -> None:
        """Move the times kept for ``slots`` by ``by`` seconds (a time of 0, none, stays none)."""
        for name in _TIMES:
            times = getattr(self, name)
            times[slots] = np.where(times[slots] > 0.0, times[slots] + by, 0.0)

    def _slots(self, ids: IntArray) -> IntArray:
        """The slot of each temperature series id, a free one (or a new one) for an id not scored yet."""
        out = np.empty(ids.size, np.int64)
        for i, sid in enumerate(ids.tolist()):
            slot = self._slot.index.get(sid)
            out[i] = self._slot.take(sid) if slot is None else slot
        self._grow(int(out.max(initial=-1)) + 1)
        return out

    def _rows(self, temp: Step, power: Step) -> tuple[IntArray, IntArray, IntArray, IntArray]:
        """Rows of ``temp``, the matching rows of ``power`` (same key label), the temperature rows' slots and
        peer groups."""
        j = self._join
        if j is not None and _same(j[0], temp.ids) and _same(j[1], power.ids):
            return j[2], j[3], j[4], j[5]
        where = {lab.get(self.key_label): i for i, lab in enumerate(power.labels)}
        pairs = [(i, where.get(lab.get(self.key_label))) for i, lab in enumerate(temp.labels)]
        kept = [(i, p) for i, p in pairs if p is not None]
        rows_t = np.array([i for i, _ in kept], np.int64)
        rows_p = np.array([p for _, p in kept], np.int64)
        slots = self._slots(temp.ids[rows_t])
        labels = [temp.labels[i] for i in rows_t.tolist()]
        self._unpark(slots, labels, temp.at)
        groups = self._groups(labels)
        self._join = (temp.ids, power.ids, rows_t, rows_p, slots, groups)
        return rows_t, rows_p, slots, groups

    def _groups(self, labels: Sequence[Mapping[str, str]]) -> IntArray:
        """Each GPU's peer group (its model, ``peer_labels``), -1 for one that lacks them: it has no peers."""
        codes: dict[tuple[str, ...], int] = {}
        keys = [tuple(lab.get(name, "") for name in self.peer_labels) for lab in labels]
        return np.array([codes.setdefault(k, len(codes)) if all(k) else -1 for k in keys], np.int64)

    def _slowest_lag(self) -> float:
        """The longest lag of temperature behind power it allows for: a power counts as settled after
        ``settle_seconds``, 5 lags of it (a first-order lag is then within 1 % of its step)."""
        return max(self.lag_seconds, self.settle_seconds / _SETTLED_LAGS)


def first_order_lag(lagged: FloatArray, p: FloatArray, gap: FloatArray, seconds: float) -> FloatArray:
    """``lagged`` moved towards the power ``p`` over ``gap`` seconds, a first-order lag of ``seconds``."""
    return lagged + (1.0 - np.exp(-np.maximum(gap, 0.0) / seconds)) * (p - lagged)


def _same(a: IntArray, b: IntArray) -> bool:
    return a is b or (a.shape == b.shape and bool(np.array_equal(a, b)))
