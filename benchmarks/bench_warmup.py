"""Start-up cost of the anomaly service's warm-up (``AnomalyService.warm_up``): one JSON line.

An hour of history (30 s steps, 120 of them) of ``bench_anomaly.py``'s fleet, 10,000 GPUs x 25 series
(250,000 series), is replayed by a fresh service with ``anomaly.reescalate_alerts`` off, then by another with
it on, then off again. Both run the replay through the alert state (only "on" did before fix/reesc, which
recalls alerts with it off too), so the three should cost alike. Each JSON field is one run's
CPU seconds (``warm_up_cpu_seconds_off``, ``..._on``, ``..._off_again``: steadier than wall time on a shared
machine) and wall seconds (``warm_up_seconds_...``). 1 % of the
GPUs run 30 C hot from the middle of the hour to 4 minutes before its end, so the replay raises alerts and
sees them recover; ``recalled`` is how many alerts the history left firing with the option on
(``recalled_off``: with it off, the same since fix/reesc; 0 before).
"""

from __future__ import annotations

import argparse
import os


def _options() -> argparse.Namespace:
    """The command line (no option), read before the heavy imports below (numpy, the anomaly stage):
    ``--help`` and an unknown option answer at once rather than after seconds of imports."""
    return argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    ).parse_args()


if __name__ == "__main__":
    _options()

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent))

from bench_anomaly import GPUS, FleetCollector  # noqa: E402

from anomaly.service import AnomalyService  # noqa: E402
from anomaly.sources import Frame, SourceHealth  # noqa: E402
from gpuwarden.clock import FakeClock  # noqa: E402
from gpuwarden.config_anomaly import AnomalyConfig  # noqa: E402

STEP = 30.0
HOT = GPUS // 100


class HistorySource:
    """Prometheus' hour of the fleet: every series on a 30 s grid, the first 1 % of GPUs hot for a while."""

    name = "history"

    def __init__(self, end: float, steps: int = 120, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        fleet = FleetCollector(seed)
        self.labels, self.names = fleet.labels, fleet.names
        self.stamps = end - STEP * np.arange(steps)[::-1]
        self.values = {name: 50 + j + rng.normal(0, 1, (GPUS, steps)) for j, name in enumerate(self.names)}
        self.values[self.names[0]][:HOT, steps // 2 : steps - 8] += 30.0
        self._health = SourceHealth(self.name)

    def read(self, start: float, end: float) -> list[Frame]:
        """The history's samples in (start, end]."""
        keep = (self.stamps > start) & (self.stamps <= end)
        self._health.succeeded(end, GPUS * len(self.names))
        return [Frame(n, self.labels, self.stamps[keep], self.values[n][:, keep]) for n in self.names]

    def health(self) -> SourceHealth:
        """Always up."""
        return self._health


def warm_up(reescalate: bool) -> tuple[float, float, int]:
    """CPU and wall seconds of one fresh service's warm-up, and the alerts its history left firing."""
    clock = FakeClock()
    cfg = AnomalyConfig(
        adaptive_metrics=["*"], fleet_queries=FleetCollector().names[:5], reescalate_alerts=reescalate
    )
    source = HistorySource(clock.time() - cfg.latency_offset_seconds)
    service = AnomalyService(cfg, [source], clock)
    cpu, start = time.process_time(), time.perf_counter()
    service.warm_up()
    recalled = len(getattr(service, "_recalled", {}))  # none before fix/waves
    return time.process_time() - cpu, time.perf_counter() - start, recalled


def main() -> None:
    logging.basicConfig(level=logging.ERROR)  # the fleet detector's missing-label warnings: one JSON line
    runs = {"off": warm_up(False), "on": warm_up(True), "off_again": warm_up(False)}
    print(
        json.dumps(
            {
                "benchmark": "anomaly_warm_up",
                "series": GPUS * len(FleetCollector().names),
                **{f"warm_up_cpu_seconds_{k}": round(cpu, 2) for k, (cpu, _, _) in runs.items()},
                **{f"warm_up_seconds_{k}": round(wall, 2) for k, (_, wall, _) in runs.items()},
                "recalled": runs["on"][2],
                "recalled_off": runs["off"][2],
            }
        )
    )


if __name__ == "__main__":
    main()
