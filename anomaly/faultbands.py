"""A band a raised fault widened, given back when the series comes back: opt-in (``restore_ticks`` > 0) for
the adaptive thresholds, on in the service (``anomaly.band_restore_ticks``), off in ``anomaly score``.

While a series is beyond its band its samples widen the band (the error scale and the tail learn them) and
drag its level, as they must for a lasting change to become the series' normal. But a fault that is repaired
left the band wide: an SM clock at N(1980, 5) MHz throttled to 1400 for an hour kept a band of about
+-500 MHz (+-150 before) for over an hour after the repair, and a second 250 MHz drop 10 to 60 minutes on
was never raised (``benchmarks/anomaly_band_after_repair.py``).

So the state a series had just before a run of samples past its band (its level, error scale, tail and fast
error) is kept (past the band itself: a sample that scores above 1 only by its volatility, a job's stall
inside a wide band, starts no run, and its return gives nothing back). Once the run has lasted
``restore_run`` samples (the service's ``pending_ticks``: what raises an alert), it is a raised fault, and
when the series then reads ``restore_run`` samples in a row within the band that state gave (the fault
repaired), that state is given back, whatever the fault taught since. A series that does not come back
within ``restore_ticks`` samples of the run's start keeps what it learnt: a lasting change is learnt as
without the rule (and a return after it is scored against the new band). A run shorter than
``restore_run`` (a burst no alert was raised for) gives nothing back. Seasonal buckets are not given back:
the level's band is the one a return is judged by. Off in ``anomaly score`` and the NAB evaluation, where
bursty series (whose band each burst widened) then alerted at each burst.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from anomaly.thresholds import AdaptiveThresholds, BoolArray, FloatArray, IntArray

# The per-series arrays a snapshot keeps (``AdaptiveThresholds.state``, each as ``fault_<name>``).
FAULT_STATE = ("level", "dev", "tail", "fast", "age", "out", "back")
# A series' level, error scale, tail and fast error before a step (``AdaptiveThresholds._before``).
Before = tuple["FloatArray", "FloatArray", npt.NDArray[np.float32], npt.NDArray[np.float32]]
MAX_RESTORE_TICKS = int(np.iinfo(np.uint16).max) - 1  # ``age`` is kept in 2 bytes
MAX_RESTORE_RUN = int(np.iinfo(np.uint8).max) - 1
_SPENT = MAX_RESTORE_RUN + 1  # ``out`` of a run that outlived ``restore_ticks`` (``FaultBands.observe``)


class FaultBands:
    """Per series: the state before its current run of anomalous samples (level, error scale, tail, fast
    error), the samples since that run began (``age``, 0: none kept), the run's length up to ``run`` and the
    samples in a row back within the kept band. 24 bytes per series."""

    def __init__(self, run: int, ticks: int) -> None:
        self.run_needed = run
        self.ticks = ticks
        self.level = np.zeros(0, np.float64)
        self.dev = np.zeros(0, np.float32)
        self.tail = np.zeros(0, np.float32)
        self.fast = np.zeros(0, np.float32)
        self.age = np.zeros(0, np.uint16)
        self.out = np.zeros(0, np.uint8)
        self.back = np.zeros(0, np.uint8)

    def arrays(self) -> tuple[npt.NDArray[np.generic], ...]:
        """The state arrays (for their size and the snapshot)."""
        return (self.level, self.dev, self.tail, self.fast, self.age, self.out, self.back)

    def grow(self, cap: int) -> None:
        """Hold ``cap`` series (the new ones keep nothing)."""

        def extend(a: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
            out = np.zeros((cap, *a.shape[1:]), dtype=a.dtype)
            out[: a.shape[0]] = a
            return out

        for name in FAULT_STATE:
            setattr(self, name, extend(getattr(self, name)))

    def reset(self, ids: IntArray) -> None:
        """Forget what ``ids`` kept."""
        self.age[ids] = 0
        self.out[ids] = 0
        self.back[ids] = 0

    def observe(
        self,
        ids: IntArray,
        x: FloatArray,
        *,
        anomalous: BoolArray,
        before: Before,
        band: BoolArray,
    ) -> BoolArray:
        """After a step is learnt: keep the state ``before`` it of each series whose run begins at it, count
        the runs and the returns; which series are due to be given their kept state back (``band``: whether
        each of ``x`` is within the kept band; read only where a fault is kept). ``anomalous``: judged and
        past its band (not merely volatile)."""
        age = self.age[ids].astype(np.int64)
        out = self.out[ids].astype(np.int64)
        kept = age > 0
        # A run that outlived ``ticks`` keeps nothing more until a sample within the band: kept again mid-run,
        # the band the fault had widened by then would be given back at its repair.
        spent = ~kept & (out > 0)
        starting = anomalous & ~kept & ~spent
        if starting.any():
            rows = ids[starting]
            level, dev, tail, fast = before
            self.level[rows] = level[starting]
            self.dev[rows] = dev[starting]
            self.tail[rows] = tail[starting]
            self.fast[rows] = fast[starting]
        raised = kept & (out >= self.run_needed)
        # A run that ends before it would raise keeps nothing; one that raised waits for the series' return.
        out = np.where(starting, 1, np.where(kept & ~raised, np.where(anomalous, out + 1, 0), out))
        age = np.where(starting, 1, np.where(kept & (out > 0), age + 1, 0))
        back = np.where(raised & band, self.back[ids].astype(np.int64) + 1, 0)
        due: BoolArray = raised & (back >= self.run_needed)
        over = age > self.ticks
        age = np.where(due | over, 0, age)
        self.age[ids] = age
        out = np.where((over & ~due) | (spent & anomalous), _SPENT, np.where(due | spent, 0, out))
        self.out[ids] = np.minimum(out, _SPENT)
        self.back[ids] = np.where(age > 0, np.minimum(back, MAX_RESTORE_RUN), 0)
        return due


def follow_faults(
    m: AdaptiveThresholds,
    ids: IntArray,
    x: FloatArray,
    anomalous: BoolArray,
    before: Before,
) -> None:
    """After ``m`` learnt a step: keep the state ``before`` it of each series whose run of ``anomalous``
    samples begins, and give it back to those whose raised fault ended (``FaultBands``)."""
    fault = m.fault
    assert fault is not None
    # Only the series in a run, or past their band now, change anything (``out`` is 0 for the others).
    active = anomalous | (fault.out[ids] > 0)
    if not active.any():
        return
    if not active.all():
        rows = np.flatnonzero(active)
        ids, x, anomalous = ids[rows], x[rows], anomalous[rows]
        before = (before[0][rows], before[1][rows], before[2][rows], before[3][rows])
    kept = fault.age[ids] > 0
    inside = np.zeros(ids.size, np.bool_)
    if kept.any():
        inside[kept] = within(m, ids[kept], x[kept])
    due = fault.observe(ids, x, anomalous=anomalous, before=before, band=inside)
    if due.any():
        give_back(m, ids[due])


def within(m: AdaptiveThresholds, ids: IntArray, x: FloatArray) -> BoolArray:
    """Whether each of ``x`` is within the band of the state kept for its series (``FaultBands``): its level
    plus or minus the half-width its error scale, tail and floors give, as ``AdaptiveThresholds`` bands."""
    f = m.fault
    assert f is not None
    p = m.params
    level = f.level[ids]
    width: FloatArray | float = p.k
    if p.tail_quantile > 0:
        width = np.maximum(p.k, p.tail_k * f.tail[ids].astype(np.float64))
    band = np.maximum(width * f.dev[ids].astype(np.float64), p.min_deviation)
    if p.min_relative_deviation > 0:
        band = np.maximum(band, p.min_relative_deviation * np.abs(level))
    band = np.maximum(band, 1e-9 * (1.0 + np.abs(level)))
    inside: BoolArray = np.abs(x - level) <= band
    return inside


def spiking(f: FaultBands, ids: IntArray) -> BoolArray:
    """Whether a sample of each of ``ids`` past its band now would be among the first ``run - 1`` of its
    run (``out`` counts the run's samples so far, 0 where none runs, ``_SPENT`` past ``ticks``): a spike
    no alert is raised for yet (``ThresholdParams.lone_spikes``)."""
    early: BoolArray = f.out[ids] < f.run_needed - 1
    return early


def give_back(m: AdaptiveThresholds, ids: IntArray) -> None:
    """Give ``ids`` in ``m`` the state kept before their fault (``FaultBands``)."""
    f = m.fault
    assert f is not None
    m.level[ids] = f.level[ids]
    m.dev[ids] = f.dev[ids]
    m.tail[ids] = f.tail[ids]
    m.fast_dev[ids] = f.fast[ids]
