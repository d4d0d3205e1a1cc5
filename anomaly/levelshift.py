"""Re-baselining after a level shift, opt-in (``shift_run`` > 0) for the adaptive thresholds.

Winsorised updates make a baseline catch up with a persistent shift slowly, and meanwhile the error scale
widens, so the band stays wide long after the level has settled (``anomaly.thresholds`` says how the reset
works). Here are the per-series run state and the reset itself; ``AdaptiveThresholds`` calls them after each
batch it learns from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from anomaly.thresholds import AdaptiveThresholds, BoolArray, FloatArray, IntArray

# The per-series arrays of the re-baselining a snapshot keeps (``AdaptiveThresholds.state``).
SHIFT_STATE = ("run", "values", "scale0", "tail0")
MAX_SHIFT_RUN = 48  # the run's values are kept per series (float32): 48 keeps the state under 1 KB
MAD_TO_MEAN_ABS = 1.1829  # sqrt(2/pi) / 0.67449: a Gaussian's mean absolute deviation over its MAD


class ShiftState:
    """Per series for the opt-in re-baselining: the signed length of the current run beyond the band (+ above,
    - below), the last ``length`` values (a ring indexed by the series' sample count), and the error scale and
    tail the series had when the run began. ``4 * length + 12`` bytes per series."""

    def __init__(self, length: int) -> None:
        self.length = length
        self.run = np.zeros(0, np.int32)
        self.values = np.zeros((0, length), np.float32)
        self.scale0 = np.zeros(0, np.float32)
        self.tail0 = np.zeros(0, np.float32)

    def arrays(self) -> tuple[npt.NDArray[np.generic], ...]:
        """The state arrays (for their size)."""
        return (self.run, self.values, self.scale0, self.tail0)

    def observe(
        self,
        ids: IntArray,
        x: FloatArray,
        *,
        n: npt.NDArray[np.int32],
        warmup: int,
        resid: FloatArray,
        band: FloatArray,
        scale: FloatArray,
        tail: npt.NDArray[np.float32],
    ) -> BoolArray:
        """Record this step's values and runs; whether each series' run has reached ``length`` (it then starts
        again from zero)."""
        self.values[ids, n % self.length] = x
        side = np.where(resid > band, 1, np.where(resid < -band, -1, 0)).astype(np.int32)
        side[n < warmup] = 0
        run = self.run[ids]
        starting = (side != 0) & (np.sign(run) != side)
        if starting.any():
            self.scale0[ids[starting]] = scale[starting]
            self.tail0[ids[starting]] = tail[starting]
        run = np.where(starting, side, np.where(side == 0, 0, run + side))
        due: BoolArray = np.abs(run) >= self.length
        run[due] = 0
        self.run[ids] = run
        return due


def rebaseline(m: AdaptiveThresholds, ids: IntArray, scale: FloatArray) -> None:
    """Reset the baselines of ``ids`` in ``m`` to their run's values (``scale``: as in
    ``AdaptiveThresholds._follow_shift``)."""
    shift = m.shift
    assert shift is not None
    values = shift.values[ids].astype(np.float64)
    if m.params.shift_target == "median":
        centre = np.median(values, axis=1)
        spread = np.abs(values - centre[:, None])
        spread = np.maximum(MAD_TO_MEAN_ABS * np.median(spread, axis=1), spread.mean(axis=1))
    else:
        centre = values.mean(axis=1)
        spread = np.abs(values - centre[:, None]).mean(axis=1)
    offset = centre - m.level[ids]
    apart = np.abs(offset) >= m.params.shift_separation * spread
    if not apart.all():
        ids, scale, centre, spread, offset = (
            ids[apart],
            scale[apart],
            centre[apart],
            spread[apart],
            offset[apart],
        )
    if m.params.shift_floor:
        spread = np.maximum(spread, shift.scale0[ids].astype(np.float64))
    m.level[ids] = centre
    if m.params.seasonal_offsets:  # the buckets are offsets from the base: it moves them all
        m.base[ids] = m.base[ids] + offset
    else:
        m.day[ids] = m.day[ids] + offset[:, None]  # NaN (never visited) buckets stay NaN
        m.week[ids] = m.week[ids] + offset[:, None]
    # Every model's error is rescaled alike, so which one the series uses does not change.
    ratio = spread / np.maximum(scale, 1e-300)
    m.dev[ids] = m.dev[ids] * ratio
    m.dev_day[ids] = m.dev_day[ids] * ratio  # inf (no bucket yet) stays inf
    m.dev_week[ids] = m.dev_week[ids] * ratio
    m.fast_dev[ids] = spread
    m.tail[ids] = shift.tail0[ids]
