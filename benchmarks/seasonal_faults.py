"""A 3-hour fault and a lasting change under ``anomaly run``'s seasonal bands: the alerts they raise, and the
next day's: one JSON line.

Each seed is a GPU whose ``inference_latency_seconds`` (a name the adaptive detector scores by default, no
band floor) reads at a 30-second step from Monday 00:00 UTC, for ``--days`` days, one of two shapes: ``wave``
(a daily wave, 100 + 30 sin(2 pi t / day), noise N(0, 2): the hour-of-day model wins) or ``flat`` (N(100,
2)). The service runs with ``adaptive_seasonality`` on (``AnomalyConfig``'s other defaults: pending reads,
resolve-after, the band given back after a fault), in process, one tick a sample, the adaptive detector alone
(``--all-detectors``: every default detector). Per shape and case:

* ``fault``: 40 down from 10:00 to 13:00 on day ``--fault-day`` (the third, by default), back after it.
  ``at_fault``: GPUs raised within it; ``next_day``: alerts raised the day after (all false: nothing happens
  then), and ``next_day_gpus`` the GPUs that raised them; ``next_day_hours``: the hours they were raised at.
* ``again``: the same fault, and again the next day at the same hours: ``again_found``, the GPUs the second
  is raised on (a bucket that learnt the first hides it).
* ``lasting``: 40 down from 10:00 on day ``--fault-day``, held to the end: ``alerts`` raised from the change
  on (one a GPU is what a user expects), ``gpus_over_1``: the GPUs that raised more than one, ``hours``: the
  hours after the change the alerts were raised at.
* ``inside``: ``--inside-drop`` (10) down from 10:00 on day ``--fault-day``, held for ``--later-days`` (5)
  days after it: near the band or within it, so it may be raised or not, but once at most: ``alerts``,
  ``gpus_over_1`` as ``lasting``, and ``days``: the days after the change's (0) the alerts were raised on.
* ``blip``: 16 down for 20 minutes from 10:00 on day ``--fault-day``: ``at_fault``, GPUs raised within it;
  ``at_return``: alerts raised from its end to an hour later (the healthy value: all false); ``later``: alerts
  raised after that.
* ``before``: alerts raised before the fault or change, every case (false: nothing happened yet).

``--seasonality off`` runs the same with the seasonal bands off (the level alone), to compare.

Run: ``PYTHONPATH=. .venv/bin/python benchmarks/seasonal_faults.py`` (``--seeds 10``, the default).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from anomaly.service import AnomalyService
from anomaly.sources import CollectorSource
from benchmarks.row_gpus import RowGpus
from gpuwarden.clock import FakeClock
from gpuwarden.config_anomaly import AnomalyConfig

T0 = 1_767_571_200.0  # 2026-01-05 00:00 UTC, a Monday
STEP = 30.0
PER_HOUR = 120
PER_DAY = 24 * PER_HOUR
METRIC = "inference_latency_seconds"
DROP = 40.0
FROM_HOUR, HOURS = 10, 3
SHAPES = ("wave", "flat")
CASES = ("fault", "again", "lasting", "inside", "blip")
BLIP_DROP, BLIP_SAMPLES = 16.0, 40  # 20 minutes at 30 s


def series(
    shape: str, case: str, seeds: int, days: int, fault_day: int, inside_drop: float = 10.0
) -> np.ndarray:
    """Rows by GPUs: the shape with its case's drop."""
    t = T0 + STEP * np.arange(days * PER_DAY)
    cycle = 30.0 * np.sin(2 * np.pi * (t - T0) / 86_400.0) if shape == "wave" else np.zeros(t.size)
    values = np.stack(
        [100.0 + cycle + np.random.default_rng(s).normal(0.0, 2.0, t.size) for s in range(seeds)]
    )
    start = fault_day * PER_DAY + FROM_HOUR * PER_HOUR
    if case in ("lasting", "inside"):
        values[:, start:] -= DROP if case == "lasting" else inside_drop
    elif case == "blip":
        values[:, start : start + BLIP_SAMPLES] -= BLIP_DROP
    else:
        values[:, start : start + HOURS * PER_HOUR] -= DROP
        if case == "again":
            values[:, start + PER_DAY : start + PER_DAY + HOURS * PER_HOUR] -= DROP
    out: np.ndarray = values.T
    return out


def run_case(shape: str, case: str, options: argparse.Namespace) -> dict[str, Any]:
    """One shape and case through the ``anomaly run`` path: one tick a sample, every seed a GPU."""
    days = options.fault_day + 1 + options.later_days if case == "inside" else options.days
    values = series(shape, case, options.seeds, days, options.fault_day, options.inside_drop)
    clock = FakeClock(T0 - STEP)
    gpus = RowGpus(values, METRIC, "latency")
    cfg = AnomalyConfig(
        infer_every_seconds=STEP,
        adaptive_seasonality=options.seasonality == "on",
        **({} if options.all_detectors else {"detectors": ["adaptive"]}),
    )
    service = AnomalyService(cfg, [CollectorSource([gpus], clock)], clock)
    start = options.fault_day * PER_DAY + FROM_HOUR * PER_HOUR
    raised: list[tuple[int, str, str]] = []
    for i in range(values.shape[0]):
        gpus.row = i
        clock.advance(STEP)
        for alert in service.infer().raised:
            raised.append((i, alert.labels.get("UUID", "?"), alert.labels.get("model", "?")))
    early = sum(1 for i, _, _ in raised if i < start)
    after = [(i - start, uuid, model) for i, uuid, model in raised if i >= start]
    out: dict[str, Any] = {"before": early}
    if case in ("lasting", "inside"):
        per_gpu = Counter(uuid for _, uuid, _ in after)
        out.update(
            alerts=len(after), gpus=len(per_gpu), gpus_over_1=sum(1 for n in per_gpu.values() if n > 1)
        )
        if case == "lasting":
            out["hours"] = sorted(Counter(d // PER_HOUR for d, _, _ in after).items())
        else:  # the day after the change's day: the change came at 10:00
            out["days"] = sorted(Counter((d + FROM_HOUR * PER_HOUR) // PER_DAY for d, _, _ in after).items())
        return out
    if case == "blip":
        out["at_fault"] = len({uuid for d, uuid, _ in after if d < BLIP_SAMPLES})
        out["at_return"] = sum(1 for d, _, _ in after if BLIP_SAMPLES <= d < BLIP_SAMPLES + PER_HOUR)
        out["later"] = sum(1 for d, _, _ in after if d >= BLIP_SAMPLES + PER_HOUR)
        return out
    fault_len = HOURS * PER_HOUR
    out["at_fault"] = len({uuid for d, uuid, _ in after if d < fault_len})
    # The next day: from the fault's end (a day on) to the end of that day; ``again``: its second fault apart.
    nxt = [(d, uuid) for d, uuid, _ in after if PER_DAY <= d < 2 * PER_DAY - FROM_HOUR * PER_HOUR]
    if case == "again":
        out["again_found"] = len({uuid for d, uuid in nxt if d < PER_DAY + fault_len})
        nxt = [(d, uuid) for d, uuid in nxt if d >= PER_DAY + fault_len + PER_HOUR]
    else:
        # Raised from the fault's end to the next day: its repair (the band given back, or not).
        out["after_repair"] = sum(1 for d, _, _ in after if fault_len <= d < PER_DAY)
    out["next_day"] = len(nxt)
    out["next_day_gpus"] = len({uuid for _, uuid in nxt})
    out["next_day_hours"] = sorted(Counter(FROM_HOUR + (d - PER_DAY) // PER_HOUR for d, _ in nxt).items())
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=10, help="GPUs per shape and case (default 10)")
    parser.add_argument("--days", type=int, default=4, help="days of samples (default 4)")
    parser.add_argument(
        "--fault-day", type=int, default=2, help="the day of the fault (default 2: the third)"
    )
    parser.add_argument(
        "--inside-drop", type=float, default=10.0, help="case inside: the lasting drop (default 10)"
    )
    parser.add_argument(
        "--later-days", type=int, default=5, help="case inside: days after the change's (default 5)"
    )
    parser.add_argument("--seasonality", choices=("on", "off"), default="on", help="seasonal bands (on)")
    parser.add_argument("--all-detectors", action="store_true", help="every default detector")
    parser.add_argument("--shape", action="append", choices=SHAPES, help="only these shapes")
    parser.add_argument("--case", action="append", choices=CASES, help="only these cases")
    options = parser.parse_args()
    if options.days < options.fault_day + 2:
        parser.error("--days must leave the fault's day and the next")
    logging.disable(logging.WARNING)
    t0 = time.perf_counter()
    out: dict[str, Any] = {
        "benchmark": "seasonal_faults",
        "seeds": options.seeds,
        "seasonality": options.seasonality,
        "detectors": "all" if options.all_detectors else "adaptive",
        "cases": {},
    }
    for shape in options.shape or SHAPES:
        for case in options.case or CASES:
            out["cases"][f"{shape}_{case}"] = run_case(shape, case, options)
    out["wall_seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
