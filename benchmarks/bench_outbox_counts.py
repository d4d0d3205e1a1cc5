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
to 0023 first), and at one with 0025 its own (``upgrade_0025_s``: from 0024). Compare with the code before
by running it with ``PYTHONPATH`` set to an export of it.

``depths``: what ``outbox list`` (no incident) reads for its counts, ``Outbox.depths()``, timed as the scrape
(``depths_server_ms`` on the server). ``beside_prune``: a message of a notifier delivered (enqueued, then
``dispatch_due``: marked ``sending``, handed over, marked ``sent``) again and again, alone (``alone_ms``),
then while ``--slices`` retention slices run back to back in another thread, each as ``serve``'s tick runs
one (``prune_resolved``, 90 days, 500 incidents; rolled back, so that every run finds the same store):
``beside_ms`` (median, 90th percentile, longest, how many); ``mark_sent_alone_ms``, ``mark_sent_beside_ms``:
the statement of each delivery that marks its message sent (where a wait for a lock shows; the commit's
flush to disk left out); ``slice_s``: the slices' median (``slice_alone_s``: of 5 run before, alone);
``lock_waits``: of samples every 5 ms while the slices run, how many found such a statement waiting for a
lock, and on what, behind which statement.
"""

from __future__ import annotations

import argparse
import json
import statistics
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from alembic import command
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
from alerting.outbox_tables import SENT, OutboxMessage
from gpuwarden.clock import SystemClock
from tests.alerting.migrate_steps import downgrade
from tests.alerting.notifiers.incidents import lifecycle
from tests.alerting.outbox_destinations import Destination

NOTIFIERS = ("slack", "webhook:oncall")  # bench_retention's
RETENTION_DAYS = 90  # serve's default


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


UPGRADES = (
    ("0024_outbox_counts", "0023_thread_posted_for"),
    ("0025_outbox_count_sides", "0024_outbox_counts"),
)


def _upgrades(engine: Engine) -> dict[str, float]:
    """Seconds of each upgrade of ``UPGRADES`` the code has (to 0024 from 0023: the counts made from the
    messages; to 0025 from 0024: kept in two sides), each taken down to the one before first; the store
    left at the code's head."""
    cfg = alembic_config()
    known = {script.revision for script in ScriptDirectory.from_config(cfg).walk_revisions()}
    seconds = {}
    for revision, before in UPGRADES:
        if revision not in known:
            continue
        downgrade(engine, before)
        started = time.perf_counter()
        with engine.begin() as connection:
            cfg.attributes["connection"] = connection
            command.upgrade(cfg, revision)
        seconds[f"upgrade_{revision[:4]}_s"] = round(time.perf_counter() - started, 2)
    upgrade(engine)
    return seconds


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


def _spread(ms: list[float]) -> dict[str, float]:
    """Median, 90th percentile and longest of ``ms``."""
    ordered = sorted(ms)
    return {
        "median": round(statistics.median(ordered), 2),
        "p90": round(ordered[int(0.9 * (len(ordered) - 1))], 2),
        "max": round(ordered[-1], 2),
        "n": len(ordered),
    }


class _MarkSent:
    """Milliseconds of each statement that marks a message ``sent`` (where a wait for a counts row's lock
    shows: the trigger runs in it), on the threads ``deliver`` runs on; the commits' flushes to disk, which
    a loaded machine's other writers stretch, left out."""

    def __init__(self, engine: Engine) -> None:
        self.ms: list[float] = []
        self._began = threading.local()
        event.listen(engine, "before_cursor_execute", self._before)
        event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, _conn: object, _cursor: object, statement: str, parameters: object, *_: object) -> None:
        values = parameters.values() if isinstance(parameters, dict) else parameters
        marks = statement.startswith("UPDATE notification_outbox SET status") and SENT in values  # type: ignore[operator]
        self._began.at = time.perf_counter() if marks else None

    def _after(self, *_: object) -> None:
        began = getattr(self._began, "at", None)
        if began is not None:
            self.ms.append((time.perf_counter() - began) * 1000)
            self._began.at = None

    def taken(self) -> list[float]:
        """The times since the last call."""
        taken, self.ms = self.ms, []
        return taken


LOCK_WAITS = """
SELECT a.wait_event, left(b.query, 40) FROM pg_stat_activity AS a
LEFT JOIN pg_stat_activity AS b ON b.pid = ANY (pg_blocking_pids(a.pid))
WHERE a.wait_event_type = 'Lock' AND a.query LIKE 'UPDATE notification_outbox SET status%%'
"""


def _lock_waits(engine: Engine, running: threading.Event) -> dict[str, object]:
    """While ``running``, every 5 ms: whether a statement changing a message's status waits for a lock, on
    what and behind which statement of the one holding it (``pg_stat_activity``, ``pg_blocking_pids``)."""
    samples = waited = 0
    seen: set[str] = set()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        while running.is_set():
            rows = conn.exec_driver_sql(LOCK_WAITS).all()
            samples += 1
            waited += bool(rows)
            seen.update(f"{event} behind {query}" for event, query in rows)
            time.sleep(0.005)
    return {"samples": samples, "waiting": waited, "on": sorted(seen)}


def _beside_prune(engine: Engine, slices: int) -> dict[str, object]:
    """One notifier's messages delivered one by one alone, then beside ``slices`` retention slices (each
    rolled back): milliseconds per delivery and per statement marking one sent, the slices' seconds."""
    outbox = Outbox(engine, [Destination(NOTIFIERS[0])], SystemClock())
    changes = iter(change for n in range(1_000_000) for change in lifecycle(f"beside-{n}")[:1])
    marks = _MarkSent(engine)

    def deliver() -> float:
        outbox(next(changes))
        started = time.perf_counter()
        sent = outbox.dispatch_due(NOTIFIERS[0])
        assert sent == 1, sent
        return (time.perf_counter() - started) * 1000

    alone = [deliver() for _ in range(50)]
    marked_alone = marks.taken()
    cutoff = datetime.now(UTC) - timedelta(days=RETENTION_DAYS)
    pruning = threading.Event()
    slice_s: list[float] = []

    def prune(count: int) -> None:
        try:
            for _ in range(count):
                with Session(engine) as session:
                    started = time.perf_counter()
                    part = retention.prune_resolved(session, cutoff, retention.PRUNE_SLICE)
                    assert part.notifications, "a slice deleted no sent message"
                    session.rollback()
                    slice_s.append(time.perf_counter() - started)
        finally:
            pruning.clear()

    prune(5)
    slice_alone = statistics.median(slice_s)
    slice_s.clear()

    pruning.set()
    waits: dict[str, object] = {}
    prober = threading.Thread(target=lambda: waits.update(_lock_waits(engine, pruning)))
    pruner = threading.Thread(target=prune, args=(slices,))
    prober.start()
    pruner.start()
    beside = []
    while pruning.is_set():
        beside.append(deliver())
    pruner.join()
    prober.join()
    marked_beside = marks.taken()
    return {
        "lock_waits": waits,
        "alone_ms": _spread(alone),
        "beside_ms": _spread(beside),
        "mark_sent_alone_ms": _spread(marked_alone),
        "mark_sent_beside_ms": _spread(marked_beside),
        "slices": len(slice_s),
        "slice_s": round(statistics.median(slice_s), 3),
        "slice_alone_s": round(slice_alone, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, required=True, help="bench_retention.py's --keep folder")
    parser.add_argument("--postgres-url", help="a PostgreSQL server's URL (default: a throwaway one)")
    parser.add_argument("--scrapes", type=int, default=30)
    parser.add_argument("--slices", type=int, default=20, help="retention slices beside the deliveries")
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
        result.update(_upgrades(engine))
        outbox = Outbox(engine, [Destination(n) for n in NOTIFIERS], SystemClock())
        collector = OutboxCollector(outbox)
        result["scrape"] = _times(lambda: list(collector.collect()), args.scrapes)
        result["counts"] = _times(outbox.counts_by_notifier, args.scrapes)
        result["counts_server_ms"] = _server_ms(engine, outbox.counts_by_notifier, args.scrapes)
        result["depths"] = _times(outbox.depths, args.scrapes)
        result["depths_server_ms"] = _server_ms(engine, outbox.depths, args.scrapes)
        result["counted"] = {f"{n}/{s}": c for (n, s), c in sorted(outbox.counts_by_notifier().items())}
        result["prune_slice_s"] = round(_prune_slice(engine), 3)
        result["writes_s"] = round(_writes(engine), 2)
        result["beside_prune"] = _beside_prune(engine, args.slices)
        engine.dispose()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
