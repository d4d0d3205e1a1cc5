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
``restore_run`` (a burst no alert was raised for) gives nothing back. Off in ``anomaly score`` and the NAB
evaluation, where bursty series (whose band each burst widened) then alerted at each burst.

With seasonal baselines (``anomaly.adaptive_seasonality``) the hour-of-day and hour-of-week models' error
scales are kept and given back too (8 bytes more a series): given back the level's alone, a seasonal model the
fault had widened still judged the return (at 30 s ticks, a daily wave of amplitude 30 with noise 2, an hour
40 down: a band of about +-33 for an hour after the repair, +-14 before, and a second drop of 20 for 10
minutes 20 to 60 minutes on was not raised; now +-16 to 19, and raised). The buckets themselves are not given
back (they would cost 4 bytes each, 192 a series): as offsets from a base (``seasonal_offsets``, the
service's), they learn nothing while the fault is kept, and the base is kept and given back (4 bytes more);
whether the series is back is then judged by the kept model's band at the sample's hour (``within``). Holding
the hours' values, the buckets of the fault's hours learnt its values (and kept from learning while the fault
was kept, a change that lasted left the bucket of its last kept hour at the old value, which alerted again
every day).

A series whose band is never given back (``restore_ticks`` 0) but whose lone spikes are kept out of its fast
error (``lone_spikes``) counts its runs past the band in ``SpikeRuns``, 1 byte a series: it read the runs
``FaultBands`` counts, and with ``band_restore_ticks: 0`` a lone spike made an alert again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from anomaly.seasonal import kept_model

if TYPE_CHECKING:
    from anomaly.seasonal import Season
    from anomaly.thresholds import AdaptiveThresholds, BoolArray, FloatArray, IntArray

# The per-series arrays a snapshot keeps (``AdaptiveThresholds.state``, each as ``fault_<name>``); with
# seasonal baselines ``SEASONAL_FAULT_STATE`` too.
FAULT_STATE = ("level", "dev", "tail", "fast", "age", "out", "back")
SEASONAL_FAULT_STATE = ("dev_day", "dev_week")
OFFSETS_FAULT_STATE = ("base",)  # with ``seasonal_offsets`` too: what the buckets are offsets from
# What a kept array of ``FaultBands`` is of the model's (``AdaptiveThresholds``), in ``Before``'s order.
_KEPT = {"level": "level", "dev": "dev", "tail": "tail", "fast": "fast_dev"}
_SEASONAL_KEPT = {"dev_day": "dev_day", "dev_week": "dev_week"}
_OFFSETS_KEPT = {"base": "base"}
# A series' level, error scale, tail and fast error before a step, and with seasonal baselines their error
# scales (``AdaptiveThresholds._before``).
Before = tuple[npt.NDArray[np.floating[Any]], ...]
MAX_RESTORE_TICKS = int(np.iinfo(np.uint16).max) - 1  # ``age`` is kept in 2 bytes
MAX_RESTORE_RUN = int(np.iinfo(np.uint8).max) - 1
_SPENT = MAX_RESTORE_RUN + 1  # ``out`` of a run that outlived ``restore_ticks`` (``FaultBands.observe``)


class FaultBands:
    """Per series: the state before its current run of anomalous samples (level, error scale, tail, fast
    error; ``seasonal``: the seasonal models' error scales too; ``offsets``: the base of their buckets too),
    the samples since that run began (``age``, 0: none kept), the run's length up to ``run`` and the samples
    in a row back within the kept band. 24 bytes per series, 32 with ``seasonal``, 36 with ``offsets``."""

    def __init__(self, run: int, ticks: int, *, seasonal: bool = False, offsets: bool = False) -> None:
        self.run_needed = run
        self.ticks = ticks
        offsets = seasonal and offsets
        self.kept = {**_KEPT, **(_SEASONAL_KEPT if seasonal else {}), **(_OFFSETS_KEPT if offsets else {})}
        self.names = (
            FAULT_STATE + (SEASONAL_FAULT_STATE if seasonal else ()) + (OFFSETS_FAULT_STATE * offsets)
        )
        self.level = np.zeros(0, np.float64)
        self.dev = np.zeros(0, np.float32)
        self.tail = np.zeros(0, np.float32)
        self.fast = np.zeros(0, np.float32)
        self.age = np.zeros(0, np.uint16)
        self.out = np.zeros(0, np.uint8)
        self.back = np.zeros(0, np.uint8)
        self.dev_day = np.zeros(0, np.float32)
        self.dev_week = np.zeros(0, np.float32)
        self.base = np.zeros(0, np.float32)

    def arrays(self) -> tuple[npt.NDArray[np.generic], ...]:
        """The state arrays (for their size and the snapshot), in ``names``' order."""
        return tuple(getattr(self, name) for name in self.names)

    def grow(self, cap: int) -> None:
        """Hold ``cap`` series (the new ones keep nothing)."""
        for name in self.names:
            setattr(self, name, _extended(getattr(self, name), cap))

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
            for name, now in zip(self.kept, before, strict=True):
                getattr(self, name)[rows] = now[starting]
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


def kept_before(m: AdaptiveThresholds, ids: IntArray, level: FloatArray, dev: FloatArray) -> Before:
    """The state of ``ids`` in ``m`` before a step teaches them, as ``FaultBands`` keeps it (level, error
    scale, tail, fast error; with seasonal baselines their error scales)."""
    if m.params.seasonality:
        seasonal = (m.dev_day[ids], m.dev_week[ids]) + ((m.base[ids],) if m.params.seasonal_offsets else ())
        return level, dev, m.tail[ids], m.fast_dev[ids], *seasonal
    return level, dev, m.tail[ids], m.fast_dev[ids]


def follow_runs(
    m: AdaptiveThresholds,
    ids: IntArray,
    x: FloatArray,
    anomalous: BoolArray,
    before: Before | None,
    *,
    season: Season | None,
) -> None:
    """After ``m`` learnt a step: follow its faults (``follow_faults``, ``before``: the state before the step,
    where ``m`` keeps it; ``season``: the step's seasonal baselines, if any), else count its runs past the
    band (``SpikeRuns``), where it does either."""
    if before is not None:
        follow_faults(m, ids, x, anomalous, before, offsets=None if season is None else season.offset())
    elif m.spikes is not None:
        m.spikes.observe(ids, anomalous)


def follow_faults(
    m: AdaptiveThresholds,
    ids: IntArray,
    x: FloatArray,
    anomalous: BoolArray,
    before: Before,
    *,
    offsets: tuple[FloatArray, FloatArray] | None = None,
) -> None:
    """After ``m`` learnt a step: keep the state ``before`` it of each series whose run of ``anomalous``
    samples begins, and give it back to those whose raised fault ended (``FaultBands``; ``offsets``: the
    step's hour-of-day and hour-of-week offsets, with seasonal baselines: ``Season.offset``)."""
    fault = m.fault
    assert fault is not None
    # Only the series in a run, or past their band now, change anything (``out`` is 0 for the others).
    active = anomalous | (fault.out[ids] > 0)
    if not active.any():
        return
    if not active.all():
        rows = np.flatnonzero(active)
        ids, x, anomalous = ids[rows], x[rows], anomalous[rows]
        before = tuple(b[rows] for b in before)
        offsets = None if offsets is None else (offsets[0][rows], offsets[1][rows])
    kept = fault.age[ids] > 0
    inside = np.zeros(ids.size, np.bool_)
    if kept.any():
        inside[kept] = within(
            m, ids[kept], x[kept], None if offsets is None else (offsets[0][kept], offsets[1][kept])
        )
    due = fault.observe(ids, x, anomalous=anomalous, before=before, band=inside)
    if due.any():
        give_back(m, ids[due])


def within(
    m: AdaptiveThresholds, ids: IntArray, x: FloatArray, offsets: tuple[FloatArray, FloatArray] | None = None
) -> BoolArray:
    """Whether each of ``x`` is within the band of the state kept for its series (``FaultBands``): its level
    plus or minus the half-width its error scale, tail and floors give, as ``AdaptiveThresholds`` bands; with
    ``seasonal_offsets``, the kept base plus the offset at the sample's hour (``offsets``), with that model's
    kept error scale, where the kept errors chose a seasonal model (``anomaly.seasonal.kept_model``): on a
    daily wave the level kept at a 3-hour fault's start was 28 from the value at its repair, and the band
    was never given back."""
    f = m.fault
    assert f is not None
    p = m.params
    level, scale = (
        (f.level[ids], f.dev[ids].astype(np.float64)) if offsets is None else kept_model(m, ids, offsets)
    )
    width: FloatArray | float = p.k
    if p.tail_quantile > 0:
        width = np.maximum(p.k, p.tail_k * f.tail[ids].astype(np.float64))
    band = np.maximum(width * scale, p.min_deviation)
    if p.min_relative_deviation > 0:
        band = np.maximum(band, p.min_relative_deviation * np.abs(level))
    band = np.maximum(band, 1e-9 * (1.0 + np.abs(level)))
    inside: BoolArray = np.abs(x - level) <= band
    return inside


def spiking(f: FaultBands | SpikeRuns, ids: IntArray) -> BoolArray:
    """Whether a sample of each of ``ids`` past its band now would be among the first ``run - 1`` of its
    run (``out`` counts the run's samples so far, 0 where none runs; ``FaultBands``' is ``_SPENT`` past
    ``ticks`` and stays at the run's length until the repair): a spike no alert is raised for yet
    (``ThresholdParams.lone_spikes``)."""
    early: BoolArray = f.out[ids] < f.run_needed - 1
    return early


def give_back(m: AdaptiveThresholds, ids: IntArray) -> None:
    """Give ``ids`` in ``m`` the state kept before their fault (``FaultBands``)."""
    f = m.fault
    assert f is not None
    for name, into in f.kept.items():
        getattr(m, into)[ids] = getattr(f, name)[ids]


class SpikeRuns:
    """Per series, where no band is given back (``restore_ticks`` 0) but lone spikes are kept out of the fast
    error (``lone_spikes``): its samples in a row past its band, up to ``run`` (``spiking``). 1 byte per
    series."""

    def __init__(self, run: int) -> None:
        self.run_needed = run
        self.out = np.zeros(0, np.uint8)

    def grow(self, cap: int) -> None:
        """Hold ``cap`` series (the new ones in no run)."""
        self.out = _extended(self.out, cap)

    def observe(self, ids: IntArray, anomalous: BoolArray) -> None:
        """Count each series' run past its band (``anomalous``: judged and past it, as ``FaultBands``)."""
        self.out[ids] = np.where(anomalous, np.minimum(self.out[ids], self.run_needed - 1) + 1, 0)


def _extended(a: npt.NDArray[Any], cap: int) -> npt.NDArray[Any]:
    """``a`` with room for ``cap`` series, the new ones zeros."""
    out = np.zeros((cap, *a.shape[1:]), dtype=a.dtype)
    out[: a.shape[0]] = a
    return out
