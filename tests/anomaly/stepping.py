"""A streaming detector (``update(ids, values) -> StepScores``) fed step by step, as tests of one read it."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from anomaly.steps import BoolArray, FloatArray, IntArray, StepScores

ONE = np.array([0], dtype=np.int64)
"""The ids of a step of a single series."""


class Stepped(Protocol):
    """A detector that scores one sample per id a step."""

    def update(self, ids: IntArray, values: FloatArray) -> StepScores: ...


def feed_rows(detector: Stepped, rows: FloatArray) -> tuple[FloatArray, BoolArray]:
    """rows: one row of values per step, one column per id (0..k-1); returns scores and raised, step x id."""
    ids = np.arange(rows.shape[1], dtype=np.int64)
    scores, raised = np.zeros(rows.shape), np.zeros(rows.shape, np.bool_)
    for step, row in enumerate(rows):
        out = detector.update(ids, row)
        scores[step], raised[step] = out.score, out.raised
    return scores, raised


def feed_one(detector: Stepped, values: list[float]) -> tuple[list[float], list[int]]:
    """One series' ``values``, a step each: its scores, and the steps at which it raised."""
    scores, raised = feed_rows(detector, np.array(values, dtype=np.float64)[:, None])
    return [float(s) for s in scores[:, 0]], [int(i) for i in np.flatnonzero(raised[:, 0])]
