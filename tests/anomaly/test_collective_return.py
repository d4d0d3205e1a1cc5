"""Seeds 1511's and 1522's late sympathetic alerts (``eval_gpu_faults.py --seed 1511``, benchmarks/README.md,
"A sitting move's return") in small: a power brake on node-03 GPU 1 (24,453 s) cut its job to about 34 %
utilisation; the job's sitting started a move that held node-02 GPU 0 (its band narrow, 58..123 %), which read
its job's value with it. The job came back to 95 % at 25,110 s, before the move's ``SIT_READS`` bound; the
rank came back with it (93-99 %, inside its band, its own distance 0.02-0.1), scoring 3.12 by the volatility
the fall left, decaying about 9 % a read (the detector's fast error, ``fast_alpha`` 0.1). At the bound
(25,380 s) the job no longer sat, so the move let every rank go (``Move.sit``), this one still at 1.39, and
it was raised two reads later, 330 s after its job's return. Past the bound such a move now keeps holding the
ranks that came back with their job (inside their bands, at its value, near it while it sat) for at most
``RETURN_READS`` reads of the job back (fix/return).

Here: a 16-rank job sits at 47 % (as ``test_collective_runaway.py``'s), its narrow rank held by the sitting
start, and comes back to 95 % at read ``RETURN_AT``, before the bound."""

from __future__ import annotations

import json

import numpy as np

from anomaly.collective import SIT_READS, CollectiveMoves
from anomaly.collectivemove import RETURN_READS
from anomaly.detectors import Findings
from tests.anomaly.collective_rows import UTIL, alerting, at_work, banded, holds, job_ranks

RANKS = job_ranks("8171", nodes=(1, 2, 3, 4))
FAULTED = 5  # the braked GPU, its power cut: busy at 100 % while its job waits on it, 95 % once repaired
NARROW = 4  # node-02 GPU 0: its band narrower than its job's others', -10..190 %
PENDING_TICKS = 3  # the anomalous reads in a row a learned detector's row needs to alert (``pending_ticks``)
RETURN_AT = 24  # the read the job comes back at: 7 reads before the move's bound (its start is read 0)
READS = RETURN_AT + RETURN_READS + 10
DECAY = 0.91  # a read's fall of the volatility score, as traced


def _tick(k: int, noise: np.ndarray, *, stays: bool = False, steady: bool = False) -> Findings:
    """The ``k``-th read of the job: sitting at 47 % before ``RETURN_AT`` (the wide ranks a quarter out,
    under half-way; the narrow rank past 1 by volatility, at its job's value), back at 95 % from it (the
    wide ranks at 0.2, under a quarter; the narrow rank at its job's value, or left at 47 % where it
    ``stays``, its score 3.1 at the return, falling ``DECAY`` a read, or held at 1.5 where ``steady``)."""
    n = len(RANKS)
    back = k >= RETURN_AT
    value = np.round((95.0 if back else 47.0) + noise)
    score = np.full(n, 0.2 if back else min(0.32 + 0.005 * k, 0.47))
    lower, upper = np.full(n, -100.0), np.full(n, 260.0)
    lower[NARROW], upper[NARROW] = -10.0, 190.0
    if stays and back:
        value[NARROW] = 47.0
    if not back:
        score[NARROW] = 1.5
        value[FAULTED], score[FAULTED] = 100.0, 0.27
    else:
        score[NARROW] = 1.5 if steady else 3.1 * DECAY ** (k - RETURN_AT)
    return banded(UTIL, RANKS, score, value, lower, upper)


def _narrow_alerting(*, stays: bool = False, steady: bool = False) -> list[bool]:
    """Per read after four at work, whether the narrow rank is left to alert (past 1, held by no move, its
    job not moving)."""
    moves = CollectiveMoves()
    at_work(moves, RANKS)
    rng = np.random.default_rng(1511)
    return [
        NARROW in alerting(moves, _tick(k, rng.normal(0.0, 1.5, 16), stays=stays, steady=steady))
        for k in range(READS)
    ]


def _raised(reads: list[bool]) -> list[int]:
    """The reads at which a row left to alert at ``reads`` has been so ``PENDING_TICKS`` in a row."""
    return [k for k in range(PENDING_TICKS - 1, len(reads)) if all(reads[k - PENDING_TICKS + 1 : k + 1])]


def test_a_rank_back_with_its_job_is_held_past_the_sitting_moves_bound_while_its_return_volatility_decays():
    """As traced: the narrow rank, held by its job's sitting start, comes back with its job before the
    bound, inside its band at its job's value, its score past 1 for 12 reads by the volatility the fall
    left. It is its job's return, not a fault of its own: not let go at the bound and raised
    ``PENDING_TICKS`` reads later (read ``SIT_READS`` + 2, 10 reads after the return, as seed 1511's)."""
    reads = _narrow_alerting()
    assert not any(reads[:SIT_READS])  # held through the sitting and the bound's reads, as before
    assert not _raised(reads)


def test_a_rank_that_does_not_come_back_with_its_job_is_let_go_at_the_sitting_moves_bound():
    """The other side: the narrow rank left at 47 % as its job comes back to 95 % (inside its band, its own
    distance 0.43, under half-way; a fault of its own now) is no rank come back with its job: let go at the
    bound as before, and raised ``PENDING_TICKS`` reads later."""
    raised = _raised(_narrow_alerting(stays=True))
    assert raised and raised[0] == SIT_READS + PENDING_TICKS - 1


def test_a_rank_back_at_its_jobs_value_whose_score_stays_past_one_is_let_go_after_return_reads():
    """The bound: the narrow rank back at its job's value but scoring 1.5 at every read (volatility of its
    own that does not decay) is held ``RETURN_READS`` reads of its job back, then let go and raised
    ``PENDING_TICKS`` reads later, not hidden for as long as it reads its job's value."""
    raised = _raised(_narrow_alerting(steady=True))
    assert raised and raised[0] == RETURN_AT + RETURN_READS + PENDING_TICKS - 1


def test_a_sitting_move_restored_after_its_jobs_return_keeps_holding_what_the_move_kept_in_memory_holds():
    """A service restarted from its snapshot as its job comes back must hold what it would have: at every
    read, moves restored from ``state()`` hold the same rows as those kept and give the same state after,
    the reads its job has read back (``returned``, the record's last field) among it."""
    kept = CollectiveMoves()
    at_work(kept, RANKS)
    rng = np.random.default_rng(1511)
    returned = []
    for k in range(READS):
        f = _tick(k, rng.normal(0.0, 1.5, 16), steady=True)
        restored = CollectiveMoves.restored(json.loads(json.dumps(kept.state())))
        assert list(holds(restored, f)) == list(holds(kept, f))
        assert restored.state() == kept.state()
        returned.append(kept.state()[0][-1] if kept.state() else None)
    assert returned[RETURN_AT - 1] == 0 and returned[SIT_READS + 1] == SIT_READS + 2 - RETURN_AT
