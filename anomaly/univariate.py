"""Score plain univariate series (``timestamp,value`` CSV files) with the default detector.

The default detector is three streaming detectors, any of which raises an alert:

* ``AdaptiveThresholds`` (robust EWMA baseline with seasonal buckets), whose score crossings become alerts
  through ``OnsetTracker`` (one alert per excursion, re-armed after ``resolve_after`` quiet samples), less
  those that ``DailyRecurrence`` finds began at the same time of day yesterday too;
* ``RangeBreakout`` (a value beyond everything the series has shown, re-armed after a quiet spell);
* ``ContextNovelty`` (a change between value levels never seen before, see ``anomaly.novelty``).

A fourth, ``RelativeEntropy`` (see ``anomaly.entropy``), can be added with ``entropy=EntropyParams()``; it
is not in the default because it lowered the cross-validated NAB score (``benchmarks/nab_cv.py``).

The anomaly score is the largest of the scores (>1 means anomalous). Many series are scored together:
series ``j`` receives its ``i``-th sample at step ``i``; this is how the NAB evaluation scores a whole
corpus in seconds. Everything is causal: a sample's score depends only on the samples before it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from anomaly.breakout import BreakoutParams, RangeBreakout
from anomaly.entropy import EntropyParams, RelativeEntropy
from anomaly.novelty import ContextNovelty, NoveltyParams
from anomaly.onsets import OnsetTracker
from anomaly.recurrence import DailyRecurrence, RecurrenceParams
from anomaly.thresholds import AdaptiveThresholds, FloatArray, ThresholdParams
from gpuwarden.config import AnomalyThresholdConfig
from gpuwarden.errors import InputError

DEFAULT_RESOLVE_AFTER = AnomalyThresholdConfig().resolve_after
DEFAULT_BREAKOUT = BreakoutParams()
DEFAULT_RECURRENCE = RecurrenceParams()
DEFAULT_NOVELTY = NoveltyParams()
DEFAULT_ENTROPY: EntropyParams | None = None  # see the module docstring


@dataclass(frozen=True, slots=True)
class Series:
    """One univariate series: epoch seconds and values."""

    name: str
    timestamps: FloatArray
    values: FloatArray


@dataclass(frozen=True, slots=True)
class ScoredSeries:
    """Scores per sample and the samples where an alert would be raised."""

    series: Series
    score: FloatArray
    raised: np.ndarray


def read_series_csv(path: Path) -> Series:
    """Read ``timestamp,value``; timestamps are any format pandas parses (assumed UTC)."""
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {path}: {exc}", field="input") from exc
    missing = {"timestamp", "value"} - set(frame.columns)
    if missing:
        raise InputError(f"{path} lacks column(s) {sorted(missing)}; expected timestamp,value", field="input")
    try:
        # The format is inferred from the first row; a row that does not parse the same way is reported.
        stamps = pd.to_datetime(frame["timestamp"], utc=True, errors="coerce")
    except (ValueError, TypeError) as exc:
        raise InputError(f"{path}: unparseable timestamp: {exc}", field="timestamp") from exc
    if stamps.isna().any():
        row = int(np.flatnonzero(stamps.isna().to_numpy())[0])
        raw = frame["timestamp"].iloc[row]
        raise InputError(
            f"{path} line {row + 2}: {raw!r} is not a time like the rows above", field="timestamp"
        )
    seconds = (stamps - pd.Timestamp(0, tz="UTC")).dt.total_seconds().to_numpy(np.float64)
    # Repeated timestamps are kept in file order (NAB's own files repeat a clock change's hour).
    backwards = np.flatnonzero(np.diff(seconds) < 0)
    if len(backwards):
        row = int(backwards[0]) + 1
        raise InputError(
            f"{path} line {row + 2}: {frame['timestamp'].iloc[row]!r} is before the row above it; "
            "sort the file by time",
            field="timestamp",
        )
    numbers = pd.to_numeric(frame["value"], errors="coerce")
    typos = numbers.isna() & frame["value"].notna()  # empty, NaN, NA: a gap; anything else: a mistake
    if typos.any():
        row = int(np.flatnonzero(typos.to_numpy())[0])
        raise InputError(
            f"{path} line {row + 2}: {frame['value'].iloc[row]!r} is not a number (leave it empty for a gap)",
            field="value",
        )
    values = numbers.to_numpy(np.float64)
    infinite = np.flatnonzero(np.isinf(values))
    if len(infinite):
        row = int(infinite[0])
        raise InputError(
            f"{path} line {row + 2}: the value is {values[row]}, not a finite number", field="value"
        )
    return Series(name=path.name, timestamps=seconds, values=values)


def score_many(
    series: list[Series],
    params: ThresholdParams | None = None,
    resolve_after: int = DEFAULT_RESOLVE_AFTER,
    breakout: BreakoutParams | None = DEFAULT_BREAKOUT,
    recurrence: RecurrenceParams | None = DEFAULT_RECURRENCE,
    *,
    novelty: NoveltyParams | None = DEFAULT_NOVELTY,
    entropy: EntropyParams | None = DEFAULT_ENTROPY,
) -> list[ScoredSeries]:
    """Score every series with the default detectors; ``None`` turns the breakout, recurrence, novelty or
    entropy part off."""
    detector = AdaptiveThresholds(params, capacity=max(len(series), 1))
    ranges = RangeBreakout(breakout, capacity=max(len(series), 1)) if breakout is not None else None
    onsets = OnsetTracker(resolve_after=resolve_after, capacity=max(len(series), 1))
    routine = DailyRecurrence(recurrence) if recurrence is not None else None
    contexts = ContextNovelty(novelty) if novelty is not None else None
    shapes = RelativeEntropy(entropy, capacity=max(len(series), 1)) if entropy is not None else None
    lengths = np.array([len(s.values) for s in series], dtype=np.int64)
    longest = int(lengths.max()) if len(series) else 0
    width = len(series)
    values = np.full((longest, width), np.nan)
    stamps = np.full((longest, width), np.nan)
    for j, s in enumerate(series):
        values[: lengths[j], j] = s.values
        stamps[: lengths[j], j] = s.timestamps
    scores = np.zeros((longest, width))
    raised = np.zeros((longest, width), np.bool_)
    all_ids = np.arange(width, dtype=np.int64)
    for i in range(longest):
        active = all_ids[lengths > i]
        out = detector.update(active, values[i, active], stamps[i, active])
        up, _ = onsets.step(out.ids, out.score > 1.0)
        if routine is not None:
            up = routine.filter(out.ids, up, stamps[i, out.ids])
        if ranges is not None:
            novel = ranges.update(active, values[i, active])
            scores[i, active] = novel.score
            raised[i, active] = novel.raised
        if contexts is not None:
            new = contexts.update(active, values[i, active])
            scores[i, active] = np.maximum(scores[i, active], new.score)
            raised[i, active] |= new.raised
        if shapes is not None:
            shifted = shapes.update(active, values[i, active])
            scores[i, active] = np.maximum(scores[i, active], shifted.score)
            raised[i, active] |= shifted.raised
        scores[i, out.ids] = np.maximum(scores[i, out.ids], out.score)
        raised[i, out.ids] |= up
    return [
        ScoredSeries(series=s, score=scores[: lengths[j], j], raised=raised[: lengths[j], j])
        for j, s in enumerate(series)
    ]


def write_scored_csv(scored: ScoredSeries, path: Path) -> None:
    """Write ``timestamp,value,anomaly_score,label`` (label 1 where an alert would be raised)."""
    s = scored.series
    frame = pd.DataFrame(
        {
            "timestamp": pd.to_datetime(s.timestamps, unit="s", utc=True).strftime("%Y-%m-%d %H:%M:%S"),
            "value": s.values,
            "anomaly_score": np.round(scored.score, 6),
            "label": scored.raised.astype(np.int8),
        }
    )
    try:
        frame.to_csv(path, index=False)
    except OSError as exc:  # a missing directory, a directory, no permission
        raise InputError(f"cannot write {path}: {exc.strerror or exc}", field="output") from exc
