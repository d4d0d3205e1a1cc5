"""``serve --standby`` waiting for the lock: what ends the wait, and what comes of it."""

from __future__ import annotations

import socket

import httpx
import pytest

from alerting.instance_lock import InstanceLocks
from gpuwarden.cli.standby import OnWait, Sleep, wait_as_standby
from gpuwarden.config import ApiConfig
from gpuwarden.errors import ConfigError
from tests.integration.servers import free_port


@pytest.fixture
def listener() -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", free_port()))
    return sock


def test_the_locks_end_the_wait_and_the_socket_stays_open_for_the_active_server(
    listener: socket.socket,
) -> None:
    locks = InstanceLocks([])
    asked: list[str] = []

    def acquire(sleep: Sleep, on_wait: OnWait) -> InstanceLocks:
        port = listener.getsockname()[1]
        # The standby answers while it waits (the first sleep lets its server start).
        for _ in range(200):
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/-/ready", timeout=2)
            except httpx.ConnectError:
                sleep(0.05)
                continue
            asked.append(f"{answer.status_code}")
            break
        return locks

    assert wait_as_standby(acquire, listener, ApiConfig()) is locks
    assert asked == ["503"]
    listener.settimeout(0.1)  # still listening: a connection waits in its backlog for the active server
    with socket.create_connection(listener.getsockname(), timeout=2):
        conn, _ = listener.accept()
        conn.close()
    listener.close()


def test_an_error_while_waiting_for_the_lock_is_raised_by_the_standby(listener: socket.socket) -> None:
    def acquire(sleep: Sleep, on_wait: OnWait) -> InstanceLocks:
        raise ConfigError("journal directory: cannot use it", field="alerting.journal_dir")

    with pytest.raises(ConfigError, match="journal directory"):
        wait_as_standby(acquire, listener, ApiConfig())
    listener.close()
