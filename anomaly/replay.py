"""Replay many recorded series through a streaming detector, as ``score_many`` does: series ``j``'s
``i``-th sample arrives at step ``i``, and a series that has ended is left out of later steps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from anomaly.steps import BoolArray, FloatArray, IntArray


class Raises(Protocol):
    """A detector's answer for one step: which of the ids raise an alert now."""

    @property
    def raised(self) -> BoolArray: ...


def replay_alerts(
    update: Callable[[IntArray, FloatArray], Raises], values: list[FloatArray]
) -> list[BoolArray]:
    """Alerts per series from ``update(ids, values)`` called once per step."""
    (alerts,) = replay_raised(lambda ids, step: [update(ids, step).raised], values, 1)
    return alerts


def replay_raised(
    update: Callable[[IntArray, FloatArray], list[BoolArray]], values: list[FloatArray], outputs: int
) -> list[list[BoolArray]]:
    """``replay_alerts`` for an ``update`` that answers ``outputs`` detectors' alerts at once (one array per
    detector): per detector, its alerts per series."""
    lengths = np.array([v.size for v in values], dtype=np.int64)
    longest = int(lengths.max()) if values else 0
    grid = np.full((longest, len(values)), np.nan)
    for j, v in enumerate(values):
        grid[: v.size, j] = v
    raised = np.zeros((outputs, longest, len(values)), np.bool_)
    ids = np.arange(len(values), dtype=np.int64)
    for i in range(longest):
        active = ids[lengths > i]
        for out, alerts in enumerate(update(active, grid[i, active])):
            raised[out, i, active] = alerts
    return [[raised[out, : lengths[j], j] for j in range(len(values))] for out in range(outputs)]
