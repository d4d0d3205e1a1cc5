"""Cross-validated NAB score of shift-aware re-baselining in the adaptive thresholds: one JSON line.

The fourteenth session's breakdown (``nab_errors.py --candidate breakdown``) named one miss as "after a level
shift, the default's band is still wide" (rds_cpu_utilization_cc0c53's second window): winsorised updates make
the baseline catch up with a persistent shift slowly, and its error scale widens meanwhile. The candidate
(``ThresholdParams(shift_run=n, ...)``, ``anomaly.thresholds``; off by default) resets a series' baseline when
its value has been beyond the band on one side for ``n`` samples in a row: the level to the median (or mean)
of those samples, the seasonal buckets by the same offset, the error scales to their spread. With
``shift_separation`` it resets only when the run's centre is that many of its own spreads from the level.

Shaped on the tune split only (``anomaly.nab.is_tuning_file``): there, without a separation test, runs of 6 or
12 inside bursts (ec2_disk_write_bytes_1ef3de, ec2_network_in_5abac7) reset the level to a burst's mean and
raised when the burst ended (tune 78.77 -> 75.3 to 76.8); a separation of 2 or 4 spreads stopped those (the
runs there sat 0.2 to 0.4 spreads from the level; real shifts 5 to 50). ``shift_floor`` changed nothing there
and is not searched.

The grid (declared and committed before the first cross-validated run; 12 settings and the default alone):
``shift_run`` 6 / 12 / 24 x ``shift_target`` median / mean x ``shift_separation`` 0 / 3.

Cross-validation as ``nab_cv.py`` (its ``cross_validate`` and ``fold_schemes``): leave one category out and
five folds by name hash; in each fold the setting with the best raw standard score on the other folds is
scored on it; the out-of-fold raw scores are normalised over all files. The project's bar: >= 1.5 points
over the default (71.95) in both schemes. Also printed per setting: the score on all files (flattered: it is
the best of 12 chosen on the files it is scored on), alerts, false positives, windows found, and which windows
it finds or loses against the default (file and window number), and its cost per sample.
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

import numpy as np
import numpy.typing as npt
from nab_cv import found_windows, grid_report

from anomaly.nab import PROFILES, FileScore, NabFile, detect_corpus, score_file
from anomaly.thresholds import ShiftTarget, ThresholdParams

RUNS = (6, 12, 24)
TARGETS: tuple[ShiftTarget, ...] = ("median", "mean")
SEPARATIONS = (0.0, 3.0)


def grid() -> dict[str, ThresholdParams | None]:
    """The declared grid, plus the default alone (``off``)."""
    out: dict[str, ThresholdParams | None] = {"off": None}
    for run, target, separation in itertools.product(RUNS, TARGETS, SEPARATIONS):
        out[f"run={run},target={target},separation={separation:g}"] = ThresholdParams.from_config(
            shift_run=run, shift_target=target, shift_separation=separation
        )
    return out


def main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    report_grid(parser, args, grid(), "nab_rebaseline")


def report_grid(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    settings_grid: dict[str, ThresholdParams | None],
    bench: str,
) -> None:
    """Score every setting of a grid of threshold parameters (``off``: the default) and print the report:
    the cross-validated scores, each setting's totals and the windows it finds or loses against ``off``."""
    started = time.perf_counter()
    files = load_checked_corpus(parser, args)
    alerts: dict[str, dict[str, npt.NDArray[np.bool_]]] = {}
    seconds: dict[str, float] = {}
    for label, params in settings_grid.items():
        tick = time.perf_counter()
        alerts[label] = detect_corpus(files, params)
        seconds[label] = time.perf_counter() - tick
    print_report(files, alerts, seconds, bench, started)


def print_report(
    files: list[NabFile],
    alerts: dict[str, dict[str, npt.NDArray[np.bool_]]],
    seconds: dict[str, float],
    bench: str,
    started: float,
    extra: dict[str, object] | None = None,
) -> None:
    """The report of a grid whose alerts (per setting, then file; ``off``: the default) and seconds per
    setting are known: one JSON line (``extra``'s keys added to it)."""
    samples = sum(len(f.series.values) for f in files)
    table: dict[str, dict[str, FileScore]] = {}
    found: dict[str, dict[str, dict[int, bool]]] = {}
    for label, per_file in alerts.items():
        table[label] = {f.name: score_file(f, per_file[f.name], PROFILES["standard"]) for f in files}
        found[label] = {f.name: found_windows(f, per_file[f.name]) for f in files}
    report, settings = grid_report(table, seconds, samples)

    def changed(label: str, now: bool) -> list[str]:
        return [
            f"{name.split('/')[1]}#{w}"
            for name, per in found[label].items()
            for w, hit in per.items()
            if hit == now and found["off"][name][w] != now
        ]

    for label, detail in settings.items():
        detail["windows_gained"] = changed(label, True)
        detail["windows_lost"] = changed(label, False)
    missed = [
        f"{name.split('/')[1]}#{w}" for name, per in found["off"].items() for w, hit in per.items() if not hit
    ]
    report |= {
        "settings": settings,
        "missed_by_default": missed,
        **(extra or {}),
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps({"bench": bench, **report}))


if __name__ == "__main__":
    main(PARSER, OPTIONS)
