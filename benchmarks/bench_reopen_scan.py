"""One batch of new faults beside thousands of incidents resolved within the reopen window: one JSON line.

Every infrastructure alert that would open an incident first asks the incidents resolved within
``alerting.reopen_window_seconds`` (a day by default) whether it is their fault coming back
(``alerting.recurrence``). A reviewer posted 2,000 alerts on new nodes to ``serve`` beside 8,000 incidents
resolved within the window: 33-38 s to apply, against 2.4 s with none resolved, as the store read every one
of them, a JSON field at a time, once per new node. This times the same in process: on a fresh SQLite
store, ``--resolved`` single-node faults (one alert each, on their own node) opened in batches of
``--alerts`` and resolved by the tick (quiet for the quiet period), then ``--batches`` batches of
``--alerts`` alerts on other nodes, each one ``IncidentEngine.ingest`` (one transaction: what serve's
applier makes of one such POST), each opening an incident per alert. The same on a store with none resolved
first. Seconds per batch, each batch's and their median. Compare with the code before by running it with
``PYTHONPATH`` set to an export of that code.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import tempfile
import time
from pathlib import Path


def _options() -> argparse.Namespace:
    """The command line, read before the heavy imports below: ``--help`` and an unknown option answer
    at once rather than after seconds of imports."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolved", type=int, default=8000, help="incidents resolved within the window")
    parser.add_argument("--alerts", type=int, default=2000, help="alerts per batch, each on a new node")
    parser.add_argument("--batches", type=int, default=3, help="batches of new faults timed, in turn")
    return parser.parse_args()


if __name__ == "__main__":
    OPTIONS = _options()

from alerting.db import make_engine  # noqa: E402 - imported after the command line is read
from alerting.engine import IncidentEngine  # noqa: E402
from alerting.migrate import upgrade  # noqa: E402
from gpuwarden.clock import FakeClock  # noqa: E402
from gpuwarden.config import AlertingConfig  # noqa: E402
from gpuwarden.model import Alert, AlertStatus  # noqa: E402


def _faults(prefix: str, count: int) -> list[Alert]:
    """``count`` faults, one alert each on its own node (as the reviewer posted them: ``alertname`` and
    ``node``), in cluster ``c1``."""
    return [Alert({"alertname": "NodeDown", "cluster": "c1", "node": f"{prefix}{i}"}) for i in range(count)]


def _resolve(engine: IncidentEngine, clock: FakeClock, count: int, batch: int) -> None:
    """Open ``count`` faults on nodes of their own and let them resolve."""
    alerts = _faults("old-n", count)
    for i in range(0, count, batch):
        engine.ingest(alerts[i : i + batch])
    clock.advance(3)
    resolved = [Alert(a.labels, status=AlertStatus.RESOLVED) for a in alerts]
    for i in range(0, count, batch):
        engine.ingest(resolved[i : i + batch])
    for _ in range(6):
        clock.advance(1)
        engine.tick()
    if list(engine.open_incident_ids()):
        raise SystemExit("the old faults did not resolve: the figure would not be the one named")


def _timed(resolved: int, args: argparse.Namespace) -> list[float]:
    """Seconds to apply each of ``args.batches`` batches of new faults beside ``resolved`` resolved ones."""
    with tempfile.TemporaryDirectory() as work:
        url = str(Path(work) / "incidents.db")
        upgrade(make_engine(url))
        clock = FakeClock()
        config = AlertingConfig(announce_delay_seconds=0, quiet_period_seconds=3)
        engine = IncidentEngine(make_engine(url), clock, config)
        if resolved:
            _resolve(engine, clock, resolved, args.alerts)
        clock.advance(60)  # well within the reopen window
        seconds = []
        for b in range(args.batches):
            alerts = _faults(f"new{b}-n", args.alerts)
            gc.collect()
            started = time.perf_counter()
            result = engine.ingest(alerts)
            seconds.append(time.perf_counter() - started)
            if len(result.opened) != args.alerts:
                raise SystemExit(f"{len(result.opened)} incidents opened of {args.alerts}: not new faults")
            clock.advance(1)
        return seconds


def main(args: argparse.Namespace) -> None:
    gc.freeze()  # as serve does
    gc.set_threshold(10_000, 10, 10)
    result: dict[str, object] = {"benchmark": "reopen_scan", "alerts_per_batch": args.alerts}
    for resolved in (0, args.resolved):
        seconds = _timed(resolved, args)
        result[f"resolved_{resolved}_batch_seconds"] = [round(s, 2) for s in seconds]
        result[f"resolved_{resolved}_median_seconds"] = round(statistics.median(seconds), 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main(OPTIONS)
