"""Seed 1300's late sympathetic alert (``eval_gpu_faults.py --seed 1300``, benchmarks/README.md) in small:
a job slowed for the whole of a rank's 10-minute fault, whose other ranks' bands were learnt wide by
its earlier slowdowns, so that they read just under half-way once the move began."""

from __future__ import annotations

import json

import numpy as np
import pytest

from anomaly.collective import OWN_WAIT, CollectiveMoves
from anomaly.detectors import Findings
from tests.anomaly.collective_rows import UTIL, banded, holds, job_ranks, node_ranks

RANKS = job_ranks("8171", nodes=(1, 2, 3, 4))
NARROW = 15  # node-04 GPU 3: its band learnt high and narrow as the busy rank of its own earlier runaway


def _tick(wide_score: float) -> Findings:
    """One read of the slowed job: every rank at 47 %, the fifteen wide bands about -85..230 % scoring
    ``wide_score``, node-04 GPU 3's 45..146 % band scoring 1.2."""
    n = len(RANKS)
    score = np.full(n, wide_score)
    lower, upper, yhat = np.full(n, -85.0), np.full(n, 230.0), np.full(n, 72.0)
    score[NARROW], lower[NARROW], upper[NARROW], yhat[NARROW] = 1.2, 45.0, 146.0, 95.5
    return banded(UTIL, RANKS, score, np.full(n, 47.0), lower, upper, yhat)


def test_a_narrow_rank_stays_held_while_its_whole_job_stays_slowed_with_wide_banded_ranks_under_half_way():
    moves = CollectiveMoves()
    first = _tick(0.51)  # the slowdown's first read: the job moves, the narrow rank with it
    assert holds(moves, first)[NARROW]
    held = []
    for _ in range(18):  # nine minutes more of the same slowed job, its wide ranks at 0.49
        f = _tick(0.49)
        held.append(bool(holds(moves, f)[NARROW]))
    assert all(held)


def test_a_narrow_rank_stays_held_while_its_job_stays_slowed_with_three_of_its_ranks_far_below_the_rest():
    """Its job's value is its ranks' median, not their mean: three wide ranks read at -60 % (0.84 of the way
    out, on the move's side) would draw a mean of the others to 26 %, a fifth of the narrow band's width
    from its 47 %; the median stays at the 47 % the narrow rank reads with its job."""
    moves = CollectiveMoves()
    first = _tick(0.51)
    assert holds(moves, first)[NARROW]
    held = []
    for _ in range(OWN_WAIT):
        f = _tick(0.49)
        f.value[:3], f.score[:3] = -60.0, 0.84
        held.append(bool(holds(moves, f)[NARROW]))
    assert all(held)


def test_the_narrow_rank_of_a_job_slowed_for_good_is_let_go_after_a_bounded_wait():
    """Its job held where the move took it does not hide the rank's own distance for ever: after ``OWN_WAIT``
    ticks of holding it back, its average counts again (a rank's own fault shows so too)."""
    moves = CollectiveMoves()
    first = _tick(0.51)
    assert holds(moves, first)[NARROW]
    held = [bool(holds(moves, f)[NARROW]) for f in (_tick(0.49) for _ in range(100))]
    assert all(held[:OWN_WAIT]) and not all(held[: OWN_WAIT + 10])


def _flapping(ranks: int, k: int, others: float, other_score: float, unread: tuple[int, ...]) -> Findings:
    """Read ``k`` after a job's move down: its ranks at ``others`` of their 0..100 bands (middle 50), scoring
    ``other_score``, those in ``unread`` not read (NaN), the last one flapping 45 points either side of its
    middle on alternate reads (0.9 of the way out), scoring 1.3 by its volatility."""
    value, score = np.full(ranks, others), np.full(ranks, other_score)
    value[-1], score[-1] = 50.0 + (45.0 if k % 2 else -45.0), 1.3
    for u in unread:
        value[u], score[u] = np.nan, np.nan
    return banded(UTIL, node_ranks(ranks), score, value, np.zeros(ranks), np.full(ranks, 100.0))


def _flapping_let_go(
    ranks: int, others: float, other_score: float, unread: tuple[int, ...] = ()
) -> int | None:
    """After how many reads the flapping rank of a job that moved down together (every rank at 20 %, scoring
    0.7) is let go; None if still held after 100."""
    moves = CollectiveMoves()
    first = banded(
        UTIL,
        node_ranks(ranks),
        np.full(ranks, 0.7),
        np.full(ranks, 20.0),
        np.zeros(ranks),
        np.full(ranks, 100.0),
    )
    assert holds(moves, first)[-1]
    for k in range(100):
        f = _flapping(ranks, k, others, other_score, unread)
        if not holds(moves, f)[-1]:
            return k + 1
    return None


@pytest.mark.parametrize(
    ("ranks", "others", "unread"),
    [
        pytest.param(16, 45.0, (), id="16-ranks-just-on-the-move-side"),
        pytest.param(16, 55.0, (), id="16-ranks-just-on-the-other-side"),
        pytest.param(3, 45.0, (), id="3-ranks"),
        pytest.param(3, 45.0, (0,), id="3-ranks-one-other-unread"),
        pytest.param(4, 45.0, (0,), id="4-ranks-one-other-unread"),
    ],
)
def test_a_rank_flapping_in_its_band_is_let_go_while_its_jobs_other_ranks_sit_back_near_their_middles(
    ranks: int, others: float, unread: tuple[int, ...]
):
    """The review of fix/slowed: its other ranks 5 % of a band's width on the move's side, scoring 0.2, are
    back where they belong, not a job still slowed; the flapping is the rank's own and alerts as it did."""
    let_go = _flapping_let_go(ranks, others, 0.2, unread)
    assert let_go is not None and let_go <= 10


def test_a_rank_flapping_in_its_band_is_let_go_by_its_reads_off_the_move_side_while_its_job_stays_slowed():
    """Its job's other ranks still a quarter of the way out on the move's side (scoring 0.4), its reads on
    that side are held back, but those on the other side are its own: let go well before ``OWN_WAIT``."""
    let_go = _flapping_let_go(16, 45.0, 0.4)
    assert let_go is not None and let_go <= OWN_WAIT


def test_a_rank_flapping_far_from_its_slowed_jobs_value_is_let_go_as_soon_as_with_its_job_back():
    """Its job's other ranks at 45 % still scoring 0.4, the flapping rank's reads on the move's side (5 %) are
    0.8 of its band's half-width from its job's value: its own, not its job's, so none is held back and it
    is let go at the read it is when its job's ranks are back near their middles (scoring 0.2)."""
    assert _flapping_let_go(16, 45.0, 0.4) == _flapping_let_go(16, 45.0, 0.2)


def _held_reads(moves: CollectiveMoves, reads: int, wide_score: float = 0.49) -> list[bool]:
    """Whether the narrow rank is held at each of ``reads`` more reads of the slowed job."""
    held = []
    for _ in range(reads):
        f = _tick(wide_score)
        held.append(bool(holds(moves, f)[NARROW]))
    return held


def test_a_narrow_rank_is_held_back_for_a_whole_wait_again_once_its_job_moves_again():
    """The wait is counted since the job last moved: slowed a second time while the narrow rank is still
    held (its first wait spent, its own distance counting again), the job gives it a whole wait again."""
    moves = CollectiveMoves()
    first = _tick(0.51)
    assert holds(moves, first)[NARROW]
    assert all(_held_reads(moves, OWN_WAIT + 2))  # the wait spent, two reads of its own distance counted
    again = _tick(0.51)
    assert holds(moves, again)[NARROW]
    assert all(_held_reads(moves, OWN_WAIT))


def test_a_move_restored_mid_wait_lets_its_narrow_rank_go_at_the_read_the_uninterrupted_one_does():
    """A restart from a snapshot taken 10 reads into the wait (``state``, through JSON) goes on with the
    wait it had, not a fresh one: the narrow rank is let go at the same read as without the restart."""
    moves = CollectiveMoves()
    first = _tick(0.51)
    assert holds(moves, first)[NARROW]
    assert all(_held_reads(moves, 10))
    restarted = CollectiveMoves.restored(json.loads(json.dumps(moves.state())))
    held = _held_reads(moves, 30)
    assert not all(held)
    assert _held_reads(restarted, 30) == held


def _job_tick(values: list[float], scores: list[float]) -> Findings:
    """One read of a job of ``len(values)`` ranks on node-01, every band 0..100 % (middle 50)."""
    n = len(values)
    return banded(UTIL, node_ranks(n), scores, values, np.zeros(n), np.full(n, 100.0))


def test_a_rank_reading_four_times_as_far_out_as_its_slowed_job_is_let_go_as_soon_as_without_the_wait():
    """Review of fix/slowed2: a job slowed by another rank's fault, its 15 other ranks at 40 % (a fifth of
    the way out, scoring 0.3); one rank's own fault takes it to 10 % (0.8 of the way out, scoring 1.2),
    inside its band. Its distance is its own, not its job's: let go by the 10th read, as on main, within
    the 5-minute deadline of a soft fault."""
    moves = CollectiveMoves()
    first = _job_tick([20.0] * 16, [0.7] * 16)
    assert holds(moves, first)[-1]
    held = []
    for _ in range(OWN_WAIT + 10):
        f = _job_tick([40.0] * 15 + [10.0], [0.3] * 15 + [1.2])
        held.append(bool(holds(moves, f)[-1]))
    assert not all(held[:10])
