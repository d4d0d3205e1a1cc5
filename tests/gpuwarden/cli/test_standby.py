"""``serve --standby`` waiting for the lock: what ends the wait, and what comes of it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from alerting.instance_lock import InstanceLocks
from gpuwarden.cli.serve_journal import journal_dir
from gpuwarden.cli.standby import OnWait, Sleep, wait_as_standby
from gpuwarden.config import ApiConfig, GpuwardenConfig
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


def _answering(port: int, sleep: Sleep) -> None:
    """Return once the standby answers on ``port`` (its server is up)."""
    for _ in range(200):
        try:
            httpx.get(f"http://127.0.0.1:{port}/-/ready", timeout=2)
        except httpx.ConnectError:
            sleep(0.05)
            continue
        return
    raise AssertionError("the standby never answered")


def test_a_sigterm_that_comes_as_the_standby_takes_the_lock_stops_it_and_gives_the_lock_back(
    listener: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The lock was returned as if no signal had come: the standby became the active server."""
    locks = InstanceLocks([])
    released: list[bool] = []
    monkeypatch.setattr(locks, "release", lambda: released.append(True))

    def acquire(sleep: Sleep, on_wait: OnWait) -> InstanceLocks:
        _answering(listener.getsockname()[1], sleep)
        os.kill(os.getpid(), signal.SIGTERM)  # Kubernetes stops the pod just as the lock comes free
        return locks

    assert wait_as_standby(acquire, listener, ApiConfig()) is None
    assert released == [True]
    listener.close()


# ``serve`` with a hook: once ``point`` (a function of serve_cmd) returned, the process sends itself SIGTERM.
HOOKED_SERVE = """
import os, signal, sys
from gpuwarden.cli import main, serve_cmd
point = sys.argv.pop(1)
original = getattr(serve_cmd, point)
def hooked(*args, **kwargs):
    result = original(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGTERM)
    return result
setattr(serve_cmd, point, hooked)
main()
"""


@pytest.mark.parametrize(
    ("point", "standby"),
    [("take_locks", True), ("_fenced_service", True), ("_fenced_service", False)],
    ids=["standby-takes-the-lock", "standby-builds-the-active-server", "active-server-built"],
)
def test_a_sigterm_during_the_handover_stops_serve_with_exit_0_and_the_lock_released(
    tmp_path: Path, point: str, standby: bool
) -> None:
    """As the standby took the lock the signal was lost (serve went on as the active server); while the
    active server was being built (store migrated, engine loaded) it killed the process (exit -15)."""
    db = str(tmp_path / "handover.db")
    argv = [sys.executable, "-c", HOOKED_SERVE, point, "serve", "--port", str(free_port()), "--db", db]
    argv += ["--standby"] if standby else []
    env = {**os.environ, "GPUWARDEN_API_TOKEN": "handover-test-token"}
    with (tmp_path / "serve.log").open("wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            status = proc.wait(timeout=60)  # a guard against a hang, not a measure: it stops at once
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            status = None
    said = (tmp_path / "serve.log").read_text()
    assert status == 0, said
    assert "stopped before" in said, said
    locks = InstanceLocks.for_server(db, journal_dir(GpuwardenConfig(), db))
    locks.acquire(wait=False, sleep=lambda _: None)  # given back: the next server takes it at once
    locks.release()


def test_a_standbys_port_takes_connections_from_the_moment_it_is_bound() -> None:
    """The standby says it waits (the lock's first attempt) while its server is still starting on another
    thread: a connection made then must queue for that server, not be refused (a health check or a CLI
    call right after the log line met "Connection refused" on a loaded machine)."""
    from gpuwarden.cli.standby import standby_socket  # noqa: PLC0415 - what this test is about

    port = free_port()
    sock = standby_socket("127.0.0.1", port, "api.host", "api.port")
    assert sock is not None
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
    finally:
        sock.close()
