"""The adaptive band of a series that is mostly one value, spikes among zeros (a queue's wait, idle), in
``anomaly run`` (``ThresholdParams.lone_spikes``: the service's alone; ``anomaly score`` and the NAB
evaluation learn as before).

Such a series' kept first samples (``anomaly.warmstart``) have a MAD of 0, and its band is learnt from how
many spikes its warm-up happened to see: Poisson counts of mean 0.2 (a spike in 18 % of reads) whose
warm-up of 30 reads saw two learnt a band of 0.4 to 0.6 about 0, one that saw none a band of 1e-9. Its
errors were then winsorised at 4 error scales (at the band in its first 200 samples, since fix/sparse), so
that a spike taught the scale a fraction of itself, or nothing at all at a band of 1e-9; and a series whose
spikes come in fewer than about one read in 8 had its scale shrink for good, each spike's error held at 4
times a scale that the zeros between them pulled down: Poisson counts of mean 0.1 read a band of 0.07 at
read 3,000 (every 1 scoring about 14), of mean 0.05 one of 0.003 at read 2,000 (every 1 about 50,000).
Every 1 scored above 1, and three nonzero reads in a row raised an alert, again and again: in 500 series of
14 days at a 5-minute step, 123 false alerts at mean 0.2 (2 in the first 50, which
``benchmarks/noise_false_alerts.py`` scores), 3,682 at mean 0.1.

So for such a series (``flat``):

* a spike, a sample past the band that no alert is raised for yet (the first ``restore_run - 1`` of a run,
  ``faultbands.spiking``), teaches the error scale its whole error while the scale is young (under
  ``1 / scale_alpha`` samples learnt: a warm-up of zeros leaves nothing to winsorise at), and at most
  ``clip`` bands after it (``sparse_cap``): the scale learns how often the series spikes and how far, and
  one wild value (8e8, a query without ``data_range``) past its first 200 reads does not blind it for days.
  A run that lasts (a fault, raised) teaches from its third sample on winsorised as before;
* while its error scale is young the band is at least the smaller of the two largest distances of its kept
  first samples from their median (``seen_floor``): a step the warm-up saw twice is the series' own. One
  spike seen once sets no floor, as it may be a fault the warm-up caught; a step larger than those seen is
  scored as before.

In 500 series of 14 days at a 5-minute step, Poisson counts of mean 0.2 raise none, of mean 0.1 87 (three
or more 1s in a row, past a band still under one count: see the README's Known gaps).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from anomaly.faultbands import spiking

if TYPE_CHECKING:
    from anomaly.thresholds import AdaptiveThresholds, BoolArray, FloatArray, IntArray


def flat(kept: npt.NDArray[np.float32]) -> BoolArray:
    """Whether each row of ``kept`` (a series' first samples) was mostly one value: its MAD is 0. Judged
    with them (``startpool.judge``) and kept a byte a series (``AdaptiveThresholds.flat``): past its first
    200 reads a series' kept samples are let go (``anomaly.startpool``): read then as zeros, every series
    was flat, and a lone spike of a noisy one taught its error scale up to ``clip`` bands (8 times its
    ``error_clip`` scales: one left it 7 to 14 % wider, ``test_lone_spikes``)."""
    values = kept.astype(np.float64)
    out: BoolArray = np.median(np.abs(values - np.median(values, axis=1)[:, None]), axis=1) == 0
    return out


def _judged(m: AdaptiveThresholds, n: npt.NDArray[np.int32]) -> BoolArray | None:
    """Which samples of a step (``n``: each series' count before it) ``m`` judges as above, their series'
    first samples judged ``flat`` or not (``AdaptiveThresholds.flat``); None: none."""
    if not m.flat.shape[1]:
        return None
    judged: BoolArray = n >= m.start_len
    return judged


def seen_floor(
    m: AdaptiveThresholds, ids: IntArray, *, n: npt.NDArray[np.int32], err: FloatArray, band: FloatArray
) -> FloatArray:
    """The band each error ``err`` of ``ids`` is scored against: at least the step the series' warm-up saw
    twice where it is ``flat`` and its error scale young (the module's docstring), ``band`` elsewhere. Only
    rows whose error passes ``band`` are judged."""
    judged = _judged(m, n)
    if judged is None:
        return band
    due = judged & (n * m.params.scale_alpha < 1.0) & (err > band)
    if not due.any():
        return band
    rows = np.flatnonzero(due)
    rows = rows[m.flat[ids[rows], 0]]  # young: its kept samples are still held (``anomaly.startpool``)
    values = m.start.read(ids[rows]).astype(np.float64)
    seen = np.sort(np.abs(values - np.median(values, axis=1)[:, None]), axis=1)[:, -2]
    out = band.copy()
    out[rows] = np.maximum(band[rows], seen)
    return out


def sparse_cap(
    m: AdaptiveThresholds,
    ids: IntArray,
    *,
    n: npt.NDArray[np.int32],
    err: FloatArray,
    cap: FloatArray,
    band: FloatArray,
) -> FloatArray:
    """The cap each error ``err`` of ``ids`` is learnt by the error scale at, for a ``flat`` series: none for
    a spike while its scale is young (under ``1 / scale_alpha`` samples learnt), ``clip`` bands after; the
    band instead of ``cap`` for its other samples while young; ``cap`` elsewhere. Only rows whose error passes
    ``cap`` are judged."""
    judged = _judged(m, n)
    runs = m.fault if m.fault is not None else m.spikes
    if judged is None or runs is None:
        return cap
    young = n * m.params.scale_alpha < 1.0
    lone = (n >= m.params.warmup) & spiking(runs, ids)
    due = judged & (young | lone) & (err > cap)
    if not due.any():
        return cap
    rows = np.flatnonzero(due)
    rows = rows[m.flat[ids[rows], 0]]
    out = cap.copy()
    out[rows[young[rows]]] = np.maximum(cap, band)[rows[young[rows]]]
    at = rows[lone[rows]]
    out[at] = np.where(young[at], np.inf, np.maximum(cap[at], m.params.clip * band[at]))
    return out
