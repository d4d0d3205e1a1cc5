"""When answers' spacings make a coarser step (or a filter's period): the rule ``anomaly.coarsesteps`` and
``anomaly.filterperiods`` both follow, for a query's answered steps (scalars, one answer at a time) and a
read's series (arrays), written once in operators both take. The per-series code run on one slot cost 64 us
an answer against 9 us."""

from __future__ import annotations

from typing import overload

import numpy as np

from anomaly.thresholds import BoolArray, FloatArray, IntArray

CONFIRM = 3  # spacings in a row of the same coarser step before it is believed: one outage is one spacing
MIN_STEPS = 20  # asked steps those spacings cover at least: a filter's answers are on a grid by chance


def off_grid(steps: FloatArray, seen: FloatArray, step: float) -> BoolArray:
    """Whether answers ``steps`` asked steps after the last are off the coarser step ``seen`` (0: none)."""
    off: BoolArray = (seen > 0) & (np.fmod(steps, np.maximum(np.rint(seen / step), 1)) != 0)
    return off


@overload
def spacing_run(steps: int, step: float, before: float, times: int) -> tuple[float, int]: ...
@overload
def spacing_run(
    steps: FloatArray, step: float, before: FloatArray, times: IntArray
) -> tuple[FloatArray, IntArray]: ...
def spacing_run(steps, step, before, times):  # type: ignore[no-untyped-def]
    """After an answer ``steps`` asked steps after the last: the run's spacing in seconds (0: one step) and
    how many in a row, from the run of ``times`` spacings of ``before`` seconds."""
    spacing = (steps > 1) * steps * step
    return spacing, ((before == spacing) * times + 1) * (spacing != 0)


@overload
def confirms(times: int, steps: int, seen: float, spacing: float) -> bool: ...
@overload
def confirms(times: IntArray, steps: FloatArray, seen: FloatArray, spacing: FloatArray) -> BoolArray: ...
def confirms(times, steps, seen, spacing):  # type: ignore[no-untyped-def]
    """Whether a run of ``times`` spacings of ``steps`` asked steps makes ``spacing`` the step seen anew."""
    return (times >= CONFIRM) & (times * steps >= MIN_STEPS) & (seen != spacing)
