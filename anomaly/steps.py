"""What a streaming detector over many series answers for one step, and the array types it works in."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import numpy.typing as npt

from anomaly.snapshot import State

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


def reported(score: FloatArray, raised: BoolArray) -> FloatArray:
    """A re-armed part's score as the output reports it: as it is where the part raises, at most 1 where it
    does not (muted after an alert, or not raising for another reason), so that >1 in ``anomaly_score``
    means an alert, as for the adaptive part, and not "anomalous, but muted"."""
    return np.where(raised, score, np.minimum(score, 1.0))


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


class SeriesArrays:
    """State arrays with one row per series id, grown on demand (at least doubling) and reset per series.

    A subclass makes each array with no rows (its dtype and the shape of a row) and lists in ``FIELDS`` each
    array's attribute name with the value a new or forgotten series starts from, first the array whose rows
    count the series."""

    FIELDS: ClassVar[tuple[tuple[str, float], ...]]

    def _grow(self, needed: int) -> None:
        size = len(getattr(self, self.FIELDS[0][0]))
        if needed <= size:
            return
        rows = max(needed, 2 * size)
        for name, fill in self.FIELDS:
            old = getattr(self, name)
            new = np.full((rows, *old.shape[1:]), fill, old.dtype)
            new[:size] = old
            setattr(self, name, new)

    def _begin(
        self, ids: IntArray, values: FloatArray
    ) -> tuple[FloatArray, BoolArray, IntArray, IntArray, FloatArray]:
        """``begin_step`` with room made for every id first."""
        if ids.size:
            self._grow(int(ids.max()) + 1)
        return begin_step(ids, values)

    def state(self) -> State:
        """Each of ``FIELDS``' arrays (``anomaly.snapshot``)."""
        return State(arrays={name: getattr(self, name).copy() for name, _ in self.FIELDS})

    def restore(self, state: State) -> None:
        """Take up ``state`` (``state()``): every array, of one length."""
        rows = state.arrays[self.FIELDS[0][0]].shape[0]
        for name, _ in self.FIELDS:
            now, got = getattr(self, name), state.arrays[name]
            if got.shape != (rows, *now.shape[1:]) or got.dtype != now.dtype:
                raise ValueError(f"{name}: {got.dtype}{got.shape}, not {now.dtype} of {rows} rows")
        for name, _ in self.FIELDS:
            setattr(self, name, state.arrays[name])

    def reset(self, ids: IntArray) -> None:
        """Forget series."""
        for name, fill in self.FIELDS:
            getattr(self, name)[ids] = fill


@contextmanager
def unlearned(arrays: Sequence[npt.NDArray[Any]], ids: IntArray) -> Iterator[None]:
    """Put rows ``ids`` of the state ``arrays`` back as they were before the block: whatever the block scores,
    it teaches those series nothing (a value outside its query's data range). The block must not grow the
    arrays."""
    if not ids.size:
        yield
        return
    saved = [a[ids].copy() for a in arrays]
    try:
        yield
    finally:
        for a, rows in zip(arrays, saved, strict=True):
            a[ids] = rows
