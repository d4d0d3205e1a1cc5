"""The coarser-step check on the PromQL source's tick path: one JSON line.

``CoarseSteps.keep`` on one query of 250,000 series (10,000 GPUs x 25 series in one answer, the most a tick
reads), one step per read as ``anomaly run`` reads at each tick, label sets built anew at each read as a
parsed answer's are. ``steady_tick_seconds``: every series answers every step (the usual case);
``two_phase_tick_seconds``: half the series answer on the minute, half on the half minute, read at step 30
(each series' last answer carried over its empty step). Best of ``--ticks`` reads after a warm-up read of
an hour. Runs against whatever tree ``PYTHONPATH`` names first (main's has no per-series part).
"""

from __future__ import annotations

import argparse
import json
import time


def _options() -> argparse.Namespace:
    """The command line, read before the heavy imports below: ``--help`` and an unknown option answer
    at once rather than after seconds of imports."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=250_000)
    parser.add_argument("--ticks", type=int, default=5)
    return parser.parse_args()


if __name__ == "__main__":
    OPTIONS = _options()

import numpy as np  # noqa: E402 - imported after the command line is read

from anomaly.coarsesteps import CoarseSteps  # noqa: E402
from anomaly.sources import Frame  # noqa: E402

STEP = 30.0


def labels(series: int) -> list[dict[str, str]]:
    """Label sets as a parsed Prometheus answer holds them: new dicts at each read."""
    return [
        {"Hostname": f"n{i // 200}", "UUID": f"GPU-{i // 25}", "gpu": str(i // 25 % 8), "field": str(i % 25)}
        for i in range(series)
    ]


def answer(series: int, times: list[float], phased: bool) -> Frame:
    """The series answered at ``times``: all of them, or each at its phase of the minute."""
    ts = np.array(times)
    lab = labels(series)
    if not phased:
        return Frame("q", lab, ts, np.full((series, ts.size), 1.0))
    half = (np.arange(series) % 2).astype(np.float64)[:, None] * STEP  # odd series on the half minute
    values = np.where((ts[None, :] - half) % 60 == 0, 1.0, np.nan)
    rows = np.flatnonzero(np.isfinite(values).any(axis=1))
    return Frame("q", [lab[i] for i in rows.tolist()], ts, values[rows])


def tick_seconds(series: int, ticks: int, phased: bool) -> float:
    coarse = CoarseSteps("prometheus")
    coarse.keep(answer(series, [STEP * i for i in range(120)], phased), STEP)
    best = float("inf")
    previous = None
    for k in range(ticks):
        frame = answer(series, [STEP * (120 + k)], phased)
        start = time.perf_counter()
        coarse.keep(frame, STEP)
        best = min(best, time.perf_counter() - start)
        # The last read's labels are let go of here, outside the timing, in either tree: freeing 250,000
        # dicts (0.1 s) is the cost of the answer, wherever its last reference goes.
        previous = frame
    del previous
    return best


def main(args: argparse.Namespace) -> None:
    steady = tick_seconds(args.series, args.ticks, phased=False)
    phased = tick_seconds(args.series, args.ticks, phased=True)
    print(
        json.dumps(
            {
                "benchmark": "coarse_steps",
                "series": args.series,
                "steady_tick_seconds": round(steady, 4),
                "two_phase_tick_seconds": round(phased, 4),
            }
        )
    )


if __name__ == "__main__":
    main(OPTIONS)
