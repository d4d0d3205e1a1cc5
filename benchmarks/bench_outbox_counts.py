"""The outbox's part of a ``/metrics`` scrape on a big PostgreSQL store, and what the counts cost writes: a
JSON line.

Takes the store ``bench_retention.py --seeds 2000 --copies 50 --keep DIR`` builds (``DIR/built.db``, built
here first when missing: 100,000 resolved incidents, 600,000 sent messages of two notifiers), copies it into
a database of a throwaway PostgreSQL 15 (``store_postgres.py``, as root; ``--postgres-url`` names a server
instead) migrated to the code's revision, and times in process, ``--scrapes`` times each after one untimed:
``OutboxCollector.collect()`` (every family ``/metrics`` shows of the outbox: ``scrape_*``) and the counts
by notifier and status it reads (``counts_*``). Then the writes the counts follow: 50 incidents' lifecycles
queued and delivered to two notifiers (``writes_s``), and one retention slice's delete of the sent messages
of 500 incidents, rolled back (``prune_slice_s``, best of 3). ``counts_server_ms``: the server's own time
for the counts' statement (``EXPLAIN ANALYZE``), which the round trips of a loaded client do not blur. At a
code with migration 0024, also how long its upgrade took on the copied store (``upgrade_0024_s``: taken down
to 0023 first). Compare with the code before by running it with ``PYTHONPATH`` set to an export of it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from pathlib import Path

from alembic.script import ScriptDirectory
from bench_retention import build
from sqlalchemy import Engine, event, select
from sqlalchemy.orm import Session
from store_postgres import copy_store, fresh_database, postgres_server

from alerting import retention
from alerting.db import make_engine
from alerting.migrate import alembic_config, upgrade
from alerting.outbox import Outbox
from alerting.outbox_metrics import OutboxCollector
from alerting.outbox_tables import OutboxMessage
from gpuwarden.clock import SystemClock
from tests.alerting.migrate_steps import downgrade
from tests.alerting.notifiers.incidents import lifecycle
from tests.alerting.outbox_destinations import Destination

NOTIFIERS = ("slack", "webhook:oncall")  # bench_retention's


def _times(run: Callable[[], object], count: int) -> dict[str, float]:
    """Median, fastest and slowest of ``count`` runs after one untimed."""
    run()
    seconds = []
    for _ in range(count):
        started = time.perf_counter()
        run()
        seconds.append(time.perf_counter() - started)
    return {
        "median": round(statistics.median(seconds), 4),
        "min": round(min(seconds), 4),
        "max": round(max(seconds), 4),
    }


def _server_ms(engine: Engine, read: Callable[[], object], count: int) -> dict[str, float]:
    """What the server spends on the statement ``read`` sends (EXPLAIN ANALYZE's execution time, median
    and fastest of ``count``): the figure a loaded client's round trips do not blur."""
    sent: list[tuple[str, object]] = []

    def keep(_conn: object, _cursor: object, statement: str, parameters: object, *_: object) -> None:
        if "notification_outbox" in statement or "outbox_counts" in statement:
            sent.append((statement, parameters))

    event.listen(engine, "before_cursor_execute", keep)
    try:
        read()
    finally:
        event.remove(engine, "before_cursor_execute", keep)
    [(statement, parameters)] = sent
    spent = []
    with engine.connect() as conn:
        for _ in range(count):
            plan = conn.exec_driver_sql(f"EXPLAIN (ANALYZE, FORMAT JSON) {statement}", parameters)  # type: ignore[arg-type]
            spent.append(float(plan.scalar_one()[0]["Execution Time"]))
    return {"median": round(statistics.median(spent), 3), "min": round(min(spent), 3)}


def _upgrade_0024(engine: Engine) -> float | None:
    """Seconds of the upgrade to 0024 from 0023, or None at a code without it."""
    scripts = ScriptDirectory.from_config(alembic_config())
    if "0024_outbox_counts" not in {script.revision for script in scripts.walk_revisions()}:
        return None
    downgrade(engine, "0023_thread_posted_for")
    started = time.perf_counter()
    upgrade(engine)
    return time.perf_counter() - started


def _writes(engine: Engine) -> float:
    """Seconds to queue and deliver 50 incidents' lifecycles to two notifiers."""
    outbox = Outbox(engine, [Destination(n) for n in NOTIFIERS], SystemClock())
    started = time.perf_counter()
    for n in range(50):
        for change in lifecycle(f"bench-{n}"):
            outbox(change)
        outbox.dispatch_due()
    return time.perf_counter() - started


def _prune_slice(engine: Engine) -> float:
    """Best of 3: retention's delete of the messages of 500 stored incidents, rolled back each time."""
    with Session(engine) as session:
        incidents = list(
            session.scalars(
                select(OutboxMessage.incident_id)
                .where(OutboxMessage.notifier == NOTIFIERS[0])
                .distinct()
                .order_by(OutboxMessage.incident_id)
                .limit(500)
            )
        )
    best = float("inf")
    for _ in range(3):
        with Session(engine) as session:
            started = time.perf_counter()
            retention._prune_notifications(session, incidents)
            session.flush()
            best = min(best, time.perf_counter() - started)
            session.rollback()
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, required=True, help="bench_retention.py's --keep folder")
    parser.add_argument("--postgres-url", help="a PostgreSQL server's URL (default: a throwaway one)")
    parser.add_argument("--scrapes", type=int, default=30)
    args = parser.parse_args()
    kept = args.keep / "built.db"
    if not kept.exists():
        args.keep.mkdir(parents=True, exist_ok=True)
        build(str(kept), 2000, 50)
    with postgres_server(args.postgres_url) as server:
        url = fresh_database(server, "bench_outbox_counts")
        copy_store(str(kept), url)
        engine = make_engine(url)
        result: dict[str, object] = {"store": "postgres"}
        migrated = _upgrade_0024(engine)
        if migrated is not None:
            result["upgrade_0024_s"] = round(migrated, 2)
        outbox = Outbox(engine, [Destination(n) for n in NOTIFIERS], SystemClock())
        collector = OutboxCollector(outbox)
        result["scrape"] = _times(lambda: list(collector.collect()), args.scrapes)
        result["counts"] = _times(outbox.counts_by_notifier, args.scrapes)
        result["counts_server_ms"] = _server_ms(engine, outbox.counts_by_notifier, args.scrapes)
        result["counted"] = {f"{n}/{s}": c for (n, s), c in sorted(outbox.counts_by_notifier().items())}
        result["prune_slice_s"] = round(_prune_slice(engine), 3)
        result["writes_s"] = round(_writes(engine), 2)
        engine.dispose()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
