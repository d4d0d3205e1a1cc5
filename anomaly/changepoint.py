"""The ``level_shift`` detector: two-sided CUSUM per series for latency and step-time queries.

A level shift is a small move that lasts: each sample's standardised residual against a slow baseline is
accumulated (minus a drift allowance) until the sum passes ``h``. After a detection the baseline jumps to
the new level, so the shift is reported once and the new normal is learned at once.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from anomaly.detectors import Findings
from anomaly.series import View
from anomaly.thresholds import FloatArray, IntArray
from gpuwarden.model import RecommendedAction


class LevelShiftDetector:
    """Vectorised CUSUM; state in arrays indexed by series id."""

    name = "level_shift"

    def __init__(
        self,
        query_patterns: Sequence[str] = ("step_time", "latency", "duration"),
        *,
        alpha: float = 0.01,
        drift: float = 1.0,
        h: float = 12.0,
        warmup: int = 30,
    ) -> None:
        self.patterns = tuple(query_patterns)
        self.alpha, self.drift, self.h, self.warmup = alpha, drift, h, warmup
        self.mean = np.zeros(0)
        self.dev = np.zeros(0)
        self.pos = np.zeros(0)
        self.neg = np.zeros(0)
        self.count = np.zeros(0, np.int64)

    def _grow(self, needed: int) -> None:
        if needed <= self.mean.size:
            return
        size = max(needed, 2 * self.mean.size, 1024)
        for name in ("mean", "dev", "pos", "neg", "count"):
            old = getattr(self, name)
            new = np.zeros(size, old.dtype)
            new[: old.size] = old
            setattr(self, name, new)

    def matches(self, query: str) -> bool:
        """Whether this detector scores ``query``."""
        return any(p in query for p in self.patterns)

    def update(self, ids: IntArray, x: FloatArray) -> FloatArray:
        """Feed one sample per id (finite only); return scores (>1: a shift was found at this sample)."""
        if ids.size:
            self._grow(int(ids.max()) + 1)
        n = self.count[ids]
        fresh = n == 0
        mean = np.where(fresh, x, self.mean[ids])
        dev = self.dev[ids]
        scale = np.maximum(dev, 1e-9 * (1.0 + np.abs(mean)))
        z = (x - mean) / scale
        pos = np.maximum(0.0, self.pos[ids] + z - self.drift)
        neg = np.maximum(0.0, self.neg[ids] - z - self.drift)
        warm = n >= self.warmup
        pos = np.where(warm, pos, 0.0)
        neg = np.where(warm, neg, 0.0)
        score = np.maximum(pos, neg) / self.h
        shifted = score > 1.0
        # Learn: winsorised baseline; on a detected shift, restart at the new level.
        a = np.maximum(self.alpha, 1.0 / (n + 1.0))
        cap = np.where(warm, 3.0 * scale, np.inf)
        r = np.clip(x - mean, -cap, cap)
        self.mean[ids] = np.where(shifted, x, mean + a * r)
        self.dev[ids] = dev + a * (np.abs(r) - dev)
        self.pos[ids] = np.where(shifted, 0.0, pos)
        self.neg[ids] = np.where(shifted, 0.0, neg)
        self.count[ids] = n + 1
        return score

    def fit(self, view: View) -> None:
        """Online: nothing to refit."""

    def forget(self, ids: np.ndarray) -> None:
        """Drop the state of vanished series."""
        ids = ids[ids < self.mean.size]
        self.count[ids] = 0
        self.pos[ids] = 0.0
        self.neg[ids] = 0.0

    def detect(self, view: View) -> list[Findings]:
        """Scores of the newest step of each matching query (a shift anywhere in the tick counts)."""
        best: dict[str, FloatArray] = {}
        for step in view.steps:
            if not self.matches(step.query):
                continue
            if step.ids.size:  # NaN rows are not updated but are still read back below
                self._grow(int(step.ids.max()) + 1)
            rows = np.flatnonzero(np.isfinite(step.value))
            scores = np.zeros(step.value.size)
            scores[rows] = self.update(step.ids[rows], step.value[rows])
            prev = best.get(step.query)
            best[step.query] = (
                scores if prev is None or prev.size != scores.size else np.maximum(prev, scores)
            )
        out = []
        for query, scores in best.items():
            step = view.latest[query]
            out.append(
                Findings(
                    detector=self.name,
                    query=query,
                    labels=step.labels,
                    ids=step.ids,
                    score=scores,
                    value=step.value,
                    yhat=np.where(self.count[step.ids] > 0, self.mean[step.ids], np.nan),
                    action=RecommendedAction.INVESTIGATE,
                    summary=f"{query} shifted to a new level",
                )
            )
        return out
