"""How long a ``serve --standby`` takes to replace a killed active server: one JSON line.

Two ``gpuwarden serve`` on one SQLite store (a temporary file, some incidents in it), one active and one
``--standby``. Once the standby has logged that it waits, the active one is SIGKILLed and the standby's
``/-/ready`` is polled every 20 ms until it answers 200. The killed one is then started again as the new
standby, and the pair swaps roles RUNS times. Figures, median and best and worst over the runs, in seconds:

* ``handover_seconds``: from the SIGKILL to the standby's ``/-/ready`` answering 200;
* ``lock_seconds``: from the SIGKILL to the standby's "instance lock: taken" log line (its wait for the lock);
* ``after_lock_seconds``: the difference: what the standby still does once it holds the lock.

With ``--postgres`` the store is a throwaway PostgreSQL 15 (started as ``tests/integration`` start theirs:
run as root, the Debian package installed), each server with a journal directory of its own, as on two
hosts.

Ports come from ``GPUWARDEN_TEST_PORTS=LOW-HIGH`` (as in the tests) when set.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path


def _options() -> argparse.Namespace:
    """The command line, read before httpx is imported: ``--help`` and an unknown option answer at once."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--postgres", action="store_true", help="on a throwaway PostgreSQL 15, not SQLite")
    return parser.parse_args()


if __name__ == "__main__":
    OPTIONS = _options()

import httpx  # noqa: E402 - imported after the command line is read

RUNS = 5
GPUWARDEN = str(Path(sys.executable).with_name("gpuwarden"))
TOKEN = "bench-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def free_port() -> int:
    """A free port, in ``GPUWARDEN_TEST_PORTS`` when set."""
    low, _, high = os.environ.get("GPUWARDEN_TEST_PORTS", "20000-32000").partition("-")
    for _ in range(200):
        port = random.randint(int(low), int(high))
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port")


def start(db: Path | str, port: int, log: Path, *extra: str) -> subprocess.Popen[bytes]:
    """A ``gpuwarden serve`` writing its log to ``log``, its journal in a directory beside the log."""
    env = {**os.environ, "GPUWARDEN_API_TOKEN": TOKEN}
    if not isinstance(db, Path):  # a PostgreSQL URL: a journal directory per server, as on two hosts
        env["GPUWARDEN_ALERTING__JOURNAL_DIR"] = str(log.with_suffix(".journal"))
    argv = [GPUWARDEN, "serve", "--port", str(port), "--db", str(db), *extra]
    with log.open("ab") as out:
        return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=env)


def wait_until(check: object, proc: subprocess.Popen[bytes], what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what}: the server exited with {proc.returncode}")
        if check():  # type: ignore[operator]
            return
        time.sleep(0.02)
    raise RuntimeError(f"{what}: not within {timeout} s")


def ready(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/-/ready", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def logged(log: Path, text: str, after: int = 0) -> bool:
    return text in log.read_text(errors="replace")[after:]


def taken_at(log: Path, after: int) -> float:
    """Wall time of the "instance lock: taken" line logged after byte ``after`` of ``log``."""
    for line in log.read_text(errors="replace")[after:].splitlines():
        if "instance lock: taken" in line:
            stamp = json.loads(line)["ts"]  # logging's asctime: local time, milliseconds after a comma
            return datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
    raise RuntimeError(f"{log}: no 'instance lock: taken' line")


def seed(port: int) -> None:
    """Alerts on 40 nodes of 4 racks: some incidents for the new active server to load."""
    for k in range(40):
        alert = {"labels": {"alertname": "NodeDown", "cluster": "c1", "rack": f"r{k % 4}", "node": f"n{k}"}}
        response = httpx.post(
            f"http://127.0.0.1:{port}/api/v2/alerts", json=[alert], headers=AUTH, timeout=30
        )
        response.raise_for_status()


def summary(samples: Sequence[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(samples), 3),
        "best": round(min(samples), 3),
        "worst": round(max(samples), 3),
    }


@contextmanager
def store(work: Path, postgres: bool) -> Iterator[Path | str]:
    """A SQLite file in ``work``, or the URL of a throwaway PostgreSQL (``tests/integration/postgres.py``)."""
    if not postgres:
        yield work / "gw.db"
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: its tests package
    from tests.integration.postgres import throwaway_postgres  # noqa: PLC0415

    with throwaway_postgres(free_port()) as server:
        yield server.url


def main(postgres: bool) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-handover-") as tmp, store(Path(tmp), postgres) as db:
        work = Path(tmp)
        ports = [free_port(), free_port()]
        logs = [work / "a.log", work / "b.log"]
        procs = [start(db, ports[0], logs[0]), None]
        wait_until(lambda: ready(ports[0]), procs[0], "first active")
        seed(ports[0])
        handover, lock = [], []
        try:
            for run in range(RUNS):
                active, standby = run % 2, 1 - run % 2
                mark = len(logs[standby].read_text(errors="replace")) if logs[standby].exists() else 0
                proc = start(db, ports[standby], logs[standby], "--standby")
                procs[standby] = proc
                wait_until(lambda: logged(logs[standby], "standby, waiting", mark), proc, "standby")  # noqa: B023
                time.sleep(1.0)  # whatever a standby does while it waits is done
                killed_at, began = time.time(), time.monotonic()
                procs[active].send_signal(signal.SIGKILL)  # type: ignore[union-attr]
                procs[active].wait()  # type: ignore[union-attr]
                wait_until(lambda: ready(ports[standby]), proc, "takeover")  # noqa: B023
                handover.append(time.monotonic() - began)
                lock.append(taken_at(logs[standby], mark) - killed_at)
        finally:
            for proc in procs:
                if proc is not None and proc.poll() is None:
                    proc.terminate()
                    proc.wait(30)
    after = [h - w for h, w in zip(handover, lock, strict=True)]
    print(
        json.dumps(
            {
                "bench": "handover",
                "store": "postgresql" if postgres else "sqlite",
                "runs": RUNS,
                "handover_seconds": summary(handover),
                "lock_seconds": summary(lock),
                "after_lock_seconds": summary(after),
            }
        )
    )


if __name__ == "__main__":
    main(OPTIONS.postgres)
