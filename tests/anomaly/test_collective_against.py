"""A rank past its band against the side its moving job went is its own fault, not its job's move: seed
1507's ``straggler_while_down`` (``anomaly.collective``, "A rank past its band against its job")."""

from __future__ import annotations

import numpy as np

from anomaly.collective import CollectiveMoves
from anomaly.detectors import Findings
from tests.anomaly.collective_job import LEVEL, RANKS, SLOWED, Job
from tests.anomaly.collective_rows import POWER, alerting, banded

IDLE = 60.0  # a stalled job's ranks wait at idle power
STRAGGLER = 5  # node-06 GPU 1, its power band learnt narrow
NODE = [4, 5, 6, 7]  # node-06's ranks


def _outage(job: Job, ticks: int = 60) -> None:
    """Node-06 down for ``ticks`` reads (30 minutes: its series forgotten, their state parked) while its
    job's twelve other ranks wait at idle power: nothing raised."""
    stalled = np.full(len(RANKS), IDLE)
    assert job.run(stalled, ticks, gone=NODE)[0] == []


def test_a_straggler_begun_while_its_node_was_down_alerts_as_its_job_settles_from_the_stall():
    """Node-06 comes back with GPU 1 slowed (its power past its narrow band, below) while the job's twelve
    other ranks, back at their level inside their bands, still score past half-way by the volatility of
    their 30-minute stall: the job counts as moving, the other way (above the middles the stall lowered).
    Dropped as its job's, the straggler raised nothing while its job counted as moving (seed 1507: 630 s,
    against the 300 s deadline); now it raises at its third read, and nothing else does."""
    job = Job()
    assert job.run(LEVEL, 480)[0] == []
    _outage(job)
    back = np.full(len(RANKS), LEVEL)
    back[STRAGGLER] = SLOWED
    raised, scores = job.run(back, 3)
    # The case is there: the job's other ranks past half-way (it counts as moving) as the straggler raises.
    others = [i for i in range(len(RANKS)) if i not in NODE]
    assert all((s[others] > 0.5).sum() >= len(RANKS) / 2 for s in scores)
    assert raised == [("node-06", "1")]
    assert job.run(back, 20)[0] == []  # nothing else


def test_a_job_back_from_its_stall_raises_nothing_without_a_fault():
    """The counterpart: the same outage and return with every rank back at its level; the twelve settle
    and nothing is raised."""
    job = Job()
    assert job.run(LEVEL, 480)[0] == []
    _outage(job)
    assert job.run(LEVEL, 40)[0] == []


def _six(scores: list[float], values: list[float]) -> Findings:
    """One read of a 6-rank job: each rank's band -10..10 about 0 (past it beyond 10 either way)."""
    return banded(POWER, RANKS[:6], scores, values, [-10.0] * 6, [10.0] * 6, yhat=[0.0] * 6)


def test_a_rank_past_its_band_against_its_moving_job_alerts_and_one_with_it_is_the_jobs():
    """Ranks 2-5 fall past their bands together (the job moves down); rank 0, past its band above, is its
    own and left to alert; the move keeps it out (``others``). At the next read the job falls on and rank 0
    with it, farther (past its band the way its job went, far from its job's value): its job's move, dropped
    as before (it is not held: kept out)."""
    moves = CollectiveMoves()
    assert alerting(moves, _six([3, 0.2, 3, 3, 3, 3], [20, 0, -20, -20, -20, -20])) == {0}
    assert alerting(moves, _six([6, 0.2, 3, 3, 3, 3], [-60, 0, -20, -20, -20, -20])) == set()
    assert moves.state()[0][6] == [0]  # kept out of the move, not held


def test_a_rank_out_by_volatility_alone_against_its_moving_job_is_the_jobs():
    """Rank 0 scores past 1 above its band's middle but inside its band (its volatility, not its value):
    no fault of its own shown against the job, dropped as before."""
    moves = CollectiveMoves()
    assert alerting(moves, _six([3, 0.2, 3, 3, 3, 3], [5, 0, -20, -20, -20, -20])) == set()


def test_a_job_moving_both_ways_as_much_has_no_rank_against_it():
    """Three ranks past their bands above, three below, the job's lean none: no side, so no rank is
    against it, and every one is dropped as the workload's (``_with_workload``'s tie)."""
    moves = CollectiveMoves()
    assert alerting(moves, _six([3] * 6, [20, 20, 20, -20, -20, -20])) == set()


def test_a_rank_past_its_band_against_its_moving_job_at_the_jobs_value_is_the_jobs():
    """Rank 0 past its band above, against the job's fall, but at the value its job's other ranks read
    (its band lower than theirs: the same level read against other bands): its job's, dropped."""
    moves = CollectiveMoves()
    f = _six([3, 0.2, 3, 3, 3, 3], [20, 20, 20, 20, 20, 20])
    f.lower[2:], f.upper[2:], f.yhat[2:] = 30.0, 50.0, 40.0  # ranks 2-5 read 20 below their bands
    f.lower[1], f.upper[1], f.yhat[1] = 10.0, 30.0, 20.0
    assert alerting(moves, f) == set()


def test_a_held_rank_that_stays_past_its_band_as_its_job_comes_back_alerts():
    """Ranks 2-5 fall past their bands with their job, held by its move; the job comes back (ranks 3-5
    above their bands' middles, past half-way by volatility) and rank 2 stays past its band below, away from
    the job's value: it has not come back with its job, and is left to alert although the move holds it."""
    moves = CollectiveMoves()
    assert alerting(moves, _six([0.2, 0.2, 3, 3, 3, 3], [0, 0, -20, -20, -20, -20])) == set()
    back = _six([0.2, 0.2, 3, 2, 2, 2], [0, 0, -20, 5, 5, 5])
    assert alerting(moves, back) == {2}
    assert 2 in moves.state()[0][3]  # still held by the move


def test_a_ranks_alert_dropped_with_its_stalled_job_is_not_re_raised_when_the_job_runs_again():
    """Node-06 GPU 1's own fault (its power held at 300 W, past its band) raises its alert; another fault
    stalls its whole job for 20 reads, the rank idling with it, dropped as the job's. Those reads are no
    evidence its fault ended: taken as quiet reads at 1, they made a recovery, and the job running again (the
    rank still at 300 W, past its band against the job's return: its own) re-raised the alert mid-fault, the
    same fault told twice (eval seeds 1504, 1508-1510's runaways). It stays one alert, firing."""
    job = Job(quiet=True)
    assert job.run(LEVEL, 480)[0] == []
    braked = np.full(len(RANKS), LEVEL)
    braked[STRAGGLER] = 300.0
    assert job.run(braked, 30)[0] == [("node-06", "1")]
    assert job.run(np.full(len(RANKS), IDLE), 20)[0] == []
    assert job.run(braked, 10)[0] == []
    firing = [(s.alert.labels["Hostname"], s.alert.labels["gpu"]) for s in job.service.firing.values()]
    assert firing == [("node-06", "1")]
