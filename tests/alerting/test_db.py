from __future__ import annotations

import os
import socket
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event

from alerting.db import IN_LIST_SIZES, in_lists, make_engine
from alerting.instance_lock import InstanceLocks
from alerting.migrate import open_store
from gpuwarden.errors import ConfigError
from tests.integration.servers import free_port

# Far below psycopg's own 130 s and far above the 2 s asked for: a guard that ends the test instead of
# hanging it, not a measure of speed.
_GUARD_SECONDS = 60


@pytest.fixture
def silent_store() -> Iterator[str]:
    """A PostgreSQL URL whose port accepts connections (the kernel completes the handshake from the listen
    backlog) and never answers, as a store host behind a load balancer that lost its backend does."""
    with socket.create_server(("127.0.0.1", free_port()), backlog=16) as listener:
        yield f"postgresql+psycopg://gw:secret@127.0.0.1:{listener.getsockname()[1]}/gw"


def _in_thread(call: Callable[[], object]) -> BaseException | None:
    """Run ``call`` in a thread; what it raised, failing the test if it is still hung after the guard."""
    raised: list[BaseException] = []

    def run() -> None:
        try:
            call()
        except BaseException as exc:  # handed to the test
            raised.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(_GUARD_SECONDS)
    assert not worker.is_alive(), f"still connecting after {_GUARD_SECONDS} s: no connect timeout"
    return raised[0] if raised else None


def test_a_store_that_accepts_and_never_answers_fails_serve_start_naming_the_timeout_setting(
    silent_store: str,
) -> None:
    error = _in_thread(lambda: open_store(silent_store, connect_timeout=2))
    assert isinstance(error, ConfigError) and error.field == "api.db"
    assert "connection timeout expired" in str(error)
    assert "store.connect_timeout_seconds" in str(error)
    assert "secret" not in str(error)


def test_the_postgres_lock_connection_gives_up_on_a_silent_store_too(
    silent_store: str, tmp_path: Path
) -> None:
    locks = InstanceLocks.for_server(silent_store, tmp_path / "journal", connect_timeout=2)
    error = _in_thread(locks.try_acquire)
    assert error is not None and "connection timeout expired" in str(error)


class _Asked(Exception):
    """Raised by a ``do_connect`` listener instead of connecting: the test only wants the parameters."""


def _connect_parameters(engine: Engine) -> dict[str, Any]:
    """What ``engine`` would hand the driver for a new connection, caught before it connects."""
    asked: dict[str, Any] = {}

    @event.listens_for(engine, "do_connect")
    def capture(_dialect: Any, _record: Any, _cargs: Any, cparams: dict[str, Any]) -> None:
        asked.update(cparams)
        raise _Asked

    with pytest.raises(_Asked):
        engine.connect()
    return asked


def test_a_postgres_connection_asks_for_tcp_keepalives_so_a_vanished_host_fails_a_query() -> None:
    asked = _connect_parameters(make_engine("postgresql+psycopg://gw@127.0.0.1:1/gw", connect_timeout=7))
    assert asked["connect_timeout"] == 7
    # Probes after 30 s idle, every 10 s, 3 of them; unacknowledged bytes for 60 s end the connection.
    assert (asked["keepalives"], asked["keepalives_idle"], asked["tcp_user_timeout"]) == (1, 30, 60_000)


def test_a_sqlite_store_gets_no_server_connection_parameters(tmp_path: Path) -> None:
    engine = make_engine(str(tmp_path / "s.db"), connect_timeout=7)
    with engine.connect() as conn:  # sqlite3.connect refuses an unknown keyword such as connect_timeout
        assert conn.exec_driver_sql("SELECT 1").scalar() == 1


def test_a_parameter_the_store_url_sets_itself_is_kept() -> None:
    asked = _connect_parameters(
        make_engine("postgresql+psycopg://gw@127.0.0.1:1/gw?connect_timeout=30&keepalives_idle=5")
    )
    assert (asked["connect_timeout"], asked["keepalives_idle"], asked["keepalives_count"]) == ("30", "5", 3)


@pytest.mark.parametrize("count", [0, 1, 7, 8, 9, 33, 200, 511, 512, 513, 1_100])
def test_in_lists_are_of_a_few_lengths_and_hold_every_value_in_order(count: int) -> None:
    values = [f"fp{k}" for k in range(count)]
    lists = list(in_lists(values))
    assert all(len(one) in IN_LIST_SIZES for one in lists)
    assert len(lists) == -(-count // IN_LIST_SIZES[-1])
    kept = [v for one in lists for v in dict.fromkeys(one)]  # each list without its padding
    assert kept == values


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask, under which a new file is 0644: readable by every user of the machine."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def _modes(directory: Path) -> dict[str, int]:
    return {p.name: stat.S_IMODE(p.stat().st_mode) for p in sorted(directory.iterdir())}


def test_a_new_sqlite_store_and_its_wal_are_readable_by_their_owner_alone(
    tmp_path: Path, umask_022: None
) -> None:
    # They followed the umask (0644): every user of the machine read the incidents (hosts, jobs, people).
    engine = open_store(str(tmp_path / "gw.db"))
    try:
        assert _modes(tmp_path) == {"gw.db": 0o600, "gw.db-shm": 0o600, "gw.db-wal": 0o600}
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    ("before", "after"),
    [(0o644, 0o640), (0o666, 0o660), (0o640, 0o640), (0o600, 0o600)],
    ids=["umask-made", "group-writable", "group-readable-kept", "private-kept"],
)
def test_an_existing_store_loses_what_every_user_could_do_and_nothing_else(
    tmp_path: Path, umask_022: None, before: int, after: int
) -> None:
    # A store made by the previous release (0644): other users lose their access; its group keeps what it had
    # (a backup job's), and a mode is never loosened.
    open_store(str(tmp_path / "gw.db")).dispose()
    for name in ("gw.db", "gw.db-wal", "gw.db-shm"):
        if (tmp_path / name).exists():
            (tmp_path / name).chmod(before)
    engine = open_store(str(tmp_path / "gw.db"))
    try:
        assert set(_modes(tmp_path).values()) == {after}
    finally:
        engine.dispose()
