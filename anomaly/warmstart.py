"""The robust start of the adaptive thresholds: the warm-up learnt again with its odd samples winsorised.

A series' level starts at its first sample and moves ``alpha`` (1 %) per sample, and until the warm-up ends
its errors are learnt unclipped (the band is not trusted yet, so there is nothing to winsorise at). One odd
sample among the first (a reading of 100 in a series at 10) therefore left the level or the band far off
for hundreds of samples: the first sample odd, the level still read 70 at sample 40; the tenth, the band
was some twenty times the noise's; either way a 90 % drop right after the warm-up raised nothing.

So the warm-up's samples are kept (the first ``robust_start`` of them, the whole warm-up by default, in
float32, one past its range at its edge) and, once the last of them has been learnt, judged together: their
median and MAD give a robust error scale (``MAD_TO_MEAN_ABS`` x MAD, a Gaussian's mean absolute error), and
a sample outside the band a warmed-up series of that scale has (``k`` scales from the median, at least the
band's floors ``min_deviation`` and ``min_relative_deviation``: about 6.4 standard deviations of Gaussian
noise), one it would score above 1, is odd. A series with an odd sample has its level, error scale and fast
error learnt again from its kept samples with each odd one moved in to the band's edge, by the very rule
the warm-up learns by (``relearnt``) but from their median (the first sample sets the level, and may be
the odd one); one without keeps what it learnt, to the bit, so a warm-up without an odd sample is as
before. A sample inside that band is no odd one, whatever its size: judged at ``error_clip x clip`` scales
(where a warmed-up series winsorises) instead, 69 % of warm-ups of 30 samples of Student-t noise (3 degrees
of freedom) and 15 % of Gaussian noise's had one (at the band: 18 % and 0.1 %), their bands were learnt
narrower than before, and a 16-rank job's heavy-tailed power raised an alert in its second hour
(``tests/anomaly/test_collective.py``). Where more than half of the samples equal their median (MAD 0: a
flat start, spikes among zeros) and no floor is set, nothing tells an odd sample from the series' own steps,
and none is judged odd.

Not learnt again: the seasonal buckets and their errors (an odd sample in a bucket raises that model's
error, so the level model keeps being used until the bucket has relearnt) and the band's tail quantile
(it moves by a fixed step per sample, whatever the error's size). Once the start is taken the kept samples
are dead weight (``4 x robust_start`` bytes a series, 120 at the default warm-up of 30), kept so that the
per-series arrays stay dense; with the opt-in re-baselining on, its ring of recent values holds them
instead (``anomaly.levelshift``: it is written from the first sample, and no run is counted in the
warm-up), at most ``shift_run`` of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from anomaly.levelshift import MAD_TO_MEAN_ABS

if TYPE_CHECKING:
    from anomaly.thresholds import BoolArray, FloatArray, ThresholdParams

START_SAMPLES = 32
"""The default ``robust_start``: at most this many first samples are kept (the default warm-up, 30, whole)."""
MAX_START_SAMPLES = 64
MIN_START_SAMPLES = 3  # fewer have no median an odd one cannot move
_FLOAT32_MAX = float(np.finfo(np.float32).max)


def directed(resid: npt.NDArray[np.float64], direction: str) -> npt.NDArray[np.float64]:
    """The errors ``resid`` as a band of ``direction`` judges them: only a rise for ``up``, only a fall for
    ``down`` (as positive numbers), either for ``both``."""
    if direction == "up":
        return np.maximum(resid, 0.0)
    if direction == "down":
        return np.maximum(-resid, 0.0)
    return np.abs(resid)


def start_length(params: ThresholdParams) -> int:
    """How many first samples are kept and judged with ``params``: ``robust_start``, at most the warm-up
    and the re-baselining's ring (``shift_run``, where on); 0 (none: the warm-up is learnt as it comes) when
    that is under ``MIN_START_SAMPLES``."""
    length = min(params.robust_start, params.warmup, params.shift_run or params.warmup)
    return length if length >= MIN_START_SAMPLES else 0


def relearnt(
    kept: npt.NDArray[np.float32], params: ThresholdParams
) -> tuple[BoolArray, FloatArray, FloatArray, FloatArray]:
    """Judge the kept samples of each row of ``kept`` (a series' first samples, in order): which rows hold an
    odd sample, and for those the level, error scale and fast error learnt again (the module's docstring
    says how). Row by row the same bits whatever the other rows: a series scored alone (``anomaly.scalar``)
    gets the same."""
    # At float32's edge: the re-baselining's ring keeps a value past its range as inf.
    values = np.minimum(np.maximum(kept.astype(np.float64), -_FLOAT32_MAX), _FLOAT32_MAX)
    centre = np.median(values, axis=1)[:, None]
    spread = np.abs(values - centre)
    # The band a warmed-up series of that error scale has (``k`` scales, at least its floors): beyond it a
    # sample would score above 1.
    cap = params.k * MAD_TO_MEAN_ABS * np.median(spread, axis=1)[:, None]
    cap = np.maximum(cap, max(params.min_deviation, 0.0))
    if params.min_relative_deviation > 0:
        cap = np.maximum(cap, params.min_relative_deviation * np.abs(centre))
    odd = ((spread > cap) & (cap > 0)).any(axis=1)
    if not odd.any():
        empty = np.zeros(0)
        return odd, empty, empty, empty
    centre, cap, values = centre[odd], cap[odd], values[odd]
    winsorised = centre + np.minimum(np.maximum(values - centre, -cap), cap)
    # From the median: the first sample, which set the level, may be the odd one (moved in, it would still
    # hold the level error_clip x clip scales off, and the scale learnt about it as wide).
    level, dev, fast = centre[:, 0], np.zeros(len(values)), np.zeros(len(values))
    for n in range(winsorised.shape[1]):
        resid = winsorised[:, n] - level
        signed = directed(resid, params.direction)
        fast = fast + params.fast_alpha * (signed - fast)
        dev = dev + max(params.scale_alpha, 1.0 / (n + 1.0)) * (np.abs(resid) - dev)
        level = level + params.alpha * resid
    return odd, level, dev, fast
