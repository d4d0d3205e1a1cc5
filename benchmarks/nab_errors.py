"""NAB error analysis of the default detector and two onset filters aimed at it: one JSON line.

``--candidate breakdown`` splits the default's lost points (standard profile, normalised over all 41 files,
1 raw point = 100 / (2 x 64) = 0.78) per category and split into missed windows (2 raw each), false positives
(their cost) and lateness (1 - the reward of a found window's first detection: what a first detection at the
window's left edge would add; ``late_at_label`` is what one exactly at the labelled time would still lose),
with each published leader's gain per group (``benchmarks/data``: HTM, CAD OSE, ARTime). The default
chooses nothing, so its out-of-fold breakdown under ``nab_cv.py``'s folds is the same as over all files.

The two candidates' grids were declared (and committed) before their first cross-validated run:

* ``rarity`` (aimed at false positives, 8.1 of the default's 28.0 lost points, 78 of 98 FPs from the
  adaptive part): an adaptive onset is muted when its value is not rare in the series' own history, i.e. when
  ``min(share of earlier values <= x, share of earlier values >= x) > q`` over all earlier samples or the
  last ``history`` samples; applied only once 300 samples are known. Breakout and novelty alerts are kept
  as they are. Grid: q 0.002 / 0.005 / 0.01 / 0.02 / 0.05 x history all / 2016 (a week of 5-minute samples).
* ``gated`` (aimed at missed windows the recurrence mute causes: speed_7578 and ec2_cpu_utilization_53ea38):
  the daily/weekly recurrence mute applies only when the onset's adaptive score is at most ``m`` x the
  largest onset score of the earlier onsets it matched. Grid: m 1.0 / 1.5 / 2.0 / 3.0.

Both are causal (an onset's decision reads only earlier samples). Cross-validation as ``nab_cv.py``: leave
one category out and five folds by name hash; the part off is in every grid.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

# light: the anomaly stage only once a corpus is read
from nab_inputs import WINDOWS, corpus_parser, default_corpus, load_checked_corpus


def _options() -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """The command line (and its parser, which refuses a missing corpus), read before the heavy imports
    below (numpy, the anomaly stage): ``--help`` and an unknown option answer at once."""
    parser = corpus_parser(__doc__)
    parser.add_argument(
        "--labels", type=Path, help="the corpus's combined_labels.json (default: beside --windows)"
    )
    parser.add_argument("--candidate", choices=("breakdown", "rarity", "gated"), required=True)
    return parser, parser.parse_args()


if __name__ == "__main__":
    PARSER, OPTIONS = _options()

import numpy as np  # noqa: E402 - imported after the command line is read
from nab_cv import cross_validate, fold_schemes, normalised  # noqa: E402

from anomaly.breakout import RangeBreakout  # noqa: E402
from anomaly.nab import (  # noqa: E402
    PROFILES,
    FileScore,
    NabFile,
    _epoch,
    detect_corpus,
    is_tuning_file,
    probation_length,
    scaled_sigmoid,
    score_file,
)
from anomaly.novelty import ContextNovelty  # noqa: E402
from anomaly.recurrence import RecurrenceParams  # noqa: E402
from anomaly.steps import BoolArray  # noqa: E402
from anomaly.thresholds import FloatArray  # noqa: E402
from anomaly.univariate import DEFAULT_BREAKOUT, DEFAULT_NOVELTY, Series, _grid, score_many  # noqa: E402

RARITY_Q = (0.002, 0.005, 0.01, 0.02, 0.05)
RARITY_HISTORY = (None, 2016)
RARITY_MIN_HISTORY = 300
GATED_M = (1.0, 1.5, 2.0, 3.0)
RECURRENCE = RecurrenceParams()  # the default's


@dataclass(frozen=True)
class Rarity:
    q: float
    history: int | None


@dataclass(frozen=True)
class Gated:
    m: float


def grid(kind: str) -> dict[str, Rarity | Gated | None]:
    out: dict[str, Rarity | Gated | None] = {"off": None}
    if kind == "rarity":
        for q, h in itertools.product(RARITY_Q, RARITY_HISTORY):
            out[f"q={q},history={h or 'all'}"] = Rarity(q, h)
    else:
        for m in GATED_M:
            out[f"m={m}"] = Gated(m)
    return out


def other_parts(series: list[Series]) -> list[BoolArray]:
    """Alerts of the range breakout and context novelty parts alone (as score_many steps them)."""
    lengths = np.array([len(s.values) for s in series], dtype=np.int64)
    values, _ = _grid(series, lengths)
    ranges, contexts = RangeBreakout(DEFAULT_BREAKOUT, capacity=len(series)), ContextNovelty(DEFAULT_NOVELTY)
    raised = np.zeros(values.shape, np.bool_)
    ids = np.arange(len(series), dtype=np.int64)
    for i in range(len(values)):
        active = ids[lengths > i]
        x = values[i, active]
        raised[i, active] = ranges.update(active, x).raised | contexts.update(active, x).raised
    return [raised[: lengths[j], j] for j in range(len(series))]


def adaptive_onsets(
    values: FloatArray,
    stamps: FloatArray,
    onsets: BoolArray,
    scores: FloatArray,
    part: Rarity | Gated | None,
    rec: RecurrenceParams = RECURRENCE,
) -> BoolArray:
    """The adaptive part's announced onsets: recurrence mute (optionally gated), then the rarity mute."""
    periods = tuple(p for p in (rec.period_seconds, rec.weekly_seconds) if p is not None)
    horizon = max(periods) + rec.tolerance_seconds
    seen: deque[tuple[float, float]] = deque()
    kept = np.zeros(len(values), np.bool_)
    for i in np.flatnonzero(onsets):
        t, s = float(stamps[i]), float(scores[i])
        while seen and seen[0][0] < t - horizon:
            seen.popleft()
        matched = [ms for mt, ms in seen for p in periods if abs(t - p - mt) <= rec.tolerance_seconds]
        seen.append((t, s))
        if matched and not (isinstance(part, Gated) and s > part.m * max(matched)):
            continue
        if isinstance(part, Rarity) and i >= RARITY_MIN_HISTORY:
            past = values[max(0, i - part.history) if part.history else 0 : i]
            past = past[np.isfinite(past)]
            x = values[i]
            if len(past) and min(np.mean(past <= x), np.mean(past >= x)) > part.q:
                continue
        kept[i] = True
    return kept


LEADERS = {
    "htm": "nab_numenta_htm_standard.csv",
    "cad_ose": "nab_context_ose_standard.csv",
    "artime": "nab_artime_standard.csv",
}


def leader_scores(name: str) -> dict[str, float]:
    """File name -> a published detector's raw standard score (``benchmarks/data``)."""
    path = Path(__file__).resolve().parent / "data" / LEADERS[name]
    lines = [line for line in path.read_text().splitlines() if line and not line.startswith("#")]
    return {row["file"]: float(row["raw_score"]) for row in csv.DictReader(lines)}


def reward(i: int, left: int, right: int) -> float:
    """NAB's standard reward of a first detection at ``i`` in the window ``[left, right]``."""
    return scaled_sigmoid(-(right - i + 1) / (right - left + 1)) / scaled_sigmoid(-1.0)


def breakdown(files: list[NabFile], labels_file: Path) -> dict[str, object]:
    """The default's lost points per category and split, and the leaders' gains over it."""
    labels = json.loads(labels_file.read_text())
    alerts = detect_corpus(files)
    leaders = {name: leader_scores(name) for name in LEADERS}
    per_file: dict[str, dict[str, float]] = {}
    for f in files:
        probation, raised = probation_length(len(f.series.values)), alerts[f.name]
        marks = [int(np.searchsorted(f.series.timestamps, _epoch(t))) for t in labels[f.name]]
        row: dict[str, float] = {"windows": 0, "missed": 0, "late": 0.0, "late_at_label": 0.0}
        for left, right in f.windows:
            if right < probation:
                continue
            row["windows"] += 1
            hits = [i for i in np.flatnonzero(raised[left : right + 1]) + left if i >= probation]
            if not hits:
                row["missed"] += 1
                continue
            at = next((m for m in marks if left <= m <= right), (left + right) // 2)
            row["late"] += 1 - reward(int(hits[0]), left, right)
            row["late_at_label"] += 1 - reward(at, left, right)
        scored = score_file(f, raised, PROFILES["standard"])
        row.update(
            raw=scored.raw, fp=scored.alerts - scored.alerts_in_windows, fp_cost=-scored.false_positive_cost
        )
        row.update({name: leaders[name][f.name] for name in LEADERS})
        per_file[f.name] = row
    point = 100.0 / (2 * sum(r["windows"] for r in per_file.values()))

    def group(names: list[str]) -> dict[str, float | None]:
        rows = [per_file[n] for n in names]
        total = int(sum(r["windows"] for r in rows))
        out: dict[str, float | None] = {
            "files": len(rows),
            "windows": total,
            "missed_windows": sum(r["missed"] for r in rows),
        }
        out["missed_points"] = round(2 * sum(r["missed"] for r in rows) * point, 2)
        out["late_points"] = round(sum(r["late"] for r in rows) * point, 2)
        out["late_at_label_points"] = round(sum(r["late_at_label"] for r in rows) * point, 2)
        out["false_positives"] = sum(r["fp"] for r in rows)
        out["fp_points"] = round(sum(r["fp_cost"] for r in rows) * point, 2)
        out["score"] = normalised(sum(r["raw"] for r in rows), total) if total else None
        for name in LEADERS:
            out[f"{name}_gain_points"] = round(sum(r[name] - r["raw"] for r in rows) * point, 2)
        return out

    names = sorted(per_file)
    groups = {"all": group(names)}
    for category in sorted({n.split("/")[0] for n in names}):
        chosen = [n for n in names if n.startswith(category + "/")]
        groups[category] = group(chosen)
        for split, tune in (("tune", True), ("held_out", False)):
            groups[f"{category}/{split}"] = group([n for n in chosen if is_tuning_file(n) == tune])
    folds = fold_schemes(names)["five_folds"]  # nab_cv.py's five folds by name hash
    for fold in range(5):
        groups[f"fold{fold}"] = group([n for n in names if folds[n] == str(fold)])
    return {
        "bench": "nab_errors",
        "candidate": "breakdown",
        "point_per_raw": round(point, 4),
        "groups": groups,
    }


def main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    started = time.perf_counter()
    files = load_checked_corpus(parser, args)
    if args.candidate == "breakdown":
        corpus = default_corpus()  # found: load_checked_corpus refused the run otherwise
        windows = args.windows or (corpus / WINDOWS if corpus is not None else Path(WINDOWS))
        labels = args.labels or windows.with_name("combined_labels.json")
        if not labels.is_file():
            parser.error(f"--labels {labels}: no such file (the NAB corpus's labels/combined_labels.json)")
        print(json.dumps(breakdown(files, labels)))
        return
    series = [f.series for f in files]
    adaptive = score_many(series, breakout=None, recurrence=None, novelty=None)
    others = other_parts(series)
    default = detect_corpus(files)
    table: dict[str, dict[str, FileScore]] = {}
    for label, part in grid(args.candidate).items():
        table[label] = {}
        for j, f in enumerate(files):
            a = adaptive[j]
            alerts = others[j] | adaptive_onsets(
                f.series.values, f.series.timestamps, a.raised, a.score, part
            )
            if part is None and not np.array_equal(alerts, default[f.name]):
                raise SystemExit(f"reconstruction differs from the default on {f.name}")
            table[label][f.name] = score_file(f, alerts, PROFILES["standard"])
    names = [f.name for f in files]
    windows = sum(s.windows for s in table["off"].values())
    all_files = {k: normalised(sum(s.raw for s in t.values()), windows) for k, t in table.items()}
    schemes = fold_schemes(names)
    cv = {}
    for scheme, folds in schemes.items():
        score, picks = cross_validate(table, folds)
        cv[scheme] = {"score": score, "off": cross_validate({"off": table["off"]}, folds)[0], "picks": picks}
    detail = {
        k: {"detected": sum(s.detected for s in t.values()), "alerts": sum(s.alerts for s in t.values())}
        for k, t in table.items()
    }
    print(
        json.dumps(
            {
                "bench": "nab_errors",
                "candidate": args.candidate,
                "cross_validated": cv,
                "all_files": all_files,
                "detail": detail,
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
    )


if __name__ == "__main__":
    main(PARSER, OPTIONS)
