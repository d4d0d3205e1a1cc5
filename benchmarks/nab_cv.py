"""Cross-validated NAB score of the default detector with and without an opt-in part: one JSON line.

The fixed tune/held-out split (``anomaly.nab.is_tuning_file``) has been looked at: held-out was scored
after each freeze, and its per-category figures are published. A recall change cannot be validated on
tune alone (tune's detector already finds 31 of its 33 windows), so an opt-in part's settings are chosen by
cross-validation over all the files here instead. ``--candidate`` names the part:

* ``entropy`` (the default): the relative-entropy part (``anomaly.entropy``), its declared grid the part
  off and significance x rearm; ``window`` and ``bins`` are the published values and are not searched;
* ``surprise``: the prediction-error likelihood part (``anomaly.surprise``) OR-ed with the default, its
  declared grid the part off and tail x rearm (declared in the twelfth session before its first run; the
  predictor, ``short`` and ``long`` were fixed on the tune split);
* ``levels``: the multi-scale level breakout (``anomaly.levels``) OR-ed with the default, its declared
  grid the part off and scales x margin x rearm (declared in the twelfth session before its first run;
  ``settle`` and ``warmup`` were fixed);

* two fold schemes: leave one category out, and five folds by the SHA-256 of the file name;
* in each fold, the candidate with the best raw standard score on the other folds is scored on this fold;
  the out-of-fold raw scores are added up and normalised over every file (``100 * (raw - null) /
  (perfect - null)``), the estimate of the score on files the choice never saw.

``<candidate>_off`` is the same estimate for the default detector alone (nothing chosen, so it equals its
score over all files). A part joins the default only if its cross-validated score is higher.
``EntropyParams()`` (``SurpriseParams()``, ``LevelParams()``) is the candidate with the best
score over all files; ``default_is_best`` says whether it still is. The adaptive, breakout, recurrence and
novelty parts keep their defaults, chosen on tune in earlier sessions.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# light: the anomaly stage only once a corpus is read
from nab_inputs import corpus_parser, load_checked_corpus


def _options(argv: list[str] | None = None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """The command line (``argv``, else the process's) and its parser, which refuses a missing corpus; read
    before the heavy imports below (numpy, the anomaly stage): ``--help`` and an unknown option answer at
    once."""
    parser = corpus_parser(__doc__)
    parser.add_argument("--candidate", choices=("entropy", "surprise", "levels"), default="entropy")
    return parser, parser.parse_args(argv)


if __name__ == "__main__":
    PARSER, OPTIONS = _options()

import numpy as np  # noqa: E402 - imported after the command line is read
import numpy.typing as npt  # noqa: E402

from anomaly.entropy import EntropyParams  # noqa: E402
from anomaly.levels import LevelParams  # noqa: E402
from anomaly.levels import raise_many as raise_levels  # noqa: E402
from anomaly.nab import (  # noqa: E402
    PROFILES,
    FileScore,
    NabFile,
    detect_corpus,
    is_tuning_file,
    probation_length,
    score_file,
)
from anomaly.surprise import SurpriseParams  # noqa: E402
from anomaly.surprise import raise_many as raise_surprise  # noqa: E402

SIGNIFICANCE = (0.01, 0.001, 1e-5)
REARM = (200, 1000)
SURPRISE_TAIL = (1e-2, 1e-3, 1e-4, 1e-5)
SURPRISE_REARM = (300, 1000)
LEVEL_SCALES = ((12,), (48,), (12, 48, 192))
LEVEL_MARGIN = (0.05, 0.2)
LEVEL_REARM = (300, 1000)

Part = EntropyParams | SurpriseParams | LevelParams


def candidates(kind: str = "entropy") -> dict[str, Part | None]:
    """The declared grid of one part, plus the part off."""
    grid: dict[str, Part | None] = {"off": None}
    if kind == "surprise":
        for tail, rearm in itertools.product(SURPRISE_TAIL, SURPRISE_REARM):
            grid[f"tail={tail},rearm={rearm}"] = SurpriseParams(tail=tail, rearm=rearm)
        return grid
    if kind == "levels":
        for scales, margin, rearm in itertools.product(LEVEL_SCALES, LEVEL_MARGIN, LEVEL_REARM):
            label = f"scales={'/'.join(map(str, scales))},margin={margin},rearm={rearm}"
            grid[label] = LevelParams(scales=scales, margin=margin, rearm=rearm)
        return grid
    for significance, rearm in itertools.product(SIGNIFICANCE, REARM):
        grid[f"significance={significance},rearm={rearm}"] = EntropyParams(
            significance=significance, rearm=rearm
        )
    return grid


Alerts = dict[str, npt.NDArray[np.bool_]]


def grid_alerts(files: list[NabFile], kind: str = "entropy") -> dict[str, Alerts]:
    """Each setting of ``candidates(kind)`` and its alerts on ``files``. The entropy part is a part of the
    default detector's own step, stepped once per setting; a surprise or levels part is OR-ed with the
    default's alerts (as ``detect_corpus`` does), which are stepped once for the whole grid (``off``: the
    default alone), not again for each setting."""
    grid = candidates(kind)
    if kind == "entropy":
        return {label: detect_corpus(files, entropy=part) for label, part in grid.items()}
    default = detect_corpus(files)
    values = [f.series.values for f in files]
    table = {}
    for label, part in grid.items():
        if isinstance(part, SurpriseParams):
            extra = raise_surprise(values, part)
        elif isinstance(part, LevelParams):
            extra = raise_levels(values, part)
        else:
            table[label] = default
            continue
        table[label] = {f.name: default[f.name] | raised for f, raised in zip(files, extra, strict=True)}
    return table


def normalised(raw: float, windows: int) -> float:
    return round(100.0 * (raw + windows) / (2 * windows), 2)


def cross_validate(
    table: dict[str, dict[str, FileScore]], folds: dict[str, str]
) -> tuple[float, dict[str, str]]:
    """Out-of-fold standard score, and the candidate each fold chose on the others."""
    total, picks = 0.0, {}
    for fold in sorted(set(folds.values())):
        train = [n for n in folds if folds[n] != fold]
        best = max(table, key=lambda c: sum(table[c][n].raw for n in train))
        picks[fold] = best
        total += sum(table[best][n].raw for n in folds if folds[n] == fold)
    windows = sum(s.windows for s in next(iter(table.values())).values())
    return normalised(total, windows), picks


def fold_schemes(names: list[str]) -> dict[str, dict[str, str]]:
    """The two ways the files are split into folds: by category, and five folds by a hash of the name."""
    return {
        "leave_one_category_out": {n: n.split("/", 1)[0] for n in names},
        "five_folds": {n: str(hashlib.sha256(n.encode()).digest()[1] % 5) for n in names},
    }


def found_windows(file: NabFile, alerts: npt.NDArray[np.bool_]) -> dict[int, bool]:
    """Per scored window of ``file`` (by its number): whether an alert after probation is in it."""
    probation = probation_length(len(file.series.values))
    return {
        w: bool(np.any(alerts[max(left, probation) : right + 1]))
        for w, (left, right) in enumerate(file.windows)
        if right >= probation
    }


def grid_report(
    table: dict[str, dict[str, FileScore]], seconds: dict[str, float], samples: int
) -> tuple[dict[str, object], dict[str, dict[str, object]]]:
    """What a grid's harness reports for a table of scores per setting (``off`` among them): the
    cross-validated score of each fold scheme against ``off``'s, whether the grid clears the bar for adoption
    (+1.5 in both schemes) and the best setting over all files; then each setting's totals, which the
    caller may extend before printing them as ``settings``."""
    names = list(table["off"])
    windows = sum(s.windows for s in table["off"].values())
    cv: dict[str, dict[str, object]] = {}
    gains: list[float] = []
    for scheme, folds in fold_schemes(names).items():
        score, picks = cross_validate(table, folds)
        off, _ = cross_validate({"off": table["off"]}, folds)
        gains.append(round(score - off, 2))
        cv[scheme] = {"score": score, "off": off, "gain": gains[-1], "picks": picks}
    all_files = {label: normalised(sum(s.raw for s in t.values()), windows) for label, t in table.items()}
    return {
        "profile": "standard",
        "files": len(names),
        "windows": windows,
        "samples": samples,
        "cross_validated": cv,
        "adoptable": all(gain >= 1.5 for gain in gains),
        "best_on_all_files": max(all_files, key=lambda label: all_files[label]),
    }, {
        label: {
            "all_files": all_files[label],
            "alerts": sum(s.alerts for s in t.values()),
            "false_positives": sum(s.alerts - s.alerts_in_windows for s in t.values()),
            "windows_found": sum(s.detected for s in t.values()),
            "us_per_sample": round(1e6 * seconds[label] / samples, 2),
        }
        for label, t in table.items()
    }


Scored = tuple[dict[str, dict[str, FileScore]], dict[str, float], dict[str, dict[str, object]]]


def split_score(table: dict[str, FileScore], names: list[str]) -> float:
    """The normalised standard score over ``names``."""
    return normalised(sum(table[n].raw for n in names), sum(table[n].windows for n in names))


def frozen_on_tune(table: dict[str, dict[str, FileScore]]) -> str:
    """The label with the best raw standard score on the tune files (``off`` wins ties: listed first)."""
    return max(table, key=lambda label: sum(s.raw for n, s in table[label].items() if is_tuning_file(n)))


def frozen_grid_report(
    bench: str,
    files: list[NabFile],
    scored: Scored,
    *,
    bar: tuple[str, float],
    held_out: bool,
    per_split: Callable[[dict[str, FileScore]], object] | None = None,
) -> dict[str, object]:
    """A frozen-grid harness's JSON line (less its ``seconds``): the grid's scores (``scored``, as
    ``nab_discords.or_ed_grid`` answers) cross-validated, whether every scheme gains ``bar`` (its key, its
    gain), the setting frozen on tune and, with ``held_out``, its held-out score beside the default's (and
    ``per_split``'s answer for each, as ``categories``)."""
    table, seconds, detail = scored
    head, settings = grid_report(table, seconds, sum(len(f.series.values) for f in files))
    gains = [scheme["gain"] for scheme in head["cross_validated"].values()]  # type: ignore[attr-defined]
    for label, extra in detail.items():
        settings[label].update(extra)
    frozen = frozen_on_tune(table)
    key, least = bar
    out: dict[str, object] = {
        "bench": bench,
        **head,
        key: all(gain >= least for gain in gains),
        "frozen_on_tune": frozen,
        "settings": settings,
    }
    if held_out:
        labels = dict.fromkeys(("off", frozen))
        out["held_out"] = {
            label: split_score(table[label], [n for n in table[label] if not is_tuning_file(n)])
            for label in labels
        }
        if per_split is not None:
            out["categories"] = {label: per_split(table[label]) for label in labels}
    return out


def main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    started = time.perf_counter()
    files: list[NabFile] = load_checked_corpus(parser, args)
    names = [f.name for f in files]
    grid = candidates(args.candidate)
    table: dict[str, dict[str, FileScore]] = {}
    for label, alerts in grid_alerts(files, args.candidate).items():
        table[label] = {f.name: score_file(f, alerts[f.name], PROFILES["standard"]) for f in files}
    windows = sum(s.windows for s in table["off"].values())
    all_files = {label: normalised(sum(s.raw for s in t.values()), windows) for label, t in table.items()}
    best = max(all_files, key=lambda c: all_files[c])
    default = {"surprise": SurpriseParams(), "levels": LevelParams()}.get(args.candidate, EntropyParams())
    schemes = fold_schemes(names)
    cv = {}
    for scheme, folds in schemes.items():
        score, picks = cross_validate(table, folds)
        off, _ = cross_validate({"off": table["off"]}, folds)
        cv[scheme] = {"score": score, f"{args.candidate}_off": off, "picks": picks}
    print(
        json.dumps(
            {
                "bench": "nab_cross_validation",
                "profile": "standard",
                "candidate": args.candidate,
                "files": len(files),
                "windows": windows,
                "cross_validated": cv,
                "all_files": all_files,
                "best_on_all_files": best,
                "default_is_best": grid[best] == default,
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
    )


if __name__ == "__main__":
    main(PARSER, OPTIONS)
