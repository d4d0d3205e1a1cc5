"""The incident engine's applier alone, in process: one JSON line.

``bench_incidents.py`` measures ``serve`` over HTTP, where accepting POSTs, Slack and the applier share one
process. This applies the same stream (24 rack failures in 24 clusters, 6,336 alerts, the same inventory)
straight from the accept journal, as ``serve``'s applier does, on a fresh SQLite store, and times each
pass:

* ``open``: the first pass (every alert new; 24 incidents opened);
* ``join``: passes 2 and 3 (every alert new, joining the open incidents), the best of them;
* ``repeat``: the last stream posted again twice (Prometheus' re-posts), the best of them.

Alerts per second, and microseconds per alert. ``--profile`` prints cProfile's top functions of a join
pass to stderr.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import pstats
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path


def _options() -> argparse.Namespace:
    """The command line, read before the heavy imports below (the alerting stage, ``serve``'s wiring):
    ``--help`` and an unknown option answer at once rather than after seconds of imports."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--profile", action="store_true", help="print a cProfile of the applier on stderr")
    return parser.parse_args()


if __name__ == "__main__":
    OPTIONS = _options()

import yaml  # noqa: E402 - imported after the command line is read

sys.path.insert(0, str(Path(__file__).parent))

import alert_feed as feed  # noqa: E402
import bench_incidents as bench  # noqa: E402

from alerting import scenarios  # noqa: E402
from alerting.applier import JournalApplier  # noqa: E402
from alerting.inventory_file import inventory_data  # noqa: E402
from alerting.journal import KIND_POSTABLE  # noqa: E402
from gpuwarden.cli.serve_cmd import build_service  # noqa: E402
from gpuwarden.cli.serve_journal import build_applier  # noqa: E402
from gpuwarden.config import load_config  # noqa: E402


def _apply(applier: JournalApplier, bodies: list[bytes], profile: cProfile.Profile | None = None) -> float:
    """Journal the bodies, then apply everything; alerts per second of the applying."""
    for body in bodies:
        applier.journal.append(KIND_POSTABLE, body, feed.BATCH)
    start = time.perf_counter()
    if profile is not None:
        profile.enable()
    applied = 0
    while count := applier.apply_available():
        applied += count
    if profile is not None:
        profile.disable()
    return applied / (time.perf_counter() - start)


def main(profiled: bool) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench-applier-"))
    inventory = work / "inventory.yaml"
    inventory.write_text(yaml.safe_dump(inventory_data(bench.bench_inventory())))
    config = work / "gw.yml"
    config.write_text(yaml.safe_dump({"alerting": {"inventory_file": str(inventory)}}))
    cfg = load_config(config)
    db = str(work / "gw.db")
    engine, _, _, _ = build_service(cfg, db)
    applier = build_applier(cfg, db, engine)
    base = scenarios.rack_failure(7, datetime.now(UTC))
    stream = [a for cluster in bench.THROUGHPUT_CLUSTERS for a in bench.in_cluster(base, cluster)]
    later = datetime.now(UTC) + timedelta(minutes=10)
    items = [feed.as_postable(a, later) for a in stream]
    gc.freeze()  # as serve does
    gc.set_threshold(10_000, 10, 10)
    profile = cProfile.Profile() if profiled else None
    rates = []
    bodies: list[bytes] = []
    for k in range(3):
        bodies = feed.encode([{**a, "labels": {**a["labels"], "pass": str(k)}} for a in items])
        rates.append(_apply(applier, bodies, profile if k == 1 else None))
    repeats = [_apply(applier, bodies) for _ in range(2)]
    result = {
        "benchmark": "applier",
        "alerts": len(items),
        "open_per_second": round(rates[0]),
        "join_per_second": round(max(rates[1:])),
        "repeat_per_second": round(max(repeats)),
        "join_us_per_alert": round(1e6 / max(rates[1:]), 1),
        "repeat_us_per_alert": round(1e6 / max(repeats), 1),
    }
    print(json.dumps(result))
    if profile is not None:
        pstats.Stats(profile, stream=sys.stderr).sort_stats("cumulative").print_stats(40)


if __name__ == "__main__":
    main(OPTIONS.profile)
