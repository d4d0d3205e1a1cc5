"""Seed 1401's last sympathetic alert (``eval_gpu_faults.py --seed 1401``, benchmarks/README.md) in small:
an ``nvlink_down`` on node-01 GPU 3 slowed its job, its 15 other ranks falling from about 95 % to 47 %
utilisation at one tick. Nine ranks' bands were wide (about -52..220 %) and scored 0.31-0.49, five middling
ones 0.47-0.70, so fewer than half were past half-way for five reads; node-02 GPU 3's band was learnt so
narrow (68..118 %) that its job's 47 % lay past its edge: it scored 1.73, and the move its job's sitting
started held it at that read. At the next the move let it go as a rank whose value is past its band, its
job not moving (``Move.settle``: a value out is a fault of its own), though it read its job's value: it
alerted at its third read, 97 s after the fault, before the job counted as moving."""

from __future__ import annotations

import numpy as np

from anomaly.collective import OWN_WAIT, SIT_READS, CollectiveMoves
from anomaly.detectors import Findings
from tests.anomaly.collective_rows import UTIL, alerting, banded, job_ranks

RANKS = job_ranks("8171", nodes=(1, 2, 3, 4))
FAULTED = 3  # node-01 GPU 3: its NVLink down, busy at 95 % while its job waits on it
NARROW = 7  # node-02 GPU 3: its band learnt narrow, 68..118 %
PENDING_TICKS = 3  # the anomalous reads in a row a learned detector's row needs to alert (``pending_ticks``)


def _tick(level: float, wide: float, narrow: float, narrow_level: float | None = None) -> Findings:
    """One read of the job: every rank but the faulted one at ``level`` % scoring ``wide`` in a -52..220 %
    band; the narrow rank at ``narrow_level`` (default ``level``) scoring ``narrow`` in its 68..118 % band;
    the faulted rank at 95 % scoring 0.28 above its band's middle."""
    n = len(RANKS)
    value, score = np.full(n, level), np.full(n, wide)
    lower, upper = np.full(n, -52.0), np.full(n, 220.0)
    value[NARROW] = level if narrow_level is None else narrow_level
    score[NARROW], lower[NARROW], upper[NARROW] = narrow, 68.0, 118.0
    value[FAULTED], score[FAULTED] = 95.0, 0.28
    return banded(UTIL, RANKS, score, value, lower, upper)


def _at_work(moves: CollectiveMoves) -> None:
    """Four reads of the job at work before its fall: nothing moves."""
    for _ in range(4):
        assert not alerting(moves, _tick(95.0, 0.28, 0.17))


def _raised(reads: list[bool]) -> list[int]:
    """The reads at which a row left to alert at ``reads`` has been so ``PENDING_TICKS`` in a row."""
    return [k for k in range(PENDING_TICKS - 1, len(reads)) if all(reads[k - PENDING_TICKS + 1 : k + 1])]


def test_a_narrow_rank_whose_band_its_sitting_jobs_value_is_past_is_held_with_its_job():
    """As traced: the job falls to 47 % and sits a quarter out, under half-way (the wide ranks' scores
    climbing 0.34 -> 0.48 over ten reads); the narrow rank reads 47 % too, past its band's edge (scoring
    1.7-1.8). It is its job's noise as much as a narrow rank inside its band: it must be held, not alert
    from its third read."""
    moves = CollectiveMoves()
    _at_work(moves)
    reads = [NARROW in alerting(moves, _tick(47.0, 0.34 + 0.015 * k, 1.75)) for k in range(10)]
    assert not any(reads)


def test_a_narrow_rank_past_its_band_at_its_jobs_value_is_held_after_its_job_no_longer_counts_as_moving():
    """The same rank where its job counted as moving at one read (0.6) and then sits a quarter out (0.35),
    no longer moving: the move of its moving must hold it as the sitting move does, not let it go at the
    first read as a value past its band."""
    moves = CollectiveMoves()
    _at_work(moves)
    assert not alerting(moves, _tick(47.0, 0.6, 1.75))
    reads = [NARROW in alerting(moves, _tick(47.0, 0.35, 1.75)) for k in range(10)]
    assert not any(reads)


def test_a_narrow_rank_past_its_band_at_its_jobs_value_by_a_fault_of_its_own_is_raised_within_the_bound():
    """The bound the hold must keep (module docstring of ``anomaly.collective``): a rank at its job's value
    past its band by a fault of its own while its job sits a quarter out for an hour is raised within
    ``OWN_WAIT`` reads held back, and the reads a learned detector takes to raise it, of its job's fall, as
    it is where its job counted as moving."""
    for moved in (False, True):
        moves = CollectiveMoves()
        _at_work(moves)
        if moved:
            assert not alerting(moves, _tick(47.0, 0.6, 1.75))
        reads = [NARROW in alerting(moves, _tick(47.0, 0.35, 1.75)) for _ in range(120)]
        raised = _raised(reads)
        assert raised and raised[0] <= OWN_WAIT + PENDING_TICKS <= SIT_READS, moved


def test_a_narrow_rank_past_its_band_away_from_its_sitting_jobs_value_still_alerts_at_its_third_read():
    """The other side: the narrow rank at 10 % while its job sits at 47 % (a fault of its own, 1.5 of its
    band's half-widths below its job's value) is not its job's: it is let go and alerts at its third read,
    as before."""
    moves = CollectiveMoves()
    _at_work(moves)
    reads = [NARROW in alerting(moves, _tick(47.0, 0.34 + 0.015 * k, 3.3, 10.0)) for k in range(10)]
    assert _raised(reads)[0] == PENDING_TICKS - 1
