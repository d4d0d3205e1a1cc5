"""A rank its job's move never held, come to read its job's value past half-way as the job sits on the
move's side, is taken in: seed 1534's five late sympathetic alerts (``anomaly.collective``, "A rank a
lingering move never held")."""

from __future__ import annotations

import numpy as np
import pytest

from anomaly.collective import CollectiveMoves
from tests.anomaly.collective_job import RANKS
from tests.anomaly.collective_rows import POWER, alerting, banded

NODE = [4, 5, 6, 7]  # node-06's ranks: down at the stall, new series (ids 16-19) at their return
UP = [i for i in range(len(RANKS)) if i not in NODE]
BACK_IDS = [*range(4), 16, 17, 18, 19, *range(8, 16)]  # the series ids of RANKS' rows once node-06 is back


def _read(
    moves: CollectiveMoves,
    scores: list[float],
    values: list[float],
    rows: list[int] | None = None,
    half: list[float] | None = None,
) -> set[int]:
    """One read of the job's power (every rank's band -10..10 about 0, or -h..h by ``half``), of ``rows``
    (every rank by default, node-06's as their new series): the rows left to alert, as series ids."""
    rows = list(range(len(RANKS))) if rows is None else rows
    ids = [i for i in rows] if rows == UP else [BACK_IDS[i] for i in rows]
    h = np.array([10.0] * len(rows) if half is None else half)
    f = banded(POWER, [RANKS[i] for i in rows], scores, values, -h, h, ids=ids)
    return {ids[i] for i in alerting(moves, f)}


def _stalled_and_back(moves: CollectiveMoves) -> None:
    """Node-06 down: the twelve others stall past their bands below (the move starts, down, on them); node-06
    back as new series and the job with it, the twelve above their bands' middles by the stall's volatility
    (the job counts as moving, the other way): nothing alerts."""
    assert _read(moves, [2.0] * 12, [-20.0] * 12, UP) == set()
    assert (
        _read(
            moves, [0.9 if i in UP else 0.1 for i in range(16)], [5.0 if i in UP else 0.0 for i in range(16)]
        )
        == set()
    )


def _fall(moves: CollectiveMoves, node: float, held: float = 0.3, rank: float = 0.3) -> set[int]:
    """The job falls again (another rank's fault), a quarter out below, inside its bands at -3: the twelve
    wide ranks score 0.3 (under half-way: the job does not count as moving), rank 8 ``held``, rank 0 ``rank``,
    node-06's ``node``."""
    scores = [node if i in NODE else 0.3 for i in range(16)]
    scores[8], scores[0] = held, rank
    return _read(moves, scores, [-3.0] * 16)


@pytest.mark.parametrize("held", [0.6, 0.3], ids=["the-move-still-holds-a-rank", "the-move-holds-none"])
def test_a_rank_back_from_its_nodes_outage_is_held_as_its_job_sits_where_it_fell(held):
    """Seed 1534: node-06 down 27 minutes stalled its job, whose move (down) held the twelve ranks read; back,
    the job counted as moving up by the stall's volatility for 10 minutes, then fell to 48 % by another rank's
    ``nvlink_down``: the twelve, their bands widened by the stall, read a quarter out (0.3), the job never
    counting as moving, and node-06's four, never ranks of the move, climbed past 1 by volatility at their
    job's value and alerted 393-423 s into the fault. The move lingered (one rank still held, or none and kept
    so its bound spent), so no sitting start held them. Now the move takes them in."""
    moves = CollectiveMoves()
    _stalled_and_back(moves)
    assert _fall(moves, 0.7, held) == set()
    assert _fall(moves, 1.05, held) == set()
    assert _fall(moves, 1.1, held) == set()


def test_a_rank_the_move_let_go_is_not_taken_in_again():
    """The same, rank 0 (one the move held and let go when it settled) climbing past 1 at its job's value as
    node-06's do: the move does not hold it again (its own, for all its reads tell)."""
    moves = CollectiveMoves()
    _stalled_and_back(moves)
    assert _fall(moves, 0.7) == set()  # rank 0 settled: let go
    assert _fall(moves, 1.05, rank=1.05) == {0}


def test_a_rank_away_from_its_jobs_value_is_not_taken_in():
    """Node-06 GPU 1 past 1 inside its band but far from its job's value (-9 against -3): its own."""
    moves = CollectiveMoves()
    _stalled_and_back(moves)
    scores = [1.05 if i == 5 else 0.3 for i in range(16)]
    values = [-9.0 if i == 5 else -3.0 for i in range(16)]
    assert _read(moves, scores, values) == {17}


def test_a_rank_that_moved_against_its_job_is_not_taken_in():
    """Rank 1 rose past its band at the stall (against its job: kept out, ``Move.others``); reading its job's
    value past 1 as the job sits, it is still kept out (a straggler's, as ever) while node-06's are held."""
    moves = CollectiveMoves()
    values = [20.0 if i == 1 else -20.0 for i in UP]
    assert _read(moves, [2.0] * 12, values, UP) == {1}
    scores = [0.9 if i in UP else 0.1 for i in range(16)]
    assert _read(moves, scores, [5.0 if i in UP else 0.0 for i in range(16)]) == set()
    scores = [1.05 if i in (1, *NODE) else 0.3 for i in range(16)]
    assert _read(moves, scores, [-3.0] * 16) == {1}


def test_ranks_past_one_where_their_job_does_not_sit_are_not_taken_in():
    """Node-06's four past 1 together at -3 while the twelve others read back under a quarter: the job does
    not sit, so nothing is its job's (their node's fault, for all the reads tell)."""
    moves = CollectiveMoves()
    _stalled_and_back(moves)
    scores = [1.05 if i in NODE else 0.1 for i in range(16)]
    values = [-3.0 if i in NODE else 0.0 for i in range(16)]
    assert _read(moves, scores, values) == {16, 17, 18, 19}


def test_a_rank_past_its_band_at_its_jobs_value_is_not_taken_in():
    """Seed 1511: node-02 GPU 0, back from its node's outage with its narrow band (77-112 %), read its job's
    47 % past it as another rank's ``nvlink_down`` sat the job a quarter out. Taken in, it was held back the
    bound a move holds a value past its band at its job's (``OWN_WAIT``, 20 reads: the fault's whole 600 s),
    let go as its own then, and alerted by its return's volatility 682 s after the fault, where left alone it
    alerted beside it (82 s). A rank past its band is not taken in: only one inside it, climbing by
    volatility, is its job's for longer than the bound."""
    moves = CollectiveMoves()
    _stalled_and_back(moves)
    scores = [2.5 if i == 5 else 0.3 for i in range(16)]
    half = [2.0 if i == 5 else 10.0 for i in range(16)]  # -3 is past node-06 GPU 1's band, at its job's value
    assert _read(moves, scores, [-3.0] * 16, half=half) == {17}
