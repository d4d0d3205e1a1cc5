"""Per-GPU state set aside while its series is forgotten, handed back when the same GPU reports again.

The service forgets a series unseen for ``forget_after_seconds`` (900 s): a node down 20 minutes loses its
GPUs' series and, with them, a detector's per-series state. What a detector learnt of a GPU's hardware (the
thermal detector's line of temperature on power) is still true when the node comes back; learnt anew, its
warm-up took a cooler that failed while the node was down for the GPU's normal.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from anomaly.snapshot import Arrays

Row = npt.NDArray[Any]  # a GPU's state as one array (thermal: its fields; adaptive: its arrays' bytes)

_ENTRY_BYTES = sys.getsizeof(()) + 2 * 8 + sys.getsizeof(1.0)  # the pair, its two references, the time


class ParkedRows:
    """Rows of state keyed by a GPU's key (its UUID; a series': its query and UUID), each kept for
    ``keep_seconds`` after its last sample."""

    def __init__(self, keep_seconds: float) -> None:
        self.keep_seconds = keep_seconds
        self._rows: dict[str, tuple[float, Row]] = {}
        self._oldest = math.inf  # no row's last sample is older (``expire`` scans only when one may be due)

    def __len__(self) -> int:
        return len(self._rows)

    def park(self, key: str, at: float, row: Row, most: int) -> None:
        """Keep ``row``, the state of ``key`` whose last sample was at ``at``; past ``most`` rows, the ones
        parked first are dropped (nodes churning through new GPUs parked every one for a day)."""
        self._rows.pop(key, None)
        self._rows[key] = (at, row)
        self._oldest = min(self._oldest, at)
        while len(self._rows) > most:
            del self._rows[next(iter(self._rows))]

    def expire(self, now: float) -> None:
        """Drop the rows whose last sample is more than ``keep_seconds`` before ``now`` (the latest time
        read: a clock set back a day reads earlier, and drops nothing parked after it)."""
        horizon = now - self.keep_seconds
        if self._oldest >= horizon:
            return
        for old in [k for k, (t, _) in self._rows.items() if t < horizon]:
            del self._rows[old]
        self._oldest = min((t for t, _ in self._rows.values()), default=math.inf)

    def take(self, key: str, at: float) -> Row | None:
        """The row kept for ``key`` (removed), None if none was kept or it is older than ``keep_seconds``."""
        kept = self._rows.pop(key, None)
        if kept is None or at - kept[0] > self.keep_seconds:
            return None
        return kept[1]

    def entries(self) -> list[tuple[str, float, Row]]:
        """Every row kept, with its key and its last sample's time, the first parked first (the order ``park``
        drops them in; parked again in this order, they keep it)."""
        return [(key, at, row) for key, (at, row) in self._rows.items()]

    def state(self, dtype: npt.DTypeLike, width: int | None = None) -> tuple[list[str], Arrays]:
        """The rows kept, for a snapshot (``restored`` reads them back): their keys, the first parked first,
        and the arrays ``parked_at`` (each row's last sample) and ``parked_rows`` of ``dtype``: a row of
        ``width`` values a key, or, without a ``width`` (rows of any length), the rows end to end and
        ``parked_sizes``, each one's length."""
        entries = self.entries()
        rows = [row for _, _, row in entries]
        arrays = {"parked_at": np.array([at for _, at, _ in entries], np.float64)}
        if width is None:
            arrays["parked_sizes"] = np.array([row.size for row in rows], np.int64)
            arrays["parked_rows"] = np.concatenate([np.empty(0, dtype), *rows])
        else:
            arrays["parked_rows"] = np.array(rows, dtype).reshape(-1, width)
        return [key for key, _, _ in entries], arrays

    @classmethod
    def restored(
        cls,
        keep_seconds: float,
        what: str,
        keys: Sequence[object],
        arrays: Mapping[str, npt.NDArray[Any]],
        *,
        dtype: npt.DTypeLike,
        width: int | None = None,
    ) -> ParkedRows:
        """The rows ``state(dtype, width)`` gave ``keys`` and ``arrays`` of, parked again in their order;
        ``ValueError`` naming ``what`` (the detector) when the arrays do not fit the keys."""
        at, table = arrays["parked_at"], np.asarray(arrays["parked_rows"], dtype)
        shape = (len(keys),)
        if width is None:
            sizes = arrays["parked_sizes"]
            fits = (
                at.shape == sizes.shape == shape and not (sizes < 0).any() and int(sizes.sum()) == table.size
            )
            got = f"{sizes.shape} sizes, {table.size} values"
        else:
            fits = at.shape == shape and table.shape == (*shape, width)
            got = f"rows {table.shape}"
        if not fits:
            raise ValueError(f"{what} parked: {len(keys)} keys, {at.shape} times, {got}")
        if width is None:
            ends = np.cumsum(sizes).tolist()
            rows = [table[end - size : end] for end, size in zip(ends, sizes.tolist(), strict=True)]
        else:
            rows = list(table)
        parked = cls(keep_seconds)
        for key, when, row in zip(keys, at.tolist(), rows, strict=True):
            parked.park(str(key), when, row.copy(), len(keys))
        return parked

    def nbytes(self) -> int:
        """Bytes held: the map, each entry's pair and time, its key and its row."""
        held = sum(sys.getsizeof(k) + sys.getsizeof(row) for k, (_, row) in self._rows.items())
        return sys.getsizeof(self._rows) + len(self._rows) * _ENTRY_BYTES + held
