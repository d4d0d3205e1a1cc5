"""GPU-fault evaluation: the simulated 64-GPU fleet -> the real NVML collector -> the anomaly service.

Every fault class is injected many times at random times over simulated days with a FakeClock; prints one
JSON line (recall within deadline per class, latency, false alerts per 1,000 GPU-days). The wiring lives
here because benchmarks may import every stage; the harness is ``anomaly.faulteval``.

    .venv/bin/python benchmarks/eval_gpu_faults.py --days 2 --seed 0
"""

from __future__ import annotations

import argparse
import json
import logging
import time

from anomaly.faulteval import EvalPlan, run_fault_eval
from anomaly.service import AnomalyService
from anomaly.sources import CollectorSource
from exporters.nvml_collector import NvmlCollector
from exporters.simulated import SimCgroupResolver, SimPodAssignments
from exporters.xid import XidLedger, XidWatcher
from gpuwarden.clock import FakeClock
from gpuwarden.config import AnomalyConfig
from gpuwarden.sim import SimNvml, build_fleet


def build(nodes: int, gpus: int, seed: int, interval: float):
    clock = FakeClock()
    fleet = build_fleet(nodes, gpus, seed=seed, clock=clock)
    collectors, watchers = [], []
    kubelet = SimPodAssignments(fleet)
    for node in fleet.nodes:
        nvml = SimNvml(fleet, node.name)
        nvml.nvmlInit()
        ledger = XidLedger()
        watcher = XidWatcher(nvml, ledger, clock, wait_ms=0)
        watcher.register()
        watchers.append(watcher)
        resolver = SimCgroupResolver(fleet, node.name)
        collectors.append(
            NvmlCollector(nvml, hostname=node.name, xids=ledger, resolver=resolver, pods=kubelet)
        )
    source = CollectorSource(collectors, clock)
    service = AnomalyService(AnomalyConfig(infer_every_seconds=interval), [source], clock)

    def pump() -> None:
        for w in watchers:
            while w.poll():
                pass

    return clock, fleet, service, pump


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=float, default=2.0)
    parser.add_argument("--nodes", type=int, default=8)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--interval", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.ERROR
    )  # the simulator lacks encoder/decoder calls; keep stdout one line
    clock, fleet, service, pump = build(args.nodes, args.gpus, args.seed, args.interval)
    plan = EvalPlan(duration_seconds=args.days * 86400, interval_seconds=args.interval, seed=args.seed)
    started = time.perf_counter()
    report = run_fault_eval(fleet, service, clock, plan, before_tick=pump)
    out = {
        "benchmark": "eval_gpu_faults",
        "gpus": args.nodes * args.gpus,
        "days": args.days,
        "seed": args.seed,
    }
    out |= report.to_json()
    out["wall_seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
