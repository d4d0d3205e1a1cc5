"""False alerts on plain noise, per part of the default detector and through ``anomaly run``: one JSON line.

Nothing happens in an i.i.d. series, so every alert raised on one is false. For each noise (N(100, 2),
N(0, 1), uniform on [90, 110], Poisson with mean 10, ``sparse``: Poisson with mean 0.2, mostly 0, as a
queue's wait is when idle, ``sparser``: Poisson with mean 0.1, a spike in about 1 read of 10, and
``student``: 100 plus Student-t noise of 3 degrees of freedom, heavy-tailed) and each shape (14 days at a
5-minute step, 4,032 samples; 2 days at a 30-second step, 5,760), ``--seeds`` series are scored:

* ``score``: as ``anomaly score`` scores a file (``anomaly.univariate``'s default detector, all series at
  once, one step at a time, as ``score_together`` does), each raise put down to the part that raised it:
  ``adaptive`` (the adaptive band's onset, not muted), ``breakout`` (a value beyond the series' whole
  range), ``novelty`` (a new context); ``recurrence_muted`` counts adaptive onsets the recurrence part
  muted. ``breakout_by_stretch`` lists ``[from, to, raised, records]``: the breakout's raises at samples
  ``from`` to ``to - 1`` (its first 100 after its warm-up, then to 1,000, then to the end), and the new
  two-sided records an i.i.d. continuous series is expected to set there (2 / (n + 1) at sample n): what the
  breakout would raise with no margin and no re-arm, an upper bound for such a series.
  The series' first seed is also scored alone (the ``anomaly score`` path for one file, ``anomaly.scalar``)
  and must raise at the same samples (``scalar_agrees``).
* ``service``: as ``anomaly run`` scores a series with its defaults (``AnomalyConfig()``: every default
  detector, pending reads, resolve-after), in process, one tick per sample (``infer_every_seconds`` the
  step), each seed a GPU's ``inference_latency_seconds`` (a name the adaptive and level-shift detectors
  score by default), raises counted per detector (the alert's ``model`` label); ``max_score``: the highest
  score each detector that scored the series gave (a score above 1 raises after ``pending_ticks`` reads).

Rates are per series-day. Run: ``PYTHONPATH=. .venv/bin/python benchmarks/noise_false_alerts.py``
(``--seeds 50``, the default: 12 minutes on 2 shared cores at load 12-15; ``--only``, ``--noise`` and
``--shape`` run less).
"""

from __future__ import annotations

import argparse
import os


def _options() -> argparse.Namespace:
    """The command line, read before the heavy imports (``--help`` answers at once)."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=50, help="series per case (default 50)")
    parser.add_argument("--only", choices=("score", "service"), help="only this path")
    parser.add_argument(
        "--noise",
        action="append",
        help="only these noises (gauss, std, uniform, poisson, sparse, sparser, student)",
    )
    parser.add_argument("--shape", action="append", help="only these shapes (5m14d, 30s2d)")
    return parser.parse_args()


if __name__ == "__main__":
    OPTIONS = _options()

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import itertools  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from anomaly import univariate  # noqa: E402
from anomaly.breakout import RangeBreakout  # noqa: E402
from anomaly.novelty import ContextNovelty  # noqa: E402
from anomaly.onsets import OnsetTracker  # noqa: E402
from anomaly.recurrence import DailyRecurrence  # noqa: E402
from anomaly.service import AnomalyService  # noqa: E402
from anomaly.sources import CollectorSource  # noqa: E402
from anomaly.steps import StepScores  # noqa: E402
from anomaly.thresholds import AdaptiveThresholds  # noqa: E402
from benchmarks.row_gpus import RowGpus  # noqa: E402
from gpuwarden.clock import FakeClock  # noqa: E402
from gpuwarden.config_anomaly import AnomalyConfig  # noqa: E402

T0 = 1_767_571_200.0  # 2026-01-05 00:00 UTC, a Monday
NOISES: dict[str, Callable[[np.random.Generator, int], np.ndarray]] = {
    "gauss": lambda rng, n: rng.normal(100.0, 2.0, n),
    "std": lambda rng, n: rng.normal(0.0, 1.0, n),
    "uniform": lambda rng, n: rng.uniform(90.0, 110.0, n),
    "poisson": lambda rng, n: rng.poisson(10.0, n).astype(np.float64),
    "sparse": lambda rng, n: rng.poisson(0.2, n).astype(np.float64),  # mostly 0: a queue's wait, idle
    "sparser": lambda rng, n: rng.poisson(0.1, n).astype(np.float64),  # a spike in about 1 read of 10
    "student": lambda rng, n: 100.0 + rng.standard_t(3.0, n),  # heavy-tailed: Student-t, 3 degrees of freedom
}
SHAPES = {"5m14d": (300.0, 14 * 288), "30s2d": (30.0, 2 * 2880)}
METRIC = "inference_latency_seconds"
FIRST_SAMPLES = 100  # the first stretch after the breakout's warm-up (``breakout_by_stretch``)


def noise(kind: str, seed: int, rows: int) -> np.ndarray:
    """Series ``seed`` of a noise (seed ``s`` of ``gauss`` is the lead's ``n{s}.csv``'s draw)."""
    return NOISES[kind](np.random.default_rng(seed), rows)


class _Recorded:
    """A part of the default detector whose raises are kept per step (it scores as it is)."""

    def __init__(self, part: Any) -> None:
        self.part = part
        self.raised: list[np.ndarray] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.part, name)

    def update(self, ids: np.ndarray, x: np.ndarray) -> StepScores:
        out: StepScores = self.part.update(ids, x)
        self.raised.append(np.asarray(out.raised, np.bool_).copy())
        return out


class _RecordedRoutine:
    """The recurrence part, keeping which adaptive onsets it let through and which it muted."""

    def __init__(self, part: DailyRecurrence) -> None:
        self.part = part
        self.kept: list[np.ndarray] = []
        self.muted: list[np.ndarray] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self.part, name)

    def filter(self, ids: np.ndarray, onsets: np.ndarray, *args: Any) -> np.ndarray:
        kept: np.ndarray = self.part.filter(ids, onsets, *args)
        self.kept.append(kept.copy())
        self.muted.append(onsets & ~kept)
        return kept


def score_case(kind: str, step: float, rows: int, seeds: int) -> dict[str, Any]:
    """The ``anomaly score`` path: every seed's series at once, each raise put down to its part."""
    values = np.stack([noise(kind, s, rows) for s in range(seeds)], axis=1)
    stamps = np.broadcast_to((T0 + step * np.arange(rows))[:, None], values.shape)
    cfg = univariate.Settings()
    assert cfg.breakout is not None and cfg.recurrence is not None and cfg.novelty is not None
    routine = _RecordedRoutine(DailyRecurrence(cfg.recurrence))
    ranges = _Recorded(RangeBreakout(cfg.breakout, capacity=seeds))
    contexts = _Recorded(ContextNovelty(cfg.novelty))
    parts = univariate._Detectors(  # the default detector's own step, its parts recorded
        AdaptiveThresholds(cfg.params, capacity=seeds),
        OnsetTracker(resolve_after=cfg.resolve_after, capacity=seeds),
        routine,  # type: ignore[arg-type]
        ranges,  # type: ignore[arg-type]
        contexts,  # type: ignore[arg-type]
        None,
    )
    ids = np.arange(seeds, dtype=np.int64)
    raised = np.zeros(values.shape, np.bool_)
    for i in range(rows):
        raised[i] = parts.step(ids, values[i], stamps[i])[1]
    adaptive, muted = np.array(routine.kept), np.array(routine.muted)
    breakout, novelty = np.array(ranges.raised), np.array(contexts.raised)
    assert ((adaptive | breakout | novelty) == raised).all()
    alone = univariate.score_many([univariate.Series("s0", stamps[:, 0].copy(), values[:, 0].copy())])[0]
    warm = cfg.breakout.warmup
    days = seeds * rows * step / 86_400.0
    return {
        "alerts": int(raised.sum()),
        "per_series_day": round(float(raised.sum()) / days, 4),
        "series_with_none": int((~raised.any(axis=0)).sum()),
        "adaptive": int(adaptive.sum()),
        "recurrence_muted": int(muted.sum()),
        "breakout": int(breakout.sum()),
        "breakout_by_stretch": [
            [a, b, int(breakout[a:b].sum()), round(seeds * _records(a, b), 1)]
            for a, b in _stretches(warm, rows)
        ],
        "novelty": int(novelty.sum()),
        "scalar_agrees": bool((np.asarray(alone.raised) == raised[:, 0]).all()),
    }


def _stretches(warm: int, rows: int) -> list[tuple[int, int]]:
    """Sample ranges the breakout raises are counted in: its first ``FIRST_SAMPLES`` after the warm-up, then
    to 1,000, then to the end."""
    edges = [warm, warm + FIRST_SAMPLES, max(1_000, warm + FIRST_SAMPLES), rows]
    return [(a, b) for a, b in itertools.pairwise(edges) if a < b]


def _records(start: int, end: int) -> float:
    """New two-sided records expected at samples ``start`` to ``end - 1`` (0-based) of an i.i.d. continuous
    series: sample ``n`` is beyond the ``n`` before it with chance 2 / (n + 1)."""
    return float(np.sum(2.0 / (np.arange(start, end) + 1.0)))


def service_case(kind: str, step: float, rows: int, seeds: int) -> dict[str, Any]:
    """The ``anomaly run`` path with its defaults: one tick a sample, every seed a GPU."""
    values = np.stack([noise(kind, s, rows) for s in range(seeds)], axis=1)
    clock = FakeClock(T0)
    collector = RowGpus(values, METRIC, "noise")
    cfg = AnomalyConfig(infer_every_seconds=step)
    service = AnomalyService(cfg, [CollectorSource([collector], clock)], clock)
    by_detector: Counter[str] = Counter()
    top: dict[str, float] = {}
    at: list[int] = []
    for i in range(rows):
        collector.row = i
        clock.advance(step)
        result = service.infer()
        for alert in result.raised:
            by_detector[alert.labels.get("model", "?")] += 1
            at.append(i)
        for f in result.findings:  # the detectors that scored the series, and their highest score
            if f.query == METRIC and f.score.size:
                top[f.detector] = max(top.get(f.detector, 0.0), float(np.max(f.score)))
    days = seeds * rows * step / 86_400.0
    total = sum(by_detector.values())
    return {
        "alerts": total,
        "per_series_day": round(total / days, 4),
        "by_detector": dict(sorted(by_detector.items())),
        "max_score": {name: round(score, 3) for name, score in sorted(top.items())},
        "first_rows": sorted(at)[:10],
    }


def main(options: argparse.Namespace) -> None:
    logging.disable(logging.WARNING)
    t0 = time.perf_counter()
    out: dict[str, Any] = {"benchmark": "noise_false_alerts", "seeds": options.seeds, "cases": {}}
    for kind in options.noise or list(NOISES):
        for shape in options.shape or list(SHAPES):
            step, rows = SHAPES[shape]
            case: dict[str, Any] = {}
            if options.only != "service":
                case["score"] = score_case(kind, step, rows, options.seeds)
            if options.only != "score":
                case["service"] = service_case(kind, step, rows, options.seeds)
            out["cases"][f"{kind}_{shape}"] = case
    out["wall_seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main(OPTIONS)
