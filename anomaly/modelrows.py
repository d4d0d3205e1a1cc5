"""Each series id's row in the adaptive model that scores it (``anomaly.adaptive``).

The service numbers every series it reads (``SeriesIndex``) and a detector's arrays are indexed by that id.
The adaptive detector keeps one model per parameter set (each metric with its own band floor is one), so
before this map each model held a row for every series id up to the largest it had scored: the fleet's
20 metrics of the default settings held rows for all 25 metrics' ids, the five with their own floors rows up
to theirs, each grown by doubling, about 2.4 KB a series where the rows themselves are under 1 KB. Here a
series holds one row, in its own model; a forgotten series' row is let go, and the next new series of that
model takes it.
"""

from __future__ import annotations

import sys

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]

NO_ROW = -1
_LISTED = 8 + sys.getsizeof(2**20)  # a row in a list: its reference and its int (those under 257 are shared)


class ModelRows:
    """Which model (its number, in the detector's order) and which row of it each series id has."""

    def __init__(self) -> None:
        self.row = np.full(0, NO_ROW, np.int32)
        self.model = np.zeros(0, np.uint16)
        self.used: list[int] = []  # per model: the rows ever given out
        self.free: list[list[int]] = []  # per model: the rows let go, to be given out again

    def __len__(self) -> int:
        return int(self.row.size)

    def nbytes(self) -> int:
        """Bytes held: the two maps and the rows let go (a reference and an int each)."""
        return int(self.row.nbytes + self.model.nbytes) + _LISTED * sum(len(rows) for rows in self.free)

    def _hold(self, ids: IntArray) -> None:
        """Room in the maps for every id of ``ids`` (an eighth more than needed, as a list grows)."""
        needed = int(ids.max()) + 1 if ids.size else 0
        if needed <= self.row.size:
            return
        size = max(needed, self.row.size + self.row.size // 8)
        self.row = np.concatenate([self.row, np.full(size - self.row.size, NO_ROW, np.int32)])
        self.model = np.concatenate([self.model, np.zeros(size - self.model.size, np.uint16)])

    def _models(self, count: int) -> None:
        while len(self.used) < count:
            self.used.append(0)
            self.free.append([])

    def find(self, ids: IntArray) -> tuple[IntArray, npt.NDArray[np.uint16]]:
        """The row of each of ``ids`` (``NO_ROW``: none) and its model."""
        self._hold(ids)
        return self.row[ids].astype(np.int64), self.model[ids]

    def give(self, k: int, ids: IntArray) -> IntArray:
        """New rows of model ``k`` for ``ids`` (which have none): first those let go, then new ones."""
        self._models(k + 1)
        self._hold(ids)
        free = self.free[k]
        again = min(len(free), ids.size)
        reused = np.array(free[len(free) - again :], np.int64)
        del free[len(free) - again :]
        start = self.used[k]
        self.used[k] = start + ids.size - again
        rows = np.concatenate([reused, np.arange(start, self.used[k], dtype=np.int64)])
        self.row[ids] = rows
        self.model[ids] = k
        return rows

    def let_go(self, ids: IntArray) -> dict[int, IntArray]:
        """Take the rows of ``ids`` back (by model; each to be made new, ``AdaptiveThresholds.blank``, by the
        caller)."""
        ids = ids[ids < self.row.size]
        ids = ids[self.row[ids] != NO_ROW]
        out: dict[int, IntArray] = {}
        if not ids.size:
            return out
        rows, models = self.row[ids].astype(np.int64), self.model[ids]
        self.row[ids] = NO_ROW
        for k in np.unique(models).tolist():
            mine = rows[models == k]
            self.free[k].extend(mine.tolist())
            out[k] = mine
        return out

    def held(self, k: int) -> tuple[IntArray, IntArray]:
        """The ids with a row in model ``k`` and their rows, in id order."""
        ids = np.flatnonzero((self.row != NO_ROW) & (self.model == k))
        return ids, self.row[ids].astype(np.int64)

    def bind(self, k: int, ids: IntArray, rows: IntArray, held: int) -> None:
        """Give ``ids`` (none of which has a row) ``rows`` of model ``k``, which holds ``held`` rows (as a
        restored model holds them): the rest are let go."""
        self._models(k + 1)
        self._hold(ids)
        self.row[ids] = rows
        self.model[ids] = k
        self.used[k] = held
        taken = np.zeros(held, np.bool_)
        taken[rows] = True
        self.free[k] = np.flatnonzero(~taken)[::-1].tolist()
