"""Workload-wide changes: the ticks where a workload's GPUs left their bands together (a job slowed or
stalled by one rank's fault, a service scaled), and the ranks that moved with it, held as the workload's
until each settles.

A tick where at least half of a workload's GPUs are more than half-way out of their band on the same metric
is the workload changing, not a GPU: its anomalous rows do not alert (the GPU that slowed the job is caught
by its own signals). That tick alone was not enough. The ranks of a job slowed by one GPU's power brake left
their power bands together and came back with it, but their scores (the value's distance, then the
volatility term, the fast error) decayed at their own pace: the ranks with wide bands fell under half-way
first, the job no longer counted as moving, and a rank whose band was learnt narrow, still past 1, alerted
15-19 minutes after the fault, its power back where it belonged (``eval_gpu_faults.py --seed 1100``: node-06's
4 of its job's 16 ranks, 549 s after the brake's repair). Holding a rank by its value alone did not cover it:
there, 12 of the 16 ranks left by volatility alone, fewer than half by value.

So the move is fixed at the tick it starts (``CollectiveMoves``): the side most of its moved rows are on, and
those rows, by score as the tick judges the workload, its ranks. Each stays the workload's until a read judges
it at or under half-way; none is added while the move lasts, and the move ends once the workload no longer
moves and every held rank read has settled (one not read is let go with it: below). A rank that moved
against its job (a straggler busier while its job waits) is not held. Nor, once its job stopped moving, is
one whose value is past its band again: what the move left is the volatility, its value back in its band as in
seed 1100, and a value out is a fault of its own. But a rank of the move let go is held again at each tick its
workload moves and it with it: one read mid-move with fewer than half of the job half-way out (the wide ranks'
noise) let go the ranks still past their narrow bands, and the move, left open on the others, held nothing of
them as the job moved on and came back, and they alerted as before (the first version, fix/rev_sympathy2).

A rank's own fault may show as volatility alone: a power flapping +-80 W inside the band its job's move
widened was held until that band learnt the flapping, so it never alerted, where without the move it did.
What the move left decays with each quiet read; the flapping keeps the values away from the band's middle.
So, its job no longer moving, a held rank's distance from the middle (in half-widths) is averaged over its
reads since (``_Move.own``, about the last 10 reads), and one whose average passes half-way is let go: one
noisy read, or a heavy-tailed rank's spike, does not. And a read without a score (NaN, or a row its detector
did not judge) is no evidence of moving with the job: the rank is let go; held, it kept the move open for as
long as it read so.

But a job can stay where its move took it and still not count as moving: seed 1300's 16 ranks all fell to
about 47 % for a rank's 10-minute thermal slowdown, and 15 of them, their bands learnt wide by the job's
earlier slowdowns, scored 0.43-0.56, under half-way from the third tick on. The one narrow rank's distance,
the job's and not its own, passed half-way in 9 reads: let go, it alerted 428 s into the fault. Holding back
its average while more than half of the move's other ranks merely sat on the move's side (fix/slowed,
reverted) hid a rank's own flapping for as long as its job's ranks read even slightly that way (5 % of a
band's width: held after 500 reads). So a held rank's read is held back from its average (``_Move.waiting``)
only where all of these hold: it is on the move's side itself (a read on the other side is surely its own,
so a flapping rank's every other read still counts); more than half of the move's other ranks read are on
that side and score past ``WITH_JOB_SCORE`` (a quarter of the way out: still slowed, if under half-way, not
back in their bands' middles with a trace of noise); its value is within a quarter of its band's half-width
(``WITH_JOB_VALUE``) of those ranks' median value (the rank reads what its job reads: seed 1300's all read
47 %; one whose own fault took it to 10 % while its job read 40 % was held back 20 reads for nothing); and the
move has held reads back at fewer than ``OWN_WAIT`` ticks since its job last moved (``_Move.waited``), so that
no rank's own fault hides behind its job for more than about 14 minutes at 30 s ticks (``OWN_WAIT`` reads,
then the average's). The job's value is read where the job shows it is still slowed, the ranks scoring past
``WITH_JOB_SCORE``, and as their median: one or a few of them off on faults of their own do not move it. The
difference is measured in the rank's own half-widths, the unit of its distance and of its average, and a
quarter is ``WITH_JOB_SCORE``'s reading turned on the job's value: a rank that far from it has moved away
from its job as far as a slowed rank has from its band's middle, a move of its own.

None added while a move lasts kept out the ranks read at its start that did not move with it (a straggler
moving against its job, a rank that stayed). It kept out too the ranks its start could not read: those of a
node down that had stalled the job. And a move lasts while its own ranks' scores decay, tens of minutes after
the job is back: a second slowdown meanwhile is no new move. Seed 901: node-07's outage stalled its job, the
move's ranks the 12 read then; 15 minutes on, 12 of the 16 still past half-way by volatility, a straggler
slowed the job again, node-07 GPU 1 left its narrow band with it (59 % under 67-122 %), was held by nothing
and, once the job no longer counted as moving, alerted by volatility with its value back in band, 702 s after
the fault. So a rank its start could not read, moving with its job at a tick the job moves, is one of its
ranks.

A rank its start read under half-way was kept out all the same (fix/trace901), and is as often a healthy one:
one tick behind its job (9 of 16 ranks past half-way at the first tick of a slowdown, in
``test_collective.py``), or one the first slowdown did not reach and a second, while the move lasts, did. A
narrow band's rank kept out so alerted 450 s after its job came back, as node-07 GPU 1 did. So ``others``
holds only the ranks that moved against the job (past half-way on the other side). But a straggler busier
while its job waits can read under half-way at the start too (its band wide), and past it as the job comes
back, its ranks then all above the bands their slowdown lowered: joined there, it was held through the 40
reads after and never alerted. So a move keeps the side its start went (``_Move.side``): at a tick its job
moves to that side, a rank moving with it joins its ranks (held and let go by the same rules), and one moving
against it joins ``others``, for good.

That side was the one most of the start's moved ranks went, and on a tie "down", the first of the sorted
sides, whatever the job did: a job going up whose narrow ranks rose first, as many wide ones read half-way
down by their noise, started a "down" move, its own ranks kept out for good, not held as it went on up, and
those still past 1 as it settled alerted. A tie now takes the side the job's rows lean to (each row's score
signed by its side, summed over the workload's rows: the job's mean); where they lean to neither, no move
starts until a tick breaks the tie (its rows are dropped meanwhile as the workload's).

And a rank the tick did not read (a scrape gap: the adaptive detector reports no row for a NaN value) was
dropped as one no longer reported: a held narrow-band rank missing one read as its job settled alerted at
the next (its score still past 1: seed 1100's alert, back for one missed scrape), and a straggler kept out
was let out, to join the move at its job's next stall. Such a rank now keeps its place (held, its ranks or
``others``) while the move lasts, as the detectors keep a series' state across a gap; the move ends once its
job no longer moves and none of the ranks read is held, the unread let go with it, so a rank never read
again (its node down, its job restarted on other GPUs) holds it open no longer than its read ranks. A series
the service forgets (``forget_after_seconds``) leaves every move as it leaves the detectors
(``CollectiveMoves.forget``, in the live ticks and the warm-up's replay alike): its id goes to the next new
series, which a move would judge as the old rank.

But a tick that read none of the job's ranks (a gap on all its nodes at once, every row of it NaN) ended its
move, none of its ranks read held: seed 1100's narrow ranks, still past 1.5 by volatility, alerted at the next
read, all four. Such a tick tells nothing of the move, which is left as it was; a job no longer read at all
(its nodes down, the job ended) ends its move once the service has forgotten its held ranks, at most
``forget_after_seconds`` after their last read (a Prometheus outage, whose ticks read nothing and forget
nothing, leaves it as it was too).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from anomaly.detectors import Findings
from anomaly.fleet import peer_key
from anomaly.thresholds import BoolArray, FloatArray, IntArray

COLLECTIVE_MIN = 3  # GPUs of a workload that must have moved, at least
COLLECTIVE_SHARE = 0.5  # of the workload's GPUs in the tick
COLLECTIVE_SCORE = 0.5  # how far out of its band a GPU has moved: half-way
OWN_ALPHA = 0.1  # the weight of one read in a held rank's own distance from its band's middle (``_Move.own``)
# How far out of its band a rank still reads with its slowed job (``_Move.waiting``): a quarter of the way.
WITH_JOB_SCORE = COLLECTIVE_SCORE / 2
OWN_WAIT = 20  # the ticks a move may hold its ranks' own distances back (``_Move.waiting``): 10 min at 30 s
# How close to its job's value a rank reads with its slowed job (``_Move.waiting``), in its own band's
# half-widths: nearer than a still-slowed rank reads from its band's middle (``WITH_JOB_SCORE``).
WITH_JOB_VALUE = WITH_JOB_SCORE

Workload = tuple[str, ...]


def collective_workloads(f: Findings) -> set[Workload]:
    """The workloads (``peer_key`` without peer labels) at least half of whose rows in ``f``, and at least
    ``COLLECTIVE_MIN``, scored over ``COLLECTIVE_SCORE``."""
    moved = np.flatnonzero(f.score > COLLECTIVE_SCORE)
    if moved.size < COLLECTIVE_MIN:
        return set()
    counts: dict[Workload, int] = {}
    for i in moved.tolist():
        key = peer_key(f.labels[i], ())
        if key is not None:
            counts[key] = counts.get(key, 0) + 1
    crowded = {k for k, n in counts.items() if n >= COLLECTIVE_MIN}
    if not crowded:
        return set()
    sizes: dict[Workload, int] = dict.fromkeys(crowded, 0)
    for lab in f.labels:
        key = peer_key(lab, ())
        if key in sizes:
            sizes[key] += 1
    return {k for k in crowded if counts[k] >= COLLECTIVE_SHARE * sizes[k]}


def _sides(f: Findings) -> FloatArray:
    """Per row, the side of its expected value its value is on (1 above, -1 below, 0 unknown): ``sign``
    where the detector gives it, else the value against ``yhat``. Not the band's edge: a rank out by its
    volatility alone is back inside its band, on the side its job went."""
    if f.sign is not None:
        side = np.sign(np.asarray(f.sign, np.float64))
    elif f.yhat is not None:
        side = np.sign(np.asarray(f.value, np.float64) - np.asarray(f.yhat, np.float64))
    else:
        side = np.zeros(len(f.labels))
    return np.nan_to_num(side)


def _past_band(f: Findings) -> BoolArray:
    """Per row, whether its value is past its band's edge: a rank out by its own value, not by the volatility
    its job's move left. A detector giving no band scores the value itself: past 1."""
    if f.lower is None or f.upper is None:
        past: BoolArray = np.nan_to_num(np.asarray(f.score, np.float64)) > 1.0
        return past
    value = np.asarray(f.value, np.float64)
    out: BoolArray = (value < np.asarray(f.lower, np.float64)) | (value > np.asarray(f.upper, np.float64))
    return out


def _half_width(f: Findings) -> FloatArray:
    """Per row, half its band's width; NaN where the detector gives no band."""
    if f.lower is None or f.upper is None:
        return np.full(len(f.labels), np.nan)
    half: FloatArray = (np.asarray(f.upper, np.float64) - np.asarray(f.lower, np.float64)) / 2
    return half


def _off_band(f: Findings, half: FloatArray) -> FloatArray:
    """Per row, how far its value is from its band's middle, in half-widths of the band (``half``, as
    ``_half_width`` gives it): 0.5 is half-way out, 1 its edge; NaN where the detector gives no band."""
    if f.lower is None or f.upper is None:
        return np.full(len(f.labels), np.nan)
    middle = (np.asarray(f.lower, np.float64) + np.asarray(f.upper, np.float64)) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        off: FloatArray = np.abs(np.asarray(f.value, np.float64) - middle) / half
    return off


def _median_of_others(values: FloatArray, among: BoolArray) -> FloatArray:
    """Per row, the median of ``values`` at the rows ``among`` but its own; NaN where there is none."""
    ranked = np.sort(values[among])
    n = ranked.size
    median = np.full(values.size, np.nan)
    if not n:
        return median
    # A row among them is left out: the rank of its value in ``ranked`` is skipped.
    skip = np.where(among, np.searchsorted(ranked, values), n)
    m = n - among.astype(np.int64)
    some = m > 0
    lo, hi = (m - 1) // 2, m // 2
    at_lo = ranked[np.minimum(lo + (lo >= skip), n - 1)]
    at_hi = ranked[np.minimum(hi + (hi >= skip), n - 1)]
    median[some] = ((at_lo + at_hi) / 2)[some]
    return median


def _rows_by_workload(labels: Sequence[Mapping[str, str]]) -> dict[Workload, IntArray]:
    """The rows of each workload among ``labels`` (``peer_key`` without peer labels)."""
    rows: dict[Workload, list[int]] = {}
    for i, lab in enumerate(labels):
        key = peer_key(lab, ())
        if key is not None:
            rows.setdefault(key, []).append(i)
    return {key: np.array(found, np.int64) for key, found in rows.items()}


@dataclass(slots=True)
class _Move:
    """One workload's move on one detector and query: the side most of its moved ranks went at its start
    (``side``: 1 up, -1 down), the ranks (series ids) that moved with it to that side then or at a later tick
    (``ranks``), those of them not settled (``held``), per held rank how far its value read from its band's
    middle since its workload last moved (``own``: an average weighted to the last reads, by ``OWN_ALPHA``),
    those that moved against it at such a tick (``others``: never its ranks), and at how many ticks since its
    workload last moved it held a read back from ``own`` (``waited``, up to ``OWN_WAIT``)."""

    held: set[int] = field(default_factory=set)
    ranks: set[int] = field(default_factory=set)
    own: dict[int, float] = field(default_factory=dict)
    others: set[int] = field(default_factory=set)
    side: float = 0.0
    waited: int = 0

    def settle(self, ids: IntArray, tick: _Tick, rows: IntArray, moving: bool) -> BoolArray:
        """Release the held ranks among ``ids`` (``rows`` of ``tick``) that a judged read finds settled, and,
        with the workload no longer moving, those out of their band by value, those whose value has kept
        half-way out since (``own``) and those read without a score; whether each row is held after."""
        held = np.fromiter((i in self.held for i in ids.tolist()), np.bool_, ids.size)
        scores, judged = tick.scores[rows], tick.judged[rows]
        free = held & judged & (np.nan_to_num(scores, nan=np.inf) <= COLLECTIVE_SCORE)
        if moving:  # the values are the job's again: what each rank showed of its own is moot
            self.own.clear()
            self.waited = 0
        else:
            unread = ~judged | np.isnan(scores)
            # Its distance is its own unless its job still sits where the move took it (seed 1300).
            own = held & ~unread & ~self.waiting(ids, tick, rows, ~unread, held)
            free |= held & (tick.past[rows] | unread | self._own_past(ids, tick.off[rows], own))
        for i in ids[free].tolist():
            self.held.discard(i)
            self.own.pop(i, None)
        result: BoolArray = held & ~free
        return result

    def forget(self, ids: set[int]) -> None:
        """Drop the series ``ids`` (forgotten: their ids may be given to other series)."""
        self.held -= ids
        self.ranks -= ids
        self.others -= ids
        for i in ids & self.own.keys():
            del self.own[i]

    def waiting(
        self, ids: IntArray, tick: _Tick, rows: IntArray, read: BoolArray, held: BoolArray
    ) -> BoolArray:
        """Per row (``rows`` of ``tick``, series ``ids``; ``held`` by the move), whether its read is held back
        from its distance: on the move's side, with more than half of the move's other ranks ``read`` on that
        side past ``WITH_JOB_SCORE``, its value within ``WITH_JOB_VALUE`` of its band's half-width of their
        median value, at one of the move's first ``OWN_WAIT`` ticks of holding back (module docstring).
        Counts the tick in ``waited`` where any is."""
        if self.waited >= OWN_WAIT:
            return np.zeros(ids.size, np.bool_)
        ranks = read & np.fromiter((i in self.ranks for i in ids.tolist()), np.bool_, ids.size)
        along = tick.sides[rows] == self.side
        out = ranks & along & (np.nan_to_num(tick.scores[rows]) > WITH_JOB_SCORE)
        others = int(ranks.sum()) - ranks.astype(np.int64)
        with_job = (int(out.sum()) - out.astype(np.int64)) > COLLECTIVE_SHARE * others
        # Its value as its job's: within a quarter of its band's half-width of theirs (module docstring).
        job = _median_of_others(tick.values[rows], out)
        with np.errstate(invalid="ignore"):
            close = np.abs(tick.values[rows] - job) <= WITH_JOB_VALUE * tick.half[rows]
        waiting: BoolArray = along & with_job & close & held
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


class _Tick:
    """What ``CollectiveMoves.update`` reads of one tick's findings, each worked out once: per workload its
    rows, per row its series id, score, whether it was judged, whether its value is past its band, and how
    far from its band's middle."""

    def __init__(self, f: Findings, ids: IntArray) -> None:
        self.ids = ids
        # Found once: looked up per move, a fleet-wide slowdown (625 jobs of 16 GPUs held on 25 queries) took
        # 34 s a tick (``bench_anomaly.py --open-moves``).
        self.rows_of = _rows_by_workload(f.labels)
        self.scores = np.asarray(f.score, np.float64)
        self.judged = f.judged_rows()
        self.past = _past_band(f)
        self.half = _half_width(f)
        self.off = _off_band(f, self.half)
        self.sides = _sides(f)
        self.values = np.asarray(f.value, np.float64)

    def rows(self, workload: Workload) -> IntArray:
        """The rows of ``workload`` (none when it is not in the tick)."""
        return self.rows_of.get(workload, np.zeros(0, np.int64))


class CollectiveMoves:
    """The workloads' moves (module docstring) by detector and query, then workload: the rows they hold
    raise no alert."""

    def __init__(self, moves: dict[tuple[str, str, Workload], _Move] | None = None) -> None:
        # By detector and query first: a tick settles the moves of one finding's, not every move's.
        self._moves: dict[tuple[str, str], dict[Workload, _Move]] = {}
        for (detector, query, workload), move in (moves or {}).items():
            self._moves.setdefault((detector, query), {})[workload] = move

    def update(self, f: Findings, collective: set[Workload]) -> BoolArray:
        """Take this tick's findings ``f``, whose ``collective`` workloads moved (``collective_workloads``):
        settle the held rows, start the moves of the workloads that began moving and hold again the ranks
        of those that move on; per row, whether it is held."""
        held = np.zeros(len(f.labels), np.bool_)
        if f.ids is None:  # no series to hold
            return held
        tick = _Tick(f, np.asarray(f.ids, np.int64))
        moves = self._moves.setdefault((f.detector, f.query), {})
        for workload, move in list(moves.items()):
            rows = tick.rows(workload)
            if not rows.size:  # none of its job read (a gap on all its nodes): no evidence; ended once
                if not move.held:  # its held ranks are forgotten (``forget``: its job gone)
                    del moves[workload]
                continue
            moving = workload in collective
            held[rows] = move.settle(tick.ids[rows], tick, rows, moving)
            # A held rank this tick did not read (a gap) stays held while the move lasts: it ends once its job
            # no longer moves and none of the ranks read is held (the job restarted elsewhere, the unread let
            # go with it).
            if not moving and not held[rows].any():
                del moves[workload]
        for workload in collective:
            rows, side = _with_workload(tick, workload)
            if workload not in moves:
                if side is None:  # a tie its job's lean does not break: no side yet (module docstring)
                    continue
                moves[workload] = _Move(side=side)
            move = moves[workload]
            ids = tick.ids[rows]
            if side == move.side:  # its start, or a tick it moves to its start's side (module docstring)
                moved = set(ids[tick.sides[rows] == side].tolist())
                move.ranks |= moved - move.others
                move.others |= set(ids.tolist()) - moved - move.ranks
            # Held again: its ranks among the rows moving on the tick's side (a tie's: the move's own).
            along = tick.sides[rows] == (move.side if side is None else side)
            rows = rows[along & np.fromiter((i in move.ranks for i in ids.tolist()), np.bool_, rows.size)]
            move.held.update(tick.ids[rows].tolist())
            held[rows] = True
        if not moves:
            del self._moves[(f.detector, f.query)]
        return held

    def forget(self, ids: IntArray) -> None:
        """Drop the series ``ids`` the service forgot (``SeriesIndex.expire``) from every move: their ids go
        to the next new series, which a move would judge as the old one's (its rank, or kept out); a move
        left holding none ends at its next tick."""
        if not ids.size:
            return
        gone = set(np.asarray(ids, np.int64).tolist())
        for moves in self._moves.values():
            for move in moves.values():
                move.forget(gone)

    def holds(self, detector: str, query: str) -> bool:
        """Whether a move of ``detector`` and ``query`` is recorded (its rows are to be settled)."""
        return bool(self._moves.get((detector, query)))

    def held(self) -> int:
        """How many series are held."""
        return sum(len(move.held) for moves in self._moves.values() for move in moves.values())

    def state(self) -> list[list[Any]]:
        """As JSON values, one ``[detector, query, workload, [held ids], [its ranks' ids], [[id, own], ...],
        [its others' ids], side, waited]`` per move (``restored`` reads it)."""
        return [
            [
                d,
                q,
                list(w),
                sorted(m.held),
                sorted(m.ranks),
                [[i, m.own[i]] for i in sorted(m.own)],
                sorted(m.others),
                m.side,
                m.waited,
            ]
            for (d, q), moves in sorted(self._moves.items())
            for w, m in sorted(moves.items())
        ]

    @classmethod
    def restored(cls, state: Sequence[Sequence[Any]]) -> CollectiveMoves:
        """The moves ``state()`` gave ``state`` of; ``ValueError`` or ``TypeError`` for one that does not
        fit."""
        moves: dict[tuple[str, str, Workload], _Move] = {}
        for detector, query, workload, held, ranks, own, others, side, waited in state:
            moves[(str(detector), str(query), tuple(str(w) for w in workload))] = _Move(
                {int(i) for i in held},
                {int(i) for i in ranks},
                {int(i): float(d) for i, d in own},
                {int(i) for i in others},
                float(side),
                int(waited),
            )
        return cls(moves)


def _with_workload(tick: _Tick, workload: Workload) -> tuple[IntArray, float | None]:
    """The rows of ``workload`` that moved this tick (over ``COLLECTIVE_SCORE``), and the side most of them
    went: a rank moving against its job (a straggler) is not its move's. Where as many went one way as
    another, the side its rows lean to on the whole (their scores, signed by side, summed over every row
    of the workload: the job's mean); None where that does not break the tie either."""
    every = tick.rows(workload)
    rows = every[tick.scores[every] > COLLECTIVE_SCORE]
    values, counts = np.unique(tick.sides[rows], return_counts=True)
    tied = values[counts == counts.max()]
    if tied.size == 1:
        return rows, float(tied[0])
    lean = float(np.sign(np.nansum(tick.sides[every] * tick.scores[every])))
    return rows, lean if lean and lean in tied else None
