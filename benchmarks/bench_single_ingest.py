"""The cost of one small POST: one alert per transaction, in process, SQLite in a file: one JSON line.

Prometheus posts small batches often (every rule evaluation), so what one alert costs the engine from the
call to its commit matters more than the rate of large batches. Three cases, each one alert per
``IncidentEngine.ingest`` call on a store that ``serve`` would open (a SQLite file, WAL, migrated; the
scenario fleet of ``alerting.scenarios`` as its inventory, with a rack for each alert posted):

* ``empty``: a new alert (one GPU too hot, each in its own rack) into a store that starts empty;
* ``open``: the same into a store holding ``--open`` open incidents (one such alert each);
* ``repeat``: a firing alert posted again unchanged (dedup: Prometheus re-posts firing alerts).

For each: the median and 95th percentile of the wall time of one call (ms), and the median process CPU time
of one call (ms), from the best of ``--passes`` passes (the lowest median; each pass a fresh store): the
machine is shared, and the best pass is the one least disturbed. ``open_incidents`` is how many incidents
were open when the ``open`` case began. The fake clock advances one second per post. Compare with the code
before by running it with ``PYTHONPATH`` set to an export of that code; ``--quick`` is a smoke test of a
few posts.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path


def _options() -> argparse.Namespace:
    """The command line, read before the heavy imports below (the alerting stage): ``--help`` and an
    unknown option answer at once rather than after seconds of imports."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--posts", type=int, default=200, help="posts timed per case (default 200)")
    parser.add_argument(
        "--open", type=int, default=200, help="open incidents before the open case (default 200)"
    )
    parser.add_argument("--passes", type=int, default=3, help="passes per case, the best kept (default 3)")
    parser.add_argument(
        "--quick", action="store_true", help="a smoke test: 10 posts, 20 open incidents, 1 pass"
    )
    return parser.parse_args()


if __name__ == "__main__":
    OPTIONS = _options()

from alerting import scenarios as sc  # noqa: E402 - imported after the command line is read
from alerting.db import make_engine  # noqa: E402
from alerting.engine import IncidentEngine  # noqa: E402
from alerting.migrate import upgrade  # noqa: E402
from gpuwarden.clock import FakeClock  # noqa: E402
from gpuwarden.config import AlertingConfig  # noqa: E402
from gpuwarden.model import Alert  # noqa: E402


def hot_gpu(node: int) -> Alert:
    """A GPU too hot on the first node of rack ``node`` + 1: a fault of its own, one incident each (two in one
    rack would be one incident, the rack's)."""
    name = sc.node_name(1 + node, 1)
    labels = {
        "cluster": sc.CLUSTER,
        "severity": "warning",
        "alertname": "GPUTemperatureHigh",
        "Hostname": name,
        "gpu": "0",
        "UUID": sc.gpu_uuid(name, 0),
    }
    return Alert(labels)


def timed(engine: IncidentEngine, clock: FakeClock, alerts: list[Alert]) -> dict[str, float]:
    """Each alert in its own ingest call: the median and p95 wall ms and the median CPU ms per call."""
    wall: list[float] = []
    cpu: list[float] = []
    for alert in alerts:
        clock.advance(1)
        started, cpu_started = time.perf_counter(), time.process_time()
        engine.ingest([alert])
        cpu.append(time.process_time() - cpu_started)
        wall.append(time.perf_counter() - started)
    wall.sort()
    return {
        "median_ms": round(1000 * statistics.median(wall), 3),
        "p95_ms": round(1000 * wall[min(len(wall) - 1, int(0.95 * len(wall)))], 3),
        "cpu_median_ms": round(1000 * statistics.median(cpu), 3),
    }


def with_engine(
    work: Path, racks: int, body: Callable[[IncidentEngine, FakeClock], dict[str, float]]
) -> dict[str, float]:
    """``body`` run on a fresh engine over a fresh, migrated SQLite file."""
    url = str(work / f"store-{time.monotonic_ns()}.db")
    upgrade(make_engine(url))
    clock = FakeClock()
    config = AlertingConfig(announce_delay_seconds=0)
    return body(IncidentEngine(make_engine(url), clock, config, sc.fleet_inventory(racks)), clock)


def main(args: argparse.Namespace) -> None:
    posts, opened, passes = (10, 20, 1) if args.quick else (args.posts, args.open, args.passes)
    racks = opened + posts  # one alert per rack
    seen_open: list[int] = []

    def empty(engine: IncidentEngine, clock: FakeClock) -> dict[str, float]:
        return timed(engine, clock, [hot_gpu(n) for n in range(posts)])

    def open_many(engine: IncidentEngine, clock: FakeClock) -> dict[str, float]:
        for n in range(opened):
            clock.advance(1)
            engine.ingest([hot_gpu(n)])
        seen_open.append(len(list(engine.open_incident_ids())))
        return timed(engine, clock, [hot_gpu(opened + n) for n in range(posts)])

    def repeat(engine: IncidentEngine, clock: FakeClock) -> dict[str, float]:
        engine.ingest([hot_gpu(0)])
        return timed(engine, clock, [hot_gpu(0)] * posts)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cases = {
            name: min((with_engine(work, racks, body) for _ in range(passes)), key=lambda f: f["median_ms"])
            for name, body in (("empty", empty), ("open", open_many), ("repeat", repeat))
        }
    print(
        json.dumps(
            {
                "benchmark": "single_ingest",
                "posts": posts,
                "passes": passes,
                "open_incidents": seen_open[0],
                **{f"{case}_{k}": v for case, figures in cases.items() for k, v in figures.items()},
            }
        )
    )


if __name__ == "__main__":
    main(OPTIONS)
