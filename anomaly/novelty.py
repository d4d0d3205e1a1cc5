"""Contextual pattern novelty: a sample is anomalous when the recent sequence of value levels is new.

In the spirit of contextual anomaly detectors such as CAD OSE (written here from the idea, not from code):

* each value is quantised into one of ``levels`` bins spread over the range the series has shown *before*
  the sample (values beyond it get their own below/above symbols);
* consecutive equal symbols are collapsed, so a context is a sequence of level *changes*;
* per series, the detector remembers every context it has met: the current symbol preceded by the last
  ``k`` distinct symbols, for ``k = 1 .. order``;
* a sample is novel when the share of those ``order`` contexts never met before reaches ``threshold``; its
  score is the count of unseen contexts over the fewest that make it novel less one half, so that >1 means
  novel and the count just below that scores under 1 (one unseen of two at the default threshold 0.5
  scores 2.0, both 4.0). The share itself, as the score, gave exactly 1.0 at the threshold, which reads as
  "not anomalous" where >1 means anomalous (vmanomaly's convention, ``anomaly_score``).

A periodic or otherwise repetitive series keeps producing contexts it has seen, so it goes quiet once each
pattern has occurred once; a new shape (a level change, a spike inside the range, a missing daily peak)
produces unseen contexts. Only a novelty after ``rearm`` samples with nothing novel raises an alert, and
nothing is scored during the first ``warmup`` samples of a series (the range, hence the quantisation, is still
moving). At the end of the warm-up its samples are replayed, quantised over the range they showed, to learn
their contexts and to start the quiet-spell count; a noisy series that was still meeting new contexts then
stays muted until ``rearm`` quiet samples have passed. The detector speaks when something new follows a long
spell of nothing new.

Until this replay existed the warm-up's contexts were kept as met under the moving range, and the quiet
spell started as "forever": the detector raised once at the end of the warm-up on every file, a false alert
by construction. On the NAB tuning split (``anomaly.nab.is_tuning_file``) that artefact was all the detector
added (one window found only because a file's window happened to contain sample 300): without it the
default detector scores 78.1 standard with or without this part (80.6 with the artefact), and no coarse
setting of re-arm (100, 300), levels (8, 16) or order (1) helps (64.4-78.2). It is kept because it costs
nothing on NAB and catches a new shape inside the known range on a quiet repetitive series (tests).

Everything is causal: the score of a sample depends only on the samples before it and itself. State per
series: the range, the warm-up's samples until it ends, the last ``order`` distinct symbols and a set of
contexts (at most ``(levels + 2) ** (order + 1)``, far fewer in practice).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from anomaly.steps import FloatArray, IntArray, StepScores


@dataclass(frozen=True, slots=True)
class NoveltyParams:
    """Defaults chosen on the NAB tuning split only (``anomaly.nab.is_tuning_file``)."""

    levels: int = 64
    order: int = 2
    threshold: float = 0.5
    warmup: int = 300
    rearm: int = 1000


@dataclass(slots=True)
class _State:
    low: float = np.inf
    high: float = -np.inf
    count: int = 0
    since: int = 0
    history: tuple[int, ...] = ()
    seen: set[tuple[int, ...]] = field(default_factory=set)
    early: list[float] = field(default_factory=list)


class ContextNovelty:
    """Streaming contextual novelty detector over many series (ids are non-negative integers)."""

    def __init__(self, params: NoveltyParams | None = None) -> None:
        self.params = params or NoveltyParams()
        if self.params.levels < 1 or self.params.order < 1 or self.params.threshold <= 0:
            raise ValueError("levels and order must be >= 1 and threshold > 0")
        self._states: dict[int, _State] = {}
        order, threshold = self.params.order, self.params.threshold
        # The fewest unseen contexts that make a sample novel, as update_one decides it; None: none do.
        self._novel_at = next((k for k in range(1, order + 1) if k / order / threshold >= 1.0), None)

    def reset(self, ids: IntArray) -> None:
        """Forget series."""
        for series in ids.tolist():
            self._states.pop(int(series), None)

    def _symbol(self, state: _State, value: float) -> int:
        levels = self.params.levels
        if value < state.low:
            return -1
        if value > state.high:
            return levels
        span = state.high - state.low
        if span <= 0:
            return 0
        if span == math.inf:  # a range wider than the largest float (-1e308 to 1e308): measured in halves
            share = (value / 2 - state.low / 2) / (state.high / 2 - state.low / 2)
        else:
            share = (value - state.low) / span
        return min(int(share * levels), levels - 1)

    def _unseen(self, state: _State, symbol: int) -> tuple[int, int]:
        """Move the history on by ``symbol``; return (unseen contexts, contexts), learning the unseen ones."""
        order = self.params.order
        history = state.history
        if not history or history[-1] != symbol:
            history = (*history, symbol)[-(order + 1) :]
        state.history = history
        unseen = 0
        contexts = 0
        for length in range(2, min(order + 1, len(history)) + 1):
            context = history[-length:]
            contexts += 1
            if context not in state.seen:
                unseen += 1
                state.seen.add(context)
        return unseen, contexts

    def _learn_warmup(self, state: _State) -> None:
        """End of the warm-up: learn its contexts again, quantised over the range the warm-up has shown.

        During the warm-up the range (hence every level) moved, so the contexts met then were symbols of
        other quantisations: kept, they would make the first post-warm-up samples look novel on any
        series (the old end-of-warm-up alert on every file). Replayed over the final range they are the
        contexts the detector will meet from now on, and ``since`` becomes the quiet spell at the end of
        the warm-up, so a series that was still meeting new contexts then stays muted as it would later.
        """
        state.history = ()
        state.seen.clear()
        state.since = 0
        for value in state.early:
            unseen, contexts = self._unseen(state, self._symbol(state, value))
            novel = contexts > 0 and unseen / self.params.order >= self.params.threshold
            state.since = 0 if novel else state.since + 1
        state.early = []

    def update(self, ids: IntArray, values: FloatArray) -> StepScores:
        """One sample per id: score >1 when the share of unseen contexts reaches the threshold (novel;
        muted or not by ``rearm``: ``raised`` says whether it raises).

        NaN samples are skipped (score 0, no state change)."""
        score = np.zeros(ids.size)
        raised = np.zeros(ids.size, np.bool_)
        for k, (series, value) in enumerate(zip(ids.tolist(), values.tolist(), strict=True)):
            score[k], raised[k] = self.update_one(series, value)
        return StepScores(ids=ids, score=score, raised=raised)

    def update_one(self, series: int, value: float) -> tuple[float, bool]:
        """``update`` for one sample of one series: its score and whether it raises."""
        if not math.isfinite(value):
            return 0.0, False
        p = self.params
        state = self._states.get(series)
        if state is None:
            state = self._states[series] = _State()
        if state.count < p.warmup:
            state.early.append(value)
            state.low = min(state.low, value)
            state.high = max(state.high, value)
            state.count += 1
            if state.count == p.warmup:
                self._learn_warmup(state)
            return 0.0, False
        unseen, contexts = self._unseen(state, self._symbol(state, value))
        share = unseen / p.order / p.threshold if contexts else 0.0
        novel = share >= 1.0
        score = share if self._novel_at is None or not contexts else unseen / (self._novel_at - 0.5)
        raised = novel and state.since + 1 >= p.rearm
        state.since = 0 if novel else min(state.since + 1, 1 << 30)
        state.low = min(state.low, value)
        state.high = max(state.high, value)
        state.count += 1
        return score, raised
