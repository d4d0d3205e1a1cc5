"""A second fault soon after a repair, on a band the first widened: one JSON line.

The README's Known gaps measurement, as ``anomaly run`` runs it with its defaults (30 s ticks, the default
detectors and band floors): 8 GPUs of one node whose SM clocks read N(1980, 5) MHz; after ``--normal``
minutes GPU 0's clock is throttled to N(1400, 5) for ``--fault`` minutes (an hour), then repaired; ``gap``
minutes after the repair (10, 20, 30 and 60) it drops again, by ``drop`` MHz (250 and 400) for 10 minutes.
Each (drop, gap) is its own run. Per run it gives whether the ``adaptive`` detector raised an alert on GPU
0's SM clock for the second drop (a new alert or a re-escalated one, from the drop's start to 20 minutes
after its end) and after how many seconds (``delay_s``), whether the first fault's alert was still firing
when the drop began (``first_open``: the drop then holds it firing, raising nothing new unless it
re-escalates), and the band's half-width just before the drop (``band_before``; ``band_healthy``: before the
first fault, ``band_at_repair``: at the repair). ``false_alerts`` counts the adaptive alerts raised on any
GPU outside the two faults (the first fault's up to 10 minutes after its repair is its own); a run without a
second drop adds its own. The fleet detector's alerts are left out: they are judged against the GPU's peers,
not its own band. ``--band-restore-ticks 0`` runs without the band given back at the repair
(``anomaly.band_restore_ticks``; left out: the configuration's default, and a tree before it knew none).

    PYTHONPATH=. .venv/bin/python benchmarks/anomaly_band_after_repair.py
"""

from __future__ import annotations

import argparse


def _options() -> argparse.Namespace:
    """The command line, read before the heavy imports below (numpy, the anomaly stage): ``--help`` and an
    unknown option answer at once rather than after seconds of imports."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--normal", type=int, default=120, help="healthy minutes before the fault")
    parser.add_argument("--fault", type=int, default=60, help="minutes throttled to 1400 MHz")
    parser.add_argument("--gaps", default="10,20,30,60", help="minutes from the repair to the second drop")
    parser.add_argument("--drops", default="250,400", help="the second drop's depths, MHz")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--band-restore-ticks", type=int, default=None, help="anomaly.band_restore_ticks")
    return parser.parse_args()


if __name__ == "__main__":
    ARGS = _options()

import json  # noqa: E402
import logging  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from anomaly.service import AnomalyService  # noqa: E402
from anomaly.sources import Frame, SourceHealth  # noqa: E402
from gpuwarden.clock import FakeClock  # noqa: E402
from gpuwarden.config_anomaly import AnomalyConfig  # noqa: E402

STEP = 30.0
CLOCK = "DCGM_FI_DEV_SM_CLOCK"
GPUS = [{"gpu": str(i), "UUID": f"GPU-{i}", "Hostname": "n1", "modelName": "H100"} for i in range(8)]
AFTER = 600.0  # a raise this long after a fault's end is still that fault's


class ClockSource:
    """GPU 0's clock follows ``clock0(t)``; every GPU reads N(its value, 5) MHz at each tick."""

    name = "in-process"

    def __init__(self, clock: FakeClock, clock0: dict[int, float], seed: int) -> None:
        self._clock = clock
        self._clock0 = clock0  # tick -> GPU 0's mean clock where not 1980
        self._rng = np.random.default_rng(seed)
        self._health = SourceHealth(self.name)
        self.tick = 0

    def read(self, start: float, end: float) -> list[Frame]:
        """One instant, as the in-process source reads."""
        now = self._clock.time()
        values = 1980.0 + self._rng.normal(0.0, 5.0, len(GPUS))
        values[0] += self._clock0.get(self.tick, 1980.0) - 1980.0
        self.tick += 1
        self._health.succeeded(now, len(GPUS))
        return [Frame(CLOCK, GPUS, np.array([now]), values.reshape(-1, 1))]

    def health(self) -> SourceHealth:
        """Always up."""
        return self._health


def run(
    normal: int, fault: int, gap: int | None, drop: float, seed: int, restore: int | None
) -> dict[str, object]:
    """One run; ``gap`` None: no second drop (a run of its own gives the false alerts without one)."""
    per_min = int(60 / STEP)
    fault_at, repair_at = normal * per_min, (normal + fault) * per_min
    clock0 = dict.fromkeys(range(fault_at, repair_at), 1400.0)
    second = None if gap is None else repair_at + gap * per_min
    if second is not None:
        clock0.update(dict.fromkeys(range(second, second + 10 * per_min), 1980.0 - drop))
    end = (second if second is not None else repair_at) + 30 * per_min
    clock = FakeClock()
    source = ClockSource(clock, clock0, seed)
    cfg = AnomalyConfig() if restore is None else AnomalyConfig(band_restore_ticks=restore)
    service = AnomalyService(cfg, [source], clock)
    raised: list[tuple[int, str]] = []
    band: dict[int, float] = {}
    first_open = False
    for tick in range(end):
        clock.advance(STEP)
        if tick == second:
            first_open = any(
                s.detector == "adaptive" and s.alert.labels.get("gpu") == "0" for s in service.firing.values()
            )
        result = service.infer()
        for alert in result.raised:
            if alert.annotations.get("detector") == "adaptive":
                raised.append((tick, alert.labels.get("gpu", "")))
        for f in result.findings:
            if f.detector == "adaptive" and f.query == CLOCK and f.upper is not None and f.lower is not None:
                rows = [i for i, labels in enumerate(f.labels) if labels.get("gpu") == "0"]
                if rows:
                    band[tick] = float(f.upper[rows[0]] - f.lower[rows[0]]) / 2.0
    first_end = repair_at + int(AFTER / STEP)
    own = [t for t, g in raised if g == "0" and second is not None and second <= t < second + 30 * per_min]
    false = [
        t
        for t, g in raised
        if g != "0"
        or not (fault_at <= t < first_end or (second is not None and second <= t < second + 30 * per_min))
    ]
    out: dict[str, object] = {
        "band_healthy": round(band.get(fault_at - 1, float("nan")), 1),
        "band_at_repair": round(band.get(repair_at, float("nan")), 1),
    }
    if second is not None:
        out.update(
            raised=bool(own),
            delay_s=(own[0] - second) * STEP if own else None,
            band_before=round(band.get(second - 1, float("nan")), 1),
            first_open=first_open,
        )
    out["false_alerts"] = len(false)
    return out


def main(args: argparse.Namespace) -> None:
    logging.basicConfig(level=logging.ERROR)  # the fleet detector's missing-label warnings: one JSON line
    started = time.perf_counter()
    runs = {}
    for drop in (float(d) for d in args.drops.split(",")):
        for gap in (int(g) for g in args.gaps.split(",")):
            runs[f"drop{drop:.0f}_gap{gap}"] = run(
                args.normal, args.fault, gap, drop, args.seed, args.band_restore_ticks
            )
    control = run(args.normal, args.fault, None, 0.0, args.seed, args.band_restore_ticks)
    print(
        json.dumps(
            {
                "benchmark": "anomaly_band_after_repair",
                "seed": args.seed,
                "band_restore_ticks": args.band_restore_ticks,
                "runs": runs,
                "raised": sum(bool(r["raised"]) for r in runs.values()),
                "of": len(runs),
                "false_alerts": sum(int(str(r["false_alerts"])) for r in runs.values())
                + int(str(control["false_alerts"])),
                "band_healthy": control["band_healthy"],
                "band_at_repair": control["band_at_repair"],
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
    )


if __name__ == "__main__":
    main(ARGS)
