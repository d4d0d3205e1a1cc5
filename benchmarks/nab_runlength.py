"""Cross-validated NAB score of Bayesian online change-point detection OR-ed with the default: one JSON line.

The part (``anomaly.runlength``, Adams and MacKay 2007) is of a family not tried before here (relative
entropy, discords, re-baselining, multi-scale, residuals, ART, HTM, warm-up profiles, confirmation,
ablation): it asks whether the recent values are better explained by a new distribution than by the old
one. Chosen from the default's largest losses to Numenta HTM (step 1 of the seventy-fifth session's brief):
most are missed windows where the distribution changes without a value leaving the band (a disk that stops
writing, a CPU's bursts that stop, a small level shift), not late detections.

The grid (declared and committed before its first run on any NAB file; 24 settings):

* ``transform``: ``linear`` or ``asinh`` (the standardised value, or its asinh: bursts made logarithmic);
* ``hazard``: 1e-4, 1e-6 or 1e-8 (the prior probability of a change at each sample: how much evidence a
  change needs, about 9, 14 or 18 nats);
* ``delay``: 5 or 20 (a change counts once it has held that many samples);
* ``rearm``: 300 or 1,000 quiet samples before the part raises again.

Fixed before any run, from synthetic series only (stationary noise, a step, a variance drop, spikes, t(3)
noise): ``threshold`` 0.9 (the posterior mass of a change), ``horizon`` 128, ``warmup`` 100. No NAB file was
looked at before the grid was committed.

Cross-validated as ``nab_cv.py`` does (``grid_report``: leave one category out, five folds by name hash; each
fold's pick is chosen on the other folds by raw standard score), against the default alone (``off``). The
brief's rule: adopted only if cross-validation beats the default by at least 0.5 in both schemes
(``beats_default_by_half``), held-out does not drop (``--held-out``), and the GPU-fault evaluation and
``bench_anomaly.py`` stay as they are. ``frozen_on_tune``: the setting (or ``off``) with the best raw standard
score OR-ed on the tune files only; ``--held-out`` adds that setting's and the default's held-out scores, so
held-out is read once, after the choice. Per setting: the part alone, OR-ed on all files and on tune, alerts,
false positives, windows found, the windows it finds that the default misses, and its CPU cost per sample
(``us_per_sample``: settings that share ``hazard`` and ``transform`` share one posterior, stepped once
together, each given that time).
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

from nab_cv import Scored, frozen_grid_report
from nab_discords import or_ed_grid

from anomaly.nab import NabFile
from anomaly.runlength import RunLengthParams, learning, raise_grid

TRANSFORM = ("linear", "asinh")
HAZARD = (1e-4, 1e-6, 1e-8)
DELAY = (5, 20)
REARM = (300, 1000)


def grid() -> dict[str, RunLengthParams]:
    """The declared grid (24 settings)."""
    return {
        f"transform={transform},hazard={hazard},delay={delay},rearm={rearm}": RunLengthParams(
            transform=transform,  # type: ignore[arg-type]
            hazard=hazard,
            delay=delay,
            rearm=rearm,
        )
        for transform, hazard, delay, rearm in itertools.product(TRANSFORM, HAZARD, DELAY, REARM)
    }


def grid_table(files: list[NabFile]) -> Scored:
    """Scores per setting OR-ed with the default (``off``: the default alone), CPU seconds, and details."""
    return or_ed_grid(files, grid(), learning, raise_grid)


def main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    started = time.perf_counter()
    files = load_checked_corpus(parser, args)
    out = frozen_grid_report(
        "nab_runlength", files, grid_table(files), bar=("beats_default_by_half", 0.5), held_out=args.held_out
    )
    out["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main(PARSER, OPTIONS)
