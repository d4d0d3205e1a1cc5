"""Per-GPU state set aside while its series is forgotten, handed back when the same GPU reports again.

The service forgets a series unseen for ``forget_after_seconds`` (900 s): a node down 20 minutes loses its
GPUs' series and, with them, a detector's per-series state. What a detector learnt of a GPU's hardware (the
thermal detector's line of temperature on power) is still true when the node comes back; learnt anew, its
warm-up took a cooler that failed while the node was down for the GPU's normal.
"""

from __future__ import annotations

import sys

from anomaly.steps import FloatArray

_ENTRY_BYTES = sys.getsizeof(()) + 2 * 8 + sys.getsizeof(1.0)  # the pair, its two references, the time


class ParkedRows:
    """Rows of state keyed by a GPU's key (its UUID), each kept for ``keep_seconds`` after its last sample."""

    def __init__(self, keep_seconds: float) -> None:
        self.keep_seconds = keep_seconds
        self._rows: dict[str, tuple[float, FloatArray]] = {}

    def park(self, key: str, at: float, row: FloatArray) -> None:
        """Keep ``row``, the state of ``key`` whose last sample was at ``at``."""
        self._rows[key] = (at, row)

    def expire(self, now: float) -> None:
        """Drop the rows whose last sample is more than ``keep_seconds`` before ``now``."""
        horizon = now - self.keep_seconds
        for old in [k for k, (t, _) in self._rows.items() if t < horizon]:
            del self._rows[old]

    def take(self, key: str, at: float) -> FloatArray | None:
        """The row kept for ``key`` (removed), None if none was kept or it is older than ``keep_seconds``."""
        kept = self._rows.pop(key, None)
        if kept is None or at - kept[0] > self.keep_seconds:
            return None
        return kept[1]

    def nbytes(self) -> int:
        """Bytes held: the map, each entry's pair and time, its key and its row."""
        held = sum(sys.getsizeof(k) + sys.getsizeof(row) for k, (_, row) in self._rows.items())
        return sys.getsizeof(self._rows) + len(self._rows) * _ENTRY_BYTES + held
