"""NAB error analysis and two post-hoc onset filters aimed at it (nab2 session): one JSON line.

Loss breakdown of the default (standard profile) lives in ``/tmp/nab2/breakdown.py`` (not repository code);
this script holds the two candidates' declared grids, fixed BEFORE their first cross-validated run:

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
import hashlib
import itertools
import json
import sys
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from anomaly.breakout import RangeBreakout
from anomaly.nab import PROFILES, detect_corpus, load_corpus, score_file
from anomaly.novelty import ContextNovelty
from anomaly.recurrence import RecurrenceParams
from anomaly.univariate import DEFAULT_BREAKOUT, DEFAULT_NOVELTY, _grid, score_many
from nab_cv import cross_validate, normalised

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "nab"
RARITY_Q = (0.002, 0.005, 0.01, 0.02, 0.05)
RARITY_HISTORY = (None, 2016)
RARITY_MIN_HISTORY = 300
GATED_M = (1.0, 1.5, 2.0, 3.0)


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


def other_parts(series):
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


def adaptive_onsets(values, stamps, onsets, scores, part, rec=RecurrenceParams()):
    """The adaptive part's announced onsets: recurrence mute (optionally gated), then the rarity mute."""
    periods = (rec.period_seconds, rec.weekly_seconds)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SHARED / "data")
    parser.add_argument("--windows", type=Path, default=SHARED / "labels" / "combined_windows.json")
    parser.add_argument("--candidate", choices=("rarity", "gated"), required=True)
    args = parser.parse_args()
    started = time.perf_counter()
    files = load_corpus(args.data, args.windows)
    series = [f.series for f in files]
    adaptive = score_many(series, breakout=None, recurrence=None, novelty=None)
    others = other_parts(series)
    default = detect_corpus(files)
    table = {}
    for label, part in grid(args.candidate).items():
        table[label] = {}
        for j, f in enumerate(files):
            a = adaptive[j]
            alerts = others[j] | adaptive_onsets(f.series.values, f.series.timestamps, a.raised, a.score, part)
            if part is None and not np.array_equal(alerts, default[f.name]):
                raise SystemExit(f"reconstruction differs from the default on {f.name}")
            table[label][f.name] = score_file(f, alerts, PROFILES["standard"])
    names = [f.name for f in files]
    windows = sum(s.windows for s in table["off"].values())
    all_files = {k: normalised(sum(s.raw for s in t.values()), windows) for k, t in table.items()}
    schemes = {
        "leave_one_category_out": {n: n.split("/", 1)[0] for n in names},
        "five_folds": {n: str(hashlib.sha256(n.encode()).digest()[1] % 5) for n in names},
    }
    cv = {}
    for scheme, folds in schemes.items():
        score, picks = cross_validate(table, folds)
        cv[scheme] = {"score": score, "off": cross_validate({"off": table["off"]}, folds)[0], "picks": picks}
    detail = {
        k: {"detected": sum(s.detected for s in t.values()), "alerts": sum(s.alerts for s in t.values())}
        for k, t in table.items()
    }
    print(json.dumps({"bench": "nab_errors", "candidate": args.candidate, "cross_validated": cv,
                      "all_files": all_files, "detail": detail,
                      "seconds": round(time.perf_counter() - started, 1)}))


if __name__ == "__main__":
    main()
