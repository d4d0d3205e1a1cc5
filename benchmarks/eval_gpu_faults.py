"""GPU-fault evaluation: the simulated 64-GPU fleet -> the real NVML collector -> the anomaly service.

Every fault class is injected many times at random times over simulated days with a FakeClock; prints one
JSON line (recall within deadline per class, latency p50/p90/max, false alerts per 1,000 GPU-days with a
one-sided 95% Poisson upper bound, and which detector raised each false alert). Several seeds are
independent fleets, run in parallel processes and pooled. The wiring lives here because benchmarks may
import every stage; the harness is ``anomaly.faulteval``.

    .venv/bin/python benchmarks/eval_gpu_faults.py --days 2 --seed 0
    .venv/bin/python benchmarks/eval_gpu_faults.py --days 4 --seed 100 --seeds 8 --workers 2
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any


def _options() -> argparse.Namespace:
    """The command line, read before the heavy imports below: ``--help`` and an unknown option answer
    at once rather than after seconds of imports."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--days", type=float, default=2.0, help="simulated days per seed")
    parser.add_argument("--nodes", type=int, default=8)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--interval", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument("--seeds", type=int, default=1, help="independent fleets: seeds seed .. seed+seeds-1")
    parser.add_argument("--workers", type=int, default=1, help="processes (one seed each at a time)")
    parser.add_argument(
        "--reescalate-alerts",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="anomaly.reescalate_alerts on or off (default: the configuration's default)",
    )
    return parser.parse_args()


if __name__ == "__main__":
    OPTIONS = _options()

from scipy.stats import chi2  # noqa: E402 - imported after the command line is read

from anomaly.faulteval import EvalPlan, FaultEvalReport, merge_reports, run_fault_eval  # noqa: E402
from anomaly.service import AnomalyService  # noqa: E402
from anomaly.sources import CollectorSource  # noqa: E402
from exporters.simulated import sim_collectors  # noqa: E402
from gpuwarden.clock import FakeClock  # noqa: E402
from gpuwarden.config_anomaly import AnomalyConfig  # noqa: E402
from gpuwarden.sim import build_fleet  # noqa: E402


def build(nodes: int, gpus: int, seed: int, interval: float, reescalate: bool | None = None):
    clock = FakeClock()
    fleet = build_fleet(nodes, gpus, seed=seed, clock=clock)
    nvml = sim_collectors(fleet, clock)
    source = CollectorSource(nvml.collectors, clock)
    given = {} if reescalate is None else {"reescalate_alerts": reescalate}
    service = AnomalyService(AnomalyConfig(infer_every_seconds=interval, **given), [source], clock)
    return clock, fleet, service, nvml.pump_xids


def run_one(args: tuple[int, int, int, float, float, bool | None]) -> tuple[FaultEvalReport, float]:
    """One seed's run (in a worker process); returns its report and wall seconds."""
    nodes, gpus, seed, days, interval, reescalate = args
    logging.basicConfig(
        level=logging.ERROR
    )  # the simulator lacks encoder/decoder calls; keep stdout one line
    started = time.perf_counter()
    clock, fleet, service, pump = build(nodes, gpus, seed, interval, reescalate)
    plan = EvalPlan(duration_seconds=days * 86400, interval_seconds=interval, seed=seed)
    report = run_fault_eval(fleet, service, clock, plan, before_tick=pump)
    for item in (*report.false_alert_examples, *report.missed, *report.sympathetic):
        item["seed"] = seed
    return report, time.perf_counter() - started


def service_default(reescalate: bool | None) -> bool:
    """Whether the run re-raised re-escalating alerts: as asked, else the configuration's default."""
    return AnomalyConfig().reescalate_alerts if reescalate is None else reescalate


def poisson_upper(k: int, confidence: float = 0.95) -> float:
    """One-sided upper confidence bound of a Poisson mean after observing ``k`` events."""
    return float(chi2.ppf(confidence, 2 * k + 2) / 2.0)


def main(args: argparse.Namespace) -> None:
    seeds = list(range(args.seed, args.seed + args.seeds))
    jobs = [(args.nodes, args.gpus, seed, args.days, args.interval, args.reescalate_alerts) for seed in seeds]
    started = time.perf_counter()
    if args.workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            results = list(pool.map(run_one, jobs))
    else:
        results = [run_one(job) for job in jobs]
    report = merge_reports([r for r, _ in results])
    upper = poisson_upper(report.false_alerts)
    out: dict[str, Any] = {
        "benchmark": "eval_gpu_faults",
        "gpus": args.nodes * args.gpus,
        "days_per_seed": args.days,
        "seeds": seeds,
        "reescalate_alerts": service_default(args.reescalate_alerts),
    }
    out |= report.to_json()
    out["false_alerts_per_1000_gpu_days_95pct_upper"] = (
        round(1000.0 * upper / report.gpu_days, 3) if report.gpu_days else None
    )
    out["cpu_seconds_per_simulated_gpu_day"] = (
        round(sum(w for _, w in results) / report.gpu_days, 3) if report.gpu_days else None
    )
    out["wall_seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main(OPTIONS)
