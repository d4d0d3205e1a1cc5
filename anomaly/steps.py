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
