"""Training jobs' ranks and the banded findings of one read of them, as the workload-move tests
(``tests/anomaly/test_collective*.py``) feed them to ``anomaly.collective``."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from anomaly.collective import CollectiveMoves, collective_workloads
from anomaly.detectors import Findings

UTIL = "DCGM_FI_DEV_GPU_UTIL"
POWER = "DCGM_FI_DEV_POWER_USAGE"

Numbers = Sequence[float] | npt.NDArray[np.float64]


def job_ranks(job: str, nodes: Sequence[int] = (5, 6, 7, 8), **labels: str) -> list[dict[str, str]]:
    """The labels of job ``job``'s ranks, GPUs 0-3 of each of ``nodes`` (16 ranks by default), node by node,
    each with ``labels`` too."""
    return [
        {"gpu": str(g), "UUID": f"GPU-{n}-{g}", "Hostname": f"node-{n:02d}", **labels, "slurm_job": job}
        for n in nodes
        for g in range(4)
    ]


def node_ranks(n: int) -> list[dict[str, str]]:
    """The labels of job 1's ``n`` ranks, GPUs 0..n-1 of node-01."""
    return [{"gpu": str(g), "UUID": f"GPU-{g}", "Hostname": "node-01", "slurm_job": "1"} for g in range(n)]


def banded(
    query: str,
    labels: Sequence[dict[str, str]],
    score: Numbers,
    value: Numbers,
    lower: Numbers,
    upper: Numbers,
    yhat: Numbers | None = None,
    ids: Sequence[int] | None = None,
) -> Findings:
    """One read of the adaptive detector: per row of ``labels``, its score, value and band (``yhat`` by
    default the band's middle), the rows' series ids ``ids`` (by default 0..n-1)."""
    lo, hi = np.asarray(lower, np.float64), np.asarray(upper, np.float64)
    return Findings(
        "adaptive",
        query,
        labels,
        np.asarray(score, np.float64),
        np.asarray(value, np.float64),
        yhat=(lo + hi) / 2 if yhat is None else np.asarray(yhat, np.float64),
        lower=lo,
        upper=hi,
        ids=np.arange(len(labels), dtype=np.int64) if ids is None else np.array(ids, np.int64),
    )


def holds(moves: CollectiveMoves, f: Findings) -> npt.NDArray[np.bool_]:
    """Per row of ``f``, whether its job's move holds it, the jobs moving this tick read from ``f`` itself."""
    return moves.update(f, collective_workloads(f))


def alerting(moves: CollectiveMoves, f: Findings) -> set[int]:
    """The anomalous rows of ``f`` left to alert once ``AlertUpdater._drop_collective`` dropped its moving
    workloads' rows and the rows their moves hold."""
    return set(moves.kept(f, collective_workloads(f), f.anomalous()))


def at_work(moves: CollectiveMoves, labels: Sequence[dict[str, str]]) -> None:
    """Four reads of the job of ``labels`` at work, every rank at 95 % utilisation scoring 0.2 in a wide
    -100..260 % band: nothing moves, nothing alerts."""
    n = len(labels)
    reads = banded(UTIL, labels, np.full(n, 0.2), np.full(n, 95.0), np.full(n, -100.0), np.full(n, 260.0))
    for _ in range(4):
        assert not alerting(moves, reads)
