"""Cross-validated NAB score of window-neighbour novelty OR-ed with the default: one JSON line.

The part (``anomaly.neighbours``) is of a family not tried before here (relative entropy, CAD-style context
memory, discords, a learned triage, re-baselining, multi-scale, residuals, fuzzy ART, HTM, warm-up profiles,
confirmation, ablation, run-length change points): the distance from a sample's window (its mean and log
spread, or its quarters' means and log spread) to the nearest window of the series' own recent past, over
the largest such distance within that past, refit once a day. Chosen from the seventy-fifth session's error
analysis: at least six of the default's nine missed windows are a change of level or spread that leaves no
value outside the band (a disk that goes quiet, a CPU whose bursts stop, a small level shift, a spread that
halves). A window's mean sees a level shift with ``sqrt(window)`` times less noise than a value and its log
spread falls far below anything seen when a series goes quiet; and unlike the run-length part (whose
Gaussian run read daily cycles and bursts as changes, so it raised early and its re-arm muted it) the
reference is the series' own past windows, so a burst or daily shape that recurs is not novel.

The grid (declared and committed before its first run on any NAB file; 24 settings):

* ``features``: ``moments`` (mean, log spread) or ``blocks`` (four quarter means, log spread);
* ``window``: 12 or 48 samples (nothing is scored before 25 windows' worth of samples: 300 or 1,200);
* ``factor``: 1.5, 2 or 3 (a window raises when it is that many times farther from the past than any past
  window was from the rest);
* ``rearm``: 300 or 1,000 samples below the threshold before the part raises again.

Fixed before any run, from synthetic series only (white noise, t(3) noise, AR(1), a daily sine, recurring
bursts, a spread drop, level shifts of 0.5 and 1 spread): ``refit_every`` 288, ``memory`` 2,016 windows,
``start`` 25 windows. On stationary noise ``factor`` 1 raised about twice per 6,000 samples (the largest of
the past is a record a new window can break), hence the grid's larger factors. No NAB file was looked at
before the grid was committed.

Cross-validated as ``nab_cv.py`` does (``grid_report``: leave one category out, five folds by name hash; each
fold's pick chosen on the other folds by raw standard score), against the default alone (``off``). This
session's bar (``beats_default_by_one``): adopted only if cross-validation beats the default by at least 1.0
in both schemes and held-out does not drop (``--held-out``: the default's and the setting frozen on tune's
held-out scores, per category too, read once after the choice). Per setting: the part alone, OR-ed on all
files and on tune, alerts, false positives, windows found, the windows it finds that the default misses,
and its CPU cost per sample (settings that share ``features`` and ``window`` share one pass, each given
that time).
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

# light: the anomaly stage only once a corpus is read
from nab_inputs import frozen_grid_options, load_checked_corpus

if __name__ == "__main__":
    PARSER, OPTIONS = frozen_grid_options(__doc__)

from nab_cv import frozen_grid_report, normalised
from nab_discords import or_ed_grid

from anomaly.nab import FileScore, is_tuning_file
from anomaly.neighbours import NeighbourParams, learning, raise_grid

FEATURES = ("moments", "blocks")
WINDOW = (12, 48)
FACTOR = (1.5, 2.0, 3.0)
REARM = (300, 1000)


def grid() -> dict[str, NeighbourParams]:
    """The declared grid (24 settings)."""
    return {
        f"features={features},window={window},factor={factor},rearm={rearm}": NeighbourParams(
            features=features,  # type: ignore[arg-type]
            window=window,
            factor=factor,
            rearm=rearm,
        )
        for features, window, factor, rearm in itertools.product(FEATURES, WINDOW, FACTOR, REARM)
    }


def split_categories(table: dict[str, FileScore]) -> dict[str, dict[str, float | None]]:
    """Per category with windows: the standard score on its tune files and on its held-out ones."""
    out: dict[str, dict[str, float | None]] = {}
    for category in sorted({n.split("/", 1)[0] for n in table}):
        row: dict[str, float | None] = {}
        for split, tune in (("tune", True), ("held_out", False)):
            mine = [s for n, s in table.items() if n.startswith(category + "/") and is_tuning_file(n) == tune]
            windows = sum(s.windows for s in mine)
            row[split] = normalised(sum(s.raw for s in mine), windows) if windows else None
        if any(v is not None for v in row.values()):
            out[category] = row
    return out


def main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    started = time.perf_counter()
    files = load_checked_corpus(parser, args)
    scored = or_ed_grid(files, grid(), learning, raise_grid)
    out = frozen_grid_report(
        "nab_neighbours",
        files,
        scored,
        bar=("beats_default_by_one", 1.0),
        held_out=args.held_out,
        per_split=split_categories,
    )
    out["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main(PARSER, OPTIONS)
