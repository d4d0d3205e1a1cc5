"""Cross-validated NAB score of per-series settings chosen from each series' warm-up: one JSON line.

The candidate (``anomaly.warmupprofile``, opt-in) is the default detector itself, nothing added: a series'
first ``samples`` values are summarised (``warmup_profile``), and a noisy warm-up (``roughness``, the MAD of
the first differences over the MAD of the values, at least a threshold; white noise gives 1.41, a smooth or
trending series well under 1) re-arms the adaptive alerts after ``resolve_after`` quiet samples instead of
the default's 24, so that a noisy series' excursions that come and go raise once. The other series keep the
default. Before the profile is complete the output is the default's (``score_profiled``).

Shaped on the tune split only (``anomaly.nab.is_tuning_file``; 23 files, 33 windows; default 78.77, 94
alerts, 52 FPs, 31 windows), in scratch scripts (not committed). What was looked at, all on tune:

* per file, the warm-up statistics the brief names (excess kurtosis, share beyond 3 MADs, lag-1
  autocorrelation, roughness) over the first 30 (the warm-up) and 150 samples;
* per file, the raw standard score and FPs at k 6 / 11 / 14, resolve_after 50 / 100 / 200 / 300, and the
  seasonal baselines off (each for every file). The band (``k``) barely moves anything (tune raw 19.20 /
  19.00 / 17.43 against 18.99): the streaming tail quantile sets the width on the heavy-tailed series
  (``tail_k`` x tail > k), so a wider ``k`` for a heavy-tailed warm-up has nothing to act on. The seasonal
  part cannot be judged from a warm-up of 30 samples (2.5 hours at 5 minutes; 150 are 12.5 hours), and off
  for every file it lost three windows (tune raw 14.27). A slower re-arm cuts FPs on some files and loses
  windows on others (resolve_after 100 for every file: raw 14.32, 27 windows, 32 FPs); on tune the files
  that gained had a rough warm-up (ec2_cpu_utilization_77c1ca 15.0, exchange-4_cpc 2.19,
  ec2_network_in_5abac7 1.36) and those that lost a smooth one (TravelTime_387 0.26, grok_asg_anomaly
  1.00; art_increase_spike_density 0: its warm-up is flat, so its MAD is 0 and roughness is 0 by definition);
* the eight rules of the grid below, on tune (standard, alerts / FPs / windows): samples 30, roughness 1.2,
  re-arm 100: 80.95 (75 / 37 / 31), 200: **81.42** (70 / 33 / 31); roughness 1.4: 80.63 / 80.61; samples 150:
  79.78 to 79.97. No rule lost a tune window. ``ProfileRule()`` is tune's best (samples 30, roughness 1.2,
  re-arm 200), frozen before the cross-validated run; ``--held-out`` scores it on held-out once.

The grid (declared and committed before its first cross-validated run; 8 rules and the default alone):
samples 30 / 150 x roughness 1.2 / 1.4 x resolve_after 100 / 200.

Cross-validation as ``nab_cv.py``'s ``grid_report`` (leave one category out, five folds by name hash; each
fold's rule chosen on the other folds by raw standard score), against the default alone (``off``); the
project's bar is +1.5 in both schemes (``adoptable``). Per setting also: the score over all files (in sample,
flattered), alerts, FPs, windows found, windows gained or lost against the default, the series the rule
changed, and the cost per sample (the whole ``score_profiled`` run).
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


def _options() -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """The command line (and its parser, which refuses a missing corpus), read before the heavy imports
    below (numpy, the anomaly stage): ``--help`` and an unknown option answer at once."""
    parser = corpus_parser(__doc__)
    parser.add_argument(
        "--held-out",
        action="store_true",
        help="score ProfileRule() (frozen on tune) and the default per split instead of the grid",
    )
    return parser, parser.parse_args()


if __name__ == "__main__":
    PARSER, OPTIONS = _options()

import numpy as np  # noqa: E402 - imported after the command line is read
import numpy.typing as npt  # noqa: E402
from nab_rebaseline import print_report  # noqa: E402

from anomaly.nab import NabFile, is_tuning_file, score_corpus, summarise  # noqa: E402
from anomaly.univariate import Settings, score_together  # noqa: E402
from anomaly.warmupprofile import ProfileRule, choose_settings, score_profiled  # noqa: E402

SAMPLES = (30, 150)
ROUGHNESS = (1.2, 1.4)
RESOLVE_AFTER = (100, 200)


def label(rule: ProfileRule) -> str:
    """How a rule is named in the report."""
    return f"samples={rule.samples},roughness={rule.roughness},resolve_after={rule.resolve_after}"


def grid() -> dict[str, ProfileRule | None]:
    """The declared grid, plus the default alone (``off``)."""
    out: dict[str, ProfileRule | None] = {"off": None}
    for samples, roughness, resolve_after in itertools.product(SAMPLES, ROUGHNESS, RESOLVE_AFTER):
        rule = ProfileRule(samples=samples, roughness=roughness, resolve_after=resolve_after)
        out[label(rule)] = rule
    return out


def detect(files: list[NabFile], rule: ProfileRule | None) -> dict[str, npt.NDArray[np.bool_]]:
    """Alert onsets per file: the default's (``rule`` None) or with per-series settings from ``rule``."""
    series = [f.series for f in files]
    scored = score_together(series) if rule is None else score_profiled(series, rule)
    return {f.name: s.raised for f, s in zip(files, scored, strict=True)}


def changed_series(files: list[NabFile], rule: ProfileRule) -> list[str]:
    """The files whose warm-up made ``rule`` choose other settings than the default."""
    chosen = choose_settings([f.series for f in files], rule, Settings())
    return [f.name.split("/")[1] for f, c in zip(files, chosen, strict=True) if c != Settings()]


def split_scores(files: list[NabFile], alerts: dict[str, npt.NDArray[np.bool_]]) -> dict[str, object]:
    """Standard (low FP, low FN) scores, alerts, FPs and windows found on tune, held-out and all files, and
    the standard score per split and category."""
    per_file = score_corpus(files, alerts)
    groups = {
        "tune": [f.name for f in files if is_tuning_file(f.name)],
        "held_out": [f.name for f in files if not is_tuning_file(f.name)],
        "all": [f.name for f in files],
    }
    for split in ("tune", "held_out"):
        for category in sorted({f.category for f in files}):
            groups[f"{split}/{category}"] = [n for n in groups[split] if n.split("/")[0] == category]
    out: dict[str, object] = {}
    for group, names in groups.items():
        summary = summarise(per_file, names)
        parts = [per_file[n]["standard"] for n in names]
        out[group] = {
            "scores": {k: None if v is None else round(v, 2) for k, v in summary.scores.items()},
            "alerts": sum(p.alerts for p in parts),
            "false_positives": sum(p.alerts - p.alerts_in_windows for p in parts),
            "windows_found": f"{sum(p.detected for p in parts)} of {summary.windows}",
        }
    return out


def held_out(files: list[NabFile], started: float) -> None:
    """The one look at held-out: the default and ``ProfileRule()`` (frozen on tune) per split."""
    frozen = ProfileRule()
    report = {
        "bench": "nab_adaptive_held_out",
        "frozen": label(frozen),
        "changed_series": changed_series(files, frozen),
        "default": split_scores(files, detect(files, None)),
        "profiled": split_scores(files, detect(files, frozen)),
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(report))


def main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    started = time.perf_counter()
    files = load_checked_corpus(parser, args)
    if args.held_out:
        held_out(files, started)
        return
    alerts: dict[str, dict[str, npt.NDArray[np.bool_]]] = {}
    seconds: dict[str, float] = {}
    rules = grid()
    for name, rule in rules.items():
        tick = time.perf_counter()
        alerts[name] = detect(files, rule)
        seconds[name] = time.perf_counter() - tick
    changed = {name: changed_series(files, rule) for name, rule in rules.items() if rule is not None}
    print_report(files, alerts, seconds, "nab_adaptive", started, extra={"changed_series": changed})


if __name__ == "__main__":
    main(PARSER, OPTIONS)
