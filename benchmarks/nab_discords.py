"""Cross-validated NAB score of subsequence discords (a causal left matrix profile) OR-ed with the default,
and with the default + the level breakout: one JSON line.

The part (``anomaly.discords``) finds *shapes* the series has not shown before, a different family from the
default's value bands; the question is whether it finds different windows. Shaped on the tune split only
(``anomaly.nab.is_tuning_file``): there, alone at the grid's settings it raises 1 to 31 alerts for 1 to 8
of 33 windows, and OR-ed with the default it finds no tune window the default misses except
ec2_cpu_utilization_53ea38's second (which the level part finds too).

The grid (declared and committed before its first cross-validated run; 12 settings):

* ``m``: from the warm-up (the autocorrelation's first peak after its first zero crossing, clipped to 8..96),
  12 (an hour at NAB's usual 5-minute step), 24;
* reference: the largest value since the warm-up ended (never forgetting, DAMP's best-so-far) or the largest
  of the last 1,000 samples;
* factor: 1.0, 1.2 (a value above ``factor`` x the reference raises).

Fixed on tune: ``floor`` 0.1 (a window's deviation floored at 0.1 x the warm-up's spread: flat
segments), warm-up 300, ``learn`` 300 (judged from sample 600), ``rest`` 1,000, ``seed`` 0, full history.

``--grid early`` (declared and committed after the first grid's cross-validated run, before its own; 12
settings). The first grid judges from sample 600, and the miss analysis after its run (over all 41 files,
held-out included: the left matrix profile inside each window the default misses) showed three of the nine
misses (iio_us-east-1's two, exchange-2_cpc's) lie before sample 600, so its estimate carries that look.
Shaped on tune: m 8 and a short warm-up find exchange-2_cpc's window (one alert on that file).

* warm-up 100 or 150 samples, ``learn`` 50 (judged from 150 or 200);
* ``m``: 8, 12, from the warm-up clipped to 8..48 (a shorter warm-up holds two of the longest only);
* reference: never forgetting, or the last 1,000 samples; factor 1.0 (1.2 found no new tune window).

Two tables are cross-validated as ``nab_cv.py`` does (``cross_validate``, ``fold_schemes``: leave one category
out, five folds by name hash; each fold's pick is chosen on the other folds by raw standard score):

* ``with_default``: the default alone (``off``) and the 12 settings OR-ed with it;
* ``with_levels``: the default alone (``off``), the default + level breakout (``levels``: scale 12, margin
  0.05, rearm 1,000, the fifteenth session's pick), and the 12 settings OR-ed with both.

Also per setting: the part alone, each OR-ed score on all files and on tune, alerts, false positives, windows
found, the windows it finds that the default misses (by file), and the cost per sample of the profile.
The project's bar: >= 1.5 points over the default (71.95) in both schemes.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

# light: the anomaly stage only once a corpus is read
from nab_inputs import corpus_parser, load_checked_corpus


def _options() -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """The command line (and its parser, which refuses a missing corpus), read before the heavy imports
    below (numpy, the anomaly stage): ``--help`` and an unknown option answer at once."""
    parser = corpus_parser(__doc__)
    parser.add_argument("--grid", choices=("first", "early"), default="first")
    return parser, parser.parse_args()


if __name__ == "__main__":
    PARSER, OPTIONS = _options()

import numpy as np  # noqa: E402 - imported after the command line is read
from nab_cv import cross_validate, fold_schemes, normalised  # noqa: E402
from nab_package import found_windows  # noqa: E402

from anomaly.discords import DiscordParams, judge_profile, profile  # noqa: E402
from anomaly.levels import LevelParams  # noqa: E402
from anomaly.nab import (  # noqa: E402
    PROFILES,
    FileScore,
    NabFile,
    detect_corpus,
    is_tuning_file,
    score_file,
)
from anomaly.steps import BoolArray  # noqa: E402

M = (None, 12, 24)
MEMORY = (None, 1000)
FACTOR = (1.0, 1.2)
LEVELS = LevelParams(scales=(12,), margin=0.05, rearm=1000)


EARLY_WARMUP = (100, 150)
EARLY_LEARN = 50
EARLY_M = (8, 12, None)
EARLY_M_RANGE = (8, 48)


def grid(kind: str = "first") -> dict[str, DiscordParams]:
    """A declared grid (12 settings): ``first``, or ``early`` (short warm-up)."""
    if kind == "early":
        return {
            f"warmup={warmup},m={m or 'auto'},memory={memory or 'all'}": DiscordParams(
                m=m, m_range=EARLY_M_RANGE, warmup=warmup, learn=EARLY_LEARN, memory=memory
            )
            for warmup, m, memory in itertools.product(EARLY_WARMUP, EARLY_M, MEMORY)
        }
    return {
        f"m={m or 'auto'},memory={memory or 'all'},factor={factor}": DiscordParams(
            m=m, factor=factor, memory=memory
        )
        for m, memory, factor in itertools.product(M, MEMORY, FACTOR)
    }


def profile_key(params: DiscordParams) -> tuple[int | None, tuple[int, int], int]:
    """What a profile depends on (the rest is the raise rule, replayed over it)."""
    return params.m, params.m_range, params.warmup


def scores(files: list[NabFile], alerts: dict[str, BoolArray]) -> dict[str, FileScore]:
    return {f.name: score_file(f, alerts[f.name], PROFILES["standard"]) for f in files}


def summary(files: list[NabFile], table: dict[str, FileScore]) -> dict[str, object]:
    """Score on all files and on tune (None when no tune file has a window: a corpus of held-out files),
    alerts, false positives, windows found."""
    windows = sum(s.windows for s in table.values())
    tune = [f.name for f in files if is_tuning_file(f.name)]
    tune_windows = sum(table[n].windows for n in tune)
    return {
        "all_files": normalised(sum(s.raw for s in table.values()), windows),
        "tune": normalised(sum(table[n].raw for n in tune), tune_windows) if tune_windows else None,
        "alerts": sum(s.alerts for s in table.values()),
        "false_positives": sum(s.alerts - s.alerts_in_windows for s in table.values()),
        "windows_found": sum(s.detected for s in table.values()),
    }


def newly_found(files: list[NabFile], part: dict[str, BoolArray], base: dict[str, BoolArray]) -> list[str]:
    """``file#window`` for each window the part finds and ``base`` misses."""
    out = []
    for f in files:
        theirs = found_windows(f, base[f.name])
        for w, mine in found_windows(f, part[f.name]).items():  # by window number: a dict's keys
            if mine and not theirs[w]:
                out.append(f"{f.name.split('/')[1]}#{w}")
    return out


def or_ed_grid(
    files: list[NabFile],
    settings: dict[str, Any],
    learning: Callable[[Any], Hashable],
    raise_grid: Callable[[list[Any], list[Any]], list[list[BoolArray]]],
) -> tuple[dict[str, dict[str, FileScore]], dict[str, float], dict[str, dict[str, object]]]:
    """Each of a part's ``settings`` OR-ed with the default (``off``: the default alone): scores, CPU seconds
    and details (the part alone, OR-ed on tune, the windows it finds that the default misses). Settings that
    ``learning`` says learn alike are stepped once together by ``raise_grid`` (the series' values, their
    settings: alerts per setting, per file), each given that time."""
    tick = time.process_time()
    default = detect_corpus(files)
    seconds = {"off": time.process_time() - tick}
    table: dict[str, dict[str, FileScore]] = {"off": scores(files, default)}
    detail: dict[str, dict[str, object]] = {}
    together: dict[Hashable, list[str]] = {}
    for label, params in settings.items():
        together.setdefault(learning(params), []).append(label)
    raised: dict[str, list[BoolArray]] = {}
    for labels in together.values():
        tick = time.process_time()
        alike = raise_grid([f.series.values for f in files], [settings[label] for label in labels])
        seconds |= dict.fromkeys(labels, time.process_time() - tick)
        raised |= dict(zip(labels, alike, strict=True))
    for label in settings:
        part = {f.name: r for f, r in zip(files, raised[label], strict=True)}
        table[label] = scores(files, {n: part[n] | default[n] for n in part})
        detail[label] = {
            "alone": summary(files, scores(files, part)),
            "with_default_tune": summary(files, table[label])["tune"],
            "finds_beyond_default": newly_found(files, part, default),
        }
    return table, seconds, detail


def main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    started = time.perf_counter()
    files = load_checked_corpus(parser, args)
    names = [f.name for f in files]
    samples = sum(len(f.series.values) for f in files)
    default = detect_corpus(files)
    levels = detect_corpus(files, levels=LEVELS)
    settings = grid(args.grid)
    profiles: dict[tuple[int | None, tuple[int, int], int], dict[str, np.ndarray]] = {}
    profile_us: dict[str, float] = {}
    chosen_m: dict[str, dict[str, int]] = {}
    for params in settings.values():
        key = profile_key(params)
        if key in profiles:
            continue
        tick = time.process_time()
        one = {f.name: profile(f.series.values, params) for f in files}
        label = f"m={params.m or 'auto'},warmup={params.warmup}"
        profile_us[label] = round(1e6 * (time.process_time() - tick) / samples, 1)
        profiles[key] = {name: scored for name, (scored, _, _) in one.items()}
        if params.m is None:
            chosen_m[label] = {name.split("/")[1]: used for name, (_, _, used) in one.items()}
    tables: dict[str, dict[str, dict[str, FileScore]]] = {
        "with_default": {"off": scores(files, default)},
        "with_levels": {"off": scores(files, default), "levels": scores(files, levels)},
    }
    detail: dict[str, dict[str, object]] = {}
    for label, params in settings.items():
        part = {f.name: judge_profile(profiles[profile_key(params)][f.name], params) for f in files}
        with_default = {n: part[n] | default[n] for n in names}
        with_levels = {n: part[n] | levels[n] for n in names}
        tables["with_default"][label] = scores(files, with_default)
        tables["with_levels"][label] = scores(files, with_levels)
        detail[label] = {
            "alone": summary(files, scores(files, part)),
            "with_default": summary(files, tables["with_default"][label]),
            "with_levels": summary(files, tables["with_levels"][label]),
            "finds_beyond_default": newly_found(files, part, default),
            "finds_beyond_levels": newly_found(files, part, levels),
        }
    cv: dict[str, dict[str, object]] = {}
    for context, table in tables.items():
        for scheme, folds in fold_schemes(names).items():
            score, picks = cross_validate(table, folds)
            off, _ = cross_validate({"off": table["off"]}, folds)
            cv[f"{context}/{scheme}"] = {
                "score": score,
                "off": off,
                "gain": round(score - off, 2),
                "picks": picks,
            }
    print(
        json.dumps(
            {
                "bench": "nab_discords",
                "profile": "standard",
                "files": len(files),
                "samples": samples,
                "cross_validated": cv,
                "adoptable": {
                    context: all(cv[f"{context}/{s}"]["gain"] >= 1.5 for s in fold_schemes(names))  # type: ignore[operator]
                    for context in tables
                },
                "levels_alone_cross_validated": {
                    scheme: cross_validate({k: tables["with_levels"][k] for k in ("off", "levels")}, folds)[0]
                    for scheme, folds in fold_schemes(names).items()
                },
                "default": summary(files, tables["with_default"]["off"]),
                "levels": summary(files, tables["with_levels"]["levels"]),
                "settings": detail,
                "profile_cpu_us_per_sample": profile_us,
                "grid": args.grid,
                "m_from_warmup": chosen_m,
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
    )


if __name__ == "__main__":
    main(PARSER, OPTIONS)
