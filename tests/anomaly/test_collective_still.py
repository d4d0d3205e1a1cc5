"""Workload moves (``anomaly.collective``) of jobs read not moving, settled all at once in arrays
(``anomaly.collectivestill``): the same holds and records as each move settled in turn (``settle_each``), on
random reads of random moves."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from anomaly.collective import settle_each
from anomaly.collectivemove import OWN_WAIT, RETURN_READS, SIT_READS, SPREAD_TIMES, Move
from anomaly.collectivestill import settle_still
from anomaly.collectivetick import Tick, median_of_others, medians_of_others
from anomaly.detectors import Findings


def _record(move: Move | None) -> tuple[object, ...] | None:
    """A move's record as ``CollectiveMoves.state`` writes it (None for a move ended)."""
    if move is None:
        return None
    own = [[i, move.own[i]] for i in sorted(move.own)]
    near = [[i, move.near[i]] for i in sorted(move.near)]
    return (sorted(move.held), sorted(move.ranks), own, sorted(move.others), move.side, move.waited,
            move.sat, move.back, near, move.returned)  # fmt: skip


def _read(rng: np.random.Generator, jobs: int) -> tuple[Findings, dict[tuple[str, ...], Move]]:
    """One adaptive read of ``jobs`` jobs of 4-16 ranks (and two idle GPUs), each sitting or fallen part of
    the way, its ranks' bands narrow or wide, ties of values, unjudged and NaN scores, rows shuffled; and a
    random move of each job: its ranks and those held of them, own distances, side, waits and sitting, and
    for a sitting one its held ranks' distances from their job (``near``)."""
    labels: list[dict[str, str]] = []
    value: list[float] = []
    half: list[float] = []
    score: list[float] = []
    moves: dict[tuple[str, ...], Move] = {}
    ids: list[int] = []
    for j in range(jobs):
        n = int(rng.integers(4, 17))
        level = float(rng.choice([0.0, -0.3, -0.6, -2.0, 0.4]))
        mine = [len(ids) + int(i) for i in rng.permutation(n) + 3 * j]  # not in row order
        for r in range(n):
            width = float(rng.choice([3.0, 10.0, 10.0, 30.0]))
            v = 60 + level * 10 + float(rng.choice([0.0, rng.normal(0, 2), rng.normal(0, 8)]))
            labels.append({"slurm_job": str(j), "gpu": str(r)})
            value.append(round(v) if rng.random() < 0.3 else v)
            half.append(width)
            off = abs(value[-1] - 60) / width
            score.append(float("nan") if rng.random() < 0.05 else max(off, rng.uniform(0, 1.5 * off + 0.4)))
            ids.append(mine[r])
        ranks = {i for i in mine if rng.random() < 0.8}
        held = {i for i in ranks if rng.random() < 0.7}
        sat = int(rng.choice([0, 0, 1, 5, SIT_READS, SIT_READS + 1]))
        moves[(str(j),)] = Move(
            held,
            ranks,
            {i: float(rng.uniform(0, 0.7)) for i in held if rng.random() < 0.5},
            {i for i in mine if i not in ranks and rng.random() < 0.5},
            float(rng.choice([-1.0, 1.0])),
            int(rng.choice([0, 3, OWN_WAIT - 1, OWN_WAIT])),
            sat,
            int(rng.integers(0, 10)) if sat else 0,
            {i: float(rng.uniform(0, 2 * SPREAD_TIMES)) for i in held if sat and rng.random() < 0.8},
            int(rng.choice([0, 1, RETURN_READS - 1, RETURN_READS, RETURN_READS + 1])) if sat else 0,
        )
    labels += [{"gpu": "0"}, {"gpu": "1"}]
    value += [60.0, 61.0]
    half += [10.0, 10.0]
    score += [0.1, 0.2]
    ids += [10_000, 10_001]
    order = rng.permutation(len(labels))
    v, h = np.array(value)[order], np.array(half)[order]
    judged = rng.random(order.size) > 0.05
    return (
        Findings(
            "adaptive",
            "q",
            [labels[i] for i in order],
            np.array(score)[order],
            v,
            yhat=np.full(order.size, 60.0),
            lower=60 - h,
            upper=60 + h,
            ids=np.array(ids, np.int64)[order],
            judged=judged,
        ),
        moves,
    )


@pytest.mark.parametrize("seed", range(8))
def test_moves_settled_at_once_hold_and_record_what_settling_each_in_turn_does(seed: int) -> None:
    """Each of 40 random reads of 12 jobs with a random move each: ``settle_still`` holds the same rows and
    leaves the same moves (kept, replaced, ended), with the same records, as ``settle_each``."""
    rng = np.random.default_rng(seed)
    for _ in range(40):
        f, moves = _read(rng, 12)
        tick = Tick(f, np.asarray(f.ids, np.int64))
        assert tick.unique
        still = list(moves.items())
        at_once, each = np.zeros(len(f.labels), np.bool_), np.zeros(len(f.labels), np.bool_)
        after = settle_still(tick, copy.deepcopy(still), at_once)
        expected = settle_each(tick, copy.deepcopy(still), each)
        assert at_once.tolist() == each.tolist()
        assert [(w, _record(m)) for w, m in after] == [(w, _record(m)) for w, m in expected]


def test_medians_of_others_give_each_groups_median_of_others() -> None:
    """Per row, the median of the values of its group's rows chosen, its own left out, as
    ``median_of_others`` gives it group by group: with ties, NaN values, groups with none chosen or one."""
    rng = np.random.default_rng(7)
    for _ in range(200):
        groups = int(rng.integers(1, 6))
        group = rng.integers(0, groups, 30)
        values = rng.choice([1.0, 2.0, 2.0, 3.0, np.nan, -0.0, 0.0], 30) + rng.choice([0, 0, 0.5], 30)
        among = rng.random(30) < rng.choice([0.0, 0.1, 0.5, 0.9])
        expected = np.full(30, np.nan)
        for g in range(groups):
            rows = np.flatnonzero(group == g)
            expected[rows] = median_of_others(values[rows], among[rows])
        np.testing.assert_array_equal(medians_of_others(values, among, group, groups), expected)
