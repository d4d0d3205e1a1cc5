"""Reading one PromQL answer into a frame: one JSON line.

``PromQLSource.query_range`` on a Prometheus answer served from memory (an httpx mock transport: no network,
no Prometheus), JSON parsing included: ``wide_seconds``, 100,000 series of one step (what a tick reads of a
query that returns that many); ``long_seconds``, 2,000 series of 120 steps (an hour's catch-up at 30 s).
Best of ``--runs``. Runs against whatever tree ``PYTHONPATH`` names first.
"""

from __future__ import annotations

import argparse
import json
import time


def _options() -> argparse.Namespace:
    """The command line, read before the heavy imports below: ``--help`` and an unknown option answer
    at once rather than after seconds of imports."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=3)
    return parser.parse_args()


if __name__ == "__main__":
    OPTIONS = _options()

import httpx  # noqa: E402 - imported after the command line is read

from anomaly.promql import PromQLSource, PromQuery  # noqa: E402
from gpuwarden.clock import FakeClock  # noqa: E402

STEP = 30.0


def body(series: int, steps: int, end: float) -> bytes:
    """A query_range answer: ``series`` GPUs' values at the last ``steps`` steps up to ``end``."""
    stamps = [end - STEP * k for k in reversed(range(steps))]
    result = [
        {
            "metric": {"__name__": "DCGM_FI_DEV_POWER_USAGE", "Hostname": f"n{i // 8}", "gpu": str(i % 8)},
            "values": [[t, f"{300 + i % 50}.5"] for t in stamps],
        }
        for i in range(series)
    ]
    return json.dumps({"status": "success", "data": {"resultType": "matrix", "result": result}}).encode()


def read_seconds(series: int, steps: int, runs: int) -> float:
    clock = FakeClock()
    end = clock.time() // STEP * STEP
    payload = body(series, steps, end)
    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=payload))
    client = httpx.Client(base_url="http://prom:9090", transport=transport)
    query = PromQuery("power", "DCGM_FI_DEV_POWER_USAGE", STEP)
    source = PromQLSource("http://prom:9090", [query], clock, client=client)
    best = float("inf")
    try:
        for _ in range(runs):
            started = time.perf_counter()
            frame = source.query_range(query, end - STEP * steps, end)
            best = min(best, time.perf_counter() - started)
            assert frame.values.shape == (series, steps)
    finally:
        source.close()
    return best


def main(args: argparse.Namespace) -> None:
    print(
        json.dumps(
            {
                "wide_seconds": round(read_seconds(100_000, 1, args.runs), 3),
                "long_seconds": round(read_seconds(2_000, 120, args.runs), 3),
                "runs": args.runs,
            }
        )
    )


if __name__ == "__main__":
    main(OPTIONS)
