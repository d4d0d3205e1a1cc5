"""Many separate faults and no inventory, in process: one JSON line.

``NodeDown`` on N distinct nodes (``node=n0000``...), no rack label, no inventory configured, applied from
the accept journal as ``serve``'s applier does (``bench_applier.py``), on a fresh SQLite store. Every alert
is its own fault: N incidents. Without a cluster label every node is in one unnamed cluster with no rack,
which is where each new alert used to be compared with every open incident, on join and on the merge pass
(quadratic: tens of seconds for 1,000). With ``cluster=bench`` the same, in a named cluster.

For N in ``--sizes`` (default 250, 500, 1000, 2000): alerts applied per second without and with a cluster
label, and the number of incidents each run opened (N expected).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

SIZES = (250, 500, 1000, 2000)


def _options() -> argparse.Namespace:
    """The command line, read before the heavy imports below: ``--help`` and an unknown option answer
    at once rather than after seconds of imports."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    return parser.parse_args()


if __name__ == "__main__":
    OPTIONS = _options()

import alert_feed as feed  # noqa: E402 - imported after the command line is read

from gpuwarden.model import Alert  # noqa: E402


def _run(count: int, cluster: str | None) -> tuple[float, int]:
    """Apply ``count`` NodeDown alerts on distinct nodes to a fresh store: (alerts per second, incidents)."""
    engine, applier = feed.in_process("bench-many-faults-")
    start_at = datetime.now(UTC) - timedelta(minutes=1)
    extra = {"cluster": cluster} if cluster else {}
    alerts = [
        Alert({"alertname": "NodeDown", "node": f"n{i:04d}", **extra}, starts_at=start_at)
        for i in range(count)
    ]
    ends = datetime.now(UTC) + timedelta(minutes=10)
    applied, seconds = feed.apply_timed(applier, feed.encode([feed.as_postable(a, ends) for a in alerts]))
    rate = applied / seconds
    return rate, len(engine.store.list_rows(limit=count + 1))


def main(args: argparse.Namespace) -> None:
    gc.freeze()  # as serve does
    gc.set_threshold(10_000, 10, 10)
    result: dict[str, object] = {"benchmark": "many_faults"}
    _run(50, None)  # warm up (SQLAlchemy compiles its statements once): not counted
    for count in args.sizes:
        for name, cluster in (("no_cluster", None), ("cluster", "bench")):
            rate, incidents = _run(count, cluster)
            result[f"{name}_{count}_per_second"] = round(rate)
            result[f"{name}_{count}_incidents"] = incidents
    print(json.dumps(result))


if __name__ == "__main__":
    main(OPTIONS)
