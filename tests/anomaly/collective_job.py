"""A 16-rank training job scored by the service (``Job``) and a 6-rank job's moves tick by tick
(``_moves_of_six``): shared by the collective-move tests (``test_collective.py``,
``test_collective_gaps.py``)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np

from anomaly.collective import CollectiveMoves
from tests.anomaly.collective_rows import POWER, banded, holds, job_ranks
from tests.anomaly.service_ticks import setup, tick

# One 16-rank training job on four nodes, as seed 1100's: node-06's four ranks (4-7) quiet, so their power
# bands are learnt narrow; the other twelve heavy-tailed, their bands wide.
RANKS = job_ranks("7345", modelName="H100")
NARROW = slice(4, 8)
LEVEL, SLOWED = 625.0, 265.0


class Job:
    """A service scoring the power of the 16-rank job with the adaptive detector alone, fed ``LEVEL`` W
    per rank plus noise: Student-t (3) at 100 W on the wide ranks, normal at 10 W on node-06's; ``quiet``:
    normal at 10 W on every rank (every band narrow); ``widened``: see ``__init__``."""

    def __init__(self, seed: int = 0, *, quiet: bool = False, widened: bool = False) -> None:
        self.rng = np.random.default_rng(seed)
        self.quiet = quiet
        # ``widened``: the bands the job's move widened stay so after its return (``band_restore_ticks`` 0),
        # the case the tests of a move settling build; by default node-06's ranks, past their narrow bands
        # through the move, get those bands back at the return (``anomaly.faultbands``).
        kept = {"band_restore_ticks": 0} if widened else {}
        self.clock, self.col, self.service = setup(adaptive_metrics=[POWER], detectors=["adaptive"], **kept)

    def run(
        self, levels: float | np.ndarray, ticks: int, gap: Sequence[int] = (), gone: Sequence[int] = ()
    ) -> tuple[list[tuple[str, str]], list[np.ndarray]]:
        """``ticks`` ticks at ``levels``, the ranks ``gap`` read as NaN (a scrape gap) and ``gone`` not
        reported (their node down); the ranks the adaptive detector raised alerts on and, per tick, the
        ranks' power scores (those read)."""
        raised, scores = [], []
        for _ in range(ticks):
            if self.quiet:
                noise = self.rng.normal(0.0, 10.0, len(RANKS))
            else:
                noise = 100.0 * self.rng.standard_t(3, len(RANKS))
                noise[NARROW] = self.rng.normal(0, 10.0, 4)
            read = levels + noise
            read[list(gap)] = math.nan
            pairs = zip(RANKS, read.tolist(), strict=True)
            self.col.set(POWER, [p for i, p in enumerate(pairs) if i not in gone])
            result = tick(self.clock, self.service)
            raised += [
                (a.labels["Hostname"], a.labels["gpu"])
                for a in result.raised
                if a.labels["model"] == "adaptive"
            ]
            [found] = [f for f in result.findings if f.detector == "adaptive" and f.query == POWER]
            scores.append(found.score.copy())
        return raised, scores

    def dies_mid_move(self) -> list[tuple[str, str]]:
        """Node-06 GPU 1 drops to idle power while its job is slowed (10 ticks, nothing raised) and stays
        there as the job comes back: the ranks raised in the 20 ticks after the return."""
        slowed = np.full(len(RANKS), SLOWED)
        slowed[5] = 60.0
        assert self.run(slowed, 10)[0] == []
        back = np.full(len(RANKS), LEVEL)
        back[5] = 60.0
        return self.run(back, 20)[0]

    def slowed_and_back(self) -> list[np.ndarray]:
        """Four hours learnt, then one rank's fault slows the whole job for 10 minutes (every rank's power
        down 360 W) and it is repaired: the scores of the 20 minutes after, nothing raised."""
        assert self.run(LEVEL, 480)[0] == []
        raised, _ = self.run(SLOWED, 20)
        assert raised == [] and self.service.collective_suppressed > 0
        raised, scores = self.run(LEVEL, 40)
        assert raised == []
        return scores


def _moves_of_six() -> tuple[CollectiveMoves, Callable[..., list[bool]]]:
    """Moves, and a tick of a 6-rank job's power findings (``update(scores, sides, rows)``: the rows read,
    every one by default; each value on its side of its band's middle, inside the band): per row read,
    whether it is held."""
    moves = CollectiveMoves()

    def update(scores: list[float], sides: list[float], rows: Sequence[int] = range(6)) -> list[bool]:
        read = list(rows)
        n = len(read)
        f = banded(
            POWER, [RANKS[i] for i in read], scores, sides, np.full(n, -2.0), np.full(n, 2.0), ids=read
        )
        return holds(moves, f).tolist()

    return moves, update
