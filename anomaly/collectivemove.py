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
# Past ``SIT_READS`` a move its job's sitting started keeps holding a rank whose distance from its job's
# value, averaged since (``Move.near``), is within this many of its job's spreads (``job_spreads``): a healthy
# rank reads its job's noise, no farther from the others than they are from each other.
SPREAD_TIMES = 3.0
# The least a job's spread is taken to be, in the rank's own band's half-widths: integer utilisation gives a
# spread of 0. ``SPREAD_TIMES`` of it is half ``WITH_JOB_VALUE``: held past the bound, a rank must read
# nearer its job than at its job's value, which the bound already allows it (a fault flapping 0.2 of its
# band about its job's value is let go: ``test_collective_runaway.py``).
SPREAD_FLOOR = WITH_JOB_VALUE / 2 / SPREAD_TIMES
# The reads since its job came back (under a quarter on its side) for which a move its job's sitting started
# keeps holding, past ``SIT_READS``, the ranks that came back with it (inside their bands, at its value, near
# it while it sat): what such a rank still scores is its return's volatility, the detector's fast error
# decaying (``fast_alpha``, 0.1 a read), which takes a score of 3 under 1 in about 11 reads and one of 20 in
# about 29 (seeds 1511 and 1522: let go at the bound, raised by it ~330 s after their job's return).
RETURN_READS = SIT_READS


@dataclass(slots=True)
class Move:
    """One workload's move on one detector and query: the side most of its moved ranks went at its start
    (``side``: 1 up, -1 down), the ranks (series ids) that moved with it to that side then or at a later tick
    (``ranks``), those of them not settled (``held``), per held rank how far its value read from its band's
    middle since its workload last moved (``own``: an average weighted to the last reads, by ``OWN_ALPHA``),
    those that moved against it at such a tick (``others``: never its ranks), and at how many ticks since its
    workload last moved it held a read back from ``own`` (``waited``, up to ``OWN_WAIT``); for a move its
    job's sitting started (``anomaly.collective``), the reads since (``sat``, 0 for one its job's moving
    started; past ``SIT_READS`` it holds only ranks its job's noise keeps near its job: ``near``) and how many
    in a row its job has read back, under a quarter (``back``), and per held rank its distance from its job's
    value in its job's spreads, averaged (``OWN_ALPHA``) over the reads its job sat since the start
    (``near``), and how many reads in a row its job has read back, holding or not (``returned``, up to
    ``RETURN_READS`` + 1)."""

    held: set[int] = field(default_factory=set)
    ranks: set[int] = field(default_factory=set)
    own: dict[int, float] = field(default_factory=dict)
    others: set[int] = field(default_factory=set)
    side: float = 0.0
    waited: int = 0
    sat: int = 0
    back: int = 0
    near: dict[int, float] = field(default_factory=dict)
    returned: int = 0

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
            self.near.pop(i, None)
        result: BoolArray = held & ~free
        return result

    def sit(self, tick: Tick, rows: IntArray, sits: bool) -> None:
        """Count a read (``rows`` of ``tick``, its job sitting a quarter out or not: ``sits``) of a move its
        job's sitting started, folding its held ranks' distances from their job's value into ``near`` where
        its job sits: past ``SIT_READS`` it keeps holding only those inside their bands, ``near`` within
        ``SPREAD_TIMES``, their job sitting or, at their job's value, back for at most ``RETURN_READS``
        reads (``returned``; the rest let go for good); before, where its job sits, it takes in the ranks
        come to read its job's value past half-way (unread at its start, or under a quarter then)."""
        self.sat = min(self.sat + 1, SIT_READS + 1)
        self.returned = 0 if sits else min(self.returned + 1, RETURN_READS + 1)
        ids = tick.ids[rows]
        held = np.fromiter((i in self.held for i in ids.tolist()), np.bool_, ids.size)
        if sits:
            apart = job_spreads(tick, rows, tick.out_past(WITH_JOB_SCORE)[rows] == self.side)
            for j in np.flatnonzero(held & np.isfinite(apart)).tolist():
                i, d = int(ids[j]), float(apart[j])
                near = self.near.get(i, d)
                self.near[i] = near + OWN_ALPHA * (d - near)
        if self.sat > SIT_READS:
            nears = np.fromiter((self.near.get(i, np.inf) for i in ids.tolist()), np.float64, ids.size)
            keep = held & ~tick.past[rows] & (nears <= SPREAD_TIMES)
            if not sits:  # come back with their job: at its value, for a bound
                keep &= self.returned <= RETURN_READS
                if keep.any():
                    keep &= at_job_value(tick, rows, ~np.isnan(tick.values[rows]))
            self.held = set(ids[keep].tolist())
            self.own = {i: d for i, d in self.own.items() if i in self.held}
            self.near = {i: d for i, d in self.near.items() if i in self.held}
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
        for i in ids & self.near.keys():
            del self.near[i]

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


def job_spreads(tick: Tick, rows: IntArray, out: BoolArray) -> FloatArray:
    """Per row of ``rows`` (of ``tick``), its distance from the median value of the others ``out`` in its
    job's spreads: the mean of those others' own such distances, at least ``SPREAD_FLOOR`` of its band's
    half-width; NaN where it has none (``job_spreads_of``)."""
    median = median_of_others(tick.values[rows], out)
    return job_spreads_of(tick, rows, out, k=np.zeros(rows.size, np.int64), size=1, median=median)


def job_spreads_of(
    tick: Tick, rows: IntArray, out: BoolArray, *, k: IntArray, size: int, median: FloatArray
) -> FloatArray:
    """``job_spreads`` of the rows of ``size`` jobs at once (``k``: per row, its job's place; ``median``: per
    row, that of its job's others ``out``), summed in the same order as one job's alone."""
    with np.errstate(invalid="ignore", divide="ignore"):
        apart = np.abs(tick.values[rows] - median)
        counted = out & np.isfinite(apart)
        total = np.bincount(k[counted], apart[counted], size)[k] - np.where(counted, apart, 0.0)
        n = np.bincount(k[counted], minlength=size)[k] - counted
        spread = np.maximum(total / n, SPREAD_FLOOR * tick.half[rows])
        spreads: FloatArray = apart / spread
    return spreads
