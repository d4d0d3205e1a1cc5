"""A server's lock on a real PostgreSQL store, and the store going away: refusals, lost locks, outages."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest
from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.pool import NullPool

from alerting import scenarios
from alerting.advisory_lock import ADVISORY_KEY, AdvisoryLock
from alerting.applier import JournalApplier
from alerting.db import make_engine
from alerting.engine import IncidentEngine
from alerting.fencing import LockState, NotActive
from alerting.instance_lock import InstanceBusy, InstanceLocks
from alerting.journal import KIND_POSTABLE, AcceptJournal, applied_offset
from alerting.migrate import upgrade
from alerting.store_models import IncidentRow
from gpuwarden.clock import FakeClock
from gpuwarden.model import label_fingerprint
from tests.integration import http_probe
from tests.integration.gpuwarden_server import AUTH, gpuwarden_serve, serve_metric
from tests.integration.postgres import Postgres
from tests.integration.servers import free_port
from tests.integration.tcp_proxy import SilentableProxy


@pytest.mark.integration
def test_a_store_host_that_stops_answering_fails_the_applier_within_the_connect_timeout_and_loses_nothing(
    postgres: Postgres, tmp_path: Path
) -> None:
    # Without a connect timeout the applier's reconnect waited psycopg's 130 s for a host that accepts and
    # never answers; now the attempt fails after 2 s, the loop reports the store down and retries.
    with SilentableProxy(free_port(), ("127.0.0.1", postgres.port)) as proxy:
        url = postgres.url.replace(f":{postgres.port}/", f":{proxy.port}/")
        sql = make_engine(url, connect_timeout=2)
        upgrade(sql)
        journal = AcceptJournal(tmp_path / "journal", lambda jid: applied_offset(sql, jid))
        engine = IncidentEngine(sql, FakeClock(), inventory=scenarios.fleet_inventory())
        applier = JournalApplier(journal, engine, retry_seconds=0.2)
        stop = threading.Event()
        loop = threading.Thread(target=applier.run, args=(stop,), daemon=True)
        loop.start()
        try:
            proxy.silence()
            body = [{"labels": {"alertname": "NodeDown", "cluster": "c1", "node": "r01-n01"}}]
            end = journal.append(KIND_POSTABLE, orjson.dumps(body), 1)
            applier.notify()
            _until(lambda: applier.failures >= 2, "the applier never reported the silent store")
            assert loop.is_alive() and applier.lag_bytes > 0 and not applier.health.store_up
            assert "store.connect_timeout_seconds" in (applier.health.store_error or "")
            assert "connection timeout expired" in (applier.last_error or "")
            proxy.resume()
            _until(lambda: applier.lag_bytes == 0, "the applier never applied once the store answered")
        finally:
            stop.set()
            loop.join(_GUARD_SECONDS)
        assert applied_offset(sql, journal.journal_id) == end and applier.health.store_up
        assert engine.store.alert(label_fingerprint(body[0]["labels"])) is not None
        sql.dispose()


_GUARD_SECONDS = 60  # far below the 130 s of an unbounded connect: ends a hung test, measures no speed


def _until(done: Callable[[], bool], why: str) -> None:
    deadline = time.monotonic() + _GUARD_SECONDS
    while not done():
        assert time.monotonic() < deadline, why
        time.sleep(0.1)


@pytest.mark.integration
def test_second_server_on_one_postgres_store_is_refused_and_a_lost_lock_is_taken_again(
    postgres_url: str, tmp_path: Path
) -> None:
    first = InstanceLocks.for_server(postgres_url, tmp_path / "a")
    first.try_acquire()
    second = InstanceLocks.for_server(
        postgres_url, tmp_path / "b"
    )  # its own journal: only the store is shared
    with pytest.raises(InstanceBusy) as err:
        second.try_acquire()
    assert err.value.what == f"store {postgres_url}"
    assert err.value.holder.startswith(f"gpuwarden serve, pid {os.getpid()} on ")
    assert first.check() is None

    admin = make_engine(postgres_url)

    # The lock session dies (a PostgreSQL restart, a network cut): the server takes its lock again.
    _kill_lock_sessions(admin)
    assert first.check() is None
    with pytest.raises(InstanceBusy):
        second.try_acquire()
    # Lost again, and this time a standby took it first: the server learns that it must stop.
    _kill_lock_sessions(admin)
    second.try_acquire()
    lost = first.check()
    assert lost is not None and lost.what == f"store {postgres_url}"
    second.release()
    first.release()
    admin.dispose()


@pytest.mark.integration
def test_a_refused_server_names_the_holder_of_its_own_database_not_another_stores(
    postgres_url: str, tmp_path: Path
) -> None:
    """Advisory locks are per database; pg_locks lists the cluster's. The probe's second serve of store B
    named the serve of store A, on another database of the same PostgreSQL, as the holder."""
    admin = make_engine(postgres_url)
    with admin.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("CREATE DATABASE other_store"))
    other_url = postgres_url.rsplit("/", 1)[0] + "/other_store"
    other = create_engine(other_url, poolclass=NullPool, connect_args={"application_name": "other store"})
    with other.connect() as held:  # the serve of the other store, holding that database's lock
        assert held.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_KEY}).scalar()
        first = InstanceLocks.for_server(postgres_url, tmp_path / "a")
        first.try_acquire()
        second = InstanceLocks.for_server(postgres_url, tmp_path / "b")
        with pytest.raises(InstanceBusy) as err:
            second.try_acquire()
        assert err.value.holder.startswith(f"gpuwarden serve, pid {os.getpid()} on "), err.value.holder
        assert ", holding it since 20" in err.value.holder
        first.release()
        # Nobody holds this store's lock: the other database's holder is not it.
        assert second.locks[0].holder() == "holder unknown"
        second.try_acquire()
        second.release()
    other.dispose()
    admin.dispose()


EARLIER_STARTED = "2026-11-29T08:15:42+00:00"


@pytest.mark.integration
@pytest.mark.parametrize(
    "host",
    ["gpuwarden-7d9f8c-x2kq9", "gpuwarden-serve-production-us-east-1-7d9f8c6b5d-x2k4p"],
    ids=["start-time-cut", "host-cut"],
)
def test_a_refused_server_says_an_earlier_releases_start_time_is_unknown_not_a_cut_timestamp(
    postgres_url: str, tmp_path: Path, host: str
) -> None:
    """An earlier release named its lock connection "gpuwarden serve, pid N on HOST, started TIME" and
    PostgreSQL kept 63 bytes: the refusal of a rolling update's new serve read "..., started 2026-11-2"."""
    earlier = f"gpuwarden serve, pid 4242 on {host}, started {EARLIER_STARTED}"[:63]
    other = create_engine(postgres_url, poolclass=NullPool, connect_args={"application_name": earlier})
    with other.connect() as held:  # the earlier release's serve, holding the lock
        assert held.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_KEY}).scalar()
        assert held.execute(text("SHOW application_name")).scalar() == earlier  # as PostgreSQL keeps it
        locks = InstanceLocks.for_server(postgres_url, tmp_path / "a")
        with pytest.raises(InstanceBusy) as err:
            locks.try_acquire()
    other.dispose()
    said = err.value.holder
    whole_host = f"gpuwarden serve, pid 4242 on {host}"
    kept = whole_host if earlier.startswith(f"{whole_host},") else f"{earlier}..."  # else: cut in the host
    assert said.startswith(
        f"{kept} (an earlier release, whose name PostgreSQL cut: its start time is unknown)"
    )
    assert ", holding it since 20" in said  # the lock connection's own start, which PostgreSQL knows
    assert "started" not in said, said  # no cut timestamp


@pytest.mark.integration
def test_serve_stops_when_a_standby_took_the_postgres_lock_it_lost(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GPUWARDEN_ALERTING__JOURNAL_DIR", str(tmp_path / "journal"))
    admin = make_engine(postgres_url)
    with gpuwarden_serve(tmp_path, postgres_url) as (_, proc):
        standby = InstanceLocks.for_server(postgres_url, tmp_path / "standby")
        with pytest.raises(InstanceBusy):
            standby.try_acquire()
        _kill_lock_sessions(admin)  # the server's lock session dies; the standby is first to take it
        standby.try_acquire()
        assert proc.wait(timeout=60) == 1
    log = (tmp_path / "serve.log").read_text()
    assert "instance lock: lost: store " in log
    standby.release()
    admin.dispose()


def _wait_ready(url: str, status: int, timeout: float = 60.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        response = http_probe.get(f"{url}/-/ready", timeout=5)
        if response.status_code == status:
            return response
        assert time.monotonic() < deadline, f"/-/ready still {response.status_code}: {response.text}"
        time.sleep(0.2)


@pytest.mark.integration
def test_a_postgres_outage_fails_readiness_and_shows_on_metrics_and_nothing_acknowledged_is_lost(
    postgres: Postgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GPUWARDEN_ALERTING__JOURNAL_DIR", str(tmp_path / "journal"))
    monkeypatch.setenv("GPUWARDEN_ALERTING__TICK_INTERVAL_SECONDS", "0.2")
    labels = {"alertname": "NodeDown", "cluster": "c1", "node": "n1"}
    with gpuwarden_serve(tmp_path, postgres.url) as (url, _):
        assert serve_metric(url, "gpuwarden_store_up") == 1
        postgres.stop()
        not_ready = _wait_ready(url, 503)  # the next tick finds the store gone
        assert "store is unreachable" in not_ready.text, not_ready.text
        # A tick on a connection open when PostgreSQL stopped fails naming nothing ("server closed the
        # connection unexpectedly"), so nothing is hidden; the next connects anew and its error names the
        # address, which /-/ready must hide. Every answer on the way is checked.
        deadline = time.monotonic() + 30
        while "names hidden" not in not_ready.text:
            assert "127.0.0.1" not in not_ready.text, not_ready.text
            assert time.monotonic() < deadline, f"no error naming the store's address: {not_ready.text}"
            time.sleep(0.2)
            not_ready = _wait_ready(url, 503)
        assert "127.0.0.1" not in not_ready.text, not_ready.text
        assert [http_probe.get(f"{url}{p}", timeout=5).status_code for p in ("/healthz", "/-/healthy")] == [
            200,
            200,
        ]
        assert serve_metric(url, "gpuwarden_store_up") == 0
        listing = http_probe.get(f"{url}/api/v1/incidents", timeout=30)
        assert listing.status_code == 503 and "could not be read" in listing.json()["error"], listing.text
        assert (
            http_probe.post(f"{url}/api/v2/alerts", json=[{"labels": labels}], headers=AUTH).status_code
            == 200
        )
        deadline = time.monotonic() + 30
        while serve_metric(url, "gpuwarden_ingest_apply_failures_total") < 1:
            assert time.monotonic() < deadline, "the applier never tried the store"
            time.sleep(0.2)
        assert serve_metric(url, "gpuwarden_ingest_lag_bytes") > 0
        postgres.start()
        _wait_ready(url, 200)
        assert serve_metric(url, "gpuwarden_store_up") == 1
        (incident,) = http_probe.get(f"{url}/api/v1/incidents", timeout=30).json()
        assert incident["root_cause"]["kind"] == "node_down"
        assert serve_metric(url, "gpuwarden_ingest_lag_bytes") == 0


def _lock_taken_over(admin: Engine, url: str, journal: Path) -> InstanceLocks:
    """Every gpuwarden lock session dies (a PostgreSQL restart) and a standby takes the lock."""
    _kill_lock_sessions(admin)
    standby = InstanceLocks.for_server(url, journal)
    standby.try_acquire()
    return standby


def _kill_lock_sessions(admin: Engine) -> None:
    """End every gpuwarden lock session and wait until none is left.

    pg_terminate_backend only signals: each session gives its lock back as its backend exits, which on a
    loaded machine is after the SELECT returns, and a standby's try then found the lock still held ("in use
    by another gpuwarden serve (holder unknown)"). A session closed by its client may also still be exiting.
    """
    sessions = "FROM pg_stat_activity WHERE application_name LIKE 'gpuwarden serve%'"
    with admin.begin() as conn:
        conn.execute(text(f"SELECT pg_terminate_backend(pid) {sessions}"))
    _until(lambda: _count(admin, f"SELECT count(*) {sessions}") == 0, "the killed lock sessions never exited")


def _count(admin: Engine, query: str) -> int:
    with admin.connect() as conn:
        return int(conn.execute(text(query)).scalar_one())


def _post_raw(url: str, body: bytes) -> socket.socket:
    """Send a POST of alerts and return the socket without reading: the request waits in the server's
    accept backlog while the server is stopped."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    head = (
        f"POST /api/v2/alerts HTTP/1.1\r\nHost: {host}\r\nAuthorization: {AUTH['Authorization']}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    sock.sendall(head.encode() + body)
    return sock


def _status_of(sock: socket.socket) -> int | None:
    """The answer's status code, or None when the server closed the connection without one."""
    try:
        answer = sock.recv(4096)
    except ConnectionError:
        return None
    finally:
        sock.close()
    return int(answer.split()[1]) if answer else None


@pytest.mark.integration
def test_a_paused_server_whose_postgres_lock_was_taken_meanwhile_writes_nothing_once_resumed(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The probe's split brain: SIGSTOP the active server, its lock session dies (a PostgreSQL restart), a
    standby takes the lock, SIGCONT. The resumed server answered 200 to the POST waiting in its backlog and
    opened an incident before its once-a-second check noticed the loss."""
    monkeypatch.setenv("GPUWARDEN_ALERTING__JOURNAL_DIR", str(tmp_path / "journal"))
    admin = make_engine(postgres_url)
    with gpuwarden_serve(tmp_path, postgres_url) as (url, proc):
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            standby = _lock_taken_over(admin, postgres_url, tmp_path / "standby")
            waiting = _post_raw(url, orjson.dumps([{"labels": {"alertname": "NodeDown", "node": "r01-n01"}}]))
            time.sleep(3)  # the pause outlasts the fence's 2 s: the resumed server must verify first
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        assert _status_of(waiting) != 200
        assert proc.wait(timeout=60) == 1
    with admin.connect() as conn:
        assert conn.execute(select(func.count()).select_from(IncidentRow)).scalar_one() == 0
    assert "instance lock: lost: store " in (tmp_path / "serve.log").read_text()
    standby.release()
    admin.dispose()


def _fenced_engine(postgres_url: str, journal: Path) -> tuple[InstanceLocks, Engine, IncidentEngine]:
    """A server's locks taken, and an engine over its migrated store whose commits they fence."""
    locks = InstanceLocks.for_server(postgres_url, journal)
    locks.try_acquire()
    sql = make_engine(postgres_url)
    upgrade(sql)
    locks.fence_commits(sql)
    return locks, sql, IncidentEngine(sql, FakeClock(), inventory=scenarios.fleet_inventory())


@pytest.mark.integration
def test_a_commit_after_the_postgres_lock_went_to_another_server_is_rolled_back(
    postgres_url: str, tmp_path: Path
) -> None:
    """The check inside the transaction: a write already past every other check does not commit."""
    locks, sql, engine = _fenced_engine(postgres_url, tmp_path / "a")
    engine.ingest(scenarios.node_failure(3, 2, engine.clock.now())[:1])  # held: it commits
    admin = make_engine(postgres_url)  # not fenced: it is another server's connection
    standby = _lock_taken_over(admin, postgres_url, tmp_path / "b")
    admin.dispose()
    with pytest.raises(NotActive, match="no longer holds the lock"):
        engine.ingest(scenarios.rack_failure(7, engine.clock.now())[:5])
    with sql.connect() as conn:
        assert conn.execute(select(func.count()).select_from(IncidentRow)).scalar_one() == 1
    assert locks.status().state is LockState.LOST
    standby.release()
    locks.release()
    sql.dispose()


@pytest.mark.integration
def test_a_commit_between_a_lost_lock_connection_and_its_retaking_is_refused_without_saying_serve_stops(
    postgres_url: str, tmp_path: Path
) -> None:
    """After a PostgreSQL restart a tick's commit came before the once-a-second check took the lock again: it
    was refused as "this serve lost the store lock (...); it is stopping", and serve went on (rightly)."""
    locks, sql, engine = _fenced_engine(postgres_url, tmp_path / "a")
    (advisory,) = [lock for lock in locks.locks if isinstance(lock, AdvisoryLock)]
    advisory._drop()  # what a check that found the connection gone does, before it takes the lock again
    with pytest.raises(NotActive) as refused:
        engine.ingest(scenarios.node_failure(3, 2, engine.clock.now())[:1])
    assert "cannot verify that it still holds the store lock" in str(refused.value)
    assert "stopping" not in str(refused.value)
    assert locks.status().state is LockState.HELD  # taken again: the next commit goes through
    engine.ingest(scenarios.node_failure(3, 2, engine.clock.now())[:1])
    with sql.connect() as conn:
        assert conn.execute(select(func.count()).select_from(IncidentRow)).scalar_one() == 1
    locks.release()
    sql.dispose()
