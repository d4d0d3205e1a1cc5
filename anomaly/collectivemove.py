"""One workload's move as ``anomaly.collective`` (its module docstring says why each rule is there) keeps
it: the side it went, its ranks, those it holds, their own distances and its sitting bounds; and the
parameters those rules read. ``anomaly.collectivestill`` settles the moves of jobs read not moving by the same
rules, all at once: a rule changed here is changed there."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from anomaly.collectivetick import Tick, median_of_others
from anomaly.thresholds import BoolArray, FloatArray, IntArray

COLLECTIVE_MIN = 3  # GPUs of a workload that must have moved, at least
COLLECTIVE_SHARE = 0.5  # of the workload's GPUs in the tick
COLLECTIVE_SCORE = 0.5  # how far out of its band a GPU has moved: half-way
OWN_ALPHA = 0.1  # the weight of one read in a held rank's own distance from its band's middle (``Move.own``)
# How far out of its band a rank still reads with its slowed job (``Move.waiting``): a quarter of the way.
WITH_JOB_SCORE = COLLECTIVE_SCORE / 2
OWN_WAIT = 20  # the ticks a move may hold its ranks' own distances back (``Move.waiting``): 10 min at 30 s
# How close to its job's value a rank reads with its slowed job (``Move.waiting``), in its own band's
# half-widths: nearer than a still-slowed rank reads from its band's middle (``WITH_JOB_SCORE``).
WITH_JOB_VALUE = WITH_JOB_SCORE
# The reads a move its job's sitting started (``Move.sat``) may hold a rank: ``OWN_WAIT``, then about the ten
# a rank's own distance takes to pass half-way (0.73 of its band: ``test_collective_wide.py``).
SIT_READS = OWN_WAIT + 10
# The reads in a row a move its job's sitting started, or one kept holding none, must hold none with its job
# read back (under a quarter on its side) to end: more than a learned detector's ``pending_ticks`` (3), so a
# rank it let go is raised before a sitting start can hold it again.
BACK_READS = OWN_WAIT // 2


@dataclass(slots=True)
class Move:
    """One workload's move on one detector and query: the side most of its moved ranks went at its start
    (``side``: 1 up, -1 down), the ranks (series ids) that moved with it to that side then or at a later tick
    (``ranks``), those of them not settled (``held``), per held rank how far its value read from its band's
    middle since its workload last moved (``own``: an average weighted to the last reads, by ``OWN_ALPHA``),
    those that moved against it at such a tick (``others``: never its ranks), and at how many ticks since its
    workload last moved it held a read back from ``own`` (``waited``, up to ``OWN_WAIT``); for a move its
    job's sitting started (``anomaly.collective``), the reads since (``sat``, 0 for one its job's moving
    started; past ``SIT_READS`` it holds none) and how many in a row its job has read back, under a quarter
    (``back``)."""

    held: set[int] = field(default_factory=set)
    ranks: set[int] = field(default_factory=set)
    own: dict[int, float] = field(default_factory=dict)
    others: set[int] = field(default_factory=set)
    side: float = 0.0
    waited: int = 0
    sat: int = 0
    back: int = 0

    def settle(self, ids: IntArray, tick: Tick, rows: IntArray, moving: bool) -> BoolArray:
        """Release the held ranks among ``ids`` (``rows`` of ``tick``) that a judged read finds settled, and,
        with the workload no longer moving, those out of their band by value but not at their still slowed
        job's (``waiting``), those whose value has kept half-way out since (``own``) and those read without a
        score; whether each row is held after."""
        held = np.fromiter((i in self.held for i in ids.tolist()), np.bool_, ids.size)
        scores, judged = tick.scores[rows], tick.judged[rows]
        free = held & judged & (scores <= COLLECTIVE_SCORE)  # a NaN score settles nothing
        if moving:  # the values are the job's again: what each rank showed of its own is moot
            self.own.clear()
            self.waited = 0
        else:
            unread = ~judged | np.isnan(scores)
            # Its distance is its own unless its job still sits where the move took it (seed 1300), and so
            # is a value past its band, unless it is its job's there (seed 1401: a band narrower than the
            # job's fall).
            waiting = self.waiting(ids, tick, rows, ~unread, held)
            own = held & ~unread & ~waiting
            past = tick.past[rows] & ~waiting
            free |= held & (past | unread | self._own_past(ids, tick.off[rows], own))
        for i in ids[free].tolist():
            self.held.discard(i)
            self.own.pop(i, None)
        result: BoolArray = held & ~free
        return result

    def sit(self, tick: Tick, rows: IntArray, sits: bool) -> None:
        """Count a read (``rows`` of ``tick``, its job sitting a quarter out or not: ``sits``) of a move its
        job's sitting started: past ``SIT_READS`` it holds none; before, where its job sits, it takes in the
        ranks come to read its job's value past half-way (unread at its start, or under a quarter then)."""
        self.sat = min(self.sat + 1, SIT_READS + 1)
        if self.sat > SIT_READS:
            self.held.clear()
            self.own.clear()
        elif sits:
            unsettled = rows[tick.scored_past(COLLECTIVE_SCORE)[rows]]
            new = near_job(tick, rows, self.side, unsettled) - self.ranks
            self.ranks |= new
            self.held |= new

    def forget(self, ids: set[int]) -> None:
        """Drop the series ``ids`` (forgotten: their ids may be given to other series)."""
        self.held -= ids
        self.ranks -= ids
        self.others -= ids
        for i in ids & self.own.keys():
            del self.own[i]

    def waiting(
        self, ids: IntArray, tick: Tick, rows: IntArray, read: BoolArray, held: BoolArray
    ) -> BoolArray:
        """Per row (``rows`` of ``tick``, series ``ids``; ``held`` by the move), whether its read is held back
        from its distance: on the move's side, with more than half of the move's other ranks ``read`` on that
        side past ``WITH_JOB_SCORE``, its value within ``WITH_JOB_VALUE`` of its band's half-width of their
        median value, at one of the move's first ``OWN_WAIT`` ticks of holding back (``anomaly.collective``).
        Counts the tick in ``waited`` where any is."""
        if self.waited >= OWN_WAIT:
            return np.zeros(ids.size, np.bool_)
        ranks = read & np.fromiter((i in self.ranks for i in ids.tolist()), np.bool_, ids.size)
        along = tick.sides[rows] == self.side
        out = ranks & along & tick.scored_past(WITH_JOB_SCORE)[rows]
        others = int(ranks.sum()) - ranks.astype(np.int64)
        with_job = (int(out.sum()) - out.astype(np.int64)) > COLLECTIVE_SHARE * others
        waiting: BoolArray = along & with_job & at_job_value(tick, rows, out) & held
        self.waited += bool(waiting.any())
        return waiting

    def _own_past(self, ids: IntArray, off: FloatArray, read: BoolArray) -> BoolArray:
        """Fold each ``read`` rank's distance ``off`` into its own (``OWN_ALPHA``); whether it is past
        half-way. A rank without a band (``off`` NaN) keeps none."""
        past = np.zeros(ids.size, np.bool_)
        for j in np.flatnonzero(read & np.isfinite(off)).tolist():
            i = int(ids[j])
            own = self.own.get(i, 0.0)
            own += OWN_ALPHA * (float(off[j]) - own)
            self.own[i] = own
            past[j] = own > COLLECTIVE_SCORE
        return past


def near_job(tick: Tick, rows: IntArray, side: float, among: IntArray | None = None) -> set[int]:
    """The series of ``rows`` (of ``tick``; of ``among`` them only, where given) reading a quarter out on
    ``side`` within ``WITH_JOB_VALUE`` of their band's half-width of the others' median value there: those
    reading their job's value."""
    out = tick.out_past(WITH_JOB_SCORE)[rows] == side
    near = at_job_value(tick, rows, out)
    if among is not None:
        near &= np.isin(rows, among)
    found: set[int] = set(tick.ids[rows][out & near].tolist())
    return found


def at_job_value(tick: Tick, rows: IntArray, out: BoolArray) -> BoolArray:
    """Per row of ``rows`` (of ``tick``), whether its value reads as its job's: within ``WITH_JOB_VALUE`` of
    its band's half-width of the median value of the others ``out`` (``anomaly.collective``)."""
    values = tick.values[rows]
    with np.errstate(invalid="ignore"):
        close: BoolArray = np.abs(values - median_of_others(values, out)) <= WITH_JOB_VALUE * tick.half[rows]
    return close
