"""What the PromQL source's range edges add to the state snapshot: one JSON line.

``RangeEdges.state`` (the copy a save makes of each range query's runs of points, beside the ticks) and
``RangeEdges.saved`` (reading them back at a restart) on ``--gpus`` GPUs' series in each of ``--queries``
range queries, every series of a GPU sharing its label set, as a fleet's range queries do. Fields:
``runs``; ``state_seconds`` and ``saved_seconds``, best of ``--repeats``; ``meta_bytes`` (the JSON the
snapshot's header holds) and ``array_bytes`` (the npz arrays); ``bytes`` their sum. The worst case by
default: 10,000 GPUs and all 25 of ``bench_anomaly.py``'s queries range queries (250,000 runs).

    .venv/bin/python benchmarks/bench_range_edges.py [--gpus N] [--queries N] [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import time


def _options() -> argparse.Namespace:
    """The command line, read before the heavy imports below: ``--help`` answers at once."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=25)
    parser.add_argument("--repeats", type=int, default=3)
    return parser.parse_args()


if __name__ == "__main__":
    OPTIONS = _options()

import numpy as np  # noqa: E402 - imported after the command line is read

from anomaly.rangeedges import RangeEdges  # noqa: E402
from anomaly.sources import Frame  # noqa: E402

STEP = 30.0
WINDOW = 300.0


def filled(gpus: int, queries: int) -> RangeEdges:
    """Edges that have masked an hour of ``queries`` range queries over ``gpus`` GPUs' series."""
    labels = [
        {
            "Hostname": f"node-{i // 8:04d}",
            "UUID": f"GPU-{i:08x}-0000-0000-0000-000000000000",
            "gpu": str(i % 8),
            "modelName": "NVIDIA H100 80GB HBM3",
            "slurm_job": str(1000 + i // 64),
        }
        for i in range(gpus)
    ]
    ts = 1_767_225_600.0 + STEP * np.arange(120)
    edges = RangeEdges(forget_after=3600.0)
    values = np.ones((gpus, ts.size))
    for q in range(queries):
        edges.mask(Frame(f"rate_{q}", labels, ts, values), WINDOW, STEP)
    return edges


def measure(gpus: int, queries: int, repeats: int) -> dict[str, object]:
    edges = filled(gpus, queries)
    state_seconds = saved_seconds = float("inf")
    meta: dict[str, object] = {}
    arrays: dict[str, np.ndarray] = {}
    for _ in range(repeats):
        t0 = time.perf_counter()
        meta, arrays = edges.state()
        state_seconds = min(state_seconds, time.perf_counter() - t0)
        written = json.loads(json.dumps(meta))  # as the snapshot's header holds it
        t0 = time.perf_counter()
        runs = RangeEdges.saved(written, arrays)
        saved_seconds = min(saved_seconds, time.perf_counter() - t0)
    meta_bytes = len(json.dumps(meta, separators=(",", ":")).encode())
    array_bytes = sum(a.nbytes for a in arrays.values())
    return {
        "benchmark": "range_edges",
        "runs": sum(len(r) for r, _ in runs.values()),
        "state_seconds": round(state_seconds, 4),
        "saved_seconds": round(saved_seconds, 4),
        "meta_bytes": meta_bytes,
        "array_bytes": array_bytes,
        "bytes": meta_bytes + array_bytes,
    }


if __name__ == "__main__":
    print(json.dumps(measure(OPTIONS.gpus, OPTIONS.queries, OPTIONS.repeats)))
