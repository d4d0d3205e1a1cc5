"""Exporter shutdown: wall time of ``ExporterService.stop()`` for a simulated exporter of N nodes.

Each node has its own XID watcher thread sitting in an NVML event wait (500 ms, as in ``gpuwarden exporter``)
that nothing can cut short; the collection loop runs on a 5 s interval. Prints one JSON line with the median,
best and worst of ``--runs`` stops per node count.
Run: ``.venv/bin/python benchmarks/bench_exporter_stop.py [--nodes 1 2 4] [--runs 5]``.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import time


def _options() -> argparse.Namespace:
    """The command line, read before the heavy imports below: ``--help`` and an unknown option answer
    at once rather than after seconds of imports."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--runs", type=int, default=5)
    return parser.parse_args()


if __name__ == "__main__":
    OPTIONS = _options()

from exporters.service import NvmlInstance, build_service  # noqa: E402 - imported after the command line is read
from exporters.simulated import SimCgroupResolver  # noqa: E402
from gpuwarden.clock import SystemClock  # noqa: E402
from gpuwarden.sim import SimNvml, build_fleet  # noqa: E402


def stop_seconds(nodes: int) -> float:
    """Start an exporter of ``nodes`` simulated 8-GPU nodes, let its watchers wait, and time its stop."""
    clock = SystemClock()
    fleet = build_fleet(nodes, 8, seed=1, clock=clock)
    instances = []
    for node in fleet.nodes:
        nvml = SimNvml(fleet, node.name)
        nvml.nvmlInit()
        instances.append(NvmlInstance(nvml, node.name, SimCgroupResolver(fleet, node.name)))
    service = build_service(instances, clock=clock, interval=5.0, deadline=1.0)
    service.start()
    time.sleep(0.1)  # every watcher is inside its wait
    began = time.perf_counter()
    service.stop()
    return time.perf_counter() - began


def main(args: argparse.Namespace) -> None:
    logging.disable(logging.WARNING)
    out: dict[str, float] = {}
    for nodes in args.nodes:
        times = sorted(stop_seconds(nodes) for _ in range(args.runs))
        out[f"stop_{nodes}_nodes_ms"] = round(statistics.median(times) * 1000, 1)
        out[f"stop_{nodes}_nodes_best_ms"] = round(times[0] * 1000, 1)
        out[f"stop_{nodes}_nodes_worst_ms"] = round(times[-1] * 1000, 1)
    print(json.dumps({"bench": "exporter_stop", "runs": args.runs, **out}))


if __name__ == "__main__":
    main(OPTIONS)
