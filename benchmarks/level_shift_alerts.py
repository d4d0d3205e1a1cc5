"""Level shifts and spikes through ``anomaly run``: which raise a ``level_shift`` alert, and when: one JSON
line.

Each case is ``--seeds`` GPUs whose ``inference_latency_seconds`` (a name the level-shift detector scores by
default) reads N(100, 2) at a 30-second step, ``--before`` samples (2 hours), then, from sample ``before``
on, either stepped up by 3, 6 or 10 (``step3``/``step6``/``step10``: 1.5, 3 and 5 noise widths) for
``--after`` samples, or one sample 20 up (``spike20``), back at the level after it. They are scored as
``anomaly run`` scores them with its defaults (``AnomalyConfig()``: every default detector, pending reads,
resolve-after), in process, one tick a sample. Per case:

* ``found``: GPUs with a ``level_shift`` alert raised at or after the step (a spike's: must be 0);
  ``delay_reads``: per such GPU, the reads from the step's first sample to the raise (0: raised at it);
* ``held_reads``: per such GPU, the reads from the raise to its resolution (None: still firing at the end);
* ``before``: ``level_shift`` alerts raised before the step (false: plain noise);
* ``other``: alerts of the other detectors, by detector (the adaptive band raises on a big step too).

Run: ``PYTHONPATH=. .venv/bin/python benchmarks/level_shift_alerts.py`` (``--seeds 20``, the default: a
second or two; ``--seeds 200``: 10 s on 2 shared cores).
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
METRIC = "inference_latency_seconds"
CASES = {"step3": ("step", 3.0), "step6": ("step", 6.0), "step10": ("step", 10.0), "spike20": ("spike", 20.0)}


def series(kind: str, size: float, seeds: int, before: int, after: int) -> np.ndarray:
    """Rows by GPUs: N(100, 2), stepped up by ``size`` from row ``before`` on, or spiked there only."""
    values = np.stack(
        [np.random.default_rng(s).normal(100.0, 2.0, before + after) for s in range(seeds)], axis=1
    )
    if kind == "step":
        values[before:] += size
    else:
        values[before] += size
    return values


def run_case(kind: str, size: float, seeds: int, before: int, after: int) -> dict[str, Any]:
    """One case through the ``anomaly run`` path: one tick a sample, every seed a GPU."""
    values = series(kind, size, seeds, before, after)
    clock = FakeClock(T0)
    gpus = RowGpus(values, METRIC, "latency")
    service = AnomalyService(AnomalyConfig(infer_every_seconds=STEP), [CollectorSource([gpus], clock)], clock)
    raised_at: dict[str, int] = {}
    resolved_at: dict[str, int] = {}
    early = 0
    other: Counter[str] = Counter()
    for i in range(before + after):
        gpus.row = i
        clock.advance(STEP)
        result = service.infer()
        for alert in result.raised:
            model, uuid = alert.labels.get("model", "?"), alert.labels.get("UUID", "?")
            if model != "level_shift":
                other[model] += 1
            elif i < before:
                early += 1
            else:
                raised_at.setdefault(uuid, i)
        for alert in result.resolved:
            uuid = alert.labels.get("UUID", "?")
            if alert.labels.get("model") == "level_shift" and uuid in raised_at:
                resolved_at.setdefault(uuid, i)
    uuids = sorted(raised_at)
    return {
        "found": len(uuids),
        "of": seeds,
        "delay_reads": [raised_at[u] - before for u in uuids],
        "held_reads": [resolved_at[u] - raised_at[u] if u in resolved_at else None for u in uuids],
        "before": early,
        "other": dict(sorted(other.items())),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, default=20, help="GPUs per case (default 20)")
    parser.add_argument("--before", type=int, default=240, help="samples before the step (default 240)")
    parser.add_argument("--after", type=int, default=240, help="samples from the step on (default 240)")
    parser.add_argument("--case", action="append", choices=sorted(CASES), help="only these cases")
    options = parser.parse_args()
    logging.disable(logging.WARNING)
    t0 = time.perf_counter()
    out: dict[str, Any] = {"benchmark": "level_shift_alerts", "seeds": options.seeds, "cases": {}}
    for name in options.case or list(CASES):
        kind, size = CASES[name]
        out["cases"][name] = run_case(kind, size, options.seeds, options.before, options.after)
    out["wall_seconds"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
