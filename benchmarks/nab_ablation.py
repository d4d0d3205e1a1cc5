"""Ablation of the default detector itself on NAB, one change at a time, cross-validated: one JSON line.

Issue 4's default (``anomaly.univariate.score_many`` with every default) was shaped on the tune split part by
part; some twenty parts added to it were rejected since, but its own parts and settings were never taken away
or moved one at a time under cross-validation. This harness does that: each change below is the whole default
with one thing changed (a part off, a toggle flipped, or one numeric setting one step down and one step up:
x0.5 / x2 where the setting allows it), declared and committed before the harness first ran on the corpus.

Round 1 (``--round 1``, the default), by part of the default scoring path:

* adaptive thresholds (``ThresholdParams``, ``AnomalyThresholdConfig``): ``alpha`` (baseline EWMA),
  ``scale_alpha`` (error EWMA), ``k`` (band half-width), ``warmup`` (x0.5, x2 and 0: off), ``direction`` (up
  only, down only instead of both), ``min_relative_deviation`` (0: off; 0.01 and 0.05 of |baseline|; the
  absolute ``min_deviation`` has no step that means the same on every file, so it is not moved), ``clip``
  (winsorising), ``error_clip`` (1 is its least: x2 only), the volatility part (``volatility_k`` 0: off;
  x0.5 / x2; ``fast_alpha``), the streaming tail quantile (``tail_quantile`` 0: off; 0.98 / 0.995, the tail's
  share x2 / x0.5; ``tail_k``, ``tail_rate``);
* seasonality: off (the level model only); ``seasonal_alpha``; ``seasonal_gain`` (x0.5; 1, its most, for up);
  ``seasonal_freeze`` on;
* the adaptive alerts' threshold 1 (a score above 1 raises): x0.5 / x2, as the band, the tail band and the
  volatility floor all scaled by that factor (``k``, ``tail_k``, ``volatility_k``), which divides every
  adaptive score by the factor (the error scales, their winsorising and the tail quantile do not depend on
  them; only a flat series' band floor of 1e-9 is not scaled);
* the re-arm (``resolve_after``, 24 quiet samples): 12 / 48;
* the recurrence mute (``RecurrenceParams``): off; weekly match off (daily only); ``tolerance_seconds``
  x0.5 / x2; ``same_direction`` on; the periods are calendar ones and are not moved;
* range breakout (``BreakoutParams``): off; ``margin``, ``warmup``, ``rearm``;
* context novelty (``NoveltyParams``): off; ``levels``, ``order``, ``threshold``, ``warmup``, ``rearm``.

Per change: its NAB standard score on all files, tune and held-out, alerts, false positives, the windows it
finds or loses against the default; cross-validated as ``nab_cv.py`` (leave one category out, five folds by
name hash) between the default and the change alone (each fold keeps the change only if it scored better on
the other folds), and whether tune alone prefers it. A change is adopted only if it gains >= 1.0 in both
schemes, tune prefers it, and its held-out score is at least the default's. The whole grid is cross-validated
too (each fold picks among all of them: the estimate of choosing by ablation). ``--round 2`` scores every
adopted change of round 1 together (``ROUND2``, filled in after round 1 and committed before round 2 runs).
``--only`` scores just the named changes (and the default), for a quick look or a test.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

# light: the anomaly stage only once a corpus is read
from nab_inputs import corpus_parser, load_checked_corpus


def _options(argv: list[str] | None = None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """The command line (``argv``, else the process's), read before the heavy imports below: ``--help`` and
    an unknown option answer at once."""
    parser = corpus_parser(__doc__)
    parser.add_argument("--round", type=int, choices=(1, 2), default=1, help="the declared round to score")
    parser.add_argument(
        "--only", help="comma-separated change labels to score (with the default) instead of the round's grid"
    )
    return parser, parser.parse_args(argv)


if __name__ == "__main__":
    PARSER, OPTIONS = _options()

import numpy as np  # noqa: E402 - imported after the command line is read
import numpy.typing as npt  # noqa: E402
from nab_cv import cross_validate, fold_schemes, found_windows, split_score  # noqa: E402

from anomaly.nab import PROFILES, NabFile, is_tuning_file, score_file  # noqa: E402
from anomaly.univariate import (  # noqa: E402
    DEFAULT_BREAKOUT,
    DEFAULT_NOVELTY,
    DEFAULT_PARAMS,
    DEFAULT_RECURRENCE,
    DEFAULT_RESOLVE_AFTER,
    Settings,
    score_together,
)

BoolArray = npt.NDArray[np.bool_]
BAR = 1.0  # the brief's bar: a change must gain this much in both cross-validation schemes


def _params(**change: Any) -> Settings:
    return Settings(params=replace(DEFAULT_PARAMS, **change))


def _threshold(factor: float) -> Settings:
    """The adaptive alerts' threshold times ``factor``: every band the score is measured in, scaled alike."""
    p = DEFAULT_PARAMS
    return _params(k=p.k * factor, tail_k=p.tail_k * factor, volatility_k=p.volatility_k * factor)


def _stepped(name: str, value: float, *, whole: bool = False, top: float | None = None) -> dict[str, Any]:
    """``name`` x0.5 and x2 (at most ``top``; whole numbers where the setting is one)."""
    out: dict[str, Any] = {}
    for factor in (0.5, 2.0):
        moved = value * factor
        moved = min(moved, top) if top is not None else moved
        out[f"{name}=x{factor:g}"] = round(moved) if whole else moved
    return out


def grid() -> dict[str, Settings]:
    """Round 1: the default (``off``: nothing changed) and every declared one-at-a-time change."""
    p, b, r, n = DEFAULT_PARAMS, DEFAULT_BREAKOUT, DEFAULT_RECURRENCE, DEFAULT_NOVELTY
    out: dict[str, Settings] = {"off": Settings()}
    numeric = {
        "alpha": (p.alpha, False, None),
        "scale_alpha": (p.scale_alpha, False, None),
        "k": (p.k, False, None),
        "warmup": (p.warmup, True, None),
        "clip": (p.clip, False, None),
        "fast_alpha": (p.fast_alpha, False, None),
        "volatility_k": (p.volatility_k, False, None),
        "tail_k": (p.tail_k, False, None),
        "tail_rate": (p.tail_rate, False, None),
        "seasonal_alpha": (p.seasonal_alpha, False, None),
        "seasonal_gain": (p.seasonal_gain, False, 1.0),
    }
    for name, (value, whole, top) in numeric.items():
        for label, moved in _stepped(name, value, whole=whole, top=top).items():
            out[label] = _params(**{name: moved})
    out["warmup=0"] = _params(warmup=0)
    out["direction=up"] = _params(direction="up")
    out["direction=down"] = _params(direction="down")
    out["min_relative_deviation=0.01"] = _params(min_relative_deviation=0.01)
    out["min_relative_deviation=0.05"] = _params(min_relative_deviation=0.05)
    out["error_clip=x2"] = _params(error_clip=2 * p.error_clip)
    out["volatility=off"] = _params(volatility_k=0.0)
    out["tail_quantile=off"] = _params(tail_quantile=0.0)
    out["tail_quantile=0.98"] = _params(tail_quantile=0.98)
    out["tail_quantile=0.995"] = _params(tail_quantile=0.995)
    out["seasonality=off"] = _params(seasonality=False)
    out["seasonal_freeze=on"] = _params(seasonal_freeze=True)
    out["threshold=x0.5"] = _threshold(0.5)
    out["threshold=x2"] = _threshold(2.0)
    for label, moved in _stepped("resolve_after", DEFAULT_RESOLVE_AFTER, whole=True).items():
        out[label] = Settings(resolve_after=moved)
    out["recurrence=off"] = Settings(recurrence=None)
    out["recurrence_weekly=off"] = Settings(recurrence=replace(r, weekly_seconds=None))
    for label, moved in _stepped("recurrence_tolerance", r.tolerance_seconds).items():
        out[label] = Settings(recurrence=replace(r, tolerance_seconds=moved))
    out["recurrence_same_direction=on"] = Settings(recurrence=replace(r, same_direction=True))
    out["breakout=off"] = Settings(breakout=None)
    for name, whole in (("margin", False), ("warmup", True), ("rearm", True)):
        for label, moved in _stepped(name, getattr(b, name), whole=whole).items():
            out[f"breakout_{label}"] = Settings(breakout=replace(b, **{name: moved}))
    out["novelty=off"] = Settings(novelty=None)
    for name in ("levels", "order", "threshold", "warmup", "rearm"):
        whole = name != "threshold"
        for label, moved in _stepped(name, getattr(n, name), whole=whole).items():
            out[f"novelty_{label}"] = Settings(novelty=replace(n, **{name: moved}))
    return out


ROUND2: tuple[str, ...] = ()
"""The changes round 1 adopted, scored together in round 2 (empty: round 1 adopted none)."""


def combined(labels: tuple[str, ...]) -> Settings:
    """The default with every change of ``labels`` (from ``grid()``) made at once."""
    base, changes = Settings(), grid()
    merged: dict[str, Any] = {}
    for label in labels:
        s = changes[label]
        for part in ("params", "resolve_after", "breakout", "recurrence", "novelty"):
            mine, default = getattr(s, part), getattr(base, part)
            if mine == default:
                continue
            if mine is None or default is None or isinstance(mine, int):
                merged[part] = mine
                continue
            now = merged.get(part, default)
            fields = {
                f: getattr(mine, f)
                for f in mine.__dataclass_fields__
                if getattr(mine, f) != getattr(default, f)
            }
            merged[part] = None if now is None else replace(now, **fields)
    return replace(base, **merged)


def round_grid(round_: int, only: str | None = None) -> dict[str, Settings]:
    """The settings a run scores: round 1's grid, or round 2's combination; ``only`` keeps the named ones."""
    if round_ == 2:
        table = {"off": Settings()}
        if ROUND2:
            table["+".join(ROUND2)] = combined(ROUND2)
    else:
        table = grid()
    if only:
        wanted = [label.strip() for label in only.split(",") if label.strip()]
        unknown = [label for label in wanted if label not in table]
        if unknown:
            raise KeyError(", ".join(unknown))
        table = {"off": table["off"]} | {label: table[label] for label in wanted}
    return table


def report(
    files: list[NabFile], alerts: dict[str, dict[str, BoolArray]], seconds: dict[str, float]
) -> dict[str, Any]:
    """The JSON report of a scored grid (``off`` among it)."""
    names = [f.name for f in files]
    tune = [f.name for f in files if is_tuning_file(f.name)]
    held = [n for n in names if n not in tune]
    samples = sum(len(f.series.values) for f in files)
    scores = {
        label: {f.name: score_file(f, per[f.name], PROFILES["standard"]) for f in files}
        for label, per in alerts.items()
    }
    found = {label: {f.name: found_windows(f, per[f.name]) for f in files} for label, per in alerts.items()}
    schemes = fold_schemes(names)
    base = scores["off"]
    off_tune, off_held = split_score(base, tune), split_score(base, held)

    def windows(label: str, now: bool) -> list[str]:
        return [
            f"{name.split('/')[1]}#{w}"
            for name, per in found[label].items()
            for w, hit in per.items()
            if hit == now and found["off"][name][w] != now
        ]

    changes: dict[str, dict[str, Any]] = {}
    adopted: list[str] = []
    for label, table in scores.items():
        gains = {
            s: round(cross_validate({"off": base, label: table}, folds)[0] - split_score(base, names), 2)
            for s, folds in schemes.items()
        }
        held_score = split_score(table, held)
        tune_prefers = sum(table[n].raw for n in tune) > sum(base[n].raw for n in tune)
        adopt = label != "off" and all(g >= BAR for g in gains.values()) and tune_prefers
        adopt = adopt and held_score >= off_held
        if adopt:
            adopted.append(label)
        changes[label] = {
            "all_files": split_score(table, names),
            "tune": split_score(table, tune),
            "held_out": held_score,
            "cv_gain": gains,
            "tune_prefers": tune_prefers,
            "adopted": adopt,
            "alerts": sum(s.alerts for s in table.values()),
            "false_positives": sum(s.alerts - s.alerts_in_windows for s in table.values()),
            "windows_found": sum(s.detected for s in table.values()),
            "windows_gained": windows(label, True),
            "windows_lost": windows(label, False),
            "us_per_sample": round(1e6 * seconds[label] / samples, 2),
        }
    whole: dict[str, Any] = {}
    for scheme, folds in schemes.items():
        score, picks = cross_validate(scores, folds)
        whole[scheme] = {"score": score, "gain": round(score - split_score(base, names), 2), "picks": picks}
    return {
        "profile": "standard",
        "files": len(files),
        "windows": sum(s.windows for s in base.values()),
        "samples": samples,
        "default": {"all_files": split_score(base, names), "tune": off_tune, "held_out": off_held},
        "bar": BAR,
        "adopted": adopted,
        "whole_grid_cross_validated": whole,
        "changes": changes,
    }


def main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    started = time.perf_counter()
    try:
        settings = round_grid(args.round, args.only)
    except KeyError as exc:
        parser.error(f"--only: no such change in round {args.round}: {exc.args[0]}")
    files = load_checked_corpus(parser, args)
    series = [f.series for f in files]
    alerts: dict[str, dict[str, BoolArray]] = {}
    seconds: dict[str, float] = {}
    for label, setting in settings.items():
        tick = time.process_time()
        scored = score_together(series, setting)
        seconds[label] = time.process_time() - tick
        alerts[label] = {f.name: np.asarray(s.raised, np.bool_) for f, s in zip(files, scored, strict=True)}
    out = {"bench": "nab_ablation", "round": args.round, **report(files, alerts, seconds)}
    print(json.dumps(out | {"seconds": round(time.perf_counter() - started, 1)}))


if __name__ == "__main__":
    main(PARSER, OPTIONS)
