"""The moves of the workloads a tick read that did not move at it (``anomaly.collective``), settled all at
once: the rules of ``Move.sit`` (``job_spreads``), ``Move.settle`` (``Move.waiting``, ``at_job_value``,
``Move._own_past``) and the move after (``after_still``), each worked out for every row of every such move
in one pass of array operations, then written back to each move. One pass per move, each rule its own numpy
calls on 16 rows, took 3.2 s of a 10,000-GPU tick whose 625 jobs were held on 25 queries
(``bench_anomaly.py --open-moves``).

Every rule reads only its own move's rows, so its arrays are grouped by move (``k``: per row, its move's
place in ``still``): per move, a count is a ``bincount`` of its rows and a median of others is one of its
group's (``medians_of_others``). A rank is its move's (held, one of its ranks, its own distance) where its
series id is in the move's record: the record's ids are looked up among the tick's (``Tick.rows_of_ids``) and
kept where that row is the move's own, as ``id in move.held`` asked of each of its rows. That needs the
tick's ids to be unique (a row per series, as the detectors give them); where they are not, ``update`` takes
each move in turn as before (``settle_each``).

So the rules are written twice, here and in ``Move`` (which settles the moves of a job moving, and those of a
tick whose ids repeat): a rule changed in one is changed in the other, and
``tests/anomaly/test_collective_still.py`` holds the two to the same holds and records on random reads.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from itertools import chain
from typing import Any

import numpy as np

from anomaly.collectivemove import (
    BACK_READS,
    COLLECTIVE_MIN,
    COLLECTIVE_SCORE,
    COLLECTIVE_SHARE,
    OWN_ALPHA,
    OWN_WAIT,
    RETURN_READS,
    SIT_READS,
    SPREAD_TIMES,
    WITH_JOB_SCORE,
    WITH_JOB_VALUE,
    Move,
    job_spreads_of,
)
from anomaly.collectivetick import Tick, Workload, medians_of_others
from anomaly.thresholds import BoolArray, FloatArray, IntArray


def settle_still(
    tick: Tick, still: Sequence[tuple[Workload, Move]], held: BoolArray
) -> list[tuple[Workload, Move | None]]:
    """Settle the moves ``still`` (each of a workload ``tick`` read, not moving at it) as ``settle_each``
    does, one after another: set ``held`` at their rows; per move, itself, a move in its place, or None
    (ended)."""
    if not still:
        return []
    moves = [move for _, move in still]
    rows = _Rows(tick, [tick.index[workload] for workload, _ in still])
    # ``_sits`` and ``after_still``'s ``part``: its rows a quarter out on its side.
    side = np.array([m.side for m in moves])[rows.k]
    on_side = tick.out_past(WITH_JOB_SCORE)[rows.rows] == side
    n_on = rows.count(on_side)
    sits = (n_on >= COLLECTIVE_MIN) & (n_on > COLLECTIVE_SHARE * rows.count(np.ones(rows.k.size, np.bool_)))
    sat, returned, spent, near, new, held_by, ranks = _sit(rows, moves, on_side, sits)
    waited, kept, free, folds, own = _settle(rows, moves, side, held_by, ranks)
    held[rows.rows] = kept
    holds = rows.count(kept) > 0
    # Written back, move by move: what changed of its record, and the move after (``after_still``).
    taken, freed = rows.by_move(rows.ids, new), rows.by_move(rows.ids, free)
    folded, values = rows.by_move(rows.ids, folds), rows.by_move(own, folds)
    neared, distances = [], []
    if np.any(near.folds):
        neared, distances = rows.by_move(rows.ids, near.folds), rows.by_move(near.after, near.folds)
    kept_by_sit = rows.by_move(rows.ids, held_by) if np.any(spent) else []
    result: list[tuple[Workload, Move | None]] = []
    for j, (workload, move) in enumerate(still):
        if move.sat:
            move.sat, move.returned = int(sat[j]), int(returned[j])
            if neared and neared[j]:
                move.near.update(zip(neared[j], distances[j], strict=True))
            if spent[j]:
                move.held = set(kept_by_sit[j])
                move.own = {i: d for i, d in move.own.items() if i in move.held}
                move.near = {i: d for i, d in move.near.items() if i in move.held}
            elif taken[j]:
                move.ranks.update(taken[j])
                move.held.update(taken[j])
        move.waited = int(waited[j])
        if folded[j]:
            move.own.update(zip(folded[j], values[j], strict=True))
        if freed[j]:
            move.held.difference_update(freed[j])
            if move.own:  # most are empty: 250,000 rows freed at once (``--open-moves``)
                for i in freed[j]:
                    move.own.pop(i, None)
            if move.near:
                for i in freed[j]:
                    move.near.pop(i, None)
        result.append((workload, after_still(move, bool(holds[j]), bool(sits[j]), bool(n_on[j]))))
    return result


def _sit(
    rows: _Rows, moves: Sequence[Move], on_side: BoolArray, sits: BoolArray
) -> tuple[IntArray, IntArray, BoolArray, _Near, BoolArray, BoolArray, BoolArray]:
    """``Move.sit`` of each move its job's sitting started (``sat``): counted, its held ranks' distances from
    their job's value folded into ``near`` where its job ``sits``; past ``SIT_READS`` (``spent``) holding only
    those inside their bands, ``near`` within ``SPREAD_TIMES``, their job sitting or, at its value, back for
    at most ``RETURN_READS`` reads (``returned``); before, where its job sits, taking in the ranks come to
    read its job's value past half-way (``new``). Per move its ``sat``, ``returned`` and whether ``spent``;
    the distances folded; per row whether ``new``, held and a rank after."""
    held = rows.flags([m.held for m in moves])
    ranks = rows.flags([m.ranks for m in moves])
    sat = np.array([m.sat for m in moves], np.int64)
    sitting = sat > 0
    sat = np.where(sitting, np.minimum(sat + 1, SIT_READS + 1), sat)
    returned = np.array([m.returned for m in moves], np.int64)
    returned = np.where(sitting, np.where(sits, 0, np.minimum(returned + 1, RETURN_READS + 1)), returned)
    spent = sitting & (sat > SIT_READS)
    near = _Near(rows, moves, on_side, held & (sitting & sits)[rows.k])
    keeps = ~rows.tick.past[rows.rows] & (near.after <= SPREAD_TIMES)
    back = spent & ~sits & (returned <= RETURN_READS)  # come back with their job: at its value, for a bound
    keeps &= sits[rows.k] | back[rows.k]
    if np.any(back):
        keeps &= sits[rows.k] | rows.at_job_value(~np.isnan(rows.tick.values[rows.rows]))
    held &= ~spent[rows.k] | keeps
    new = np.zeros(rows.k.size, np.bool_)
    if np.any(taking := sitting & ~spent & sits):
        near_job = rows.at_job_value(on_side)
        new = (
            taking[rows.k] & on_side & near_job & rows.tick.scored_past(COLLECTIVE_SCORE)[rows.rows] & ~ranks
        )
        ranks |= new
        held |= new
    return sat, returned, spent, near, new, held, ranks


class _Near:
    """``Move.near`` of the held ranks of moves its job's sitting started, folded at the rows ``folds`` (a
    held rank of such a move, its job sitting): per row its distance after (``after``; that before where not
    folded, infinite where none)."""

    def __init__(self, rows: _Rows, moves: Sequence[Move], on_side: BoolArray, folds: BoolArray) -> None:
        records = [m.near for m in moves]
        has, before = np.zeros(rows.k.size, np.bool_), np.zeros(rows.k.size)
        if any(records):  # none but in a sitting move's: looked up only where one is (``--open-moves``)
            has = rows.flags(records)  # a record's ids are its keys: no copy of them
            before = rows.values(records, np.ones(len(moves), np.bool_))
        after = np.where(has, before, np.inf)
        if np.any(folds):
            tick = rows.tick
            median = medians_of_others(tick.values[rows.rows], on_side, rows.k, rows.size)
            apart = job_spreads_of(tick, rows.rows, on_side, k=rows.k, size=rows.size, median=median)
            folds = folds & np.isfinite(apart)
            start = np.where(has, before, apart)
            after = np.where(folds, start + OWN_ALPHA * (apart - start), after)
        self.after, self.folds = after, folds


def _settle(
    rows: _Rows,
    moves: Sequence[Move],
    side: FloatArray,
    held: BoolArray,
    ranks: BoolArray,
) -> tuple[IntArray, BoolArray, BoolArray, BoolArray, FloatArray]:
    """``Move.settle`` of each move, its job not moving, with ``Move.waiting`` and ``Move._own_past``; per
    move its ``waited``, per row whether it is held after, freed, read into its own distance (``folds``),
    and that distance after."""
    tick, k, at = rows.tick, rows.k, rows.rows
    scores, judged = tick.scores[at], tick.judged[at]
    free = held & judged & (scores <= COLLECTIVE_SCORE)
    unread = ~judged | np.isnan(scores)
    read_ranks = ~unread & ranks
    along = tick.sides[at] == side
    out = read_ranks & along & tick.scored_past(WITH_JOB_SCORE)[at]
    others = rows.count(read_ranks)[k] - read_ranks
    with_job = (rows.count(out)[k] - out) > COLLECTIVE_SHARE * others
    waited = np.array([m.waited for m in moves], np.int64)
    waiting = (waited < OWN_WAIT)[k] & along & with_job & held
    if np.any(waiting):
        waiting &= rows.at_job_value(out)
    waited += rows.count(waiting) > 0
    off = tick.off[at]
    folds = held & ~unread & ~waiting & np.isfinite(off)
    before = rows.values([m.own for m in moves], np.ones(len(moves), np.bool_))
    own = before + OWN_ALPHA * (off - before)
    free |= held & ((tick.past[at] & ~waiting) | unread | (folds & (own > COLLECTIVE_SCORE)))
    return waited, held & ~free, free, folds, own


def after_still(move: Move, holds: bool, sits: bool, part: bool) -> Move | None:
    """``move`` after a tick its job did not move at, holding a rank read or not (``holds``), its job sitting
    a quarter out on its side or not (``sits``), a rank of it read a quarter out its way or not (``part``):
    itself, kept; a move holding none, its sitting bound spent, in its place; or None, ended."""
    # A held rank this tick did not read (a gap) stays held while the move lasts: it ends once its job no
    # longer moves and none of the ranks read is held (the job restarted elsewhere, the unread let go with
    # it).
    if move.sat:  # ends, holding none, once its job has read back BACK_READS in a row (module docstring)
        move.back = 0 if sits or holds else move.back + 1
        return None if move.back >= BACK_READS else move
    if holds:
        return move
    # Holding none where a rank of its job still reads a quarter out its way: kept so, its sitting bound
    # spent, until its job has read back BACK_READS in a row (a job flickering about a quarter starts no
    # sitting move to hold again a rank its moving let go).
    # Its ranks and those it kept out carried: one it never had may be taken in (``anomaly.collective``).
    kept = Move(
        ranks=move.ranks, others=move.others, side=move.side, sat=SIT_READS + 1, back=0 if sits else 1
    )
    return kept if part else None


class _Rows:
    """The rows of a tick (``rows``) of the moves at some of its workloads (``groups``: each move's), in the
    order of their moves (``k``: per row, its move's place), and per row its series id (``ids``)."""

    def __init__(self, tick: Tick, groups: Sequence[int]) -> None:
        self.tick, self.size = tick, len(groups)
        place = np.full(len(tick.index) + 1, -1, np.int64)  # the last for the rows of no workload (group -1)
        place[list(groups)] = np.arange(self.size)
        self.of_row = place[tick.group]  # per row of the tick, its move's place or -1
        rows = np.flatnonzero(self.of_row >= 0)
        self.rows: IntArray = rows[np.argsort(self.of_row[rows], kind="stable")]
        self.k: IntArray = self.of_row[self.rows]
        self.ids: IntArray = tick.ids[self.rows]
        self.place = np.full(tick.ids.size, -1, np.int64)  # per row of the tick, its place in ``rows``
        self.place[self.rows] = np.arange(self.rows.size)

    def count(self, chosen: BoolArray) -> IntArray:
        """Per move, how many of its rows are ``chosen``."""
        counts: IntArray = np.bincount(self.k[chosen], minlength=self.size)
        return counts

    def at_job_value(self, out: BoolArray) -> BoolArray:
        """``at_job_value`` of every move at once: per row, whether its value is within ``WITH_JOB_VALUE`` of
        its band's half-width of the median value of its move's other rows ``out``."""
        values = self.tick.values[self.rows]
        with np.errstate(invalid="ignore"):
            median = medians_of_others(values, out, self.k, self.size)
            close: BoolArray = np.abs(values - median) <= WITH_JOB_VALUE * self.tick.half[self.rows]
        return close

    def by_move(self, values: IntArray | FloatArray, chosen: BoolArray) -> list[list[Any]]:
        """Per move, the ``values`` of its ``chosen`` rows."""
        ends = np.searchsorted(self.k[chosen], np.arange(self.size + 1)).tolist()
        found = values[chosen].tolist()
        return [found[ends[j] : ends[j + 1]] for j in range(self.size)]

    def _found(self, records: Sequence[Iterable[int]], counts: list[int]) -> tuple[IntArray, BoolArray]:
        """Per id of ``records`` (one per move, concatenated), its place in ``rows``, and whether it is its
        move's row."""
        ids = np.fromiter(chain.from_iterable(records), np.int64, sum(counts))
        owner = np.repeat(np.arange(self.size), counts)
        row = self.tick.rows_of_ids(ids)
        mine = (row >= 0) & (self.of_row[row] == owner)
        return self.place[row], mine

    def flags(self, records: Sequence[Collection[int]]) -> BoolArray:
        """Per row, whether its id is in its move's record (``records``, one per move: a set of ids, or a
        dict keyed by them)."""
        flags = np.zeros(self.rows.size, np.bool_)
        place, mine = self._found(records, [len(r) for r in records])
        flags[place[mine]] = True
        return flags

    def values(self, records: Sequence[dict[int, float]], keep: BoolArray) -> FloatArray:
        """Per row, its id's value in its move's record (``records``, one per move; 0 where none, or where
        the move's ``keep`` is False)."""
        values = np.zeros(self.rows.size)
        kept = [r if keep[j] else {} for j, r in enumerate(records)]
        place, mine = self._found(kept, [len(r) for r in kept])
        if mine.any():
            found = np.fromiter(chain.from_iterable(r.values() for r in kept), np.float64, place.size)
            values[place[mine]] = found[mine]
        return values
