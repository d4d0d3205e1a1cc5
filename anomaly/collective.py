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
seed 1100, and a value out is a fault of its own (unless it is its still slowed job's value: below). But a
rank of the move let go is held again at each tick its workload moves and it with it: one read mid-move with
fewer than half of the job half-way out (the wide ranks' noise) let go the ranks still past their narrow
bands, and the move, left open on the others, held nothing of them as the job moved on and came back, and
they alerted as before (the first version, fix/rev_sympathy2).

A rank's own fault may show as volatility alone: a power flapping +-80 W inside the band its job's move
widened was held until that band learnt the flapping, so it never alerted, where without the move it did.
What the move left decays with each quiet read; the flapping keeps the values away from the band's middle.
So, its job no longer moving, a held rank's distance from the middle (in half-widths) is averaged over its
reads since (``Move.own``, about the last 10 reads), and one whose average passes half-way is let go: one
noisy read, or a heavy-tailed rank's spike, does not. And a read without a score (NaN, or a row its detector
did not judge) is no evidence of moving with the job: the rank is let go; held, it kept the move open for as
long as it read so.

But a job can stay where its move took it and still not count as moving: seed 1300's 16 ranks all fell to
about 47 % for a rank's 10-minute thermal slowdown, and 15 of them, their bands learnt wide by the job's
earlier slowdowns, scored 0.43-0.56, under half-way from the third tick on. The one narrow rank's distance,
the job's and not its own, passed half-way in 9 reads: let go, it alerted 428 s into the fault. Holding back
its average while more than half of the move's other ranks merely sat on the move's side (fix/slowed,
reverted) hid a rank's own flapping for as long as its job's ranks read even slightly that way (5 % of a
band's width: held after 500 reads). So a held rank's read is held back from its average (``Move.waiting``)
only where all of these hold: it is on the move's side itself (a read on the other side is surely its own,
so a flapping rank's every other read still counts); more than half of the move's other ranks read are on
that side and score past ``WITH_JOB_SCORE`` (a quarter of the way out: still slowed, if under half-way, not
back in their bands' middles with a trace of noise); its value is within a quarter of its band's half-width
(``WITH_JOB_VALUE``) of those ranks' median value (the rank reads what its job reads: seed 1300's all read
47 %; one whose own fault took it to 10 % while its job read 40 % was held back 20 reads for nothing); and the
move has held reads back at fewer than ``OWN_WAIT`` ticks since its job last moved (``Move.waited``), so that
no rank's own fault hides behind its job for more than about 14 minutes at 30 s ticks (``OWN_WAIT`` reads,
then the average's). The job's value is read where the job shows it is still slowed, the ranks scoring past
``WITH_JOB_SCORE``, and as their median: one or a few of them off on faults of their own do not move it. The
difference is measured in the rank's own half-widths, the unit of its distance and of its average, and a
quarter is ``WITH_JOB_SCORE``'s reading turned on the job's value: a rank that far from it has moved away
from its job as far as a slowed rank has from its band's middle, a move of its own.

And a job can fall together and never count as moving: wide bands kept seeds 1401-1403's slowed ranks under
half-way for minutes, seed 1301's climbed there by volatility at each band's pace, and a narrow rank alerted
first. So at a tick where one of a workload's rows scores past 1 and more than half of them (and
``COLLECTIVE_MIN``) read on one side past ``WITH_JOB_SCORE`` (``_sits``), a move starts where none is, its
ranks those of them within ``WITH_JOB_VALUE`` half-widths of the others' median value (not a node's ranks far
below their job's); it keeps out none (``others``). It is the job's sitting, not its moving: ``waited`` is
not reset, and the move holds its ranks for ``SIT_READS`` reads (``Move.sat``), then only those reading its
job's noise (below): a rank's own fault that keeps it near its job's value, or flaps about it in a band so
wide its own distance never averages half-way (fix/movestart held such a one for good), is let go 15 minutes
after the start at the latest.
Once its job counts as moving the move is the job's as any other, its held ranks kept (one unread then keeps
its place); moving the other way, or holding none, it gives way to a move begun afresh, nothing of it carried
(fix/movestart's kept its ``others``: the rank busy at the sitting went unheld at the job's next fall).

The bound must not begin again while the job stays: a move ended as its job read a quarter out one read and
an eighth the next, the next read started another, and a rank's own fault alerted at single reads, never
raised. So a sitting move ends only once it has held none, its job read back (under a quarter on its side),
``BACK_READS`` reads in a row, its bound spent or not: a rank it let go (its own distance, through the reads
back) is raised before a new start can hold it (fix/movestart2 ended the move counting the reads back alone,
and a job sitting by spells of 5 reads, 12 back, had its rank let go at the 11th and held again 2 reads
later: never raised). A move of the job's moving that ends, holding none, where a rank of its job still reads
a quarter out its way is kept so, its bound spent, on the same terms (its rank let go as its job flickered
about a quarter was held again by a sitting start). What the sitting start may hide is thus a rank's own
fault at or near its job's value, for ``SIT_READS`` reads, then until it is raised (or, within its job's
spread, for as long as its job sits: below). What it leaves is a job's second fall within ``BACK_READS`` reads
of its partial return: no sitting start holds its narrow ranks then (a fall past half-way still starts a
move; a strict xfail in ``test_collective_sitting.py``). While its job sits, within that bound, a sitting move
takes in a rank come to read its job's value past half-way (unread at its start, or under a quarter then): its
job's noise as much as the others. Carried into a move of its job's moving, it keeps as ranks only those it
holds: one it let go is judged afresh there (a straggler it held in a job's noise was held as its rank).

But the bound let a healthy rank go too: seed 1402's node-02 GPU 3, its band narrower than its 15 fellow
ranks', read its job's 44-52 % within 0-4 points of the others' median (their own spread 1.0-1.4 points),
inside its band, past 1 by the volatility its job's fall left; let go at its sitting move's 31st read, it
alerted 3 reads later, 1,270 s into node-02 GPU 1's hour-long thermal runaway, its job never counting as
moving. What tells it from a rank flapping about its job's value by a fault of its own is how far from its job
it reads against how far its job's ranks read from each other. So at each read its job sits, a sitting move
folds each held rank's distance from the median value of its job's other ranks a quarter out its way, in its
job's spreads (those others' mean such distance, at least ``SPREAD_FLOOR`` of the rank's band's half-width:
integer utilisation often gives a spread of 0), into an average since its start (``Move.near``, by
``OWN_ALPHA``); past ``SIT_READS`` it keeps holding a rank only while its value is inside its band, its job
sits, and that average is within ``SPREAD_TIMES`` (3). The rest are let go as before, for good: past its bound
a move takes in none. A rank flapping 20 points about its job's 47 % is 0.2 of its band's half-width from it,
at its job's value as ``WITH_JOB_VALUE`` reads it, but 4-5 of its job's spreads away (the floor's): let go at
the bound (``test_collective_runaway.py``). What this may hide is a rank's own fault that keeps it inside its
band within three of its job's spreads of its job's value, for as long as its job sits: a fault that makes it
read as its job's others do.

And the bound let go the ranks that came back with their job: seed 1511's node-02 GPU 0, held by its job's
sitting start through node-03 GPU 1's power brake, came back with its job to 95 % nine reads before the
bound, inside its band (58-123 %), its own distance 0.02-0.1, scoring 3.1 by the volatility the fall left and
decaying about 9 % a read (the detector's fast error); at the bound its job no longer sat, so every held rank
was let go, this one at 1.39, raised two reads later, 330 s after its job's return (seed 1522's the same).
So a sitting move counts the reads in a row its job has read back, under a quarter on its side
(``Move.returned``, from the return, before its bound or past it), and past ``SIT_READS``, its job back,
keeps holding for ``RETURN_READS`` such reads the ranks that came back with it: inside their bands, at its
value (``at_job_value`` among all its other ranks read), ``near`` within ``SPREAD_TIMES`` from its sitting.
The return's volatility settles them under half-way (``Move.settle``) within those reads (a score of 20
takes about 29); a rank not back with its job is let go at the bound as before, one whose score does not
fall is let go after ``RETURN_READS`` (``test_collective_return.py``). What this may hide is a rank's own
fault that keeps it at its job's value inside its band after its job's return, for ``RETURN_READS`` reads
(15 minutes) at most.

A value past its band was let go as the rank's own at any read its job did not count as moving, the job
sitting where it fell or not: seed 1401's node-02 GPU 3, its band learnt narrow (68-118 %), read its job's
47 % past the band's edge (1.73), was held by its job's sitting start and let go at the next read, and
alerted at its third, 97 s into node-01 GPU 3's ``nvlink_down``, two reads before its job counted as moving.
So a value past its band is a rank's own only where its read is not held back from its distance
(``Move.waiting``: on the move's side, more than half of the move's other ranks a quarter out there, its
value within ``WITH_JOB_VALUE`` of their median, at one of the move's first ``OWN_WAIT`` ticks of holding
back), in a move of its job's sitting or moving alike: past ``OWN_WAIT`` such ticks it is let go as before.
What this may hide is a rank's own fault taking it past its band to its job's value, for ``OWN_WAIT`` reads.

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
reads after and never alerted. So a move keeps the side its start went (``Move.side``): at a tick its job
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

A rank past its band against its job. At a tick its workload counts as moving, every anomalous row of it was
dropped as the workload's, held or not: a straggler busier while its job waits among them. A move's volatility
keeps its job counting as moving for as long as it decays, tens of minutes after the job is back: seed 1507's
node-05 went down for 30 minutes, its job's 12 other ranks waited at the idle clock, and at its return they
ran at 1,980 MHz inside their bands, above the middles the stall had lowered, still scoring 9.6 falling to 1.4
ten minutes on. Node-05 GPU 2 came back a straggler (``straggler_while_down``): 1,188 MHz, past its band
below, scoring 5.2, dropped as its job's at every read; the fleet alerts that would have told it were open
from a power brake 75 minutes before, in their hold, and it was raised 630 s after the return, when one
re-escalated. So a rank whose value is past its band on the side against the one most of its workload's
moved rows went that tick (``_with_workload``; none on a tie), and not at its job's value (``at_job_value``:
within ``WITH_JOB_VALUE`` of its band's half-width of the median of its job's other ranks read), is its own
fault, not its job's move, and is not dropped (``CollectiveMoves.judge``, ``kept``), held or not: a rank its
move held from its job's fall that stays past its band as the job comes back, away from the job's value, has
not come back with it. At its job's value it is its job's level (a job back at another level, the rank's band
narrower than its fellows' or parked through its node's outage, their middles lowered by the stall: its side
and theirs differ for the bands', not the values'). Past its band the way its job went, or out by its
volatility alone, it is dropped as before (``test_collective_against.py``).

A rank a lingering move never had. A job's move can outlast the fall that started it: seed 1534's node-06 was
down 27 minutes, its job stalled, and the move (down) held the twelve ranks read; back, the job counted as
moving up for ten minutes on the stall's volatility, the move holding them still, and then node-08 GPU 2's
``nvlink_down`` cut the job to 48 % (util) and 350 W. Its twelve, their bands widened by the stall, read a
quarter out, one to four past half-way: the job never counted as moving, and the move held one rank (or,
holding none, was kept so, its bound spent, ``after_still``). Node-06's four, new series since their return
and so never the move's ranks, climbed past 1 by volatility at their job's value, inside their bands, and
five alerts were raised 393-423 s into the fault (seed 1519's six the same, node-07's, under a power brake).
A sitting start would have held them, but one is tried only where the job has no move. So where a job sits a
quarter out on its move's side, not moving, and a row of it alerts, the move (outside a sitting bound) takes
in the ranks reading its job's value past half-way (``near_job``, as a sitting move's intake) inside their
bands that it never had: neither its ranks (held or let go) nor kept out (``others``) (``_taken_in``). Not
one past its band: a move holds such a one back only ``OWN_WAIT`` reads, so taking it in only moves its alert
to the bound's end (seed 1511's node-02 GPU 0, back from its outage with its narrow band, past it at its
job's 47 %: held the bound, the fault's whole 600 s, let go as its own and raised by its return's volatility
682 s after the fault, where left alone it was raised beside it, at 82 s). A move of the job's moving
holds them as its ranks, by its rules (``OWN_WAIT``, ``own``); one kept holding none, its bound spent, gives
way to a sitting move holding them, which keeps out the ranks it carried (``after_still`` now keeps its
ranks and ``others``); one its bound spent still holding ranks takes in none (not seen in the evals). A rank
the move let go, or kept out, is not taken in again; one away from its job's value, or of a job not sitting,
alerts as before (``test_collective_intake.py``). What this may hide is a fault of a rank its job's move never
had that keeps it at its job's value while the job sits: for a sitting move's bound, or, in a move of the
job's moving, while its value stays in its band and its own distance averages under half-way.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from anomaly.collectivemove import (
    BACK_READS,
    COLLECTIVE_MIN,
    COLLECTIVE_SCORE,
    COLLECTIVE_SHARE,
    OWN_WAIT,
    SIT_READS,
    WITH_JOB_SCORE,
    Move,
    at_job_value,
    near_job,
)
from anomaly.collectivestill import after_still, settle_still
from anomaly.collectivetick import Tick, Workload
from anomaly.detectors import Findings
from anomaly.fleet import peer_key
from anomaly.thresholds import BoolArray, IntArray

__all__ = [
    "BACK_READS",
    "COLLECTIVE_MIN",
    "COLLECTIVE_SCORE",
    "COLLECTIVE_SHARE",
    "OWN_WAIT",
    "SIT_READS",
    "WITH_JOB_SCORE",
    "CollectiveMoves",
    "collective_workloads",
]


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


class CollectiveMoves:
    """The workloads' moves (module docstring) by detector and query, then workload: the rows they hold
    raise no alert."""

    def __init__(self, moves: dict[tuple[str, str, Workload], Move] | None = None) -> None:
        # By detector and query first: a tick settles the moves of one finding's, not every move's.
        self._moves: dict[tuple[str, str], dict[Workload, Move]] = {}
        for (detector, query, workload), move in (moves or {}).items():
            self._moves.setdefault((detector, query), {})[workload] = move

    def update(self, f: Findings, collective: set[Workload]) -> BoolArray:
        """Take this tick's findings ``f``, whose ``collective`` workloads moved (``collective_workloads``):
        settle the held rows, start the moves of the workloads that began moving and hold again the ranks
        of those that move on; per row, whether it is held."""
        return self.judge(f, collective)[0]

    def kept(self, f: Findings, collective: set[Workload], rows: Iterable[int]) -> list[int]:
        """``update``, then the rows of ``rows`` (of ``f``) left to alert: those neither held by a move nor of
        a workload moving this tick (``collective``), and a rank its own there, held or not (``judge``)."""
        held, own = self.judge(f, collective)
        return [i for i in rows if own[i] or (not held[i] and peer_key(f.labels[i], ()) not in collective)]

    def judge(self, f: Findings, collective: set[Workload]) -> tuple[BoolArray, BoolArray]:
        """``update``'s work: per row of ``f``, whether a move holds it, and whether it is a rank of a
        workload moving this tick whose value is past its band against the side its workload went, away from
        its job's value (``_against``; module docstring: its own fault, not its job's move)."""
        held = np.zeros(len(f.labels), np.bool_)
        if f.ids is None:  # no series to hold
            return held, np.zeros(len(f.labels), np.bool_)
        tick = Tick(f, np.asarray(f.ids, np.int64))
        went: dict[Workload, float | None] = {}  # per workload moving, the side it went (``_with_workload``)
        moves = self._moves.setdefault((f.detector, f.query), {})
        still: list[tuple[Workload, Move]] = []
        for workload, move in list(moves.items()):
            if workload not in tick.index:  # none of its job read (a gap on all its nodes): no evidence;
                if not move.held:  # ended once its held ranks are forgotten (``forget``: its job gone)
                    del moves[workload]
            elif workload in collective:
                rows = tick.rows(workload)
                held[rows] = move.settle(tick.ids[rows], tick, rows, True)
            else:
                still.append((workload, move))
        # Those of a job read not moving: all at once where each row is a series of its own, as the detectors
        # give them (``anomaly.collectivestill``).
        settle = settle_still if tick.unique else settle_each
        for workload, after in settle(tick, still, held):
            if after is None:
                del moves[workload]
            else:
                moves[workload] = after
        for workload in collective:
            rows, side = _with_workload(tick, workload)
            went[workload] = side
            if (sat := moves.get(workload)) and sat.sat and side is not None:  # its job's sitting started it
                if side == sat.side and sat.held:  # its start: its held kept, a move as any other
                    sat.sat = sat.back = sat.returned = 0
                    sat.near.clear()  # its ranks' distances from their job's value: a sitting move's alone
                    sat.ranks = set(sat.held)  # those it let go, not moving with the job now, kept out
                else:  # none held, or the job gone the other way: a new move, nothing of it carried
                    del moves[workload]
            if workload not in moves:
                if side is None:  # a tie its job's lean does not break: no side yet (module docstring)
                    continue
                moves[workload] = Move(side=side)
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
        _sittings(tick, f, moves, collective, held)
        if not moves:
            del self._moves[(f.detector, f.query)]
        return held, _against(tick, went)

    def forget(self, ids: IntArray) -> None:
        """Drop the series ``ids`` the service forgot (``SeriesIndex.expire``) from every move: their ids go
        to the next new series, which a move would judge as the old one's (its rank, or kept out); a move
        left holding none ends at its next tick its job is read at, or, one kept for its job's sitting or
        part-way return, once that job has read back ``BACK_READS`` in a row (``after_still``)."""
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
        [its others' ids], side, waited, sat, back, [[id, near], ...], returned]`` per move (``restored``
        reads it)."""
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
                m.sat,
                m.back,
                [[i, m.near[i]] for i in sorted(m.near)],
                m.returned,
            ]
            for (d, q), moves in sorted(self._moves.items())
            for w, m in sorted(moves.items())
        ]

    @classmethod
    def restored(cls, state: Sequence[Sequence[Any]]) -> CollectiveMoves:
        """The moves ``state()`` gave ``state`` of; ``ValueError`` or ``TypeError`` for one that does not
        fit."""
        moves: dict[tuple[str, str, Workload], Move] = {}
        for d, q, workload, held, ranks, own, others, side, waited, sat, back, near, returned in state:
            moves[(str(d), str(q), tuple(str(w) for w in workload))] = Move(
                {int(i) for i in held},
                {int(i) for i in ranks},
                {int(i): float(d) for i, d in own},
                {int(i) for i in others},
                float(side),
                int(waited),
                int(sat),
                int(back),
                {int(i): float(d) for i, d in near},
                int(returned),
            )
        return cls(moves)


def _sittings(
    tick: Tick, f: Findings, moves: dict[Workload, Move], collective: set[Workload], held: BoolArray
) -> None:
    """Where a job of ``tick`` (of ``f``) sits a quarter out (module docstring) and a row of it alerts (not
    every job at each tick): a move lingering on that side outside its sitting bound takes in the ranks it
    never had (``_taken_in``, "A rank a lingering move never had"); a job without a move gets a sitting
    start. Sets ``held`` at the rows they hold."""
    workloads = list(tick.index)
    alerting = {workloads[g] for g in tick.group[list(f.anomalous())].tolist() if g >= 0}
    for workload in sorted(alerting - collective):
        rows = tick.rows(workload)
        move = moves.get(workload)
        if after := _taken_in(move, tick, rows) if move else _sitting(tick, rows):
            moves[workload] = after
            held[rows[np.isin(tick.ids[rows], list(after.held))]] = True


def settle_each(
    tick: Tick, still: Sequence[tuple[Workload, Move]], held: BoolArray
) -> list[tuple[Workload, Move | None]]:
    """Settle the moves ``still`` (each of a workload ``tick`` read, not moving at it) one after another: set
    ``held`` at their rows; per move, itself, a move in its place, or None (ended)."""
    after: list[tuple[Workload, Move | None]] = []
    for workload, move in still:
        rows = tick.rows(workload)
        sits = _sits(tick, rows, move.side)
        if move.sat:  # a read since its job's sitting started it: bounded (SIT_READS)
            move.sit(tick, rows, sits)
        held[rows] = move.settle(tick.ids[rows], tick, rows, False)
        part = bool(np.any(tick.out_past(WITH_JOB_SCORE)[rows] == move.side))
        after.append((workload, after_still(move, bool(held[rows].any()), sits, part)))
    return after


def _sits(tick: Tick, rows: IntArray, side: float) -> bool:
    """Whether more than half of ``rows`` of ``tick``, and at least ``COLLECTIVE_MIN``, read on ``side`` past
    ``WITH_JOB_SCORE``: the job sits where a move took it, or one that fell together under wide bands."""
    out = int(np.count_nonzero(tick.out_past(WITH_JOB_SCORE)[rows] == side))
    return out >= COLLECTIVE_MIN and out > COLLECTIVE_SHARE * rows.size


def _sitting(tick: Tick, rows: IntArray) -> Move | None:
    """A move of the workload of ``rows`` (of ``tick``) where it sits a quarter out on a side (module
    docstring), holding its ranks: those reading its value there; None where it sits on neither or none do."""
    for side in (-1.0, 1.0):
        if _sits(tick, rows, side):
            ranks = near_job(tick, rows, side)
            return Move(set(ranks), ranks, side=side, sat=1) if ranks else None
    return None


def _taken_in(move: Move, tick: Tick, rows: IntArray) -> Move | None:
    """``move`` (of the workload of ``rows`` of ``tick``, which does not move at it) having taken in the ranks
    it never had (neither its ranks nor kept out) that read their job's value past half-way where the job sits
    on its side, outside a sitting bound (module docstring); None where it takes in none. A move of its job's
    moving holds them as its ranks; one its bound spent holding none gives way to a sitting move holding them,
    which keeps out the ranks it had; one of its bound spent still holding ranks takes in none."""
    if 0 < move.sat <= SIT_READS or (move.sat and move.held) or not _sits(tick, rows, move.side):
        return None
    unsettled = rows[tick.scored_past(COLLECTIVE_SCORE)[rows] & ~tick.past[rows]]  # inside their bands
    new = near_job(tick, rows, move.side, unsettled) - move.ranks - move.others
    if not new:
        return None
    if not move.sat:
        move.ranks |= new
        move.held |= new
        return move
    return Move(set(new), move.ranks | move.others | new, side=move.side, sat=1)


def _against(tick: Tick, went: dict[Workload, float | None]) -> BoolArray:
    """Per row of ``tick``, whether it is a rank of a workload moving this tick (``went``: the side most of
    each one's moved rows went, ``_with_workload``) whose value is past its band against that side,
    not at its job's value (``at_job_value``, among the workload's other rows read): its own fault, not its
    job's move (module docstring)."""
    out = np.zeros(tick.ids.size, np.bool_)
    for workload, side in went.items():
        if side is None:
            continue
        every = tick.rows(workload)
        against = tick.past[every] & (tick.sides[every] == -side)
        if against.any():  # not where it reads its job's value (the job's level, not the rank)
            against &= ~at_job_value(tick, every, ~np.isnan(tick.values[every]))
            out[every[against]] = True
    return out


def _with_workload(tick: Tick, workload: Workload) -> tuple[IntArray, float | None]:
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
