"""``serve``'s start, and the reads of firing alerts and failed messages, on a long history: one JSON line.

Takes the store ``bench_retention.py --keep DIR`` built (``--seeds 2000 --copies 50``: 100,000 resolved
incidents, 300,000 resolved alerts, 600,000 sent messages; built here first when ``DIR/built.db`` is missing),
copies it, migrates the copy to the code's revision (``upgrade_s``) and fires ``--firing`` new alerts on it
(one incident each, left open). Then times, on that copy: an ``IncidentEngine`` made on it as ``serve``
makes one at start (``start_s``, the growth of the process' RSS meanwhile, and how many alert statuses the
engine then holds in memory), the firing alerts that ``GET /api/v2/alerts`` lists, an engine tick (its read
of the firing alerts whose ``endsAt`` passed), ``outbox retry`` with no failed message and with one, and
the resolved repeats of 1,002 alerts of the history (as Prometheus sends a resolved alert again after a
restart: the first post, then the same again). Best of 3 for each read. Compare with the code before by
running it with ``PYTHONPATH`` set to an export of that code, alternated, on the same built store.
"""

from __future__ import annotations

import argparse
import gc
import json
import shutil
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import cast


def _options() -> argparse.Namespace:
    """The command line, read before the heavy imports below."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, required=True, help="bench_retention.py's folder (built.db)")
    parser.add_argument("--firing", type=int, default=1000, help="new alerts fired before the start")
    return parser.parse_args()


if __name__ == "__main__":
    OPTIONS = _options()

from alerting.db import make_engine  # noqa: E402 - imported after the command line is read
from alerting.engine import IncidentEngine  # noqa: E402
from alerting.migrate import upgrade  # noqa: E402
from alerting.notifiers.base import Notifier  # noqa: E402
from alerting.outbox import Outbox  # noqa: E402
from benchmarks.bench_retention import NOTIFIERS, build, fault  # noqa: E402
from gpuwarden.clock import FakeClock  # noqa: E402
from gpuwarden.config import AlertingConfig  # noqa: E402
from gpuwarden.model import Alert, AlertStatus  # noqa: E402

CONFIG = AlertingConfig(announce_delay_seconds=0, retention_days=0)  # nothing pruned while it is timed


class _Named:
    """A notifier that is only a name: ``outbox retry`` requeues the messages of configured notifiers."""

    def __init__(self, name: str) -> None:
        self.name = name


def _rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _best(read: Callable[[], object], before: Callable[[], object] = lambda: None) -> float:
    """Seconds of ``read``, best of 3 (``before`` runs ahead of each, untimed)."""
    best = float("inf")
    for _ in range(3):
        before()
        started = time.perf_counter()
        read()
        best = min(best, time.perf_counter() - started)
    return round(best, 3)


def _fire(path: str, count: int) -> None:
    """``count`` new alerts firing, each a fault of its own node (open incidents)."""
    engine = IncidentEngine(make_engine(path), FakeClock(time.time()), CONFIG)
    alerts = [
        Alert({"alertname": "NodeDown", "cluster": "c1", "instance": f"f-node{i}:9100"}) for i in range(count)
    ]
    for at in range(0, count, 500):
        engine.ingest(alerts[at : at + 500])


def main(args: argparse.Namespace) -> None:
    built = args.keep / "built.db"
    if not built.exists():
        args.keep.mkdir(parents=True, exist_ok=True)
        build(str(built), 2000, 50)
    path = str(args.keep / "start.db")
    shutil.copyfile(built, path)
    began = time.perf_counter()
    upgrade(make_engine(path))
    result: dict[str, object] = {
        "benchmark": "store_start",
        "upgrade_s": round(time.perf_counter() - began, 1),
    }
    _fire(path, args.firing)
    db = sqlite3.connect(path)
    result["alerts"] = db.execute("SELECT count(*) FROM alerts").fetchone()[0]
    gc.collect()
    rss = _rss_mib()
    began = time.perf_counter()
    engine = IncidentEngine(make_engine(path), FakeClock(time.time()), CONFIG)
    result["start_s"] = round(time.perf_counter() - began, 2)
    gc.collect()
    result["start_rss_mib"] = round(_rss_mib() - rss, 1)
    result["statuses_held"] = len(engine._status)  # what the start keeps in memory
    result["firing_alerts_s"] = _best(engine.store.firing_alerts)
    result["tick_s"] = _best(engine.tick)
    outbox = Outbox(make_engine(path), [cast(Notifier, _Named(n)) for n in NOTIFIERS], FakeClock(time.time()))
    result["retry_none_s"] = _best(outbox.requeue_failed)
    newest = db.execute("SELECT max(id) FROM notification_outbox WHERE status = 'sent'").fetchone()[0]

    def fail_one() -> None:
        db.execute("UPDATE notification_outbox SET status = 'failed' WHERE id = ?", (newest,))
        db.commit()

    result["retry_one_s"] = _best(outbox.requeue_failed, fail_one)
    history = [Alert(a.labels, status=AlertStatus.RESOLVED) for i in range(334) for a in fault(i)]
    for name in ("repost_resolved_s", "repost_resolved_again_s"):
        began = time.perf_counter()
        engine.ingest(history)
        result[name] = round(time.perf_counter() - began, 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main(OPTIONS)
