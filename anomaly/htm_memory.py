"""HTM temporal memory (Hawkins and Ahmad, 2016), written from the paper's description; ``anomaly.htm``
runs it behind its encoder and spatial pooler.

Each column has ``cells`` cells; a cell has dendritic segments, a segment synapses onto cells that were
active one step before (its presynaptic cells), each with a permanence; a synapse is connected at
``tm_connected``. A segment with at least ``activation`` connected synapses on active cells is active and
makes its cell predictive for the next step; one with at least ``min_threshold`` synapses of any
permanence on active cells is matching. For each active column:

* predicted (a cell of it has an active segment): those cells become active and are the winners; each
  such segment learns (permanence ``+tm_inc`` on synapses from cells active before, ``-tm_dec`` on the
  others) and grows synapses to earlier winner cells up to ``new_synapses`` active ones;
* not predicted: the column bursts (all its cells active); the cell of its best matching segment wins and
  that segment learns, or, with none, the cell with the fewest segments wins and grows a new segment onto
  ``new_synapses`` of the earlier winner cells (at most ``max_synapses`` per segment).

The raw anomaly score is the share of active columns that had no predictive cell. State is flat arrays
(synapses: presynaptic cell, segment, permanence; segments: their cell) and, per cell, the list of the
synapses it is presynaptic to, so one step only reads the synapses of the cells active in it.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

import numpy as np

from anomaly.steps import BoolArray, IntArray

if TYPE_CHECKING:
    from anomaly.htm import HtmParams

EMPTY = np.zeros(0, np.int64)


class TemporalMemory:
    """One series' temporal memory (cells numbered ``column * cells + k``)."""

    def __init__(self, params: HtmParams, rng: np.random.Generator) -> None:
        self.p = params
        self.rng = rng
        self.pre = np.zeros(4096, np.int64)
        self.seg = np.zeros(4096, np.int64)
        self.perm = np.zeros(4096, np.float32)
        self.synapses = 0
        self.seg_cell = np.zeros(1024, np.int64)
        self.segments = 0
        self.seg_synapses: list[IntArray] = []
        self.outgoing: dict[int, IntArray] = {}
        self.pending: defaultdict[int, list[int]] = defaultdict(list)
        self.on_cell = np.zeros(params.columns * params.cells, np.int64)
        self.active_cells = EMPTY
        self.winners = EMPTY
        self.active_segments = EMPTY
        self.matching_segments = EMPTY
        self.potential_count = EMPTY

    def predicted_columns(self) -> IntArray:
        """The columns with a predictive cell (for the coming step)."""
        return np.unique(self.seg_cell[self.active_segments] // self.p.cells)

    def compute(self, columns: IntArray, learn: bool = True) -> float:
        """One step with these active columns: the raw anomaly score, then learning and new predictions."""
        score = 1.0 - np.isin(columns, self.predicted_columns()).sum() / max(columns.size, 1)
        was_active = np.zeros(self.on_cell.size, np.bool_)
        was_active[self.active_cells] = True
        by_column = self._by_column(self.active_segments, columns)
        matching = self._by_column(self.matching_segments, columns)
        active: list[IntArray] = []
        winners: list[int] = []
        learning: list[int] = []
        for column in columns.tolist():
            segments = by_column.get(column)
            if segments:
                cells = self.seg_cell[segments]
                active.append(cells)
                winners.extend(cells.tolist())
                learning.extend(segments)
                continue
            active.append(np.arange(column * self.p.cells, (column + 1) * self.p.cells))
            winners.append(self._burst(column, matching.get(column), learning, learn))
        if learn:
            self._learn(learning, was_active)
        self.active_cells = np.unique(np.concatenate(active)) if active else EMPTY
        self.winners = np.unique(np.array(winners, np.int64))
        self._predict()
        return float(score)

    def _by_column(self, segments: IntArray, columns: IntArray) -> dict[int, list[int]]:
        """The segments that lie in the given columns, by column."""
        owners = self.seg_cell[segments] // self.p.cells
        keep = np.isin(owners, columns)
        grouped: defaultdict[int, list[int]] = defaultdict(list)
        for s, column in zip(segments[keep].tolist(), owners[keep].tolist(), strict=True):
            grouped[column].append(s)
        return grouped

    def _burst(self, column: int, matching: list[int] | None, learning: list[int], learn: bool) -> int:
        """The winner cell of a bursting column: its best matching segment's (to learn, added to
        ``learning``), or the least used cell's, which grows a new segment."""
        if matching:
            best = max(matching, key=lambda s: int(self.potential_count[s]))
            learning.append(best)
            return int(self.seg_cell[best])
        first = column * self.p.cells
        used = self.on_cell[first : first + self.p.cells]
        cell = first + int(self.rng.choice(np.flatnonzero(used == used.min())))
        if learn and self.winners.size:
            self._grow(self._new_segment(cell), min(self.p.new_synapses, self.winners.size))
        return cell

    def _learn(self, segments: list[int], was_active: BoolArray) -> None:
        """Reinforce the segments' synapses from the cells active before, weaken the rest, and grow each
        up to ``new_synapses`` synapses on active cells."""
        if not segments:
            return
        ids = np.concatenate([self.seg_synapses[s] for s in segments])
        change = np.where(was_active[self.pre[ids]], self.p.tm_inc, -self.p.tm_dec)
        self.perm[ids] = np.clip(self.perm[ids] + change, 0.0, 1.0)
        known = self.potential_count[segments]
        for s, count in zip(segments, known.tolist(), strict=True):
            if count < self.p.new_synapses and self.seg_synapses[s].size < self.p.max_synapses:
                self._grow(s, self.p.new_synapses - count)

    def _new_segment(self, cell: int) -> int:
        if self.segments == self.seg_cell.size:
            self.seg_cell = np.concatenate([self.seg_cell, np.zeros_like(self.seg_cell)])
        self.seg_cell[self.segments] = cell
        self.seg_synapses.append(EMPTY)
        self.on_cell[cell] += 1
        self.segments += 1
        return self.segments - 1

    def _grow(self, segment: int, wanted: int) -> None:
        """Up to ``wanted`` new synapses from earlier winner cells the segment has none from."""
        mine = self.seg_synapses[segment]
        room = min(wanted, self.p.max_synapses - len(mine))
        if room <= 0:
            return
        candidates = np.setdiff1d(self.winners, self.pre[mine], assume_unique=True)
        if not candidates.size:
            return
        chosen = self.rng.choice(candidates, min(room, candidates.size), replace=False)
        end = self.synapses + chosen.size
        if end > self.pre.size:
            size = max(end, 2 * self.pre.size)
            self.pre, self.seg = self._resized(self.pre, size), self._resized(self.seg, size)
            self.perm = np.concatenate([self.perm, np.zeros(size - self.perm.size, np.float32)])
        self.pre[self.synapses : end] = chosen
        self.seg[self.synapses : end] = segment
        self.perm[self.synapses : end] = self.p.initial_perm
        for k, cell in enumerate(chosen.tolist(), start=self.synapses):
            self.pending[cell].append(k)
        self.seg_synapses[segment] = np.concatenate([mine, np.arange(self.synapses, end)])
        self.synapses = end

    @staticmethod
    def _resized(array: IntArray, size: int) -> IntArray:
        return np.concatenate([array, np.zeros(size - array.size, np.int64)])

    def _predict(self) -> None:
        """Active and matching segments for the next step, from the cells active now."""
        for cell, new in self.pending.items():
            self.outgoing[cell] = np.concatenate([self.outgoing.get(cell, EMPTY), new])
        self.pending.clear()
        arrays = [self.outgoing[c] for c in self.active_cells.tolist() if c in self.outgoing]
        ids = np.concatenate(arrays) if arrays else EMPTY
        perm, seg = self.perm[ids], self.seg[ids]
        connected = np.bincount(seg[perm >= self.p.tm_connected], minlength=self.segments)
        self.potential_count = np.bincount(seg[perm > 0.0], minlength=self.segments)
        self.active_segments = np.flatnonzero(connected >= self.p.activation)
        self.matching_segments = np.flatnonzero(self.potential_count >= self.p.min_threshold)
