"""Alerts fed to a server or to serve's applier, and how fast: shared by the benchmarks of ingest.

``as_postable`` and ``encode`` make the request bodies (``BATCH`` alerts each, as Prometheus posts them,
encoded once so that the client's JSON work is not timed); ``post_all``/``post_bodies`` post them with
concurrent clients and ``throughput`` takes the best of a few passes, fresh and repeated, with the server's
CPU time (``cpu_seconds``) and, for gpuwarden, until its applier caught up (``wait_applied``);
``in_process`` and ``apply_timed`` feed serve's journal applier in this process, no HTTP between.
``bench_incidents.py`` compares Alertmanager and gpuwarden with them; ``bench_applier.py``,
``bench_correlation_shapes.py`` and ``bench_many_faults.py`` time the applier.
"""

from __future__ import annotations

import gc
import json
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import yaml

from alerting.applier import JournalApplier
from alerting.engine import IncidentEngine
from alerting.journal import KIND_POSTABLE
from gpuwarden.cli.serve_cmd import build_service
from gpuwarden.cli.serve_journal import build_applier
from gpuwarden.config import load_config
from gpuwarden.model import Alert

BATCH = 64
CLIENTS = 4


def as_postable(alert: Alert, ends_at: datetime) -> dict[str, Any]:
    starts = min(alert.starts_at or ends_at, datetime.now(UTC), ends_at)
    return {"labels": dict(alert.labels), "startsAt": starts.isoformat(), "endsAt": ends_at.isoformat()}


def in_process(prefix: str) -> tuple[IncidentEngine, JournalApplier]:
    """serve's engine and journal applier on a fresh store in a new temporary directory, default settings."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    config = work / "gw.yml"
    config.write_text(yaml.safe_dump({"alerting": {}}))
    cfg = load_config(config)
    db = str(work / "gw.db")
    engine, _, _, _ = build_service(cfg, db)
    return engine, build_applier(cfg, db, engine)


def apply_timed(applier: JournalApplier, bodies: list[bytes], batch: int = BATCH) -> tuple[int, float]:
    """Journal ``bodies`` (a record per POST) and apply them all: (alerts applied, seconds applying)."""
    for body in bodies:
        applier.journal.append(KIND_POSTABLE, body, batch)
    gc.collect()
    start = time.perf_counter()
    applied = 0
    while done := applier.apply_available():
        applied += done
    return applied, time.perf_counter() - start


def post_all(url: str, headers: dict[str, str], items: list[dict[str, Any]], clients: int = CLIENTS) -> float:
    """Post in batches of 64 with concurrent clients; return alerts per second (all must be 2xx)."""
    rate, _ = post_bodies(url, headers, encode(items), len(items), clients)
    return rate


def encode(items: list[dict[str, Any]], batch: int = BATCH) -> list[bytes]:
    """The request bodies, ``batch`` alerts each (64), encoded once (the client's JSON work is not timed)."""
    return [json.dumps(items[i : i + batch]).encode() for i in range(0, len(items), batch)]


def post_bodies(
    url: str, headers: dict[str, str], bodies: list[bytes], count: int, clients: int = CLIENTS
) -> tuple[float, float]:
    """Post pre-encoded bodies with concurrent clients: (alerts per second, client CPU share)."""
    hdrs = {**headers, "Content-Type": "application/json"}
    pools = [httpx.Client(timeout=60, headers=hdrs) for _ in range(clients)]

    def send(i: int) -> None:
        response = pools[i % clients].post(url, content=bodies[i])
        response.raise_for_status()

    cpu = time.process_time()
    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as ex:
        list(ex.map(send, range(len(bodies))))
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu
    for c in pools:
        c.close()
    return count / elapsed, cpu / elapsed


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_applied(status_url: str, timeout: float = 600.0) -> None:
    """Poll gpuwarden's ingest status until everything acknowledged is applied."""
    deadline = time.monotonic() + timeout
    while True:
        status = httpx.get(status_url, timeout=10).json()
        if status["applied_offset"] >= status["accepted_offset"]:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"gpuwarden did not apply its journal in {timeout} s: {status}")
        time.sleep(0.005)


def throughput(
    url: str,
    headers: dict[str, str],
    items: list[dict[str, Any]],
    pid: int,
    passes: int = 3,
    status_url: str | None = None,
) -> dict[str, float]:
    """Fresh alerts (best of ``passes`` streams, each relabelled new) then repeats of the last one.

    With ``status_url`` (gpuwarden) each pass also waits until the applier caught up: ``applied`` is the
    alerts per second from the first POST to then, and the server CPU counts until then.
    """
    out: dict[str, float] = {}
    for mode in ("fresh", "repeat"):
        best = (0.0, 0.0, 0.0)
        best_applied = 0.0
        for k in range(passes):
            if mode == "fresh":
                stream = [{**a, "labels": {**a["labels"], "pass": str(k)}} for a in items]
                bodies = encode(stream)
            cpu = cpu_seconds(pid)
            start = time.perf_counter()
            rate, client = post_bodies(url, headers, bodies, len(items))
            if status_url is not None:
                wait_applied(status_url)
                best_applied = max(best_applied, len(items) / (time.perf_counter() - start))
            server_ms = (cpu_seconds(pid) - cpu) * 1e6 / len(items)
            if rate > best[0]:
                best = (rate, client, server_ms)
        out[mode] = round(best[0])
        out[f"{mode}_client_cpu_share"] = round(best[1], 2)
        out[f"{mode}_server_cpu_ms_per_1k"] = round(best[2], 1)
        if status_url is not None:
            out[f"{mode}_applied"] = round(best_applied)
    return out
