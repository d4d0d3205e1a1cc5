"""Score plain univariate series (``timestamp,value`` CSV files) with the default detector.

The default detector is three streaming detectors, any of which raises an alert:

* ``AdaptiveThresholds`` (robust EWMA baseline with seasonal buckets), whose score crossings become alerts
  through ``OnsetTracker`` (one alert per excursion, re-armed after ``resolve_after`` quiet samples), less
  those that ``DailyRecurrence`` finds began at the same time of day yesterday too;
* ``RangeBreakout`` (a value beyond everything the series has shown, re-armed after a quiet spell);
* ``ContextNovelty`` (a change between value levels never seen before, see ``anomaly.novelty``).

A fourth, ``RelativeEntropy`` (see ``anomaly.entropy``), can be added with ``entropy=EntropyParams()``; it
is not in the default because it lowered the cross-validated NAB score (``benchmarks/nab_cv.py``).

The anomaly score is the largest of the scores (>1 means anomalous): a part that does not raise because it
is muted (breakout and novelty re-arm, a routine ``DailyRecurrence`` muted) counts at most 1, so that >1
is an alert's onset or the rest of the adaptive excursion that raised one. Many series are scored together:
series ``j`` receives its ``i``-th sample at step ``i``; this is how the NAB evaluation scores a whole
corpus in seconds. Everything is causal: a sample's score depends only on the samples before it.
"""

from __future__ import annotations

import re
import stat
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from anomaly.breakout import BreakoutParams, RangeBreakout
from anomaly.csvrows import Rows as _Rows
from anomaly.csvrows import scan_rows as _scan_rows
from anomaly.csvrows import unclosed_quote
from anomaly.csvrows import unreadable as _unreadable
from anomaly.entropy import EntropyParams, RelativeEntropy
from anomaly.novelty import ContextNovelty, NoveltyParams
from anomaly.onsets import OnsetTracker
from anomaly.recurrence import DailyRecurrence, RecurrenceParams
from anomaly.scalar import ScalarDetector
from anomaly.scored_csv import write_scored_rows
from anomaly.silence import BurstSilence, SilenceParams
from anomaly.steps import BoolArray, IntArray, reported
from anomaly.thresholds import AdaptiveThresholds, FloatArray, ThresholdParams
from gpuwarden.config_anomaly import AnomalyThresholdConfig
from gpuwarden.errors import InputError

DEFAULT_RESOLVE_AFTER = AnomalyThresholdConfig().resolve_after
DEFAULT_PARAMS = ThresholdParams.from_config()
DEFAULT_BREAKOUT = BreakoutParams()
DEFAULT_RECURRENCE = RecurrenceParams()
DEFAULT_NOVELTY = NoveltyParams()
DEFAULT_ENTROPY: EntropyParams | None = None  # see the module docstring
MILLISECONDS_FROM = 1e11  # a numeric timestamp this large is Unix milliseconds (as seconds: after 5000 AD)
UNIX_TOO_LARGE = 1e14  # microseconds or nanoseconds: refused rather than guessed


@dataclass(frozen=True, slots=True)
class Series:
    """One univariate series: epoch seconds and values; ``stamps``, when read from a file, are its
    timestamps as written there, so that the scored file gives them back unchanged."""

    name: str
    timestamps: FloatArray
    values: FloatArray
    stamps: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class ScoredSeries:
    """Scores per sample and the samples where an alert would be raised."""

    series: Series
    score: FloatArray
    raised: np.ndarray


def read_series_csv(path: Path, *, repeated_times: bool = False, give: str = "") -> Series:
    """Read ``timestamp,value``; a timestamp is Unix epoch seconds, milliseconds, or a time pandas parses.

    Numbers are seconds (decimals allowed), or milliseconds from 1e11 (which as seconds would be after the
    year 5000); the unit is judged from the first row. Text times are assumed UTC unless they say otherwise.
    A time repeated by the next row is refused (two exports merged, a row written twice) unless
    ``repeated_times``: then both are scored in file order (NAB's own files, in local time, repeat an hour
    where clocks went back). Empty, NaN and NA values are gaps, scored as no sample. ``give``: what the
    caller's option takes, said after the reason when the file cannot be read (``No such file or directory;
    give a CSV file ...``).
    """
    try:  # it is read twice (fields counted, then values): a FIFO would give nothing the second time
        regular = path.is_dir() or stat.S_ISREG(path.stat().st_mode)
    except OSError as exc:
        raise _unreadable(path, exc, give) from exc
    if not regular:
        raise _unreadable(path, "not a regular file (a FIFO or a device); save it to a file first")
    rows = _scan_rows(path, give)
    try:
        # Blank lines are kept here, so that pandas' rows are the csv module's records, and dropped below.
        frame = pd.read_csv(path, usecols=["value"], skip_blank_lines=False)
    except (OSError, ValueError) as exc:
        raise unclosed_quote(path, rows, exc) or _unreadable(path, exc, give) from exc
    values = frame["value"].iloc[rows.records].reset_index(drop=True)
    seconds = _epoch_seconds(path, rows)
    _check_order(path, rows, seconds, repeated_times=repeated_times)
    return Series(
        name=path.name,
        timestamps=seconds,
        values=_values(path, values, rows),
        stamps=tuple(rows.stamps),
    )


def _check_order(path: Path, rows: _Rows, seconds: FloatArray, *, repeated_times: bool) -> None:
    """Refuse a time before the row above it, and one equal to it unless ``repeated_times``."""
    step = np.diff(seconds)
    wrong = np.flatnonzero(step < 0 if repeated_times else step <= 0)
    if not len(wrong):
        return
    row = int(wrong[0]) + 1
    where = f"{path} line {rows.lines[row]}: {rows.stamps[row]!r}"
    if step[row - 1] < 0:
        local = -step[row - 1] <= LOCAL_STEP_SECONDS and re.search(_OFFSET, rows.stamps[row].strip()) is None
        raise InputError(
            f"{where} is before the row above it; "
            + (_LOCAL_TIME if local and not _a_number(rows.stamps[row]) else "sort the file by time"),
            field="timestamp",
        )
    raise InputError(
        f"{where} repeats the time of line {rows.lines[row - 1]}; remove the repeated row, or pass"
        " --keep-repeated-timestamps to score both in file order (a file in local time repeats an hour"
        " where clocks go back)",
        field="timestamp",
    )


def _epoch_seconds(path: Path, rows: _Rows) -> FloatArray:
    """Seconds since the epoch for each timestamp text; an empty or unreadable one is refused."""
    texts, lines = rows.stamps, rows.lines
    stamps = pd.Series(texts, dtype=object)
    empty = np.flatnonzero((stamps.str.strip() == "").to_numpy())
    if len(empty):
        raise InputError(
            f"{path} line {lines[int(empty[0])]}: the timestamp is empty; every row needs a time",
            field="timestamp",
        )
    numbers = pd.to_numeric(stamps, errors="coerce").to_numpy(np.float64)
    if len(numbers) and not np.isnan(numbers[0]):
        return _unix_seconds(path, texts, lines, numbers)
    if not _a_time(texts[0]):
        raise InputError(
            f"{path} line {lines[0]}: {texts[0]!r} is not a time; {TIME_FORMS}", field="timestamp"
        )
    parsed, iso = _parse_times(path, stamps)
    if parsed.isna().any():
        row = int(np.flatnonzero(parsed.isna().to_numpy())[0])
        like = " like the rows above" if row else f"; {TIME_FORMS}"
        if row and iso:
            like += f" (ISO 8601, judged from line {lines[0]})"
        raise InputError(f"{path} line {lines[row]}: {texts[row]!r} is not a time{like}", field="timestamp")
    if iso:
        _check_offsets(path, rows, stamps)
    # The epoch in the times' own unit: pandas reads them to the microsecond, and taking a nanosecond epoch
    # from them converted them to nanoseconds, which end in 2262 (year 1 or 9999 raised a traceback).
    epoch = pd.Timestamp(0, tz="UTC").as_unit(parsed.dt.unit)
    seconds: FloatArray = (parsed - epoch).dt.total_seconds().to_numpy(np.float64)
    return seconds


def _parse_times(path: Path, stamps: pd.Series) -> tuple[pd.Series, bool]:
    """The times as UTC (NaT where a row is not one), and whether they were read as ISO 8601.

    ISO 8601 is read row by row in that form, so that a row with fractional seconds (``isoformat()`` writes
    them only where they are not 0) or a ``T`` where the row above has a space is read like the others.
    Any other form is inferred from the first row and every row must be written alike; pandas' warning that
    it could not infer one (``01/02/2024 1:00 PM``) is not passed on: each row is then read on its own."""
    try:
        iso = pd.to_datetime(stamps, utc=True, errors="coerce", format="ISO8601")
        if not pd.isna(iso.iloc[0]):
            return iso, True
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            return pd.to_datetime(stamps, utc=True, errors="coerce"), False
    except (ValueError, TypeError) as exc:
        raise InputError(f"{path}: unparseable timestamp: {exc}", field="timestamp") from exc


_OFFSET = r"[Tt ].*(?:[+-]\d|[Zz]$)"
"""An ISO 8601 time with a UTC offset: a sign or a ``Z`` after the date (whose own hyphens come first)."""


def _check_offsets(path: Path, rows: _Rows, stamps: pd.Series) -> None:
    """Refuse ISO 8601 times of which some carry a UTC offset and some do not: the latter would be read as
    UTC, which they need not be (pandas reads both, as ``utc=True`` tells it)."""
    aware = stamps.str.strip().str.contains(_OFFSET, regex=True).to_numpy(np.bool_)
    other = np.flatnonzero(aware != aware[0])
    if not len(other):
        return
    row, first = int(other[0]), f"line {rows.lines[0]} ({rows.stamps[0]!r})"
    said = (
        f"has a UTC offset where {first} has none"
        if aware[row]
        else f"has no UTC offset where {first} has one"
    )
    raise InputError(
        f"{path} line {rows.lines[row]}: {rows.stamps[row]!r} {said}; give every time an offset (such as Z"
        " or +00:00), or none for UTC",
        field="timestamp",
    )


LOCAL_STEP_SECONDS = 3600.0  # the most a clock goes back at the end of summer time
_LOCAL_TIME = (
    "sort the file by time, or, in a file in local time where clocks went back (its times repeat an hour),"
    " give every time its UTC offset (2026-11-01T01:00:00-05:00) or write them in UTC"
)


def _a_number(text: str) -> bool:
    """Whether a timestamp is a Unix time (a number), which no clock change moves."""
    try:
        float(text)
    except ValueError:
        return False
    return True


TIME_FORMS = "write epoch seconds (1704067200) or a time (2024-01-01T00:00:00Z)"
"""What a timestamp may look like, told to whoever wrote one that is not a time."""


def _a_time(text: str) -> bool:
    """Whether ``text`` reads as a time on its own (pandas' own reading of one value)."""
    try:
        return not pd.isna(pd.Timestamp(text))
    except (ValueError, TypeError, OverflowError):
        return False


def _unix_seconds(path: Path, texts: list[str], lines: list[int], numbers: FloatArray) -> FloatArray:
    """Unix times in seconds, or in milliseconds when the first is at least ``MILLISECONDS_FROM``."""
    size = np.abs(numbers)
    if not size[0] < UNIX_TOO_LARGE:
        raise InputError(
            f"{path} line {lines[0]}: {texts[0]!r} is not Unix seconds or milliseconds; {TIME_FORMS}",
            field="timestamp",
        )
    millis = bool(size[0] >= MILLISECONDS_FROM)
    unit = "milliseconds" if millis else "seconds"
    other = np.isnan(numbers) | ~(size < UNIX_TOO_LARGE) | ((size >= MILLISECONDS_FROM) != millis)
    if other.any():
        row = int(np.flatnonzero(other)[0])
        raise InputError(
            f"{path} line {lines[row]}: {texts[row]!r} is not a time like the rows above "
            f"(Unix {unit}, judged from line {lines[0]})",
            field="timestamp",
        )
    seconds: FloatArray = numbers / 1000.0 if millis else numbers
    return seconds


def _values(path: Path, column: pd.Series, rows: _Rows) -> FloatArray:
    """The values as floats; empty, NaN and NA are gaps, anything else that is not a number is refused."""
    numbers = pd.to_numeric(column, errors="coerce")
    typos = numbers.isna() & column.notna()  # empty, NaN, NA: a gap; anything else: a mistake
    typos |= _booleans(column)  # pandas reads TRUE and false as booleans, and to_numeric makes them 1 and 0
    if typos.any():
        row = int(np.flatnonzero(typos.to_numpy())[0])
        text = column.iloc[row]
        if isinstance(text, bool | np.bool_):
            text = _value_text(path, rows.records[row])
        raise InputError(
            f"{path} line {rows.lines[row]}: {text!r} is not a number (leave it empty for a gap)",
            field="value",
        )
    values: FloatArray = numbers.to_numpy(np.float64)
    infinite = np.flatnonzero(np.isinf(values))
    if len(infinite):
        row = int(infinite[0])
        raise InputError(
            f"{path} line {rows.lines[row]}: the value is {values[row]}, not a finite number", field="value"
        )
    return values


def _booleans(column: pd.Series) -> pd.Series:
    """Where pandas read a value as a boolean (``TRUE``, ``false``, any case): the whole column, or, in a
    column with gaps or text too, each such row."""
    if column.dtype == np.bool_:
        return pd.Series(True, index=column.index)
    if column.dtype == object:
        return column.map(lambda v: isinstance(v, bool | np.bool_)).astype(np.bool_)
    return pd.Series(False, index=column.index)


def _value_text(path: Path, record: int) -> str:
    """The value of a record as the file writes it (read again: only a refusal needs it)."""
    frame = pd.read_csv(path, usecols=["value"], dtype=str, keep_default_na=False, skip_blank_lines=False)
    return str(frame["value"].iloc[record])


PROGRESS_EVERY = 10_000
"""Steps between two ``progress`` calls of ``score_many``."""

Progress = Callable[[int, int], None]
"""``progress(done, total)``: steps scored so far, of the longest series' length."""


def score_many(
    series: list[Series],
    params: ThresholdParams | None = None,
    resolve_after: int = DEFAULT_RESOLVE_AFTER,
    breakout: BreakoutParams | None = DEFAULT_BREAKOUT,
    recurrence: RecurrenceParams | None = DEFAULT_RECURRENCE,
    *,
    novelty: NoveltyParams | None = DEFAULT_NOVELTY,
    entropy: EntropyParams | None = DEFAULT_ENTROPY,
    silence: SilenceParams | None = None,
    progress: Progress | None = None,
) -> list[ScoredSeries]:
    """Score every series with the default detectors; ``None`` turns the breakout, recurrence, novelty or
    entropy part off; ``silence`` adds the opt-in burst-silence part (``anomaly.silence``). ``progress`` is
    called every ``PROGRESS_EVERY`` steps and once at the end.

    One series with the parts ``anomaly.scalar`` covers is scored there, in plain floats (same scores to the
    bit, tens of times faster); anything else by ``score_together``, the reference."""
    settings = Settings(
        params or DEFAULT_PARAMS,
        resolve_after,
        breakout,
        recurrence,
        novelty,
        entropy,
        silence,
    )
    p = settings.params
    # What the scalar path covers.
    scalar = (
        entropy is None
        and silence is None
        and p.shift_run == 0
        and p.fast_cap == 0
        and not (p.lone_spikes or p.seasonal_offsets)
    )
    if len(series) == 1 and scalar and _scalar_fits(series[0]):
        detector = ScalarDetector(settings.params, resolve_after, breakout, recurrence, novelty)
        s = series[0]
        score, raised = detector.score(s.values, s.timestamps, progress, every=PROGRESS_EVERY)
        return [ScoredSeries(series=s, score=score, raised=raised)]
    return score_together(series, settings, progress)


@dataclass(frozen=True, slots=True)
class Settings:
    """The parts ``score_many`` runs and their settings (its arguments, the same defaults)."""

    params: ThresholdParams = DEFAULT_PARAMS
    resolve_after: int = DEFAULT_RESOLVE_AFTER
    breakout: BreakoutParams | None = DEFAULT_BREAKOUT
    recurrence: RecurrenceParams | None = DEFAULT_RECURRENCE
    novelty: NoveltyParams | None = DEFAULT_NOVELTY
    entropy: EntropyParams | None = DEFAULT_ENTROPY
    silence: SilenceParams | None = None


def _scalar_fits(series: Series) -> bool:
    """Whether every finite time's hour fits numpy's int64 as it does Python's int (it always does for a
    time from a file: ``read_series_csv`` refuses the others)."""
    stamps = series.timestamps[np.isfinite(series.timestamps)]
    return not stamps.size or float(np.abs(stamps).max()) < 2.0**62


def score_together(
    series: list[Series], settings: Settings | None = None, progress: Progress | None = None
) -> list[ScoredSeries]:
    """``score_many`` vectorised over the series, one step of every series at a time: the reference for
    ``anomaly.scalar`` and the way a corpus is scored in seconds."""
    cfg = settings or Settings()
    width = max(len(series), 1)
    detectors = _Detectors(
        AdaptiveThresholds(cfg.params, capacity=width),
        OnsetTracker(resolve_after=cfg.resolve_after, capacity=width),
        DailyRecurrence(cfg.recurrence) if cfg.recurrence is not None else None,
        RangeBreakout(cfg.breakout, capacity=width) if cfg.breakout is not None else None,
        ContextNovelty(cfg.novelty) if cfg.novelty is not None else None,
        RelativeEntropy(cfg.entropy, capacity=width) if cfg.entropy is not None else None,
        BurstSilence(cfg.silence, capacity=width) if cfg.silence is not None else None,
    )
    lengths = np.array([len(s.values) for s in series], dtype=np.int64)
    values, stamps = _grid(series, lengths)
    longest = len(values)
    scores = np.zeros(values.shape)
    raised = np.zeros(values.shape, np.bool_)
    all_ids = np.arange(len(series), dtype=np.int64)
    ends = set(lengths.tolist())  # the steps at which a series has ended: only there does `active` change
    active = all_ids
    every = min(PROGRESS_EVERY, max(1, longest // 100))  # a step scores every series: a corpus's are slow
    for i in range(longest):
        if i in ends:
            active = all_ids[lengths > i]
        scores[i, active], raised[i, active] = detectors.step(active, values[i, active], stamps[i, active])
        if progress is not None and (i + 1) % every == 0:
            progress(i + 1, longest)
    if progress is not None:
        progress(longest, longest)
    return [
        ScoredSeries(series=s, score=scores[: lengths[j], j], raised=raised[: lengths[j], j])
        for j, s in enumerate(series)
    ]


def _grid(series: list[Series], lengths: IntArray) -> tuple[FloatArray, FloatArray]:
    """Values and timestamps as (step, series) arrays, NaN after a series' end."""
    shape = (int(lengths.max()) if len(series) else 0, len(series))
    values, stamps = np.full(shape, np.nan), np.full(shape, np.nan)
    for j, s in enumerate(series):
        values[: lengths[j], j] = s.values
        stamps[: lengths[j], j] = s.timestamps
    return values, stamps


@dataclass(frozen=True, slots=True)
class _Detectors:
    """The default detector's parts; ``step`` scores one step of the active series."""

    adaptive: AdaptiveThresholds
    onsets: OnsetTracker
    routine: DailyRecurrence | None
    ranges: RangeBreakout | None
    contexts: ContextNovelty | None
    shapes: RelativeEntropy | None
    stops: BurstSilence | None = None

    def step(self, active: IntArray, x: FloatArray, t: FloatArray) -> tuple[FloatArray, BoolArray]:
        """The largest score of the parts and whether any raises, per active series (in ``active``'s
        order); the values are read once per step and every part is given the same ones. A re-armed part
        (breakout, novelty, entropy) counts at most 1 where it does not raise (``steps.reported``)."""
        out = self.adaptive.update(active, x, t)
        up, _ = self.onsets.step(out.ids, out.score > 1.0)
        where = slice(None) if out.ids.size == active.size else _at(active, out.ids)
        stopped = self.stops.update(out.ids, up) if self.stops is not None else None
        if self.routine is not None:
            sides = np.sign(x[where] - out.yhat) if self.routine.params.same_direction else None
            kept = self.routine.filter(out.ids, up, t[where], sides)
            self.onsets.mute(out.ids, up & ~kept)
            up = kept
        score, raised = np.zeros(active.size), np.zeros(active.size, np.bool_)
        if self.ranges is not None:  # the base the others raise: its score as it is
            novel = self.ranges.update(active, x)
            score, raised = reported(novel.score, novel.raised), np.array(novel.raised, np.bool_)
        for part in (self.contexts, self.shapes):
            if part is not None:
                found = part.update(active, x)
                score = np.maximum(score, reported(found.score, found.raised))
                raised |= found.raised
        # a routine the recurrence part muted counts at most 1 until it resolves, as a muted re-armed part
        adaptive = np.where(self.onsets.muted[out.ids], np.minimum(out.score, 1.0), out.score)
        score[where] = np.maximum(score[where], adaptive)
        raised[where] |= up
        if stopped is not None:
            score[where] = np.maximum(score[where], stopped.score)
            raised[where] |= stopped.raised
        return score, raised


def _at(active: IntArray, ids: IntArray) -> IntArray:
    """Where each of ``ids`` (a subset of the ascending ``active``, in its order) sits in ``active``."""
    found: IntArray = np.searchsorted(active, ids)
    return found


def write_scored_csv(scored: ScoredSeries, path: Path) -> None:
    """Write ``timestamp,value,anomaly_score,label`` (label 1 where an alert would be raised); timestamps
    as the input file wrote them (epoch seconds stay epoch seconds), else as UTC times."""
    try:
        with path.open("wb") as handle:
            write_scored_rows(scored, handle)
    except OSError as exc:  # a missing directory, a directory, no permission
        raise InputError(f"cannot write {path}: {exc.strerror or exc}", field="output") from exc
