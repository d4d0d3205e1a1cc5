"""New faults while many incidents resolved within the reopen window, in process: one JSON line.

Every infrastructure alert that would open an incident first asks the incidents resolved within
``alerting.reopen_window_seconds`` whether it is their fault coming back (``alerting.recurrence``). A fleet
keeps hundreds of those within a day. This resolves ``--resolved`` single-node faults (``NodeDown`` and
eight ``GPULost`` each, no inventory), then times ``--faults`` new faults on other nodes, one POST each,
each opening an incident: milliseconds per fault. ``--older`` first resolves that many more, a day and more
before (kept by retention, 90 days by default, but past the reopen window): what the store holds besides,
which the recurrence query must skip. Compare with the code before by running it with ``PYTHONPATH`` set to
an export of that code.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def _options() -> argparse.Namespace:
    """The command line, read before the heavy imports below: ``--help`` and an unknown option answer
    at once rather than after seconds of imports."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resolved", type=int, default=300, help="incidents resolved within the window")
    parser.add_argument("--older", type=int, default=0, help="incidents resolved before the window")
    parser.add_argument("--faults", type=int, default=100, help="new faults timed, one POST each")
    return parser.parse_args()


if __name__ == "__main__":
    OPTIONS = _options()

from alerting.db import make_engine  # noqa: E402 - imported after the command line is read
from alerting.engine import IncidentEngine  # noqa: E402
from alerting.migrate import upgrade  # noqa: E402
from gpuwarden.clock import FakeClock  # noqa: E402
from gpuwarden.config import AlertingConfig  # noqa: E402
from gpuwarden.model import Alert, AlertStatus  # noqa: E402


def node_down(cluster: str, node: str) -> list[Alert]:
    """A node down: ``NodeDown`` and its eight GPUs lost."""
    base = {"cluster": cluster, "severity": "critical"}
    down = Alert({**base, "alertname": "NodeDown", "instance": f"{node}:9100", "job": "node"})
    lost = [Alert({**base, "alertname": "GPULost", "Hostname": node, "gpu": str(g)}) for g in range(8)]
    return [down, *lost]


def resolve(engine: IncidentEngine, clock: FakeClock, prefix: str, count: int) -> None:
    """Open ``count`` single-node faults on nodes named ``prefix`` and a number, and resolve them."""
    alerts = [a for i in range(count) for a in node_down("c1", f"{prefix}{i}")]
    for i in range(0, len(alerts), 64):
        engine.ingest(alerts[i : i + 64])
    clock.advance(3)
    resolved = [Alert(a.labels, status=AlertStatus.RESOLVED) for a in alerts]
    for i in range(0, len(resolved), 512):
        engine.ingest(resolved[i : i + 512])
    for _ in range(6):
        clock.advance(1)
        engine.tick()
    if list(engine.open_incident_ids()):
        raise SystemExit("the old faults did not resolve: the figure would not be the one named")


def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as work:
        url = str(Path(work) / "incidents.db")
        upgrade(make_engine(url))
        clock = FakeClock()
        config = AlertingConfig(announce_delay_seconds=0, quiet_period_seconds=3)
        engine = IncidentEngine(make_engine(url), clock, config)
        if args.older:
            resolve(engine, clock, "older-n", args.older)
            clock.advance(config.reopen_window_seconds + 3600)
        resolve(engine, clock, "old-n", args.resolved)
        started = time.perf_counter()
        for i in range(args.faults):
            engine.ingest(node_down("c1", f"new-n{i}"))
        elapsed = time.perf_counter() - started
    print(
        json.dumps(
            {
                "benchmark": "recurrence",
                "resolved_in_window": args.resolved,
                "resolved_before_window": args.older,
                "new_faults": args.faults,
                "ms_per_new_fault": round(1000 * elapsed / args.faults, 2),
            }
        )
    )


if __name__ == "__main__":
    main(OPTIONS)
