"""The simulated part of a demo tick, and a fingerprint of what it exports: one JSON line.

A seeded 8x8 fleet (two racks, one MIG GPU) with a dozen faults and recovery actions injected along the way
(hung, straggler, thermal runaway, XIDs 79 and 48, NVLink CRC burst and link down, SBE storm, memory leak,
power brake, a node down for 95 s, a GPU reset) ticks every 10 s (sometimes 10.37 s): the XID pump and one
collection of every node, as ``SimulatedPipeline.tick`` does before the anomaly service. Prints the CPU time
per tick and a sha256 over every exported sample (name, labels, value, timestamp) of every tick, the fleet's
``describe()`` and every GPU's final state: a change meant to keep the simulator's values must keep the hash.
Run: ``.venv/bin/python benchmarks/bench_sim_tick.py [--ticks 60] [--profile]``.
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import json
import pstats
import time
from typing import Any

from exporters.simulated import sim_collectors
from gpuwarden.clock import FakeClock
from gpuwarden.sim import Fleet, build_fleet, parse_fault

FAULTS: list[tuple[int, dict[str, Any]]] = [
    (3, {"kind": "hung", "node": "node-01", "gpu": 2}),
    (5, {"kind": "straggler", "node": "node-02", "gpu": 1, "params": {"factor": 0.5}}),
    (7, {"kind": "thermal_runaway", "node": "node-03", "gpu": 0}),
    (9, {"kind": "xid", "node": "node-04", "gpu": 5, "xid": 79}),
    (11, {"kind": "nvlink_crc_burst", "node": "node-05", "gpu": 3, "link": 2}),
    (13, {"kind": "ecc_sbe_storm", "node": "node-06", "gpu": 4}),
    (15, {"kind": "memory_leak", "node": "node-07", "gpu": 6}),
    (17, {"kind": "power_brake", "node": "node-08"}),
    (19, {"kind": "node_down", "node": "node-02", "params": {"duration": 95}}),
    (25, {"kind": "reset_gpu", "node": "node-01", "gpu": 2}),
    (27, {"kind": "xid", "node": "node-03", "gpu": 1, "xid": 48}),
    (31, {"kind": "nvlink_down", "node": "node-06", "gpu": 0, "link": 5}),
]


def _fingerprint_fleet(digest: Any, fleet: Fleet) -> None:
    digest.update(json.dumps(fleet.describe(), sort_keys=True, default=str).encode())
    for node in fleet.nodes:
        for gpu in node.gpus:
            digest.update(repr([(k, getattr(gpu.state, k)) for k in gpu.state.__slots__]).encode())


def run(ticks: int, profile: cProfile.Profile | None = None) -> dict[str, Any]:
    """Tick ``ticks`` times; the CPU time covers the XID pump and the collections only."""
    clock = FakeClock()
    fleet = build_fleet(8, 8, seed=7, clock=clock, racks_per_cluster=2, mig_gpus=[("node-08", 7)])
    nodes = sim_collectors(fleet, clock)
    digest, cpu = hashlib.sha256(), 0.0
    for tick in range(ticks):
        for at, payload in FAULTS:
            if at == tick:
                fleet.inject(parse_fault(payload, fleet))
        clock.advance(10.0 + (0.37 if tick % 7 == 3 else 0.0))
        start = time.process_time()
        if profile is not None:
            profile.enable()
        nodes.pump_xids()
        families = [collector.collect() for collector in nodes.collectors]
        if profile is not None:
            profile.disable()
        cpu += time.process_time() - start
        for metrics in families:
            for metric in metrics:
                for s in metric.samples:
                    digest.update(repr((s.name, sorted(s.labels.items()), s.value, s.timestamp)).encode())
    _fingerprint_fleet(digest, fleet)
    return {"sha256": digest.hexdigest(), "ticks": ticks, "cpu_ms_per_tick": round(cpu / ticks * 1000, 2)}


def main() -> None:
    """Print one JSON line (with ``--profile``, cProfile's top functions first)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=60)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    profile = cProfile.Profile() if args.profile else None
    result = run(args.ticks, profile)
    if profile is not None:
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
    print(json.dumps({"benchmark": "sim_tick", **result}))


if __name__ == "__main__":
    main()
