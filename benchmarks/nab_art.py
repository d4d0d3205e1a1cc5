"""Cross-validated NAB score of fuzzy ART window novelty (``anomaly.art``) OR-ed with the default: one line.

The part is of another family than the six tried before (relative entropy, discords, re-baselining,
multi-scale, residuals, surprise/levels): a fuzzy ART network learns the shapes of each series' recent
windows, and a window that resonates with none of them is novel (ARTime's idea, written from the concept).

The grid (declared and committed before its first scored run; 24 settings):

* ``window``: 8 or 32 samples (40 minutes or 2 h 40 at NAB's usual 5-minute step), as 8 block means;
* ``vigilance``: 0.8, 0.9, 0.95 (a new category below it);
* ``margin``: 0 (every new category is novel) or 0.02 (novel only below ``vigilance - margin``: dual
  vigilance);
* ``rearm``: 300 or 1,000 quiet samples before a novel window raises (and after it, the mask).

Fixed before any run: ``blocks`` 8, ``alpha`` 0.001, ``beta`` 0.1, ``warmup`` 300, ``capacity`` 1,000. The
only look at data before the grid was a sanity run on one artificial file (art_daily_jumpsup: alerts and
novel windows counted, not scored).

Cross-validated as ``nab_cv.py`` does (``grid_report``: leave one category out, five folds by name hash; each
fold's pick is chosen on the other folds by raw standard score), against the default alone (``off``). The
brief's rule: it joins the default only if it beats the default in both schemes (``beats_default``); the
project's earlier bar, +1.5 in both, is ``adoptable``. Also per setting: the part alone, its OR-ed score on
all files and on tune, alerts, false positives, windows found, the windows it finds that the default misses,
and its CPU cost per sample (``us_per_sample``: the part alone, every file stepped together; settings that
differ only in ``margin``, ``rearm`` and ``warmup`` learn alike and are stepped once together, each given that
time).
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
from nab_inputs import corpus_parser, load_checked_corpus

# The command line (and its parser, which refuses a missing corpus), read before the heavy imports below
# (numpy, the anomaly stage): ``--help`` and an unknown option answer at once.
if __name__ == "__main__":
    PARSER = corpus_parser(__doc__)
    OPTIONS = PARSER.parse_args()

from nab_cv import grid_report
from nab_discords import or_ed_grid

from anomaly.art import ArtParams, learning, raise_grid

WINDOW = (8, 32)
VIGILANCE = (0.8, 0.9, 0.95)
MARGIN = (0.0, 0.02)
REARM = (300, 1000)


def grid() -> dict[str, ArtParams]:
    """The declared grid (24 settings)."""
    return {
        f"window={window},vigilance={vigilance},margin={margin},rearm={rearm}": ArtParams(
            window=window, vigilance=vigilance, margin=margin, rearm=rearm
        )
        for window, vigilance, margin, rearm in itertools.product(WINDOW, VIGILANCE, MARGIN, REARM)
    }


def main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    started = time.perf_counter()
    files = load_checked_corpus(parser, args)
    table, seconds, detail = or_ed_grid(files, grid(), learning, raise_grid)
    head, settings = grid_report(table, seconds, sum(len(f.series.values) for f in files))
    gains = [scheme["gain"] for scheme in head["cross_validated"].values()]  # type: ignore[attr-defined]
    for label, extra in detail.items():
        settings[label].update(extra)
    print(
        json.dumps(
            {
                "bench": "nab_art",
                **head,
                "beats_default": all(gain > 0 for gain in gains),
                "settings": settings,
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
    )


if __name__ == "__main__":
    main(PARSER, OPTIONS)
