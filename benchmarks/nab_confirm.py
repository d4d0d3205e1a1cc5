"""Cross-validated NAB score of confirming the default's alerts instead of adding detections: one JSON line.

Issue 4's default loses 8.13 of its 28.05 points (standard, all 41 files) to 98 false alerts (the fourteenth
session's breakdown); a window is worth about 17 of them. The candidates here add no detector: they take the
default's own output (its onsets and its reported score, ``score_together``) and decide, causally, whether and
when each of its alert episodes is sent. An episode runs from an onset until the next onset or until the
score has been at most 1 for ``QUIET`` samples (the default's re-arm). Nothing is shaped on any file: the grid
below was declared and committed before the harness first ran on the corpus.

* ``confirm(p, g)``: an episode is sent at its first sample where the score reached ``g`` ("the anomaly
  grew"), or where it has been above 1 for ``p`` samples in a row ("it persisted"); an episode that does
  neither before it ends is not sent. ``p`` 1 is the default. Grid: p 2 / 3 / 6 x g 1.5 / 3 / never.
* ``budget(W, b)``: a per-series false-alarm budget learnt online from the series' own alert rate. An onset
  with fewer than ``b`` alerts sent in the ``W`` samples before it is sent at once; otherwise the episode is
  sent only at its first sample whose score exceeds the largest score of those ``W`` samples (it must be
  worse than anything the series did lately). Grid: W 288 / 2,016 (a day / a week at 5 minutes) x b 1 / 2.
* ``vote(k, L)`` (declared and committed after the two grids above had run, before its own first run): the
  default's episode is sent at its first sample where at least ``k`` of three views of the series score above
  1 somewhere in the last ``L`` samples (that sample included): the default itself, the default with its
  seasonal baselines off (the level model only), and the default with a baseline five times faster (``alpha``
  0.05 instead of 0.01: about 20 samples of memory instead of 100). Each view is the whole default detector
  (its breakout, recurrence mute and novelty parts included) run with that one setting changed. Grid: k 2 x
  L 0 / 12 / 48, and k 3 x L 12 / 48.

Cross-validation as ``nab_cv.py``'s ``grid_report`` (leave one category out, five folds by name hash; each
fold's setting chosen on the other folds), against the default alone (``off``); the project's bar is +1.5 in
both schemes. ``--held-out`` scores the setting best on the tune split (chosen there, frozen) and the default
per split: the one look at held-out. ``--timing`` reports where the default's first detections fall in their
windows (NAB rewards the earliest and counts only the first): the points a faster-reacting part could add at
most, by moving every late first detection to the window's label (its centre) or to its left edge.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

# light: the anomaly stage only once a corpus is read
from nab_inputs import corpus_parser, load_checked_corpus

QUIET = 24  # the default's resolve_after: an episode ends after this many samples at most 1
CONFIRM_P = (2, 3, 6)
CONFIRM_G = (1.5, 3.0, math.inf)
BUDGET_W = (288, 2016)
BUDGET_B = (1, 2)
VOTE_KL = ((2, 0), (2, 12), (2, 48), (3, 12), (3, 48))
VIEW_CHANGES: tuple[dict[str, object], ...] = ({"seasonality": False}, {"alpha": 0.05})


def _options() -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    """The command line, read before the heavy imports below: ``--help`` answers at once."""
    parser = corpus_parser(__doc__)
    parser.add_argument(
        "--held-out",
        action="store_true",
        help="score the setting best on tune (frozen) and the default per split instead of the grid",
    )
    parser.add_argument("--timing", action="store_true", help="where the default's first detections fall")
    return parser, parser.parse_args()


if __name__ == "__main__":
    PARSER, OPTIONS = _options()

import numpy as np  # noqa: E402 - imported after the command line is read
import numpy.typing as npt  # noqa: E402
from nab_adaptive import split_scores  # noqa: E402
from nab_cv import normalised  # noqa: E402
from nab_rebaseline import print_report  # noqa: E402

from anomaly.nab import (  # noqa: E402
    PROFILES,
    NabFile,
    is_tuning_file,
    probation_length,
    scaled_sigmoid,
    score_file,
)
from anomaly.univariate import DEFAULT_PARAMS, ScoredSeries, Settings, score_together  # noqa: E402

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]
Rule = tuple[str, float, float]  # ("confirm", p, g), ("budget", W, b) or ("vote", k, L)


def grid() -> dict[str, Rule | None]:
    """The declared grid, plus the default alone (``off``)."""
    out: dict[str, Rule | None] = {"off": None}
    for p, g in itertools.product(CONFIRM_P, CONFIRM_G):
        out[f"confirm,p={p},g={g}"] = ("confirm", p, g)
    for w, b in itertools.product(BUDGET_W, BUDGET_B):
        out[f"budget,W={w},b={b}"] = ("budget", w, b)
    for k, lookback in VOTE_KL:
        out[f"vote,k={k},L={lookback}"] = ("vote", k, lookback)
    return out


def episodes(raised: BoolArray, score: FloatArray) -> list[tuple[int, int]]:
    """Each alert episode as ``[onset, end)``: until the next onset or ``QUIET`` samples at most 1."""
    onsets = np.flatnonzero(raised).tolist()
    out: list[tuple[int, int]] = []
    for k, t in enumerate(onsets):
        stop = onsets[k + 1] if k + 1 < len(onsets) else len(score)
        quiet, i = 0, t + 1
        while i < stop:
            quiet = 0 if score[i] > 1.0 else quiet + 1
            if quiet >= QUIET:
                break
            i += 1
        out.append((t, i))
    return out


def confirm(raised: BoolArray, score: FloatArray, p: int, g: float) -> BoolArray:
    """``confirm(p, g)``: each episode sent where its score reached ``g`` or stayed above 1 ``p`` samples."""
    sent = np.zeros_like(raised)
    for t, end in episodes(raised, score):
        run = 0
        for s in range(t, end):
            above = s == t or score[s] > 1.0  # the onset raised: it counts as above 1
            run = run + 1 if above else 0
            if score[s] >= g or run >= p:
                sent[s] = True
                break
    return sent


def budget(raised: BoolArray, score: FloatArray, w: int, b: int) -> BoolArray:
    """``budget(W, b)``: an onset after ``b`` alerts sent in the last ``W`` samples must beat their scores."""
    sent = np.zeros_like(raised)
    times: list[int] = []
    for t, end in episodes(raised, score):
        if sum(1 for s in times if s > t - w) < b:
            sent[t] = True
            times.append(t)
            continue
        bar = float(np.max(score[max(0, t - w) : t]))
        for s in range(t, end):
            if score[s] > bar:
                sent[s] = True
                times.append(s)
                break
    return sent


def vote(raised: BoolArray, score: FloatArray, others: list[FloatArray], k: int, lookback: int) -> BoolArray:
    """``vote(k, L)``: each episode sent where ``k`` of the views (the default's ``score`` and ``others``)
    scored above 1 in the last ``lookback`` samples."""
    sent = np.zeros_like(raised)
    views = [score, *others]
    for t, end in episodes(raised, score):
        for s in range(t, end):
            agree = sum(1 for v in views if float(np.max(v[max(0, s - lookback) : s + 1])) > 1.0)
            if s == t and score[t] <= 1.0:
                agree += 1  # the default's onset raised (a breakout part may report exactly 1)
            if agree >= k:
                sent[s] = True
                break
    return sent


def views(files: list[NabFile]) -> list[list[FloatArray]]:
    """Per file, the scores of the default run with each of ``VIEW_CHANGES``."""
    runs = [
        score_together([f.series for f in files], Settings(params=replace(DEFAULT_PARAMS, **change)))  # type: ignore[arg-type]
        for change in VIEW_CHANGES
    ]
    return [[run[j].score for run in runs] for j in range(len(files))]


def apply(rule: Rule | None, scored: ScoredSeries, others: list[FloatArray]) -> BoolArray:
    """The alerts ``rule`` sends for one scored series (``None``: the default's onsets)."""
    if rule is None:
        return np.asarray(scored.raised, np.bool_)
    kind, a, b = rule
    if kind == "confirm":
        return confirm(scored.raised, scored.score, int(a), b)
    if kind == "vote":
        return vote(scored.raised, scored.score, others, int(a), int(b))
    return budget(scored.raised, scored.score, int(a), int(b))


def detect(
    files: list[NabFile], rule: Rule | None, scored: list[ScoredSeries], others: list[list[FloatArray]]
) -> dict[str, BoolArray]:
    """Alerts per file under ``rule``, from the default's scored output (and the other views' scores)."""
    return {f.name: apply(rule, s, o) for f, s, o in zip(files, scored, others, strict=True)}


def raw_total(files: list[NabFile], alerts: dict[str, BoolArray]) -> float:
    """The raw standard score summed over ``files``."""
    return sum(score_file(f, alerts[f.name], PROFILES["standard"]).raw for f in files)


def timing(files: list[NabFile], alerts: dict[str, BoolArray]) -> dict[str, object]:
    """Per split: where the first detection of each found window falls (relative position, -1 its left edge,
    0 its right), and the normalised points gained if every first detection after the label (the centre)
    came at the label, or every first detection came at the left edge."""
    tp = PROFILES["standard"].tp
    out: dict[str, object] = {}
    for split in ("tune", "held_out", "all"):
        chosen = [f for f in files if split == "all" or (split == "tune") == is_tuning_file(f.name)]
        windows = sum(1 for f in chosen for _, r in f.windows if r >= probation_length(len(f.series.values)))
        positions: list[float] = []
        for f in chosen:
            probation = probation_length(len(f.series.values))
            for left, right in f.windows:
                hits = np.flatnonzero(alerts[f.name][max(left, probation) : right + 1])
                if hits.size:
                    positions.append(
                        -(right - (max(left, probation) + int(hits[0])) + 1) / (right - left + 1)
                    )

        def reward(x: float) -> float:
            return float(scaled_sigmoid(x)) * tp / float(scaled_sigmoid(-1.0))

        to_label = sum(reward(-0.5) - reward(x) for x in positions if x > -0.5)
        to_edge = sum(reward(-1.0) - reward(x) for x in positions)
        base = raw_total(chosen, alerts)
        out[split] = {
            "found": f"{len(positions)} of {windows}",
            "after_label": sum(1 for x in positions if x > -0.5),
            "median_position": round(float(np.median(positions)), 3) if positions else None,
            "score": round(normalised(base, windows), 2),
            "gain_if_late_ones_at_label": round(
                normalised(base + to_label, windows) - normalised(base, windows), 2
            ),
            "gain_if_all_at_left_edge": round(
                normalised(base + to_edge, windows) - normalised(base, windows), 2
            ),
        }
    return out


def held_out(
    files: list[NabFile], scored: list[ScoredSeries], others: list[list[FloatArray]], started: float
) -> None:
    """The one look at held-out: the default and the grid's best setting on tune (frozen), per split."""
    on = [is_tuning_file(f.name) for f in files]
    tune = [f for f, t in zip(files, on, strict=True) if t]
    tune_scored = [s for s, t in zip(scored, on, strict=True) if t]
    tune_others = [o for o, t in zip(others, on, strict=True) if t]
    rules = grid()
    on_tune = {
        name: raw_total(tune, detect(tune, rule, tune_scored, tune_others)) for name, rule in rules.items()
    }
    frozen = max(on_tune, key=lambda name: on_tune[name])
    report = {
        "bench": "nab_confirm_held_out",
        "frozen_on_tune": frozen,
        "tune_raw": {name: round(v, 3) for name, v in on_tune.items()},
        "default": split_scores(files, detect(files, None, scored, others)),
        "frozen": split_scores(files, detect(files, rules[frozen], scored, others)),
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(report))


def main(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    started = time.perf_counter()
    files = load_checked_corpus(parser, args)
    tick = time.perf_counter()
    scored = score_together([f.series for f in files])
    default_seconds = time.perf_counter() - tick
    if args.timing:
        alerts = detect(files, None, scored, [[] for _ in files])
        report = {"bench": "nab_confirm_timing", "default": timing(files, alerts)}
        print(json.dumps(report | {"seconds": round(time.perf_counter() - started, 1)}))
        return
    tick = time.perf_counter()
    others = views(files)
    views_seconds = time.perf_counter() - tick
    if args.held_out:
        held_out(files, scored, others, started)
        return
    table: dict[str, dict[str, BoolArray]] = {}
    seconds: dict[str, float] = {}
    for name, rule in grid().items():  # each setting's time: the default's run (and the views') plus its rule
        tick = time.perf_counter()
        table[name] = detect(files, rule, scored, others)
        spent = default_seconds + time.perf_counter() - tick
        seconds[name] = spent + (views_seconds if rule is not None and rule[0] == "vote" else 0.0)
    print_report(files, table, seconds, "nab_confirm", started)


if __name__ == "__main__":
    main(PARSER, OPTIONS)
