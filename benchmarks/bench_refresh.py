"""An inventory refresh with many open incidents, in process: one JSON line.

A Slurm-like cluster of ``--nodes`` 8-GPU nodes in racks of 32, every node running its own training job
on all 8 GPUs. ``GpuXidError`` (XID 79) fires on GPU 1 of the first N nodes: each stops its node's job, so
each is a P0 incident of its own. Then the refreshes ``serve`` makes every 60 s
(``IncidentEngine.replace_inventory``), under the engine's lock, which holds alert ingest meanwhile:

- ``changed``: an inventory that differs (a job started on a spare node, then gone again), so every open
  incident is placed and assessed again (its row read, its impact recomputed, nothing written when its
  assessment is unchanged);
- ``unchanged``: the same inventory again once assessed, which changes nothing.

For N in ``--sizes`` (default 250, 1000, 4000): seconds per refresh of each kind, the best of ``--repeat``,
and the number of incidents open (N expected). The store is SQLite in a temporary directory.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SIZES = (250, 1000, 4000)


def _options() -> argparse.Namespace:
    """The command line, read before the heavy imports below: ``--help`` and an unknown option answer
    at once rather than after seconds of imports."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--nodes", type=int, default=5000, help="8-GPU nodes (at least the largest size + 1)")
    parser.add_argument("--repeat", type=int, default=3)
    return parser.parse_args()


if __name__ == "__main__":
    OPTIONS = _options()

from alerting.db import make_engine  # noqa: E402 - imported after the command line is read
from alerting.engine import IncidentEngine  # noqa: E402
from alerting.inventory import NodeInfo, StaticInventory, WorkloadInfo  # noqa: E402
from alerting.migrate import upgrade  # noqa: E402
from gpuwarden.clock import FakeClock  # noqa: E402
from gpuwarden.config import AlertingConfig  # noqa: E402
from gpuwarden.model import Alert, WorkloadKind, WorkloadRef  # noqa: E402

CLUSTER = "c1"
RACK_SIZE = 32
BATCH = 200  # alerts a POST


def _node(i: int) -> str:
    return f"n{i:05d}"


def _job(i: int) -> WorkloadInfo:
    """Job ``i`` on all of node ``i``'s GPUs."""
    ref = WorkloadRef(WorkloadKind.TRAINING_JOB, "", f"train-{i} ({1000 + i})", CLUSTER)
    units = (frozenset((CLUSTER, _node(i), g) for g in range(8)),)
    return WorkloadInfo(ref, units, aliases=(str(1000 + i), f"train-{i}"), nodes=(_node(i),))


def inventory(nodes: int, spare_job: bool) -> StaticInventory:
    """Every node but the last running its own job; the last one spare, or running one more job."""
    busy = nodes - 1
    node_list = [NodeInfo(_node(i), CLUSTER, f"r{i // RACK_SIZE:03d}", 8, free=0) for i in range(busy)]
    node_list.append(
        NodeInfo(_node(busy), CLUSTER, f"r{busy // RACK_SIZE:03d}", 8, free=0 if spare_job else 8)
    )
    jobs = [_job(i) for i in range(busy)] + ([_job(busy)] if spare_job else [])
    return StaticInventory(node_list, jobs, {CLUSTER: 0 if spare_job else 8})


def _xid(i: int) -> Alert:
    return Alert({"alertname": "GpuXidError", "cluster": CLUSTER, "node": _node(i), "gpu": "1", "xid": "79"})


def _best(engine: IncidentEngine, clock: FakeClock, inventories: list[StaticInventory], repeat: int) -> float:
    """The fastest of ``repeat`` refreshes, taking ``inventories`` in turn, a minute apart."""
    best = float("inf")
    for k in range(repeat):
        clock.advance(60)
        gc.collect()
        start = time.perf_counter()
        engine.replace_inventory(inventories[k % len(inventories)])
        best = min(best, time.perf_counter() - start)
    return best


def run(count: int, nodes: int, repeat: int) -> dict[str, float | int]:
    """N incidents open, then the refreshes timed (see the module's docstring)."""
    work = Path(tempfile.mkdtemp(prefix="bench-refresh-"))
    sql = make_engine(str(work / "gw.db"))
    upgrade(sql)
    clock = FakeClock()
    base, grown = inventory(nodes, False), inventory(nodes, True)
    engine = IncidentEngine(sql, clock, AlertingConfig(announce_delay_seconds=0), base)
    for first in range(0, count, BATCH):
        engine.ingest([_xid(i) for i in range(first, min(first + BATCH, count))])
    engine.replace_inventory(base)  # assessed with it once, as a running serve's are
    opened = len(engine.store.list_rows(limit=count + 1))
    changed = _best(engine, clock, [grown, base], repeat)
    engine.replace_inventory(base)
    unchanged = _best(engine, clock, [base], repeat)
    sql.dispose()
    return {"incidents": opened, "changed_s": round(changed, 4), "unchanged_s": round(unchanged, 5)}


def main(args: argparse.Namespace) -> None:
    if args.nodes <= max(args.sizes):
        raise SystemExit(
            f"error: --nodes {args.nodes}: give more nodes than the largest size ({max(args.sizes)})"
        )
    gc.freeze()  # as serve does
    gc.set_threshold(10_000, 10, 10)
    result: dict[str, object] = {"benchmark": "refresh", "nodes": args.nodes}
    run(20, args.nodes, 1)  # warm up (SQLAlchemy compiles its statements once): not counted
    for count in args.sizes:
        for key, value in run(count, args.nodes, args.repeat).items():
            result[f"{key}_{count}"] = value
    print(json.dumps(result))


if __name__ == "__main__":
    main(OPTIONS)
