"""A standby on a PostgreSQL store: it takes the lock the moment the active server's session ends, and
after a PostgreSQL restart it leaves the lock to the active server."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO

import pytest
from sqlalchemy import Engine, text

from alerting import advisory_lock
from alerting.advisory_lock import ADVISORY_KEY
from alerting.db import make_engine
from alerting.fencing import LockState
from alerting.instance_lock import ADVISORY_POLL_SECONDS, InstanceBusy, InstanceLocks
from tests.integration.gpuwarden_server import TOKEN, gpuwarden_binary, gpuwarden_serve
from tests.integration.postgres import Postgres
from tests.integration.servers import free_port, stop, wait_http_ok

# A safety net against a hang, not a speed requirement: each wait below ends on an event.
PATIENCE = 60.0


def _until(done: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + PATIENCE
    while not done():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def _waiting_sessions(admin: Engine) -> int:
    """Sessions blocked in ``pg_advisory_lock`` on gpuwarden's key (its lock not granted yet) in this
    database: the module's tests share one server, a database each."""
    with admin.connect() as conn:
        return int(
            conn.execute(
                text(
                    "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                    " AND CAST(classid AS bigint) = :hi AND CAST(objid AS bigint) = :lo"
                    " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
                ),
                {"hi": ADVISORY_KEY >> 32, "lo": ADVISORY_KEY & 0xFFFFFFFF},
            ).scalar_one()
        )


class _Standby(threading.Thread):
    """``InstanceLocks.acquire(wait=True)`` in a thread, with a sleep that records what it was asked and
    hands every wait longer than nothing to ``on_sleep`` (which the test drives)."""

    def __init__(self, url: str, journal: Path, on_sleep: Callable[[float], None] = lambda s: None) -> None:
        super().__init__(daemon=True)
        self.locks = InstanceLocks.for_server(url, journal)
        self.slept: list[float] = []
        self.found: list[Exception] = []
        self.failure: BaseException | None = None
        self._on_sleep = on_sleep

    def _sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        if seconds > 0:
            self._on_sleep(seconds)

    def run(self) -> None:
        try:
            self.locks.acquire(wait=True, sleep=self._sleep, on_wait=self.found.append)
        except BaseException as exc:
            self.failure = exc


@pytest.mark.integration
def test_a_postgres_standby_takes_the_lock_as_the_active_servers_session_ends_not_at_its_next_poll(
    postgres_url: str, tmp_path: Path
) -> None:
    """A standby that polled every 5 s held the lock up to 5 s after the active server died (bench_handover
    --postgres: 4.0 s median from the kill to the lock). Now it waits in ``pg_advisory_lock`` and is woken by
    the release: it never sleeps between attempts."""
    admin = make_engine(postgres_url)
    active = InstanceLocks.for_server(postgres_url, tmp_path / "active")
    active.try_acquire()
    standby = _Standby(postgres_url, tmp_path / "standby")
    standby.start()
    _until(lambda: _waiting_sessions(admin) == 1, "the standby never waited in pg_advisory_lock")
    active.release()  # the active server's session ends (a kill -9 closes it as well)
    standby.join(PATIENCE)
    assert standby.failure is None and not standby.is_alive()
    assert [type(e) for e in standby.found] == [InstanceBusy]
    assert [s for s in standby.slept if s > 0] == []  # woken by the release, not by a poll
    assert standby.locks.status().state is LockState.HELD
    with pytest.raises(InstanceBusy):
        InstanceLocks.for_server(postgres_url, tmp_path / "third").try_acquire()
    standby.locks.release()
    admin.dispose()


@pytest.mark.integration
def test_after_a_postgres_restart_the_active_server_takes_its_lock_back_before_the_standby_asks(
    postgres: Postgres, tmp_path: Path
) -> None:
    """The restart ends every session and lock, the standby's wait too. The standby asks again only once
    the store has answered for ``ADVISORY_POLL_SECONDS``: the active server, which checks every second,
    takes its lock back in that time, and the standby waits again (one active server, not a failover)."""
    admin = make_engine(postgres.url)
    active = InstanceLocks.for_server(postgres.url, tmp_path / "active")
    active.try_acquire()
    restarted, answered, active_back = threading.Event(), threading.Event(), threading.Event()

    def on_sleep(seconds: float) -> None:
        assert seconds == ADVISORY_POLL_SECONDS
        if not restarted.is_set():
            assert restarted.wait(PATIENCE)  # the store is down: the first wait, before connecting
        else:
            answered.set()  # connected: the active server's turn
            assert active_back.wait(PATIENCE)

    standby = _Standby(postgres.url, tmp_path / "standby", on_sleep)
    standby.start()
    _until(lambda: _waiting_sessions(admin) == 1, "the standby never waited in pg_advisory_lock")
    postgres.stop("fast")
    _until(lambda: len(standby.found) == 2, "the standby did not notice the restart")
    postgres.start()
    restarted.set()
    assert answered.wait(PATIENCE)
    assert active.check() is None  # the active server's next check: its lock taken back
    active_back.set()
    _until(lambda: _waiting_sessions(admin) == 1, "the standby did not wait again")
    # What it answers names the active server again, not the restart's error (which it said for good).
    _until(lambda: isinstance(standby.found[-1], InstanceBusy), "the standby still says the store is down")
    assert active.status().state is LockState.HELD
    assert standby.is_alive()
    assert [s for s in standby.slept if s > 0] == [ADVISORY_POLL_SECONDS] * 2
    active.release()
    standby.join(PATIENCE)
    assert standby.failure is None and standby.locks.status().state is LockState.HELD
    standby.locks.release()
    admin.dispose()


@pytest.mark.integration
def test_a_second_postgres_standby_names_the_server_that_took_over_not_the_killed_one(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two standbys wait; the active server dies and one of them takes over. The other went on telling
    (its 503, ``incidents list --url``, its log) that the killed server held the store, until it took over
    itself; it now names the one that holds it, as a SQLite standby, which reads the lock file, did."""
    admin = make_engine(postgres_url)
    names = iter(["gpuwarden serve, pid 101 on active", "gpuwarden serve, pid 202 on one"])
    monkeypatch.setattr(advisory_lock, "application_name", lambda: next(names))
    active = InstanceLocks.for_server(postgres_url, tmp_path / "active")
    active.try_acquire()
    one = _Standby(postgres_url, tmp_path / "one")
    one.start()
    _until(lambda: _waiting_sessions(admin) == 1, "the first standby never waited in pg_advisory_lock")
    monkeypatch.setattr(advisory_lock, "application_name", lambda: "gpuwarden serve, pid 303 on two")
    two = _Standby(postgres_url, tmp_path / "two")
    two.start()
    _until(lambda: _waiting_sessions(admin) == 2, "the second standby never waited in pg_advisory_lock")
    assert "pid 101 on active" in str(one.found[-1]) and "pid 101 on active" in str(two.found[-1])
    active.release()  # killed: its session ends, and one of the standbys takes the lock
    _until(lambda: not (one.is_alive() and two.is_alive()), "no standby took over")
    taker, other, taker_name = (
        (one, two, "pid 202 on one") if not one.is_alive() else (two, one, "pid 303 on two")
    )
    assert taker.failure is None and taker.locks.status().state is LockState.HELD
    _until(lambda: taker_name in str(other.found[-1]), "the other standby still names the killed server")
    assert isinstance(other.found[-1], InstanceBusy)
    taker.locks.release()
    other.join(PATIENCE)
    assert other.failure is None and other.locks.status().state is LockState.HELD
    other.locks.release()
    admin.dispose()


def _start_standby(url: str, port: int, journal: Path, log: IO[bytes]) -> subprocess.Popen[bytes]:
    """A ``serve --standby`` on the store at ``url`` with a journal directory of its own (another host)."""
    env = {**os.environ, "GPUWARDEN_API_TOKEN": TOKEN, "GPUWARDEN_ALERTING__JOURNAL_DIR": str(journal)}
    argv = [gpuwarden_binary(), "serve", "--port", str(port), "--db", url, "--standby"]
    return subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)


@pytest.mark.integration
def test_a_postgres_standby_stops_with_exit_0_while_it_waits_and_another_takes_over_from_a_killed_server(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGTERM reaches a standby blocked in ``pg_advisory_lock``: it stops (exit 0) and its waiting session
    goes. The next standby takes over once the active server is killed, and answers ready."""
    monkeypatch.setenv("GPUWARDEN_ALERTING__JOURNAL_DIR", str(tmp_path / "active.journal"))
    admin = make_engine(postgres_url)
    with gpuwarden_serve(tmp_path, postgres_url) as (_, active), (tmp_path / "standby.log").open("wb") as log:
        first = _start_standby(postgres_url, free_port(), tmp_path / "first.journal", log)
        _until(lambda: _waiting_sessions(admin) == 1, "the standby never waited in pg_advisory_lock")
        first.send_signal(signal.SIGTERM)
        assert first.wait(timeout=PATIENCE) == 0
        _until(lambda: _waiting_sessions(admin) == 0, "the stopped standby's session still waits")
        port = free_port()
        second = _start_standby(postgres_url, port, tmp_path / "second.journal", log)
        try:
            _until(lambda: _waiting_sessions(admin) == 1, "the second standby never waited")
            active.send_signal(signal.SIGKILL)
            active.wait(timeout=PATIENCE)
            wait_http_ok(f"http://127.0.0.1:{port}/-/ready", second, timeout=PATIENCE)
        finally:
            stop(second)
    assert "instance lock: taken; this server is now active" in (tmp_path / "standby.log").read_text()
    admin.dispose()
