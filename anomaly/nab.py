"""The Numenta Anomaly Benchmark scoring, implemented from its published definition.

* Each labelled window earns ``A_TP * sigma(p) / sigma(-1)`` for its *first* detection, where ``p`` is the
  detection's position relative to the window's right edge in window lengths (-1 at the left edge) and
  ``sigma(p) = 2 / (1 + exp(5p)) - 1``; a window with no detection costs ``-A_FN``.
* A detection outside every window costs ``A_FP * sigma(p)`` with ``p`` its distance past the preceding
  window's right edge in that window's lengths, or ``-A_FP`` if no window precedes it.
* Detections in the probation period (the first 15% of a file, at most 750 rows) do not count, nor do
  windows that end inside it.
* A score is normalised against the null detector (no detections) and the perfect detector:
  ``100 * (raw - null) / (perfect - null)``.

Also reported: window F1 without point-adjust (recall = windows with at least one alert; precision =
alerts inside a window / all alerts).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
import numpy.typing as npt
import pandas as pd

from anomaly.breakout import BreakoutParams
from anomaly.discords import DiscordParams
from anomaly.discords import raise_many as raise_discords
from anomaly.entropy import EntropyParams
from anomaly.levels import LevelParams
from anomaly.levels import raise_many as raise_levels
from anomaly.novelty import NoveltyParams
from anomaly.recurrence import RecurrenceParams
from anomaly.silence import SilenceParams
from anomaly.surprise import SurpriseParams
from anomaly.surprise import raise_many as raise_surprise
from anomaly.thresholds import ThresholdParams
from anomaly.univariate import (
    DEFAULT_BREAKOUT,
    DEFAULT_ENTROPY,
    DEFAULT_NOVELTY,
    DEFAULT_RECURRENCE,
    DEFAULT_RESOLVE_AFTER,
    Progress,
    Series,
    read_series_csv,
    score_many,
)
from gpuwarden.errors import ConfigError, InputError
from gpuwarden.yamlfile import read_text_file


@dataclass(frozen=True, slots=True)
class CostProfile:
    """NAB's application profile weights."""

    tp: float
    fp: float
    fn: float


PROFILES: dict[str, CostProfile] = {
    "standard": CostProfile(tp=1.0, fp=0.11, fn=1.0),
    "reward_low_FP_rate": CostProfile(tp=1.0, fp=0.22, fn=1.0),
    "reward_low_FN_rate": CostProfile(tp=1.0, fp=0.11, fn=2.0),
}
PROBATION_PERCENT = 0.15


@dataclass(frozen=True, slots=True)
class NabFile:
    """A corpus file with its windows as inclusive index ranges."""

    name: str
    series: Series
    windows: tuple[tuple[int, int], ...]

    @property
    def category(self) -> str:
        """The corpus folder, e.g. ``realTraffic``."""
        return self.name.split("/", 1)[0]


@dataclass(slots=True)
class FileScore:
    """Raw NAB score parts of one file under one profile."""

    raw: float = 0.0
    windows: int = 0
    detected: int = 0
    alerts: int = 0
    alerts_in_windows: int = 0
    false_positive_cost: float = 0.0


def probation_length(rows: int) -> int:
    """Rows at the start of a file that are never scored."""
    return int(min(math.floor(PROBATION_PERCENT * rows), PROBATION_PERCENT * 5000))


def scaled_sigmoid(position: float) -> float:
    """NAB's reward curve: ~0.987 at -1, 0 at the window's right edge, -1 far past it."""
    if position > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


def load_corpus(data_dir: Path, windows_file: Path) -> list[NabFile]:
    """Read every CSV named in the windows file that ``data_dir`` holds; window bounds become index ranges."""
    return read_corpus(data_dir, windows_file)[0]


def read_corpus(data_dir: Path, windows_file: Path) -> tuple[list[NabFile], list[str]]:
    """The files of ``load_corpus``, and the names the windows file gives that ``data_dir`` lacks (sorted):
    a score over a partial corpus is not the corpus's, and the caller decides whether to refuse or say it."""
    try:  # a FIFO would block and /dev/zero fill the memory: refused like a config file
        # A byte-order mark (Notepad, PowerShell's utf8) is no JSON: json refused it, naming utf-8-sig.
        windows = json.loads(read_text_file(windows_file, give=_GIVE_WINDOWS).removeprefix("\ufeff"))
    except ConfigError as exc:
        raise InputError(f"{windows_file}: {exc.message}", field="windows") from exc
    except ValueError as exc:
        raise InputError(f"{windows_file}: is not JSON: {exc}", field="windows") from exc
    if not isinstance(windows, dict):
        raise InputError(f"{windows_file}: expected an object of file name -> windows", field="windows")
    if not windows:  # else "--data holds none of the 0 files": the wrong option blamed
        raise InputError(f"{windows_file}: names no files; {_GIVE_WINDOWS}", field="windows")
    _check_data_dir(data_dir)
    for name in sorted(windows):
        _check_name(name, windows_file)
    files, missing = [], []
    for name in sorted(windows):
        path = data_dir / name
        if not path.exists():
            missing.append(name)
            continue
        series = read_series_csv(path, repeated_times=True)  # NAB's files repeat clock-change hours
        where = f"{windows_file}: {name}"
        ranges = _ranges(series.timestamps, _pairs(windows[name], where), where)
        files.append(NabFile(name=name, series=series, windows=ranges))
    if not files:
        raise InputError(
            f"holds none of the {len(windows)} files {windows_file} names"
            f"{f' (such as {min(windows)})' if windows else ''}; {_GIVE_DATA}",
            field="data",
        )
    return files, missing


def first_names(names: list[str], shown: int = 3) -> str:
    """``a.csv, b.csv, c.csv and 5 more``: the first of many names, enough to see which part is missing."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


_GIVE_DATA = "give the folder of NAB's data files (category/file.csv), its data/"
_GIVE_WINDOWS = "give NAB's window file, its labels/combined_windows.json"


def _check_name(name: str, windows_file: Path) -> None:
    """Refuse a file name that is no path under ``--data`` (``/etc/x.csv``, ``../x.csv``): joined to the
    folder, it read a file outside the corpus, wherever the windows file pointed."""
    path = PurePosixPath(name)
    if path.is_absolute() or not path.parts or ".." in path.parts:
        raise InputError(
            f"{windows_file}: names {name!r}, which is not a file under --data; name each file by its path"
            " relative to --data, as NAB's do (realKnownCause/nyc_taxi.csv)",
            field="windows",
        )


def _check_data_dir(data_dir: Path) -> None:
    """Refuse a ``data_dir`` that is no folder, saying so: "no data file ... exists under" it did not."""
    if not data_dir.exists():
        raise InputError(f"no such folder; {_GIVE_DATA}", field="data")
    if not data_dir.is_dir():
        raise InputError(f"not a folder; {_GIVE_DATA}", field="data")


def _ranges(
    stamps: npt.NDArray[np.float64], pairs: list[tuple[object, object]], where: str
) -> tuple[tuple[int, int], ...]:
    """A file's windows as index ranges sorted by start, which ``score_file`` takes them to be: listed out
    of order, an alert was measured against the wrong window, and the score was wrong without a word. Two
    windows that share a row are refused: NAB's scoring has a row in one window at most."""
    ranges = [_rows(stamps, pair, f"{where} window {w}") for w, pair in enumerate(pairs)]
    order = sorted(range(len(ranges)), key=lambda w: ranges[w])
    for a, b in itertools.pairwise(order):
        if ranges[b][0] <= ranges[a][1]:  # sorted by start: a window that overlaps any overlaps the next
            first, second = sorted((a, b))
            raise InputError(
                f"{where} window {first} ({pairs[first][0]} to {pairs[first][1]}) overlaps window {second}"
                f" ({pairs[second][0]} to {pairs[second][1]}); merge them into one window, or move a bound so"
                " that no row is in both",
                field="windows",
            )
    return tuple(ranges[w] for w in order)


def _rows(stamps: npt.NDArray[np.float64], pair: tuple[object, object], where: str) -> tuple[int, int]:
    """The inclusive index range of a window; refused when it ends before it starts or holds no row (a
    wrong year or time zone): dropped silently, it left a file with fewer windows and a score that said so
    nowhere."""
    start, end = pair
    lo, hi = _epoch(start, where), _epoch(end, where)
    if hi < lo:
        raise InputError(
            f"{where}: ends ({end}) before it starts ({start}); swap the bounds", field="windows"
        )
    left = int(np.searchsorted(stamps, lo, side="left"))
    right = int(np.searchsorted(stamps, hi, side="right")) - 1
    if right < left:
        span = (
            " to ".join(str(pd.Timestamp(t, unit="s")) for t in (stamps[0], stamps[-1]))
            if stamps.size
            else "no rows"
        )
        raise InputError(
            f"{where}: {start} to {end} holds no row of the file ({span}); check the dates and the time zone",
            field="windows",
        )
    return left, right


def _pairs(value: object, where: str) -> list[tuple[object, object]]:
    """A file's windows: a list of [start, end] pairs, as NAB's combined_windows.json has them."""
    if not isinstance(value, list) or not all(isinstance(w, list) and len(w) == 2 for w in value):
        raise InputError(
            f"{where}: expected a list of [start, end] pairs, got {value!r:.80}", field="windows"
        )
    return [(w[0], w[1]) for w in value]


def _epoch(text: object, where: str = "") -> float:
    """A window bound in seconds since the epoch; ``""``, ``"NaT"`` and ``"nan"``, which pandas reads as a
    missing time (NaN: a window that ran to the end of the file), are refused as ``null`` is."""
    try:
        stamp = pd.Timestamp(str(text), tz="UTC")
    except (ValueError, TypeError) as exc:
        raise InputError(f"{where}: {text!r} is not a time", field="windows") from exc
    if pd.isna(stamp):
        raise InputError(f"{where}: {text!r} is not a time", field="windows")
    return float((stamp - pd.Timestamp(0, tz="UTC")).total_seconds())


def score_file(file: NabFile, alerts: npt.NDArray[np.bool_], profile: CostProfile) -> FileScore:
    """Score one file's alert onsets under one profile; its windows sorted by start and disjoint, as
    ``read_corpus`` reads them."""
    rows = len(file.series.values)
    probation = probation_length(rows)
    result = FileScore()
    best: dict[int, float] = {}
    for w, (_, right) in enumerate(file.windows):
        if right >= probation:
            best[w] = -profile.fn
    result.windows = len(best)
    starts = [left for left, _ in file.windows]
    for i in np.flatnonzero(alerts):
        if i < probation:
            continue
        result.alerts += 1
        w = int(np.searchsorted(starts, i, side="right")) - 1
        if w >= 0 and i <= file.windows[w][1]:
            left, right = file.windows[w]
            width = right - left + 1
            position = -(right - i + 1) / width
            reward = scaled_sigmoid(position) * profile.tp / scaled_sigmoid(-1.0)
            best[w] = max(best[w], reward)
            result.alerts_in_windows += 1
            continue
        if w < 0:
            cost = -profile.fp
        else:
            left, right = file.windows[w]
            width = right - left + 1
            cost = scaled_sigmoid(abs(right - i) / max(width - 1, 1)) * profile.fp
        result.false_positive_cost += cost
    result.detected = sum(1 for v in best.values() if v > -profile.fn)
    result.raw = sum(best.values()) + result.false_positive_cost
    return result


@dataclass(slots=True)
class Summary:
    """Normalised score and window F1 over a set of files."""

    files: int = 0
    windows: int = 0
    scores: dict[str, float | None] = field(default_factory=dict)
    raw: dict[str, float] = field(default_factory=dict)
    precision: float = 0.0
    recall: float = 0.0
    f1: float = 0.0


def summarise(per_file: dict[str, dict[str, FileScore]], names: Iterable[str]) -> Summary:
    """Normalise raw scores over ``names``; ``None`` where the files hold no window (nothing to find)."""
    chosen = [n for n in names if n in per_file]
    summary = Summary(files=len(chosen))
    for profile_name, profile in PROFILES.items():
        parts = [per_file[n][profile_name] for n in chosen]
        raw = sum(p.raw for p in parts)
        windows = sum(p.windows for p in parts)
        null = -profile.fn * windows
        perfect = profile.tp * windows
        summary.raw[profile_name] = raw
        summary.scores[profile_name] = 100.0 * (raw - null) / (perfect - null) if windows else None
        summary.windows = windows
    standard = [per_file[n]["standard"] for n in chosen]
    alerts = sum(p.alerts for p in standard)
    inside = sum(p.alerts_in_windows for p in standard)
    detected = sum(p.detected for p in standard)
    summary.precision = inside / alerts if alerts else 0.0
    summary.recall = detected / summary.windows if summary.windows else 0.0
    total = summary.precision + summary.recall
    summary.f1 = 2 * summary.precision * summary.recall / total if total else 0.0
    return summary


def score_corpus(
    files: list[NabFile], alerts: dict[str, npt.NDArray[np.bool_]]
) -> dict[str, dict[str, FileScore]]:
    """Every file under every profile."""
    return {f.name: {p: score_file(f, alerts[f.name], PROFILES[p]) for p in PROFILES} for f in files}


def is_tuning_file(name: str) -> bool:
    """The fixed development split: files whose SHA-256 of the name is even tune; the rest are held out."""
    return hashlib.sha256(name.encode()).digest()[0] % 2 == 0


def tuning_files(files: list[NabFile]) -> list[NabFile]:
    """Only the tuning split: what a detector or threshold may be developed on without touching held-out."""
    return [f for f in files if is_tuning_file(f.name)]


def detect_corpus(
    files: list[NabFile],
    params: ThresholdParams | None = None,
    resolve_after: int = DEFAULT_RESOLVE_AFTER,
    breakout: BreakoutParams | None = DEFAULT_BREAKOUT,
    recurrence: RecurrenceParams | None = DEFAULT_RECURRENCE,
    *,
    novelty: NoveltyParams | None = DEFAULT_NOVELTY,
    entropy: EntropyParams | None = DEFAULT_ENTROPY,
    surprise: SurpriseParams | None = None,
    levels: LevelParams | None = None,
    silence: SilenceParams | None = None,
    discords: DiscordParams | None = None,
    progress: Progress | None = None,
) -> dict[str, npt.NDArray[np.bool_]]:
    """Alert onsets of the default detector on every file (no labels are used); ``surprise``, ``levels``,
    ``silence`` and ``discords`` OR in opt-in parts (``anomaly.surprise``, ``anomaly.levels``,
    ``anomaly.silence``, ``anomaly.discords``). ``progress``: as ``score_many``'s."""
    scored = score_many(
        [f.series for f in files],
        params,
        resolve_after,
        breakout,
        recurrence,
        novelty=novelty,
        entropy=entropy,
        silence=silence,
        progress=progress,
    )
    alerts = {f.name: s.raised for f, s in zip(files, scored, strict=True)}
    values = [f.series.values for f in files]
    extras = []
    if surprise is not None:
        extras.append(raise_surprise(values, surprise))
    if levels is not None:
        extras.append(raise_levels(values, levels))
    if discords is not None:
        extras.append(raise_discords(values, discords))
    for extra in extras:
        for f, raised in zip(files, extra, strict=True):
            alerts[f.name] = alerts[f.name] | raised
    return alerts


@dataclass(slots=True)
class NabReport:
    """Per-file scores and summaries over the tuning split, the held-out split, categories and all files."""

    per_file: dict[str, dict[str, FileScore]]
    splits: dict[str, Summary]
    categories: dict[str, Summary]
    split_categories: dict[str, dict[str, Summary]] = field(default_factory=dict)
    missing_files: list[str] = field(default_factory=list)  # named by the windows, not scored: not there

    def to_json(self) -> dict[str, object]:
        """A JSON-ready dict."""

        def summary(s: Summary) -> dict[str, object]:
            return {
                "files": s.files,
                "windows": s.windows,
                "scores": {k: None if v is None else round(v, 2) for k, v in s.scores.items()},
                "raw": {k: round(v, 4) for k, v in s.raw.items()},
                "window_precision": round(s.precision, 4),
                "window_recall": round(s.recall, 4),
                "window_f1": round(s.f1, 4),
            }

        return {
            "splits": {k: summary(v) for k, v in self.splits.items()},
            "categories": {k: summary(v) for k, v in self.categories.items()},
            "split_categories": {
                split: {k: summary(v) for k, v in cats.items()}
                for split, cats in self.split_categories.items()
            },
            "files": {
                name: {
                    "split": "tune" if is_tuning_file(name) else "held_out",
                    "windows": parts["standard"].windows,
                    "detected": parts["standard"].detected,
                    "alerts": parts["standard"].alerts,
                    "raw": {p: round(v.raw, 4) for p, v in parts.items()},
                }
                for name, parts in self.per_file.items()
            },
            "missing_files": list(self.missing_files),
        }


def evaluate(
    files: list[NabFile],
    params: ThresholdParams | None = None,
    resolve_after: int = DEFAULT_RESOLVE_AFTER,
    breakout: BreakoutParams | None = DEFAULT_BREAKOUT,
    recurrence: RecurrenceParams | None = DEFAULT_RECURRENCE,
    *,
    novelty: NoveltyParams | None = DEFAULT_NOVELTY,
    entropy: EntropyParams | None = DEFAULT_ENTROPY,
    surprise: SurpriseParams | None = None,
    levels: LevelParams | None = None,
    discords: DiscordParams | None = None,
    progress: Progress | None = None,
) -> NabReport:
    """Detect on every file, score, and summarise by split and category; ``progress`` is told how far the
    detection got (``score_many``'s steps), for a bar at a terminal."""
    alerts = detect_corpus(
        files,
        params,
        resolve_after,
        breakout,
        recurrence,
        novelty=novelty,
        entropy=entropy,
        surprise=surprise,
        levels=levels,
        discords=discords,
        progress=progress,
    )
    per_file = score_corpus(files, alerts)
    names = [f.name for f in files]
    splits = {
        "tune": summarise(per_file, [n for n in names if is_tuning_file(n)]),
        "held_out": summarise(per_file, [n for n in names if not is_tuning_file(n)]),
        "all": summarise(per_file, names),
    }
    categories = {
        c: summarise(per_file, [f.name for f in files if f.category == c])
        for c in sorted({f.category for f in files})
    }
    split_categories = {
        split: {
            c: summarise(
                per_file, [f.name for f in files if f.category == c and is_tuning_file(f.name) == tune]
            )
            for c in sorted({f.category for f in files if is_tuning_file(f.name) == tune})
        }
        for split, tune in (("tune", True), ("held_out", False))
    }
    return NabReport(
        per_file=per_file, splits=splits, categories=categories, split_categories=split_categories
    )
