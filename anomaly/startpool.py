"""The first samples each adaptive series keeps (``anomaly.warmstart``), held only while it may read them.

A series keeps its first ``start_len`` samples (30 float32: 120 bytes) to judge them together once learnt,
and with ``lone_spikes`` reads them again while its error scale is young (``anomaly.sparsebands``). Past
that nothing reads them; held in an array of a row per series they were 120 of the 937 bytes a warmed-up
``anomaly score`` series holds. Here they are rows of a pool, a series holding one (``slot``, 4 bytes) only
while it may read it; the pool gives back its memory once most of it is let go.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from anomaly.sparsebands import flat
from anomaly.warmstart import relearnt

if TYPE_CHECKING:
    from anomaly.thresholds import AdaptiveThresholds

IntArray = npt.NDArray[np.int64]
Kept = npt.NDArray[np.float32]

NO_SLOT = -1
_LISTED = 8 + sys.getsizeof(2**20)  # a slot in a list: its reference and its int (those under 257 are shared)
_FLOAT32_MAX = float(np.finfo(np.float32).max)
_SMALLEST = 1024  # a pool of fewer rows is not packed (a few let go among many ticks)


class StartPool:
    """Rows of ``width`` float32, one for each series that holds a slot (``slot``, by series); of width 0
    (nothing kept, or the re-baselining's ring keeps it), no slots either."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.slot = np.zeros(0, np.int32)
        self.rows: Kept = np.zeros((0, width), np.float32)
        self.used = 0  # rows given out since the pool was last packed
        self.free: list[int] = []

    def nbytes(self) -> int:
        """Bytes held: the slots, the pool's rows (given out or not) and the rows let go (a reference and an
        int each)."""
        return int(self.slot.nbytes + self.rows.nbytes) + _LISTED * len(self.free)

    def grow(self, cap: int) -> None:
        """Slots for ``cap`` series (the new ones hold none)."""
        extra = cap - self.slot.size
        if extra > 0 and self.width:
            self.slot = np.concatenate([self.slot, np.full(extra, NO_SLOT, np.int32)])

    def read(self, ids: IntArray) -> Kept:
        """The kept samples of ``ids``, one row each (zeros for a series that holds none)."""
        if not self.width:
            return np.zeros((ids.size, 0), np.float32)
        slots = self.slot[ids]
        out = self.rows[np.maximum(slots, 0)] if self.rows.shape[0] else np.zeros((ids.size, self.width))
        out = out.astype(np.float32, copy=False)
        out[slots == NO_SLOT] = 0.0
        return out

    def write(self, ids: IntArray, cols: npt.NDArray[np.int32], values: npt.NDArray[np.float64]) -> None:
        """Keep ``values`` as sample ``cols`` of ``ids`` (each holding a slot)."""
        self.rows[self.slot[ids], cols] = values

    def put(self, ids: IntArray, kept: Kept) -> None:
        """Give ``ids`` (each holding a slot) the kept samples ``kept``, one row each."""
        self.rows[self.slot[ids]] = kept

    def hold(self, ids: IntArray) -> None:
        """A slot, its samples zeros, for each of ``ids`` that holds none."""
        if not self.width:
            return
        ids = np.unique(ids[self.slot[ids] == NO_SLOT])
        if not ids.size:
            return
        again = min(len(self.free), ids.size)
        reused = np.array(self.free[len(self.free) - again :], np.int64)
        del self.free[len(self.free) - again :]
        fresh = np.arange(self.used, self.used + ids.size - again, dtype=np.int64)
        self.used += fresh.size
        if self.used > self.rows.shape[0]:
            size = max(self.used, self.rows.shape[0] + self.rows.shape[0] // 8)
            grown = np.zeros((size, self.width), np.float32)
            grown[: self.rows.shape[0]] = self.rows
            self.rows = grown
        slots = np.concatenate([reused, fresh])
        self.rows[slots] = 0.0
        self.slot[ids] = slots

    def let_go(self, ids: IntArray) -> None:
        """Take back the slots of ``ids`` (those that hold one); the pool is packed once under a quarter of
        its rows are held (of a small pool: once none is)."""
        if not self.width:
            return
        ids = np.unique(ids[self.slot[ids] != NO_SLOT])
        if not ids.size:
            return
        self.free.extend(self.slot[ids].tolist())
        self.slot[ids] = NO_SLOT
        held = self.used - len(self.free)
        if 4 * held < self.rows.shape[0] and (held == 0 or self.rows.shape[0] >= _SMALLEST):
            self._pack()

    def _pack(self) -> None:
        """The rows held moved to the front, in series order, and the rest given back."""
        ids = np.flatnonzero(self.slot != NO_SLOT)
        self.rows = self.rows[self.slot[ids]].copy()
        self.slot[ids] = np.arange(ids.size, dtype=np.int32)
        self.used, self.free = ids.size, []


def reads_kept(m: AdaptiveThresholds, n: npt.NDArray[np.int32]) -> npt.NDArray[np.bool_]:
    """Whether a series of ``m`` that has learnt ``n`` samples may read its kept ones: while it keeps them
    (under ``start_len``) and, with ``lone_spikes``, while its error scale is young
    (``sparsebands.seen_floor``)."""
    keep = n < m.start_len
    if m.params.lone_spikes:
        keep |= n * m.params.scale_alpha < 1.0
    return keep


def mind(m: AdaptiveThresholds, ids: IntArray, values: npt.ArrayLike, timestamps: npt.ArrayLike) -> None:
    """Before ``m`` learns a step: a slot for each of ``ids`` with a sample that may read its kept samples,
    and the slots of those that no longer may taken back (outside ``steps.unlearned``, which keeps the
    counts a step read unlearnt: the slots follow them)."""
    pool = m.start
    if not pool.width:
        return
    needs = reads_kept(m, m.count[ids])
    held = pool.slot[ids] != NO_SLOT
    if (held & ~needs).any():
        pool.let_go(ids[held & ~needs])
    new = needs & ~held & np.isfinite(values) & np.isfinite(timestamps)
    if new.any():
        pool.hold(ids[new])


def kept_row(m: AdaptiveThresholds, sid: int) -> npt.NDArray[np.uint8]:
    """Series ``sid``'s kept samples as bytes, at the end of its row (``AdaptiveThresholds.row``)."""
    return m.start.read(np.array([sid], np.int64)).view(np.uint8).ravel()


def set_kept(m: AdaptiveThresholds, rows: IntArray, kept: Kept) -> None:
    """Give ``rows`` of ``m`` (their counts set) the kept samples ``kept`` where they may read them."""
    if not m.start.width:
        return
    needs = reads_kept(m, m.count[rows])
    m.start.hold(rows[needs])
    m.start.put(rows[needs], kept[needs])


def keep(m: AdaptiveThresholds, ids: IntArray, x: npt.NDArray[np.float64], n: npt.NDArray[np.int32]) -> bool:
    """Keep the samples ``x`` that are among their series' first (``anomaly.warmstart``); whether any
    was."""
    if not m.start_len:
        return False
    early = n < m.start_len
    if not early.any():
        return False
    if m.shift is None:  # else its ring keeps them; past float32's range, at its edge (still odd)
        m.start.write(ids[early], n[early], np.minimum(np.maximum(x[early], -_FLOAT32_MAX), _FLOAT32_MAX))
    return True


def judge(m: AdaptiveThresholds, ids: IntArray) -> None:
    """Judge the kept first samples of ``ids``, all learnt now: those with an odd one learn them again
    with it winsorised (``anomaly.warmstart``)."""
    if not ids.size:
        return
    kept = m.start.read(ids) if m.shift is None else m.shift.values[ids, : m.start_len]
    if m.flat.shape[1]:  # read past the first samples' release (``anomaly.sparsebands``)
        m.flat[ids, 0] = flat(kept)
    odd, level, dev, fast = relearnt(kept, m.params)
    if odd.any():
        ids = ids[odd]
        m.level[ids] = level
        m.dev[ids] = dev
        m.fast_dev[ids] = np.minimum(fast, _FLOAT32_MAX)
