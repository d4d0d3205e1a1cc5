"""The engine's in-memory view rebuilt from a store of thousands of open incidents, in process: one JSON line.

``serve`` rebuilds the engine's view of the store (``alerting.reloading``: every open incident with its
members, every stored alert's status, the firing alerts) when it starts, and again, holding the engine lock,
after a failed transaction. A scale probe (24,000 open incidents, 35,000 alerts) found the start taking
13-16 s, about a third of it the cyclic garbage collector walking the objects the rebuild makes.

This builds a SQLite store once (``--store PATH``, reused when it exists, so runs of two code versions read
the same one): ``--incidents`` single-node faults (``NodeDown``, each on its own node), every other node also
raising ``GPUFellOffBus``, ingested in batches of 500 and left open. Then, ``--runs`` times: an
``IncidentEngine`` made on it, as ``serve`` starts (the collector as at start: default thresholds, nothing
frozen), and a rebuild after a failure on that engine (the collector as serve tunes it once started:
``gc.freeze()``, thresholds 10,000/10/10). Seconds of each. Compare with the code before by running it with
``PYTHONPATH`` set to an export of that code, alternated.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from pathlib import Path


def _options() -> argparse.Namespace:
    """The command line, read before the heavy imports below: ``--help`` and an unknown option answer
    at once rather than after seconds of imports."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", type=Path, required=True, help="SQLite file, built if missing")
    parser.add_argument("--incidents", type=int, default=24000, help="open single-node faults (when built)")
    parser.add_argument("--runs", type=int, default=2, help="starts and rebuilds timed, in turn")
    return parser.parse_args()


if __name__ == "__main__":
    OPTIONS = _options()

from alerting.db import make_engine  # noqa: E402 - imported after the command line is read
from alerting.engine import IncidentEngine  # noqa: E402
from alerting.migrate import upgrade  # noqa: E402
from gpuwarden.clock import FakeClock  # noqa: E402
from gpuwarden.config import AlertingConfig  # noqa: E402
from gpuwarden.model import Alert  # noqa: E402

BATCH = 500


def _build(url: str, incidents: int) -> None:
    """``incidents`` open faults on nodes of their own, every other node with a second alert."""
    upgrade(make_engine(url))
    engine = IncidentEngine(make_engine(url), FakeClock(), AlertingConfig())
    alerts = [Alert({"alertname": "NodeDown", "cluster": "c1", "node": f"n{i}"}) for i in range(incidents)]
    alerts += [
        Alert({"alertname": "GPUFellOffBus", "cluster": "c1", "node": f"n{i}", "gpu": "0"})
        for i in range(0, incidents, 2)
    ]
    for i in range(0, len(alerts), BATCH):
        engine.ingest(alerts[i : i + BATCH])


def main(args: argparse.Namespace) -> None:
    url = str(args.store)
    if not args.store.exists():
        _build(url, args.incidents)
    gc.collect()
    starts: list[float] = []
    rebuilds: list[float] = []
    opened = alerts = 0
    for _ in range(args.runs):
        gc.unfreeze()
        gc.set_threshold(700, 10, 10)  # as at serve's start
        gc.collect()
        started = time.perf_counter()
        engine = IncidentEngine(make_engine(url), FakeClock(), AlertingConfig())
        starts.append(time.perf_counter() - started)
        opened, alerts = len(list(engine.open_incident_ids())), len(engine._status)
        gc.freeze()  # as serve does once started
        gc.set_threshold(10_000, 10, 10)
        started = time.perf_counter()
        engine._rebuild_after_failure()  # what a failed transaction runs
        rebuilds.append(time.perf_counter() - started)
        del engine
    result = {
        "benchmark": "engine_rebuild",
        "open_incidents": opened,
        "alerts": alerts,
        "start_seconds": [round(s, 2) for s in starts],
        "rebuild_after_failure_seconds": [round(s, 2) for s in rebuilds],
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main(OPTIONS)
