"""Turn per-sample anomaly scores into alert onsets: fire on crossing, resolve after a quiet spell.

One anomaly that stays above threshold for an hour is one alert, not 720; a flickering score does not
re-raise until the series was quiet for ``resolve_after`` samples. Vectorised like the detectors.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

BoolArray = npt.NDArray[np.bool_]
_QUIET_MAX = int(np.iinfo(np.int32).max) - 1  # the quiet count saturates here (read once, not per sample)


class OnsetTracker:
    """Firing state per series id."""

    def __init__(self, resolve_after: int = 12, capacity: int = 1024) -> None:
        self.resolve_after = resolve_after
        self.firing = np.zeros(capacity, np.bool_)
        self.quiet = np.zeros(capacity, np.int32)
        self.muted = np.zeros(capacity, np.bool_)  # the running anomaly's onset was muted (``mute``)

    def _grow(self, needed: int) -> None:
        if needed <= self.firing.size:
            return
        size = max(needed, 2 * self.firing.size)
        firing = np.zeros(size, np.bool_)
        quiet = np.zeros(size, np.int32)
        muted = np.zeros(size, np.bool_)
        firing[: self.firing.size] = self.firing
        quiet[: self.quiet.size] = self.quiet
        muted[: self.muted.size] = self.muted
        self.firing, self.quiet, self.muted = firing, quiet, muted

    def step(self, ids: npt.NDArray[np.int64], anomalous: BoolArray) -> tuple[BoolArray, BoolArray]:
        """Advance one sample per id; return (raised, resolved) masks aligned with ``ids``."""
        if ids.size:
            self._grow(int(ids.max()) + 1)
        was = self.firing[ids]
        quiet = np.where(anomalous, 0, self.quiet[ids] + 1)
        raised = anomalous & ~was
        resolved = was & ~anomalous & (quiet >= self.resolve_after)
        self.firing[ids] = (was | anomalous) & ~resolved
        self.quiet[ids] = np.minimum(quiet, _QUIET_MAX)
        self.muted[ids] &= ~raised  # a new anomaly is not muted until it is said to be
        return raised, resolved

    def mute(self, ids: npt.NDArray[np.int64], onsets: BoolArray) -> None:
        """Mark the anomalies that begin now at ``onsets`` (from ``step``) as muted until they resolve (a
        routine that recurs daily): ``muted`` says so, for the score to report at most 1 meanwhile."""
        self.muted[ids[onsets]] = True

    def reset(self, ids: npt.NDArray[np.int64]) -> None:
        """Forget series."""
        self.firing[ids] = False
        self.quiet[ids] = 0
        self.muted[ids] = False
