"""Long ticks, and how long the journal applier waiting behind them goes unbeaten: one JSON line.

12,000 alerts timing out together made ticks of 73 and 87 s in ``serve``; the applier, waiting for the
engine meanwhile, did not beat its heartbeat, which aged 51 s, and a tick past
``alerting.applier_stall_seconds`` would have made liveness blame it. The tick's progress beats a loop
waiting for the engine now (``alerting.engine_lock``). This opens ``--alerts`` faults, one alert on a node
of its own each, with an ``endsAt`` 30 s ahead, on a fresh SQLite store in process (a fake clock); then
times the tick at which they all time out (one transaction resolving every alert) and the tick a quiet
period later that resolves every incident, each run on a thread while this one waits for the engine as
the applier does: each tick's seconds, the beats it gave, and the longest it went without one (the age the
waiting applier's heartbeat reaches behind it; the tick's start and end count as beats). Run on the code
before (``PYTHONPATH`` set to an export of it), where nothing beat it, the longest is the whole tick.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
import tempfile
import threading
import time
from contextlib import nullcontext
from datetime import timedelta
from pathlib import Path


def _options() -> argparse.Namespace:
    """The command line, read before the heavy imports below: ``--help`` and an unknown option answer
    at once rather than after seconds of imports."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=12000, help="alerts timing out together")
    return parser.parse_args()


if __name__ == "__main__":
    OPTIONS = _options()

from alerting.db import make_engine  # noqa: E402 - imported after the command line is read
from alerting.engine import IncidentEngine  # noqa: E402
from alerting.migrate import upgrade  # noqa: E402
from gpuwarden.clock import FakeClock  # noqa: E402
from gpuwarden.config import AlertingConfig  # noqa: E402
from gpuwarden.model import Alert  # noqa: E402

BATCH = 2000


def _tick_behind(engine: IncidentEngine) -> dict[str, float]:
    """One tick on another thread while this one waits for the engine: seconds, beats, longest gap."""
    beats: list[float] = []
    tick = threading.Thread(target=engine.tick)
    lock = getattr(engine, "lock", None)  # none before: the code the fix started from beat nothing
    with lock.waiting(lambda: beats.append(time.perf_counter())) if lock is not None else nullcontext():
        started = time.perf_counter()
        tick.start()
        tick.join()
        ended = time.perf_counter()
    times = [started, *beats, ended]
    return {
        "seconds": round(ended - started, 2),
        "beats": len(beats),
        "longest_unbeaten_seconds": round(max(b - a for a, b in itertools.pairwise(times)), 3),
    }


def main(args: argparse.Namespace) -> None:
    gc.freeze()  # as serve does
    gc.set_threshold(10_000, 10, 10)
    with tempfile.TemporaryDirectory() as work:
        url = str(Path(work) / "incidents.db")
        upgrade(make_engine(url))
        clock = FakeClock()
        config = AlertingConfig(announce_delay_seconds=0, quiet_period_seconds=60)
        engine = IncidentEngine(make_engine(url), clock, config)
        ends = clock.now() + timedelta(seconds=30)
        alerts = [
            Alert({"alertname": "NodeDown", "cluster": "c1", "node": f"n{i}"}, ends_at=ends)
            for i in range(args.alerts)
        ]
        for i in range(0, len(alerts), BATCH):
            engine.ingest(alerts[i : i + BATCH])
        opened = len(list(engine.open_incident_ids()))
        clock.advance(31)
        timed_out = _tick_behind(engine)
        clock.advance(61)
        resolved = _tick_behind(engine)
        left = len(list(engine.open_incident_ids()))
    if opened != args.alerts or left:
        raise SystemExit(f"{opened} incidents opened, {left} left open: not the ticks named")
    print(
        json.dumps(
            {
                "benchmark": "tick_beats",
                "alerts": args.alerts,
                "timeout_tick": timed_out,
                "resolving_tick": resolved,
            }
        )
    )


if __name__ == "__main__":
    main(OPTIONS)
