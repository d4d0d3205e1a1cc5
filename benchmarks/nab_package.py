"""Cross-validated NAB score of one package of opt-in parts OR-ed with the default: one JSON line.

Single one-window fixes cannot clear the project's 1.5-point bar alone (a window is ~1.45 points), so this
package aims three parts at different named misses of the fourteenth session's breakdown
(``nab_errors.py --candidate breakdown``) at once:

* the multi-scale level breakout (``anomaly.levels``): level shifts inside a wide raw range
  (ec2_cpu_utilization_53ea38's second window on tune; rds_cpu_utilization_cc0c53 is the held-out one named);
* burst silence (``anomaly.silence``): a series whose excursions recur at a steady pace goes quiet for
  ``factor`` x its typical gap (ec2_disk_write_bytes_c0d644, named from the breakdown; shaped on tune only);
* a same-direction recurrence mute (``RecurrenceParams(same_direction=True)``): an onset is muted as routine
  only if the earlier onset it matches was on the same side of the baseline (speed_7578 is the named miss;
  shaped on tune only: one alert more there).

No part for exchange-2_cpc (a window that opens at the end of probation): on its tune file the level part
with an earlier warm-up (168 or 100 samples instead of 300) raised inside probation and then stayed re-armed
past the window, and no other mechanism looked at found it.

The grid (declared and committed before the package's first cross-validated run; 12 settings and the
default alone):

* levels: scales (12) or (12, 48, 192), margin 0.05, rearm 1,000. The margin and re-arm are the twelfth
  session's best on all files, so fixing them carries that session's look at all 41 files into this
  estimate (it can only flatter the package);
* silence: off, factor 2, factor 4 (``bursts`` 5, ``spread`` 2, ``floor`` 12 fixed on tune);
* same-direction mute: off, on.

Cross-validation as ``nab_cv.py`` (its ``cross_validate`` and ``fold_schemes``): leave one category out and
five folds by name hash; in each fold the setting with the best raw standard score on the other folds is
scored on it; the out-of-fold raw scores are normalised over all files. The project's bar: >= 1.5 points
over the default (71.95) in both schemes. Also printed per setting: score on all files, alerts, false
positives, windows found, and the cost per sample of the package against the default alone.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from dataclasses import dataclass
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

from nab_cv import found_windows, grid_report

from anomaly.levels import LevelParams
from anomaly.nab import PROFILES, FileScore, NabFile, detect_corpus, score_file
from anomaly.recurrence import RecurrenceParams
from anomaly.silence import SilenceParams
from anomaly.steps import BoolArray

LEVEL_SCALES = ((12,), (12, 48, 192))
LEVEL_MARGIN = 0.05
LEVEL_REARM = 1000
SILENCE_FACTOR = (None, 2.0, 4.0)
SAME_DIRECTION = (False, True)
NAMED = {
    "realAWSCloudwatch/ec2_cpu_utilization_53ea38.csv": "recurrence mute (levels finds it)",
    "realTraffic/speed_7578.csv": "recurrence mute",
    "realAWSCloudwatch/rds_cpu_utilization_cc0c53.csv": "band wide after a level shift",
    "realAdExchange/exchange-2_cpc_results.csv": "end of probation",
    "realAWSCloudwatch/ec2_disk_write_bytes_c0d644.csv": "burst series goes silent",
}


@dataclass(frozen=True)
class Package:
    """One setting of the package."""

    levels: LevelParams
    silence: SilenceParams | None
    same_direction: bool


def grid() -> dict[str, Package | None]:
    """The declared grid, plus the default alone (``off``)."""
    out: dict[str, Package | None] = {"off": None}
    for scales, factor, same in itertools.product(LEVEL_SCALES, SILENCE_FACTOR, SAME_DIRECTION):
        label = f"scales={'/'.join(map(str, scales))},silence={factor or 'off'},same_direction={same}"
        out[label] = Package(
            LevelParams(scales=scales, margin=LEVEL_MARGIN, rearm=LEVEL_REARM),
            SilenceParams(factor=factor) if factor else None,
            same,
        )
    return out


def detect(files: list[NabFile], package: Package | None) -> dict[str, BoolArray]:
    """The default's alerts, with the package joined (none: the default alone)."""
    if package is None:
        return detect_corpus(files)
    return detect_corpus(
        files,
        recurrence=RecurrenceParams(same_direction=package.same_direction),
        levels=package.levels,
        silence=package.silence,
    )


def main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    started = time.perf_counter()
    files = load_checked_corpus(parser, args)
    samples = sum(len(f.series.values) for f in files)
    table: dict[str, dict[str, FileScore]] = {}
    named: dict[str, dict[str, list[bool]]] = {}
    seconds: dict[str, float] = {}
    for label, package in grid().items():
        tick = time.perf_counter()
        alerts = detect(files, package)
        seconds[label] = time.perf_counter() - tick
        table[label] = {f.name: score_file(f, alerts[f.name], PROFILES["standard"]) for f in files}
        named[label] = {
            f.name: list(found_windows(f, alerts[f.name]).values()) for f in files if f.name in NAMED
        }
    report, settings = grid_report(table, seconds, samples)
    for label, detail in settings.items():
        detail["named_found"] = {n.split("/")[1]: found for n, found in named[label].items()}
    report |= {
        "settings": settings,
        "named_misses": NAMED,
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps({"bench": "nab_package", **report}))


if __name__ == "__main__":
    main(PARSER, OPTIONS)
