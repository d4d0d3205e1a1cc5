"""Correlation cost by storm shape, in process: one JSON line.

Each shape is applied from the accept journal as ``serve``'s applier does (``bench_many_faults.py``), on a
fresh SQLite store with no inventory, in two phases posted one after the other (batches of 64):

* ``link``: one GPU on each of N nodes of cluster ``bench`` (no rack label) raises ``GPUNVLinkDown`` on link
  0 (phase ``first``), then on link 1 (``second``): each GPU's incident then holds its signal twice, which a
  spread to another rack needs. Until the fix every such incident was a join candidate of every later alert
  of that name (``join_rank`` called N(N+1)/2 times in the second phase).
* ``process``: the same with ``GPUXid`` 13 raised per process (``pid`` 1, then 2): XIDs also take the
  regrouping of a spreading XID into account.
* ``rollout`` (control): XID 119 on GPUs 0 (``first``) then 1 (``second``) of N nodes in racks of 8: a
  driver rollout, one incident, which every alert joins by the spread rules the fix bounds.
* ``node_down`` (control, ``first`` only): ``NodeDown`` on N distinct nodes, linear since
  ``bench_many_faults.py``.

Alerts are posted ``--batch`` at a time (default 64, as Prometheus does; one POST is one journal record,
applied in one transaction). For N in ``--sizes`` (default 250, 500, 1000, 2000) and each shape in
``--shapes``: seconds and alerts per
second per phase, ``join_rank`` calls per phase, and the incidents after each phase (not merged away: N, N,
1 and N expected at the end).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

SIZES = (250, 500, 1000, 2000)
SHAPES = ("link", "process", "rollout", "node_down")


def _options() -> argparse.Namespace:
    """The command line, read before the heavy imports below: ``--help`` and an unknown option answer
    at once rather than after seconds of imports."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--shapes", nargs="+", choices=SHAPES, default=list(SHAPES))
    parser.add_argument("--batch", type=int, help="alerts per POST (default 64)")
    return parser.parse_args()


if __name__ == "__main__":
    OPTIONS = _options()

import alert_feed as feed  # noqa: E402 - imported after the command line is read

from alerting import correlation, regrouping  # noqa: E402
from gpuwarden.model import Alert  # noqa: E402

CLUSTER = "bench"
NODES_PER_RACK = 8

_calls = [0]
_join_rank = correlation.join_rank


def _counted_join_rank(*args: Any, **kwargs: Any) -> int | None:
    _calls[0] += 1
    return _join_rank(*args, **kwargs)


def _gpu_alert(name: str, node: int, gpu: int, extra: dict[str, str]) -> dict[str, str]:
    return {"alertname": name, "cluster": CLUSTER, "Hostname": f"n{node:05d}", "gpu": str(gpu), **extra}


def _phases(shape: str, count: int) -> list[list[dict[str, str]]]:
    """The label sets of each phase of ``shape`` with ``count`` GPUs (alerts) per phase."""
    if shape == "link":
        return [[_gpu_alert("GPUNVLinkDown", i, 0, {"link": str(k)}) for i in range(count)] for k in (0, 1)]
    if shape == "process":
        return [
            [_gpu_alert("GPUXid", i, 0, {"xid": "13", "pid": str(k)}) for i in range(count)] for k in (1, 2)
        ]
    if shape == "rollout":
        return [
            [
                {**_gpu_alert("GPUXid", i, gpu, {"xid": "119"}), "rack": f"r{i // NODES_PER_RACK:04d}"}
                for i in range(count)
                for gpu in (0, 1)
            ][half::2]
            for half in (0, 1)
        ]
    if shape == "node_down":
        return [[{"alertname": "NodeDown", "cluster": CLUSTER, "node": f"n{i:05d}"} for i in range(count)]]
    raise ValueError(f"unknown shape {shape!r} (one of {', '.join(SHAPES)})")


def _run(shape: str, count: int, batch: int = feed.BATCH) -> dict[str, object]:
    """Apply each phase of ``shape`` to a fresh store: seconds, alerts/s and join_rank calls per phase."""
    engine, applier = feed.in_process("bench-correlation-shapes-")
    start_at = datetime.now(UTC) - timedelta(minutes=1)
    ends = datetime.now(UTC) + timedelta(minutes=30)
    result: dict[str, object] = {}
    for phase, labels in zip(("first", "second"), _phases(shape, count), strict=False):
        alerts = [Alert(one, starts_at=start_at) for one in labels]
        bodies = feed.encode([feed.as_postable(a, ends) for a in alerts], batch)  # one transaction each
        _calls[0] = 0
        applied, seconds = feed.apply_timed(applier, bodies, batch)
        result[f"{shape}_{count}_{phase}_seconds"] = round(seconds, 3)
        result[f"{shape}_{count}_{phase}_per_second"] = round(applied / seconds)
        result[f"{shape}_{count}_{phase}_join_rank_calls"] = _calls[0]
        result[f"{shape}_{count}_{phase}_incidents"] = len(engine.store.list_rows(limit=count * 2 + 1))
    return result


def _patch(counted: Callable[..., int | None]) -> None:
    """Count every ``join_rank`` call: ``best_candidate``'s and the XID regrouping's."""
    correlation.join_rank = counted  # type: ignore[assignment]
    regrouping.join_rank = counted  # type: ignore[assignment]


def main(args: argparse.Namespace) -> None:
    _patch(_counted_join_rank)
    gc.freeze()  # as serve does
    gc.set_threshold(10_000, 10, 10)
    result: dict[str, object] = {"benchmark": "correlation_shapes"}
    _run("link", 50)  # warm up (SQLAlchemy compiles its statements once): not counted
    for count in args.sizes:
        for shape in args.shapes:
            result.update(_run(shape, count, feed.BATCH if args.batch is None else args.batch))
    print(json.dumps(result))


if __name__ == "__main__":
    main(OPTIONS)
