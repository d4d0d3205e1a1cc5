"""Whether stopped Slurm jobs can start again together (``alerting.capacity.can_restart``): one JSON line.

``--nodes`` 8-GPU nodes of one partition, two of every three with all GPUs free, each with two of five
features; ``--jobs`` stopped 8-GPU jobs whose node died, each with a constraint of one feature or of two
joined by ``|`` (8 different ones): every job fits alone, so the check of all of them together (the free
GPUs of each node pooled by which jobs may use it, then a maximum flow) runs every time. ``--per-node 8``
makes each job ask its GPUs per node (``--gres=gpu:8``), so that each is also fitted to whole nodes. The best
of ``--repeat`` rounds of ``--checks`` checks.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _options() -> argparse.Namespace:
    """The command line, read before the heavy imports below: ``--help`` and an unknown option answer
    at once rather than after seconds of imports."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=2048)
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--checks", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--per-node", type=int, default=0, help="GPUs each job asks per node (0: counted)")
    return parser.parse_args()


if __name__ == "__main__":
    OPTIONS = _options()

from alerting.capacity import can_restart  # noqa: E402 - imported after the command line is read
from alerting.inventory import NodeInfo, StaticInventory, WorkloadInfo  # noqa: E402
from gpuwarden.model import WorkloadKind, WorkloadRef  # noqa: E402

FEATURES = ("a100", "h100", "ib", "nvl", "big")


def fleet(
    nodes: int, jobs: int, per_node: int = 0
) -> tuple[StaticInventory, list[WorkloadRef], frozenset[tuple[str, str, int]]]:
    """The inventory, the stopped jobs and the GPUs their dead nodes lost."""
    infos = [
        NodeInfo(
            f"n{i}",
            "c1",
            f"r{i % 32}",
            8,
            free=8 if i % 3 else 0,
            idle=frozenset(range(8)) if i % 3 else frozenset(),
            partitions=("gpu",),
            features=frozenset({FEATURES[i % 5], FEATURES[(i * 7) % 5]}),
        )
        for i in range(nodes)
    ]
    workloads, refs = [], []
    for j in range(jobs):
        ref = WorkloadRef(WorkloadKind.TRAINING_JOB, "", f"job ({j})", "c1")
        constraint = FEATURES[j % 5] + (f"|{FEATURES[(j + 1) % 5]}" if j % 2 else "")
        units = tuple(frozenset({("c1", f"n{3 * j}", g)}) for g in range(8))
        workloads.append(
            WorkloadInfo(ref, units, partitions=("gpu",), constraint=constraint, per_node=per_node)
        )
        refs.append(ref)
    lost = frozenset(("c1", f"n{3 * j}", g) for j in range(jobs) for g in range(8))
    return StaticInventory(infos, workloads, {}), refs, lost


def main(args: argparse.Namespace) -> None:
    """Time the checks and print one JSON line."""
    inventory, refs, lost = fleet(args.nodes, args.jobs, args.per_node)
    best = float("inf")
    for _ in range(args.repeat):
        started = time.perf_counter()
        for _ in range(args.checks):
            fits = can_restart(inventory, refs, lost)
        best = min(best, (time.perf_counter() - started) / args.checks)
    print(
        json.dumps(
            {
                "bench": "restart_fit",
                "nodes": args.nodes,
                "jobs": args.jobs,
                "per_node": args.per_node,
                "fits": fits,
                "ms_per_check": round(best * 1000, 2),
            }
        )
    )


if __name__ == "__main__":
    main(OPTIONS)
