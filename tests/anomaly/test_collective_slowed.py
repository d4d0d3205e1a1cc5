"""Seed 1300's late sympathetic alert (``eval_gpu_faults.py --seed 1300``, benchmarks/README.md) in small:
a job slowed for the whole of a rank's 10-minute fault, whose other ranks' bands were learnt wide by
its earlier slowdowns, so that they read just under half-way once the move began."""

from __future__ import annotations

import numpy as np
import pytest

from anomaly.collective import OWN_WAIT, CollectiveMoves, collective_workloads
from anomaly.detectors import Findings

UTIL = "DCGM_FI_DEV_GPU_UTIL"
RANKS = [
    {"gpu": str(g), "UUID": f"GPU-{n}-{g}", "Hostname": f"node-{n:02d}", "slurm_job": "8171"}
    for n in (1, 2, 3, 4)
    for g in range(4)
]
NARROW = 15  # node-04 GPU 3: its band learnt high and narrow as the busy rank of its own earlier runaway


def _tick(wide_score: float) -> Findings:
    """One read of the slowed job: every rank at 47 %, the fifteen wide bands about -85..230 % scoring
    ``wide_score``, node-04 GPU 3's 45..146 % band scoring 1.2."""
    n = len(RANKS)
    score = np.full(n, wide_score)
    lower, upper, yhat = np.full(n, -85.0), np.full(n, 230.0), np.full(n, 72.0)
    score[NARROW], lower[NARROW], upper[NARROW], yhat[NARROW] = 1.2, 45.0, 146.0, 95.5
    return Findings(
        "adaptive",
        UTIL,
        RANKS,
        score,
        np.full(n, 47.0),
        yhat=yhat,
        lower=lower,
        upper=upper,
        ids=np.arange(n, dtype=np.int64),
    )


def test_a_narrow_rank_stays_held_while_its_whole_job_stays_slowed_with_wide_banded_ranks_under_half_way():
    moves = CollectiveMoves()
    first = _tick(0.51)  # the slowdown's first read: the job moves, the narrow rank with it
    assert moves.update(first, collective_workloads(first))[NARROW]
    held = []
    for _ in range(18):  # nine minutes more of the same slowed job, its wide ranks at 0.49
        f = _tick(0.49)
        held.append(bool(moves.update(f, collective_workloads(f))[NARROW]))
    assert all(held)


def test_the_narrow_rank_of_a_job_slowed_for_good_is_let_go_after_a_bounded_wait():
    """Its job held where the move took it does not hide the rank's own distance for ever: after ``OWN_WAIT``
    ticks of holding it back, its average counts again (a rank's own fault shows so too)."""
    moves = CollectiveMoves()
    first = _tick(0.51)
    assert moves.update(first, collective_workloads(first))[NARROW]
    held = [bool(moves.update(f, collective_workloads(f))[NARROW]) for f in (_tick(0.49) for _ in range(100))]
    assert all(held[:OWN_WAIT]) and not all(held[: OWN_WAIT + 10])


def _flapping(ranks: int, k: int, others: float, other_score: float, unread: tuple[int, ...]) -> Findings:
    """Read ``k`` after a job's move down: its ranks at ``others`` of their 0..100 bands (middle 50), scoring
    ``other_score``, those in ``unread`` not read (NaN), the last one flapping 45 points either side of its
    middle on alternate reads (0.9 of the way out), scoring 1.3 by its volatility."""
    labels = [
        {"gpu": str(g), "UUID": f"GPU-{g}", "Hostname": "node-01", "slurm_job": "1"} for g in range(ranks)
    ]
    value, score = np.full(ranks, others), np.full(ranks, other_score)
    value[-1], score[-1] = 50.0 + (45.0 if k % 2 else -45.0), 1.3
    for u in unread:
        value[u], score[u] = np.nan, np.nan
    return Findings(
        "adaptive",
        UTIL,
        labels,
        score,
        value,
        yhat=np.full(ranks, 50.0),
        lower=np.zeros(ranks),
        upper=np.full(ranks, 100.0),
        ids=np.arange(ranks, dtype=np.int64),
    )


def _flapping_let_go(
    ranks: int, others: float, other_score: float, unread: tuple[int, ...] = ()
) -> int | None:
    """After how many reads the flapping rank of a job that moved down together (every rank at 20 %, scoring
    0.7) is let go; None if still held after 100."""
    moves = CollectiveMoves()
    labels = [
        {"gpu": str(g), "UUID": f"GPU-{g}", "Hostname": "node-01", "slurm_job": "1"} for g in range(ranks)
    ]
    first = Findings(
        "adaptive",
        UTIL,
        labels,
        np.full(ranks, 0.7),
        np.full(ranks, 20.0),
        yhat=np.full(ranks, 50.0),
        lower=np.zeros(ranks),
        upper=np.full(ranks, 100.0),
        ids=np.arange(ranks, dtype=np.int64),
    )
    assert moves.update(first, collective_workloads(first))[-1]
    for k in range(100):
        f = _flapping(ranks, k, others, other_score, unread)
        if not moves.update(f, collective_workloads(f))[-1]:
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
