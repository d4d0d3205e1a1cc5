"""Adaptive thresholds: a robust streaming baseline per series, vectorised across series.

State lives in numpy arrays indexed by series id (no Python object per series), so one scoring tick over
hundreds of thousands of series is a few dozen array operations. Three baselines compete per series:

* ``level``: an EWMA of the value (non-seasonal);
* ``hour-of-day``: 24 buckets, each an EWMA of the values seen in that hour;
* ``hour-of-week``: 168 buckets (hour-of-day x day-of-week).

Each model keeps an EWMA of its absolute error; the series uses the model with the smallest error, a seasonal
one only when it is clearly better (so a series "has seasonality" when its data says so). Updates are
winsorised at a few bands, so one spike does not drag the baseline or inflate the band.

Opt-in re-baselining after a level shift (``shift_run`` > 0, off by default): winsorised updates make the
baseline catch up with a persistent shift slowly, and meanwhile the error scale widens, so the band stays wide
long after the level has settled. When a series' value has been beyond its band on one side for ``shift_run``
samples in a row, its baseline is reset to the median (or mean, ``shift_target``) of those samples, the
seasonal buckets are moved by the same offset, and its error scales are rescaled to those samples' spread (at
least the scale the series had when the run began, with ``shift_floor``). The reset raises nothing itself: it
only moves the baseline the next samples are scored against.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from anomaly.faultbands import (
    MAX_RESTORE_RUN,
    MAX_RESTORE_TICKS,
    FaultBands,
    SpikeRuns,
    follow_runs,
    kept_before,
    spiking,
)
from anomaly.levelshift import MAX_SHIFT_RUN, SHIFT_STATE, ShiftState, rebaseline
from anomaly.seasonal import HOURS_PER_DAY, HOURS_PER_WEEK, Season, clipped, held
from anomaly.snapshot import State, rows_to_hold
from anomaly.sparsebands import seen_floor, sparse_cap
from anomaly.startpool import StartPool, judge, keep, kept_row, mind, set_kept
from anomaly.steps import unlearned
from anomaly.warmstart import MAX_START_SAMPLES, START_SAMPLES, directed, start_length
from gpuwarden.config_anomaly import AnomalyThresholdConfig

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]
Direction = Literal["up", "down", "both"]
ShiftTarget = Literal["median", "mean"]

# Read once: np.iinfo per sample cost 2 % of a single series' scoring.
_INT32_MAX = int(np.iinfo(np.int32).max)
# The per-series arrays a snapshot keeps (``AdaptiveThresholds.state``; the re-baselining's: ``SHIFT_STATE``).
# The first samples are kept apart, in a pool while read (``StartPool``), saved as ``start``.
_STATE = (
    "count",
    "level",
    "dev",
    "dev_day",
    "dev_week",
    "day",
    "week",
    "last_seen",
    "fast_dev",
    "tail",
    "seeded",
    "base",
    "flat",
)
_UNSEEN = ("day", "week", "last_seen", "base")  # NaN in a new series
_FLOAT32_MAX = float(np.finfo(np.float32).max)
MAD_TO_SIGMA = 1.4826  # 1 / 0.67449: a Gaussian's standard deviation over its MAD (median absolute deviation)


@dataclass(frozen=True, slots=True)
class ThresholdParams:
    """Tuning of the adaptive thresholds; the defaults live in ``AnomalyThresholdConfig``."""

    alpha: float
    scale_alpha: float
    seasonal_alpha: float
    k: float
    warmup: int
    direction: Direction
    min_deviation: float
    min_relative_deviation: float
    seasonality: bool
    seasonal_gain: float
    clip: float
    fast_alpha: float
    volatility_k: float
    tail_quantile: float
    tail_k: float
    tail_rate: float
    error_clip: float
    seasonal_freeze: bool
    shift_run: int = 0
    """Re-baseline after this many samples in a row beyond the band on one side; 0: never (the default)."""
    shift_target: ShiftTarget = "median"
    """The new baseline: the median of the run's values, or their mean (an EWMA restarted at the run)."""
    shift_floor: bool = False
    """The re-learnt error scale is at least the scale the series had when the run began."""
    shift_separation: float = 0.0
    """Re-baseline only when the run's centre is this many of its own spreads from the level (a new level,
    not a burst whose values scatter around a high mean); 0: any run."""
    fast_cap: float = 0.0
    """Once warmed up, the error one sample adds to the fast error is at most this many volatility floors
    (``volatility_k / width`` bands, at least ``min_deviation``); 0: unbounded (the default)."""
    robust_start: int = START_SAMPLES
    """A series' first this many samples (at most ``warmup``) are kept and judged together once learnt: a
    series with an odd one among them learns them again with it winsorised (``anomaly.warmstart``); under 3:
    none (before 2026-12-07: one odd early sample blinded the band for hundreds of samples)."""
    seasonal_tested: bool = False
    """A seasonal model's error counts a bucket's error only once the bucket predicts from an earlier day or
    week; a bucket seeded in the hour it is in counts the level's (``anomaly.seasonal``). Off by default: it
    lowered the NAB score (all files) from 72.16 to 71.42."""
    restore_ticks: int = 0
    """A band a raised fault widened is given back once the series reads ``restore_run`` samples in a row
    within the band it had before, within this many samples of the fault's start (``anomaly.faultbands``); 0:
    never (the default, and ``anomaly score``'s: it lowered the NAB score)."""
    restore_run: int = 3
    """Samples in a row beyond the band that make a raised fault, and back within the band before it that
    make its repair (``restore_ticks``): the service's ``pending_ticks``."""
    lone_spikes: bool = False
    """A spike past the band leaves no volatility to score the usual samples after it (the first
    ``restore_run - 1`` samples of a run add to the fast error as at the band: ``faultbands.spiking``),
    and a mostly-0 series' error scale learns its spikes and its young band holds the step its warm-up saw
    twice (``anomaly.sparsebands``). Off by default (the service's alone, as ``seasonal_tested``)."""
    seasonal_offsets: bool = False
    """The seasonal buckets hold each hour's offset from a base and learn from no anomalous sample
    (``anomaly.seasonal``). Off by default (the service's alone, as ``seasonal_tested``)."""

    def __post_init__(self) -> None:
        if self.shift_run < 0 or self.shift_run > MAX_SHIFT_RUN:
            raise ValueError(f"shift_run must be 0 (off) to {MAX_SHIFT_RUN}, got {self.shift_run}")
        if not self.fast_cap >= 0:
            raise ValueError(f"fast_cap must be >= 0, got {self.fast_cap}")
        if not self.shift_separation >= 0:
            raise ValueError(f"shift_separation must be >= 0, got {self.shift_separation}")
        if not 0 <= self.robust_start <= MAX_START_SAMPLES:
            raise ValueError(f"robust_start must be 0 to {MAX_START_SAMPLES}, got {self.robust_start}")
        if not 0 <= self.restore_ticks <= MAX_RESTORE_TICKS:
            raise ValueError(
                f"restore_ticks must be 0 (off) to {MAX_RESTORE_TICKS}, got {self.restore_ticks}"
            )
        if not 1 <= self.restore_run <= MAX_RESTORE_RUN:
            raise ValueError(f"restore_run must be 1 to {MAX_RESTORE_RUN}, got {self.restore_run}")
        if self.shift_target not in ("median", "mean"):
            raise ValueError(f"shift_target must be 'median' or 'mean', got {self.shift_target!r}")

    @classmethod
    def from_config(cls, cfg: AnomalyThresholdConfig | None = None, **overrides: Any) -> ThresholdParams:
        """Parameters from the config section (the defaults when ``cfg`` is None), with overrides."""
        data = (cfg or AnomalyThresholdConfig()).model_dump()
        data.pop("resolve_after")
        data.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**data)


@dataclass(frozen=True, slots=True)
class ThresholdScores:
    """One tick's output for the series that had a finite sample."""

    ids: IntArray
    score: FloatArray
    yhat: FloatArray
    lower: FloatArray
    upper: FloatArray
    judged: BoolArray  # False in the warm-up: scored 0 as no evidence (``Findings.judged``)


class AdaptiveThresholds:
    """Per-series robust baselines with bands; ``update`` scores a batch of samples then learns from it."""

    def __init__(self, params: ThresholdParams | None = None, capacity: int = 1024) -> None:
        self.params = params or ThresholdParams.from_config()
        self._cap = 0
        self.count = np.zeros(0, np.int32)
        self.level = np.zeros(0, np.float64)
        self.dev = np.zeros(0, np.float64)
        self.dev_day = np.zeros(0, np.float32)
        self.dev_week = np.zeros(0, np.float32)
        # No buckets without ``seasonality`` (the service's default): 768 bytes a series no model read.
        self.day = np.zeros((0, HOURS_PER_DAY * self.params.seasonality), np.float32)
        self.week = np.zeros((0, HOURS_PER_WEEK * self.params.seasonality), np.float32)
        self.last_seen = np.zeros(0, np.float64)
        self.fast_dev = np.zeros(0, np.float32)
        self.tail = np.zeros(0, np.float32)
        # Which of its seasonal buckets each series seeded in the hour it is in (``seasonal_tested``).
        self.seeded = np.zeros(0, np.uint8)
        self.base = np.zeros(0, np.float32)  # what the buckets are offsets from (``seasonal_offsets``)
        self.shift = ShiftState(self.params.shift_run) if self.params.shift_run > 0 else None
        p = self.params
        season = {"seasonal": p.seasonality, "offsets": p.seasonal_offsets}
        self.fault = FaultBands(p.restore_run, p.restore_ticks, **season) if p.restore_ticks else None
        # Runs past the band, counted by ``fault`` where it is kept (``faultbands.spiking``).
        self.spikes = SpikeRuns(p.restore_run) if p.lone_spikes and self.fault is None else None
        # The first samples, kept until judged (``anomaly.warmstart``); the re-baselining's ring holds them
        # where it is on.
        self.start_len = start_length(self.params)
        self.start = StartPool(self.start_len if self.shift is None else 0)  # while read (``startpool``)
        # Whether its kept first samples were mostly one value, judged with them (``anomaly.sparsebands``).
        self.flat = np.zeros((0, int(bool(self.params.lone_spikes and self.start.width))), np.bool_)
        self._grow(max(capacity, 1))

    @property
    def capacity(self) -> int:
        """How many series the arrays hold now."""
        return self._cap

    def state_bytes(self) -> int:
        """Bytes of state its arrays hold."""
        return sum(int(a.nbytes) for a in self._arrays()) + self.start.nbytes()

    def state_bytes_per_series(self) -> float:
        """Bytes of state one series costs."""
        return self.state_bytes() / self._cap

    def fresh(self, ids: IntArray) -> BoolArray:
        """Whether each of ``ids`` has learnt nothing yet (new, or reset)."""
        held = ids < self._cap
        out: BoolArray = ~held
        out[held] = self.count[ids[held]] == 0
        return out

    def row(self, sid: int) -> npt.NDArray[np.uint8]:
        """Every per-series array's state of series ``sid``, as one row of bytes (``set_row`` reads it)."""
        return np.concatenate(
            [*(a[sid : sid + 1].view(np.uint8).ravel() for a in self._arrays()), kept_row(self, sid)]
        )

    def set_row(self, sid: int, row: npt.NDArray[np.uint8]) -> None:
        """Give series ``sid`` the state ``row`` holds (as ``row`` gave it)."""
        self._grow(sid + 1)
        at = 0
        for a in self._arrays():
            part = a[sid : sid + 1]
            part[...] = row[at : at + part.nbytes].view(a.dtype).reshape(part.shape)
            at += part.nbytes
        set_kept(
            self, np.array([sid], np.int64), np.frombuffer(row[at:].tobytes(), np.float32).reshape(1, -1)
        )

    def _arrays(self) -> list[npt.NDArray[np.generic]]:
        """Every per-series state array."""
        # In ``_STATE``'s order: a parked row (``row``) is their bytes in it (the kept samples last).
        arrays: list[npt.NDArray[np.generic]] = [getattr(self, name) for name in _STATE]
        if self.shift is not None:
            arrays += self.shift.arrays()
        if self.fault is not None:
            arrays += self.fault.arrays()
        if self.spikes is not None:
            arrays.append(self.spikes.out)
        return arrays

    def _held(self) -> dict[str, tuple[object, str]]:
        """Each array a snapshot keeps, by its name there: the object holding it and its attribute."""
        held: dict[str, tuple[object, str]] = {name: (self, name) for name in _STATE}
        if self.shift is not None:
            held.update({f"shift_{name}": (self.shift, name) for name in SHIFT_STATE})
        if self.fault is not None:
            held.update({f"fault_{name}": (self.fault, name) for name in self.fault.names})
        if self.spikes is not None:
            held["spike_out"] = (self.spikes, "out")
        return held

    def state(self) -> State:
        """The baselines, seasonal profiles and error scales of every series it has learnt (a row never
        learnt, or forgotten, is as a new one: left out) (``anomaly.snapshot``)."""
        rows = np.flatnonzero(self.count[: self._cap])
        arrays = {key: getattr(obj, name)[rows] for key, (obj, name) in self._held().items()}
        return State({"capacity": self._cap}, {"rows": rows, "start": self.start.read(rows), **arrays})

    def restore(self, state: State) -> None:
        """Take up ``state`` (``state()`` of a model of the same parameters)."""
        held, rows = self._held(), state.arrays["rows"]
        cap = rows_to_hold("adaptive", rows, int(state.meta["capacity"]), 1024)
        for key, (obj, name) in {**held, "start": (self.start, "rows")}.items():
            now, got = getattr(obj, name), state.arrays[key]
            if got.shape != (rows.size, *now.shape[1:]) or got.dtype != now.dtype:
                raise ValueError(
                    f"adaptive {key}: {got.dtype}{got.shape}, not {now.dtype} of {rows.size} rows"
                )
        self._grow(cap)
        for key, (obj, name) in held.items():
            getattr(obj, name)[rows] = state.arrays[key]
        set_kept(self, rows, state.arrays["start"])

    def reserve(self, needed: int) -> None:
        """Hold at least ``needed`` series: that many, or an eighth more than now (``anomaly.modelrows``)."""
        self._grow(needed, self._cap + self._cap // 8)

    def blank(self, rows: IntArray) -> None:
        """Make ``rows`` as a new series' (``reset`` leaves what a new one reads not: the fault's band)."""
        for a, fresh in zip(self._arrays(), AdaptiveThresholds(self.params, 1)._arrays(), strict=True):
            a[rows] = fresh[0]
        self.start.let_go(rows)

    def _grow(self, needed: int, least: int | None = None) -> None:
        if needed <= self._cap:
            return
        new_cap = max(needed, 2 * self._cap if least is None else least)

        def extend(a: npt.NDArray[np.generic], fill: float) -> npt.NDArray[np.generic]:
            out = np.full((new_cap, *a.shape[1:]), fill, dtype=a.dtype)
            out[: a.shape[0]] = a
            return out

        self.start.grow(new_cap)
        for name in _STATE:  # a new series' baselines, errors: none
            fill = np.nan if name in _UNSEEN else np.inf if name[:4] == "dev_" else 0
            setattr(self, name, extend(getattr(self, name), fill))
        if self.shift is not None:
            self.shift.run = extend(self.shift.run, 0)  # type: ignore[assignment]
            self.shift.values = extend(self.shift.values, np.nan)  # type: ignore[assignment]
            self.shift.scale0 = extend(self.shift.scale0, 0.0)  # type: ignore[assignment]
            self.shift.tail0 = extend(self.shift.tail0, 0.0)  # type: ignore[assignment]
        if self.fault is not None:
            self.fault.grow(new_cap)
        if self.spikes is not None:
            self.spikes.grow(new_cap)
        self._cap = new_cap

    def reset(self, ids: IntArray) -> None:
        """Forget series (they disappeared, or their id is being reused)."""
        self.count[ids] = 0
        self.level[ids] = 0.0
        self.dev[ids] = 0.0
        self.dev_day[ids] = self.dev_week[ids] = np.inf
        self.day[ids] = self.week[ids] = np.nan
        self.last_seen[ids] = np.nan
        self.fast_dev[ids] = 0.0
        self.tail[ids] = 0.0
        self.start.let_go(ids)
        self.seeded[ids] = 0
        self.base[ids] = np.nan
        self.flat[ids] = False
        if self.shift is not None:
            self.shift.run[ids] = 0
        if self.fault is not None:
            self.fault.reset(ids)
        if self.spikes is not None:
            self.spikes.out[ids] = 0

    def update(
        self,
        ids: IntArray,
        values: FloatArray,
        timestamps: FloatArray | float,
        unlearnt: BoolArray | None = None,
    ) -> ThresholdScores:
        """Score ``values`` (one per id, ids unique) against the baselines, then learn from them.

        Non-finite values (NaN from a gap, inf) are skipped: they neither score nor teach. The values
        ``unlearnt`` marks (outside their query's data range) are scored but teach nothing, as a gap.
        """
        ids = np.asarray(ids, dtype=np.int64)
        if ids.size and int(ids.max()) >= self._cap:
            self._grow(int(ids.max()) + 1)
        mind(self, ids, values, timestamps)
        if unlearnt is None or not unlearnt.any():
            return self._update(ids, values, timestamps)
        slots = self.start.slot[ids[unlearnt]]
        with (
            unlearned(self._arrays(), ids[unlearnt]),
            unlearned([self.start.rows], slots[slots >= 0].astype(np.int64)),
        ):
            return self._update(ids, values, timestamps)

    def _update(self, ids: IntArray, values: FloatArray, timestamps: FloatArray | float) -> ThresholdScores:
        p = self.params
        values = np.asarray(values, dtype=np.float64)
        timestamps = np.asarray(timestamps, dtype=np.float64)
        if timestamps.shape != values.shape:  # one time for every value
            timestamps = np.broadcast_to(timestamps, values.shape)
        ok = np.isfinite(values) & np.isfinite(timestamps)
        if not ok.all():
            ids, values, timestamps = ids[ok], values[ok], timestamps[ok]
        x = values
        n = self.count[ids]
        fresh = n == 0
        level = np.where(fresh, x, self.level[ids])
        dev = self.dev[ids]
        season = Season(self, ids, x, timestamps, level=level, dev=dev) if p.seasonality else None
        yhat, scale = (season.yhat, season.scale) if season is not None else (level, dev)
        resid = x - yhat
        # Before ``_width`` teaches the tail and ``season`` its errors.
        before = None if self.fault is None else kept_before(self, ids, level, dev)
        width = self._width(ids, resid, scale)
        band = np.maximum(width * scale, p.min_deviation)
        if p.min_relative_deviation > 0:
            band = np.maximum(band, p.min_relative_deviation * np.abs(yhat))
        band = np.maximum(band, 1e-9 * (1.0 + np.abs(yhat)))
        signed = directed(resid, p.direction)
        band = seen_floor(self, ids, n=n, err=signed, band=band)  # ``anomaly.sparsebands``
        score = signed / band
        # Volatility: the recent absolute error (fast EWMA) is a multiple of the usual one.
        fast_dev, floor = self._fast_error(ids, signed, fresh=fresh, n=n, width=width, band=band)
        if p.volatility_k > 0:
            score = np.maximum(score, fast_dev / floor)
        score[n < p.warmup] = 0.0

        # Learn, winsorised at `clip` bands once warmed up, or once the kept first samples were judged
        # (before that the band is not trustworthy: ``anomaly.warmstart`` winsorises them afterwards).
        cap = np.where(n >= (self.start_len or p.warmup), p.clip * band / width, np.inf)
        r_level = x - level
        a = np.where(fresh, 1.0, p.alpha)
        kept = keep(self, ids, x, n)
        slow = np.maximum(p.scale_alpha, 1.0 / (n + 1.0))
        self.level[ids] = level + a * clipped(r_level, cap)
        # The errors are clipped more loosely than the baselines, so a regular pattern that the level model
        # cannot follow (a daily peak) shows up in its error and the seasonal model wins.
        err_cap = p.error_clip * cap
        err_cap = sparse_cap(self, ids, n=n, err=np.abs(r_level), cap=err_cap, band=band)
        self.dev[ids] = dev + slow * (np.minimum(np.abs(r_level), err_cap) - dev)
        anomalous = (signed > band) & (n >= p.warmup)
        if season is not None:
            frozen = held(self, ids, score, anomalous)
            season.learn(self, ids, x, r_level=r_level, cap=cap, slow=slow, err_cap=err_cap, frozen=frozen)
        # Kept in float32: one sample past its range (1e40) stored inf, and inf - inf read NaN at the next,
        # the series' scores NaN for good and its faults unraised. Held at its largest finite value instead.
        self.fast_dev[ids] = np.clip(fast_dev, -_FLOAT32_MAX, _FLOAT32_MAX)
        # Saturate before adding: ``n + 1`` in int32 wraps to -2**31, which reads as "not warmed up".
        self.count[ids] = np.minimum(n, _INT32_MAX - 1) + 1
        self.last_seen[ids] = timestamps
        self._follow_shift(ids, x, n=n, resid=resid, band=band, scale=scale)
        follow_runs(self, ids, x, anomalous, before, season=season)
        if kept:
            judge(self, ids[n == self.start_len - 1])
        return ThresholdScores(
            ids=ids, score=score, yhat=yhat, lower=yhat - band, upper=yhat + band, judged=n >= p.warmup
        )

    def _fast_error(
        self,
        ids: IntArray,
        signed: FloatArray,
        *,
        fresh: npt.NDArray[np.bool_],
        n: npt.NDArray[np.int32],
        width: FloatArray | float,
        band: FloatArray,
    ) -> tuple[FloatArray, FloatArray]:
        """The fast error after this sample (``fresh``: a series' first), and the volatility floor it is
        scored against."""
        p = self.params
        fast_dev = np.where(fresh, 0.0, self.fast_dev[ids].astype(np.float64))
        # A recent error below the absolute floor is never anomalous: after a workload stall the widened
        # tail band made a small lag of the level (a constant SM clock 15 MHz above its recovering
        # baseline) score ~1 for hours, and GPUs crossing it one by one escaped the collective filter.
        floor = np.maximum(p.volatility_k / width * band, p.min_deviation)
        if p.fast_cap > 0:
            signed = np.minimum(signed, np.where(n >= p.warmup, p.fast_cap * floor, np.inf))
        runs = self.fault if self.fault is not None else self.spikes
        if p.lone_spikes and runs is not None:  # a spike scores on its own, not the next ones too
            signed = np.where((n >= p.warmup) & spiking(runs, ids), np.minimum(signed, band), signed)
        return fast_dev + p.fast_alpha * (signed - fast_dev), floor

    def _follow_shift(
        self,
        ids: IntArray,
        x: FloatArray,
        *,
        n: npt.NDArray[np.int32],
        resid: FloatArray,
        band: FloatArray,
        scale: FloatArray,
    ) -> None:
        """After learning: count each series' run beyond its band and re-baseline those whose run is complete
        (``scale``: the error scale each was scored with); nothing when re-baselining is off."""
        shift = self.shift
        if shift is None:
            return
        due = shift.observe(
            ids, x, n=n, warmup=self.params.warmup, resid=resid, band=band, scale=scale, tail=self.tail[ids]
        )
        if due.any():
            rebaseline(self, ids[due], scale[due])

    def _width(self, ids: IntArray, resid: FloatArray, scale: FloatArray) -> FloatArray | float:
        """Band half-width in scale units; heavy-tailed series get a streaming high quantile of |r|/scale."""
        p = self.params
        if p.tail_quantile <= 0:
            return p.k
        tail = self.tail[ids].astype(np.float64)
        z = np.abs(resid) / np.maximum(scale, 1e-12)
        step = p.tail_rate * np.where(z > tail, p.tail_quantile, p.tail_quantile - 1.0)
        self.tail[ids] = np.minimum(np.maximum(tail + step * np.maximum(tail, 1.0), 0.0), 1e3)
        return np.maximum(p.k, p.tail_k * tail)
