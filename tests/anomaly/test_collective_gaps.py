"""Workload moves (``anomaly.collective``) across reads that miss their job: a scrape gap of every rank, a
tie mid-move, a series the warm-up replay forgets."""

from __future__ import annotations

import numpy as np

from anomaly.collective import CollectiveMoves
from anomaly.detectors import Findings
from anomaly.service import AnomalyService
from anomaly.snapshot import load_snapshot, save_snapshot
from anomaly.sources import Frame
from gpuwarden.clock import FakeClock
from tests.anomaly.collective_job import LEVEL, RANKS, SLOWED, Job, _moves_of_six
from tests.anomaly.collective_rows import POWER
from tests.anomaly.snapshot_grid import EVERY, GPUS, GridSource, _config, _ticks


def test_a_scrape_gap_of_every_rank_of_a_job_while_its_move_holds_them_raises_nothing():
    """The whole job missed one read (a scrape gap on all its nodes, the adaptive detector reporting none of
    its rows) while its move still held node-06's narrow ranks (scores past 1.5, their power back at its
    level): the move ended with no row of its job read, and at the next read node-06's four ranks, still
    past 1 by volatility, raised: seed 1100's sympathetic alerts, back for one missed scrape. A tick that
    reads none of a job's ranks tells nothing of its move: the move stays as it was."""
    job = Job(widened=True)
    assert job.run(LEVEL, 480)[0] == []
    assert job.run(SLOWED, 20)[0] == []
    raised, scores = job.run(LEVEL, 14)
    assert raised == [] and (scores[-1][4:8] > 1.0).all()
    raised, _ = job.run(LEVEL, 1, gap=range(len(RANKS)))
    raised += job.run(LEVEL, 30)[0]
    assert raised == []
    assert job.service.collective.held() == 0


def test_a_move_whose_job_is_no_longer_read_ends_once_its_held_ranks_are_forgotten():
    """A job read at no tick (its nodes down, the job ended) keeps its move only until the service forgets
    its held ranks' series (``forget_after_seconds``): the move ends at the next tick, and a later move of
    the job is its own, to the side it goes."""
    moves, update = _moves_of_six()
    assert update([2.0] * 6, [-1.0] * 6) == [True] * 6
    other = Findings(
        "adaptive",
        POWER,
        [{**RANKS[0], "slurm_job": "9"}],
        np.zeros(1),
        np.zeros(1),
        yhat=np.zeros(1),
        ids=np.array([40]),
    )
    assert moves.update(other, set()).tolist() == [False]
    assert moves.held() == 6  # not read: kept
    moves.forget(np.arange(6))
    assert moves.update(other, set()).tolist() == [False]
    assert moves.state() == []
    assert update([2.0] * 6, [1.0] * 6) == [True] * 6
    assert moves.state()[0][7] == 1.0


def test_a_tie_while_a_move_lasts_holds_again_the_ranks_moving_to_the_moves_own_side():
    """A job moving up, one rank still held as it settles; the job moves again with as many ranks past
    half-way up as down, leaning to neither: the move's ranks going up with it are held again, as at any
    tick it moves to its start's side, and the rank still past half-way up once the job settled raises
    nothing."""
    _, update = _moves_of_six()
    assert update([2.0] * 6, [1.0] * 6) == [True] * 6
    assert update([0.9] + [0.2] * 5, [1.0] * 6) == [True] + [False] * 5
    assert update([2.0] * 6, [1.0] * 3 + [-1.0] * 3) == [True] * 3 + [False] * 3
    assert update([1.5, 1.5] + [0.2] * 4, [1.0] * 6) == [True, True] + [False] * 4


class _NodeDown(GridSource):
    """The grid source reading only its GPUs (``gpus``, the first of ``GPUS``): the others down."""

    def read(self, start: float, end: float) -> list[Frame]:
        n = len(self.gpus)
        return [Frame(f.query, self.gpus, f.timestamps, f.values[:n]) for f in super().read(start, end)]


def test_a_series_the_warm_up_replay_forgets_leaves_the_moves_restored_from_the_snapshot(tmp_path):
    """A move saved holding node n1 GPU 3's power (its job's only rank), the node down from the save on: the
    warm-up replays 25 minutes without it, past ``forget_after_seconds``, and forgets its series there, as
    the live ticks would have. The moves are told, as the live ticks tell them: else the move held the
    freed id for good (no live tick forgets it again), and would judge the next new series given it as
    that rank."""
    gpus = [*GPUS[:7], {**GPUS[7], "slurm_job": "8"}]
    clock = FakeClock()
    first = AnomalyService(_config(), [GridSource(gpus)], clock)
    first.warm_up()
    _ticks(clock, first, 12)
    query = "DCGM_FI_DEV_POWER_USAGE"
    [sid] = [
        i
        for i, k in enumerate(first.index.keys)
        if k is not None and k[0] == query and ("UUID", "GPU-7") in k[1]
    ]
    first.collective = CollectiveMoves.restored(
        [["adaptive", query, ["8"], [sid], [sid], [], [], 1.0, 0, 0, 0, [], 0]]
    )
    path = tmp_path / "anomaly.state.npz"
    assert save_snapshot(path, first.snapshot())
    clock.advance(5 * EVERY)
    second = AnomalyService(_config(), [_NodeDown(GPUS[:7])], clock)
    assert second.warm_up(snapshot=load_snapshot(path, second.cfg)) == 5
    assert second.index.id_key(sid) is None  # forgotten in the replay
    _ticks(clock, second, 1)
    assert second.collective.held() == 0 and second.collective.state() == []
