"""`gpuwarden anomaly score` on a long CSV, phase by phase: one JSON line.

The series is a day-periodic signal with noise and one burst, one row a minute, written as
``timestamp,value`` with Unix seconds. The phases are those the command runs, in process (the command adds
about 3 s of imports): ``read_seconds`` (``read_series_csv``), ``score_seconds`` (``score_many``, the default
detector), ``write_seconds`` (``write_scored_csv``); ``rows_per_second`` is rows over the three, and
``score_cpu_rows_per_second`` rows over the scoring's CPU time (steadier on a busy machine).

    .venv/bin/python benchmarks/bench_anomaly_score.py [--rows 200000]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402


def _options() -> argparse.Namespace:
    """The command line, read before the heavy imports below: ``--help`` and an unknown option answer
    at once rather than after seconds of imports."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    return parser.parse_args()


if __name__ == "__main__":
    OPTIONS = _options()

import numpy as np  # noqa: E402

from anomaly.thresholds import ThresholdParams  # noqa: E402
from anomaly.univariate import read_series_csv, score_many, write_scored_csv  # noqa: E402
from gpuwarden.config_anomaly import AnomalyThresholdConfig  # noqa: E402


def write_input(path: Path, rows: int) -> None:
    """A minute-by-minute series: a daily wave, noise, and a burst 3/4 of the way in."""
    rng = np.random.default_rng(1)
    minutes = np.arange(rows)
    values = 50 + 10 * np.sin(minutes * 2 * np.pi / 1440) + rng.normal(0, 1, rows)
    burst = rows * 3 // 4
    values[burst : burst + 50] += 40
    stamps = 1_704_067_200 + minutes * 60
    lines = (f"{t},{v:.4f}\n" for t, v in zip(stamps.tolist(), values.tolist(), strict=True))
    with path.open("w") as handle:
        handle.write("timestamp,value\n")
        handle.writelines(lines)


def main(args: argparse.Namespace) -> None:
    """Time each phase of ``anomaly score`` on a generated file and print one JSON line."""
    rows = args.rows
    cfg = AnomalyThresholdConfig()
    with tempfile.TemporaryDirectory() as folder:
        source, target = Path(folder) / "in.csv", Path(folder) / "out.csv"
        write_input(source, rows)
        start = time.perf_counter()
        series = read_series_csv(source)
        read = time.perf_counter()
        cpu = time.process_time()
        scored = score_many([series], ThresholdParams.from_config(cfg), cfg.resolve_after)[0]
        score_cpu = time.process_time() - cpu
        scoring = time.perf_counter()
        write_scored_csv(scored, target)
        end = time.perf_counter()
    result = {
        "rows": rows,
        "alerts": int(scored.raised.sum()),
        "read_seconds": round(read - start, 3),
        "score_seconds": round(scoring - read, 3),
        "write_seconds": round(end - scoring, 3),
        "rows_per_second": round(rows / (end - start)),
        "score_cpu_rows_per_second": round(rows / score_cpu),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main(OPTIONS)
