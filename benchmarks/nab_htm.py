"""NAB score of a causal HTM detector (``anomaly.htm``), alone and OR-ed with the default: one JSON line.

The HTM family (Numenta's NAB detector: encoder, spatial pooler, temporal memory, anomaly likelihood) was
the one family never tried here; ``anomaly.htm`` writes it from the published descriptions, without the
file minimum and maximum NAB hands its detectors (the encoder's resolution is learned over the probation
period). Its published settings are fixed (``HtmParams()``); only the likelihood's stage is searched.

The grid (declared and committed before the first scored run; 12 settings, one HTM pass serves them all):

* ``spread``: the short mean of the raw scores judged against the Gaussian of the raw scores (``raw``, the
  paper's equations) or of the earlier short means (``mean``);
* ``tail``: 1e-3, 1e-4, 1e-5 (the paper's epsilon is 1e-5);
* ``rearm``: 300 or 1,000 samples with nothing anomalous before an anomalous sample raises (NAB's scorer
  counts every alert after probation, so each onset must be one alert).

Fixed before any run: ``short`` 10 and ``history`` 8,640 (the paper's), ``min_std`` 0.01. The only looks
at data before the grid: timing and sanity runs on art_daily_jumpsup (raw scores and likelihood tails per
200 samples) and one timing run on ec2_cpu_utilization_24ae8d (its alert count at tail 1e-5 was seen: 0).

Protocol: a setting is chosen on the tune split only (alone, and OR-ed with the default) and held-out is
scored once, in this run; the cross-validated figure over ``nab_cv.py``'s folds (``grid_report``: each
fold's pick made on the other folds) is reported for the OR-ed grid against the default alone (``off``).
Also per category and split: the default, the published Numenta HTM (``nab_vs_htm.py``'s figures) and the
tune-chosen settings, alone and OR-ed; the windows the part finds beyond the default; and the cost
(``htm_us_per_sample``: CPU of the encoder, pooler and memory, one series at a time). ``--raw-cache`` keeps
the raw scores in an ``.npz`` file so that a rerun of the reporting skips the HTM pass.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from nab_inputs import corpus_parser, load_checked_corpus  # light: numpy only once a corpus is read


def _options() -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """The command line (and its parser, which refuses a missing corpus), read before the heavy imports
    below (numpy, the anomaly stage): ``--help`` and an unknown option answer at once."""
    parser = corpus_parser(__doc__)
    parser.add_argument("--raw-cache", type=Path, help="an .npz file to keep (or read) the raw HTM scores")
    return parser, parser.parse_args()


if __name__ == "__main__":
    PARSER, OPTIONS = _options()

import numpy as np  # noqa: E402 - imported after the command line is read
from nab_cv import grid_report, normalised  # noqa: E402
from nab_discords import newly_found, scores, summary  # noqa: E402
from nab_vs_htm import htm_scores  # noqa: E402

from anomaly.htm import LikelihoodParams, likelihood_alerts, raw_scores  # noqa: E402
from anomaly.nab import FileScore, NabFile, detect_corpus, is_tuning_file, probation_length  # noqa: E402
from anomaly.steps import BoolArray, FloatArray  # noqa: E402

HERE = Path(__file__).resolve().parent
SPREAD = ("raw", "mean")
TAIL = (1e-3, 1e-4, 1e-5)
REARM = (300, 1000)


def grid() -> dict[str, LikelihoodParams]:
    """The declared grid (12 settings)."""
    return {
        f"spread={spread},tail={tail},rearm={rearm}": LikelihoodParams(spread=spread, tail=tail, rearm=rearm)
        for spread, tail, rearm in itertools.product(SPREAD, TAIL, REARM)
    }


def htm_raw(files: list[NabFile], cache: Path | None) -> tuple[dict[str, FloatArray], float]:
    """Raw HTM scores per file (from ``cache`` when it holds them) and the CPU seconds they took."""
    if cache is not None and cache.is_file():
        with np.load(cache) as held:
            return {f.name: held[f.name] for f in files}, float(held["__seconds__"])
    tick = time.process_time()
    raw = {
        f.name: raw_scores(f.series.values, f.series.timestamps, probation_length(len(f.series.values)))
        for f in files
    }
    seconds = time.process_time() - tick
    if cache is not None:
        np.savez(cache, __seconds__=np.array(seconds), **raw)
    return raw, seconds


def by_split(files: list[NabFile], table: dict[str, FileScore]) -> dict[str, float | None]:
    """Standard score per split, per category and split, and over all files."""
    groups: dict[str, list[str]] = {"all": [f.name for f in files]}
    for f in files:
        split = "tune" if is_tuning_file(f.name) else "held_out"
        groups.setdefault(split, []).append(f.name)
        groups.setdefault(f"{f.category}/{split}", []).append(f.name)
    out: dict[str, float | None] = {}
    for group, names in sorted(groups.items()):
        windows = sum(table[n].windows for n in names)
        out[group] = normalised(sum(table[n].raw for n in names), windows) if windows else None
    return out


def tune_pick(files: list[NabFile], tables: dict[str, dict[str, FileScore]]) -> str:
    """The setting with the best raw standard score on the tune split."""
    tune = [f.name for f in files if is_tuning_file(f.name)]
    return max(tables, key=lambda label: sum(tables[label][n].raw for n in tune))


def published_htm(files: list[NabFile]) -> dict[str, FileScore]:
    """Numenta HTM's published raw scores on these files, as FileScores (windows from our scorer)."""
    raw = htm_scores(HERE / "data" / "nab_numenta_htm_standard.csv")
    base = scores(files, {f.name: np.zeros(len(f.series.values), np.bool_) for f in files})
    return {n: FileScore(raw=raw[n], windows=s.windows) for n, s in base.items()}


def main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    started = time.perf_counter()
    files = load_checked_corpus(parser, args)
    samples = sum(len(f.series.values) for f in files)
    default = detect_corpus(files)
    raw, htm_seconds = htm_raw(files, args.raw_cache)
    seconds = {"off": 0.0}
    ored: dict[str, dict[str, FileScore]] = {"off": scores(files, default)}
    alone: dict[str, dict[str, FileScore]] = {}
    parts: dict[str, dict[str, BoolArray]] = {}
    for label, params in grid().items():
        tick = time.process_time()
        parts[label] = {
            f.name: likelihood_alerts(raw[f.name], probation_length(len(raw[f.name])), params) for f in files
        }
        seconds[label] = time.process_time() - tick
        alone[label] = scores(files, parts[label])
        ored[label] = scores(files, {n: parts[label][n] | default[n] for n in default})
    head, settings = grid_report(ored, seconds, samples)
    for label, table in alone.items():
        settings[label]["alone"] = summary(files, table)
    pick_or, pick_alone = (
        tune_pick(files, {k: v for k, v in ored.items() if k != "off"}),
        tune_pick(files, alone),
    )
    print(
        json.dumps(
            {
                "bench": "nab_htm",
                **head,
                "htm_us_per_sample": round(1e6 * htm_seconds / samples, 1),
                "tune_pick_with_default": pick_or,
                "tune_pick_alone": pick_alone,
                "by_split": {
                    "default": by_split(files, ored["off"]),
                    "numenta_htm_published": by_split(files, published_htm(files)),
                    "htm_alone": by_split(files, alone[pick_alone]),
                    "htm_or_default": by_split(files, ored[pick_or]),
                },
                "finds_beyond_default": newly_found(files, parts[pick_or], default),
                "settings": settings,
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
    )


if __name__ == "__main__":
    main(PARSER, OPTIONS)
