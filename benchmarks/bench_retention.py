"""Retention's first run over a long history, and the outbox read on a big store, in process: a JSON line.

Builds a SQLite store of ``--seeds`` resolved single-node faults (``NodeDown`` and two ``GPULost``, through
``IncidentEngine`` on a fake clock, 200 days ago), each with three sent messages for each of two notifiers
(500-byte payloads) and a thread each, then copies all of it ``--copies`` times in SQL, each copy's times
moved later, spread over the 200 days, under new ids: ``--seeds 2000 --copies 50`` is 100,000 resolved
incidents, 300,000 alerts, 600,000 timeline events and 600,000 sent messages (907 MB, about 2 minutes to
build). Then it times the reads that grow with the history: one incident's messages and
counts (``outbox list --incident``), the counts by notifier that every ``/metrics`` scrape reads and the
newest 50 resolved incidents (``incidents list --state resolved``). ``--keep DIR`` leaves the store there
(``--reuse`` takes it from there again, migrated to the code's revision first: ``upgrade_s``). Compare with
the code before by running it with ``PYTHONPATH`` set to an export of that code.

It also times what a ``serve`` start waits for on such a store (``engine_start_s``: the engine built and
its first alert ingested), and prunes with the default 90 days through the engine, slice by slice as
``serve``'s tick does (each slice timed, the engine's lock held for one), while a prober
ingests one new alert every 0.1 s (``ingest_wait_longest_s``, ``ingest_wait_median_s``: each ``ingest``
call, which waits for a slice holding the engine's lock). ``--postgres`` measures the same on PostgreSQL
(``store_postgres.py``: the built SQLite store copied row for row into a database of a throwaway
PostgreSQL 15 started as the tests start theirs, as root; ``--postgres-url`` takes a server's URL instead),
after SQLite on the same machine: one JSON line per store.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import statistics
import tempfile
import threading
import time
from pathlib import Path


def _options() -> argparse.Namespace:
    """The command line, read before the heavy imports below."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=500, help="faults resolved through the engine")
    parser.add_argument("--copies", type=int, default=20, help="copies of them made in SQL (1: none)")
    parser.add_argument("--keep", type=Path, help="build the store in this folder and leave it there")
    parser.add_argument("--reuse", action="store_true", help="take the store --keep left, as it was built")
    parser.add_argument("--slices", type=int, default=0, help="stop after this many slices (0: all)")
    parser.add_argument("--postgres", action="store_true", help="measure on PostgreSQL too, after SQLite")
    parser.add_argument("--postgres-url", help="a PostgreSQL server's URL (default: a throwaway one)")
    return parser.parse_args()


if __name__ == "__main__":
    OPTIONS = _options()

from datetime import datetime  # noqa: E402 - imported after the command line is read

from sqlalchemy.orm import Session  # noqa: E402
from store_postgres import copy_store, database_bytes, fresh_database, postgres_server  # noqa: E402

from alerting import retention  # noqa: E402
from alerting.db import make_engine  # noqa: E402
from alerting.engine import IncidentEngine  # noqa: E402
from alerting.migrate import upgrade  # noqa: E402
from alerting.outbox import Outbox  # noqa: E402
from alerting.retention import PruneResult, prune_resolved  # noqa: E402
from alerting.store import IncidentStore  # noqa: E402
from gpuwarden.clock import FakeClock  # noqa: E402
from gpuwarden.config import AlertingConfig  # noqa: E402
from gpuwarden.model import Alert, AlertStatus  # noqa: E402

DAY = 86_400
NOTIFIERS = ("slack", "webhook:oncall")
FLOAT_TIMES = ("created_at", "next_attempt_at", "sent_at", "updated_at")  # the outbox's: Unix seconds
DATE_TIMES = {
    *("opened_at", "updated_at", "last_alert_at", "first_onset_at", "quiet_since", "acknowledged_at"),
    *("resolved_at", "last_opened_at", "announced_at", "starts_at", "ends_at", "first_seen", "last_seen"),
    "at",
}
COPIED = {  # table: (its kind for ``_copied``, columns left to the database)
    "incidents": ("incident", ()),
    "alerts": ("alert", ()),
    "timeline": ("event", ("seq",)),
    "notification_outbox": ("message", ("id",)),
    "notification_threads": ("thread", ()),
}


def fault(i: int) -> list[Alert]:
    """A node down: ``NodeDown`` and two of its GPUs lost."""
    base = {"cluster": "c1", "severity": "critical"}
    node = f"s-node{i}"
    down = Alert({**base, "alertname": "NodeDown", "instance": f"{node}:9100", "job": "node"})
    lost = [Alert({**base, "alertname": "GPULost", "Hostname": node, "gpu": str(g)}) for g in range(2)]
    return [down, *lost]


def seed(path: str, seeds: int, start: float) -> None:
    """``seeds`` faults fired and resolved through the engine, 50 at a time, 11 minutes apart."""
    upgrade(make_engine(path))
    clock = FakeClock(start)
    config = AlertingConfig(announce_delay_seconds=0, quiet_period_seconds=3, retention_days=0)
    engine = IncidentEngine(make_engine(path), clock, config)
    for at in range(0, seeds, 50):
        alerts = [a for i in range(at, min(seeds, at + 50)) for a in fault(i)]
        engine.ingest(alerts)
        clock.advance(60)
        engine.ingest([Alert(a.labels, status=AlertStatus.RESOLVED) for a in alerts])
        for _ in range(5):
            clock.advance(1)
            engine.tick()
        clock.advance(600)


def messages(db: sqlite3.Connection, start: float) -> None:
    """Three sent messages (opened, updated, resolved) and a thread per incident and notifier."""
    payload = json.dumps({"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 500}}]})
    ids = [row[0] for row in db.execute("SELECT id FROM incidents")]
    for notifier in NOTIFIERS:
        for incident in ids:
            db.executemany(
                "INSERT INTO notification_outbox (notifier, incident_id, idempotency_key, payload, status,"
                " attempts, created_at, next_attempt_at, sent_at, priority)"
                " VALUES (?, ?, ?, ?, 'sent', 1, ?, ?, ?, 'P2')",
                [(notifier, incident, f"{incident}:{k}", payload, start, start, start) for k in range(3)],
            )
            thread = (
                "INSERT INTO notification_threads (notifier, incident_id, channel, ts, chart_posted,"
                " updated_at) VALUES (?, ?, 'C1', '1.2', 0, ?)"
            )
            db.execute(thread, (notifier, incident, start))


def _copied(column: str, kind: str, k: int, step: float) -> str:
    """The SQL expression of ``column`` in copy ``k``: times ``k * step`` seconds later, ids of their own."""
    if column in FLOAT_TIMES and kind in ("message", "thread"):
        return f"{column} + {k * step}"
    if column in DATE_TIMES:  # SQLAlchemy's 'YYYY-MM-DD HH:MM:SS.ffffff', moved by whole seconds
        moved = f"strftime('%Y-%m-%d %H:%M:%S', {column}, '+{int(k * step)} seconds') || substr({column}, 20)"
        return f"CASE WHEN {column} IS NULL THEN NULL ELSE {moved} END"
    if column in ("id", "merged_into", "incident_id") and (kind == "incident" or column == "incident_id"):
        return f"CASE WHEN {column} IS NULL THEN NULL ELSE {column} || '~{k}' END"
    if kind == "alert" and column == "fingerprint":
        return f"substr(printf('%04x', {k}) || fingerprint, 1, 16)"
    if kind == "message" and column == "idempotency_key":
        return f"idempotency_key || '~{k}'"
    return column


def copy(db: sqlite3.Connection, copies: int) -> None:
    """Copies 1 to ``copies - 1`` of the seeded history, spread over 200 days."""
    step = 200 * DAY / copies
    for k in range(1, copies):
        for table, (kind, skipped) in COPIED.items():
            columns = [r[1] for r in db.execute(f"PRAGMA table_info({table})") if r[1] not in skipped]
            key = "id" if kind == "incident" else "coalesce(incident_id, '')"
            values = ", ".join(_copied(c, kind, k, step) for c in columns)
            into = f"INSERT INTO {table} ({', '.join(columns)})"
            db.execute(f"{into} SELECT {values} FROM {table} WHERE {key} NOT LIKE '%~%'")
        db.commit()


def build(path: str, seeds: int, copies: int) -> float:
    """The store at ``path``; seconds it took."""
    started = time.perf_counter()
    start = time.time() - 200 * DAY
    seed(path, seeds, start)
    db = sqlite3.connect(path)
    messages(db, start)
    db.commit()
    copy(db, copies)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    return time.perf_counter() - started


def reads(url: str) -> dict[str, float]:
    """Seconds of the outbox reads that grow with the history (best of 3)."""
    outbox = Outbox(make_engine(url), [], FakeClock(time.time()))
    store = IncidentStore(make_engine(url))
    with make_engine(url).connect() as conn:
        one = conn.exec_driver_sql("SELECT max(incident_id) FROM notification_outbox").scalar_one()
    out: dict[str, float] = {}
    for name, read in (
        ("one_incident_messages_s", lambda: outbox.messages(incident_id=one, limit=50)),
        ("one_incident_counts_s", lambda: outbox.depths(one)),
        ("counts_by_notifier_s", outbox.counts_by_notifier),
        ("list_resolved_50_s", lambda: store.list_rows("resolved", include_merged=True, limit=50)),
    ):
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            read()
            best = min(best, time.perf_counter() - started)
        out[name] = round(best, 3)
    return out


def probe_alert(n: int) -> Alert:
    """The prober's ``n``-th alert, of a node of its own (a new incident each)."""
    labels = {"cluster": "c1", "severity": "warning", "alertname": "GPUHot", "Hostname": f"p-node{n}"}
    return Alert({**labels, "gpu": "0"})


def started(url: str) -> tuple[IncidentEngine, float]:
    """The engine of a starting ``serve`` (retention 90 days) with its first alert ingested; seconds it
    took (the view of every stored alert's status is read at the first use)."""
    began = time.perf_counter()
    config = AlertingConfig(announce_delay_seconds=0, retention_days=90)
    engine = IncidentEngine(make_engine(url), FakeClock(time.time()), config)
    engine.ingest([probe_alert(0)])
    return engine, time.perf_counter() - began


def prune(engine: IncidentEngine, limit: int) -> dict[str, object]:
    """Prune as ``serve`` does (90 days, 500 incidents a slice, the engine's lock held for each) while a
    prober ingests an alert every 0.1 s: slices, seconds, the longest slice, the longest ingest."""
    times: list[float] = []
    waits: list[float] = []
    pruning = threading.Event()

    def timed_slice(session: Session, cutoff: datetime, size: int = 500) -> PruneResult:
        began = time.perf_counter()
        part = prune_resolved(session, cutoff, size)
        session.flush()
        times.append(time.perf_counter() - began)
        if limit and len(times) >= limit:
            part.more = False
        return part

    def prober() -> None:
        n = 1
        while pruning.is_set():
            began = time.perf_counter()
            engine.ingest([probe_alert(n)])
            waits.append(time.perf_counter() - began)
            n += 1
            time.sleep(0.1)

    retention.prune_resolved = timed_slice  # type: ignore[assignment] - the slice StoreRetention runs
    pruning.set()
    thread = threading.Thread(target=prober)
    thread.start()
    began = time.perf_counter()
    try:
        total = engine.prune()
    finally:
        pruning.clear()
        thread.join()
        retention.prune_resolved = prune_resolved  # type: ignore[assignment]
    return {
        "slices": len(times),
        "incidents_pruned": total.incidents,
        "prune_s": round(time.perf_counter() - began, 1),
        "median_slice_s": round(statistics.median(times), 3),
        "longest_slice_s": round(max(times), 3),
        "ingests_during_prune": len(waits),
        "ingest_wait_median_s": round(statistics.median(waits), 3) if waits else None,
        "ingest_wait_longest_s": round(max(waits), 3) if waits else None,
    }


def measure(url: str, store: str, limit: int) -> dict[str, object]:
    """Every figure on the store at ``url`` (a copy: it is pruned)."""
    began = time.perf_counter()
    upgrade(make_engine(url))  # a store --keep left at an older revision: its migration, timed
    result: dict[str, object] = {"benchmark": "retention", "store": store}
    result["upgrade_s"] = round(time.perf_counter() - began, 1)
    with make_engine(url).connect() as conn:
        result.update({t: conn.exec_driver_sql(f"SELECT count(*) FROM {t}").scalar_one() for t in COPIED})
    result.update(reads(url))
    engine, start = started(url)
    result["engine_start_s"] = round(start, 2)
    result.update(prune(engine, limit))
    return result


def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as work:
        folder = args.keep or Path(work)
        folder.mkdir(parents=True, exist_ok=True)
        kept, path = folder / "built.db", str(folder / "retention.db")
        built = 0.0
        if not (args.reuse and kept.exists()):
            kept.unlink(missing_ok=True)
            built = build(str(kept), args.seeds, args.copies)
        Path(path).write_bytes(kept.read_bytes())
        result = {**measure(path, "sqlite", args.slices), "build_s": round(built, 1)}
        db = sqlite3.connect(path)
        free, pages = (db.execute(f"PRAGMA {p}").fetchone()[0] for p in ("freelist_count", "page_count"))
        result["free_page_share"] = round(free / pages, 3)
        print(json.dumps(result), flush=True)
        if args.postgres or args.postgres_url:
            with postgres_server(args.postgres_url) as server:
                url = fresh_database(server, "bench_retention")
                began = time.perf_counter()
                copy_store(str(kept), url)
                copied = round(time.perf_counter() - began, 1)
                result = {**measure(url, "postgres", args.slices), "copy_s": copied}
                result["database_bytes"] = database_bytes(url)
                print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(OPTIONS)
