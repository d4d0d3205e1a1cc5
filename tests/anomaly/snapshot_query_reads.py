"""Prometheus read as ``PromQLSource`` reads it, over the snapshot tests' grid: each query from its own last
good read (``QueryReadsSource``), and its server unreachable for a while (``OutageSource``)."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from anomaly.sources import Frame, QueryHealth
from tests.anomaly.snapshot_grid import QUERIES, GridSource


class QueryReadsSource(GridSource):
    """Prometheus read as ``PromQLSource`` reads it: each query from its own last good read (a failed one
    catches up at its next read); the queries in ``failing`` fail (the source stays up: others are read)."""

    def __init__(self) -> None:
        super().__init__()
        self.failing: set[str] = set()
        self.gone_after: float | None = None  # the last GPU's series end then (its node taken out)
        self._done: dict[str, float] = {}

    def read(self, start: float, end: float) -> list[Frame]:
        out = []
        for query in QUERIES:
            health = self._health.queries.setdefault(query, QueryHealth())
            if query in self.failing:
                health.failed(f"query {query}: HTTP 503")
                continue
            since = min(start, self._done.get(query, start))
            frames = super().read(since, end)
            frame = next((f for f in frames if f.query == query), None)
            health.succeeded(end, len(self.gpus))
            if frame is not None:
                self._done[query] = end
                out.append(self._without_gone(frame))
        return out

    def resume(self, read: Mapping[str, float], default: float) -> None:
        """As ``PromQLSource.resume``: each query not read yet from ``read[query]``, else ``default``."""
        for query in QUERIES:
            self._done.setdefault(query, read.get(query, default))

    def _without_gone(self, frame: Frame) -> Frame:
        """``frame`` with the last GPU's samples after ``gone_after`` taken out, and its series with them
        where the read holds none of it, as Prometheus answers a range read."""
        if self.gone_after is None:
            return frame
        values = frame.values.copy()
        values[-1, frame.timestamps > self.gone_after] = np.nan
        if np.isnan(values[-1]).all():
            return Frame(frame.query, frame.labels[:-1], frame.timestamps, values[:-1], frame.kind)
        return Frame(frame.query, frame.labels, frame.timestamps, values, frame.kind)


class OutageSource(QueryReadsSource):
    """``QueryReadsSource`` whose server cannot be reached while ``down``: the source down, every query
    unread, caught up from its own last good read once back."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def read(self, start: float, end: float) -> list[Frame]:
        if self.down:
            self._health.failed("connection refused")
            return []
        return super().read(start, end)
