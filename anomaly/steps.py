"""What a streaming detector over many series answers for one step, and the array types it works in."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class StepScores:
    """Per id: the score (>1 when the detector finds the series anomalous; each detector says what it
    measures) and whether an alert is raised now."""

    ids: IntArray
    score: FloatArray
    raised: BoolArray


NEVER = np.iinfo(np.int32).max
"""Samples since the last anomaly of a series that has had none: its first anomaly raises."""


def begin_step(
    ids: IntArray, values: FloatArray
) -> tuple[FloatArray, BoolArray, IntArray, IntArray, FloatArray]:
    """A step's answer before scoring (score 0, nothing raised) and its finite samples: their rows in the
    answer, their ids and values (NaN and infinite samples are skipped)."""
    ok = np.isfinite(values)
    rows = np.flatnonzero(ok)
    return np.zeros(ids.size), np.zeros(ids.size, np.bool_), rows, ids[ok], values[ok]


def rearmed(
    anomalous: BoolArray, since: IntArray, rearm: int, advance: IntArray | int = 1
) -> tuple[BoolArray, IntArray]:
    """Which anomalous series raise now (none of them raised in their last ``rearm`` samples), and the
    samples since each one's last anomaly after this step (``advance``: 1, or 0 where a series had no
    sample)."""
    raised = anomalous & (since + 1 >= rearm)
    return raised, np.where(anomalous, 0, np.minimum(since + advance, NEVER))
