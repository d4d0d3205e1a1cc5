"""Start and stop real servers (Prometheus, Alertmanager, Pushgateway, ...) on 127.0.0.1 for tests."""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn

from tests.integration import http_probe


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago, below the ephemeral range (32768 and up on
    Linux): a port the kernel hands out could be taken by any outgoing connection (a Prometheus scrape,
    an HTTP client) before the server the test starts binds it, which made a test fail now and then.

    ``GPUWARDEN_TEST_PORTS=LOW-HIGH`` narrows the range, for a machine where test runs share ports. Under
    pytest-xdist each worker draws from its own slice of the range, so two workers never hand out the same
    port before either server binds it."""
    low, high = _port_range()
    for _ in range(200):
        port = random.randint(low, high)
        if port in _HANDED_OUT:  # two calls before either server binds must not get the same port
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            _HANDED_OUT.add(port)
            return port
    raise RuntimeError(f"no free TCP port between {low} and {high}")


_HANDED_OUT: set[int] = set()


def ipv6_loopback() -> bool:
    """Whether this machine can listen on ``::1`` (a container or CI runner may have IPv6 turned off)."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


def _port_range() -> tuple[int, int]:
    """``GPUWARDEN_TEST_PORTS`` (default 20000-32000), or this xdist worker's slice of it."""
    first, _, last = os.environ.get("GPUWARDEN_TEST_PORTS", "20000-32000").partition("-")
    low, high = int(first), int(last)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    count = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if not worker.startswith("gw") or count < 2:
        return low, high
    size = (high - low + 1) // count
    start = low + int(worker[2:]) * size
    return start, start + size - 1


def require_binary(name: str) -> str:
    """Path of a server binary; fail (not skip) when missing: `make test` installs it."""
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if path is None:
        pytest.fail(f"{name} is not installed; run `make test` (it installs the Debian packages)")
    return path


def prometheus_argv(config: Path, port: int) -> list[str]:
    """A real Prometheus with ``config``, its data beside it, listening on 127.0.0.1:PORT."""
    return [
        require_binary("prometheus"), f"--config.file={config}",
        f"--storage.tsdb.path={config.parent / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}",
    ]  # fmt: skip


# How long a server the tests start may take to answer ready: an upper bound, never waited out when the
# server is up (the poll returns at once). A Python server imports for seconds on a loaded machine: six
# busy loops on two cores took `anomaly run` past the 30 s this was.
READY_SECONDS = 120.0


def wait_http_ok(url: str, proc: subprocess.Popen[bytes], timeout: float = READY_SECONDS) -> None:
    """Poll ``url`` until it answers 200, the process dies, or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before {url} was ready")
        try:
            if http_probe.get(url, timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError as exc:
            last = str(exc)
        time.sleep(0.1)
    raise RuntimeError(f"{url} not ready after {timeout}s: {last}")


@contextmanager
def running(
    argv: Sequence[str],
    ready_url: str,
    log_path: Path,
    timeout: float = READY_SECONDS,
    env: Mapping[str, str] | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``argv`` with output to ``log_path`` (and ``env`` as its whole environment, else this process's);
    yield once ``ready_url`` answers; always stop it."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            try:
                wait_http_ok(ready_url, proc, timeout)
            except RuntimeError as exc:
                raise RuntimeError(
                    f"{exc}\n--- {log_path} ---\n{log_path.read_text(errors='replace')[-3000:]}"
                ) from exc
            yield proc
        finally:
            stop(proc)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM, and SIGKILL if it is still there 10 s later."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def sigterm_once(
    argv: Sequence[str],
    log_path: Path,
    until: Callable[[subprocess.Popen[bytes]], object],
    *,
    env: Mapping[str, str] | None = None,
    wait_seconds: float = 30,
) -> int:
    """Start ``argv`` with output to ``log_path``, run ``until(process)`` (the moment to stop it), then send
    SIGTERM; the exit status (negative: killed by a signal). SIGKILL if it has not exited ``wait_seconds``
    later, so that a hang fails instead of blocking."""
    with log_path.open("wb") as log:
        proc = subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            until(proc)
            proc.send_signal(signal.SIGTERM)
            return proc.wait(timeout=wait_seconds)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


@contextmanager
def uvicorn_in_thread(server: uvicorn.Server, sockets: list[socket.socket] | None = None) -> Iterator[None]:
    """``server`` running in a thread (on ``sockets``, else its configured port) for the block, which starts
    once it serves; stopped after."""
    thread = threading.Thread(target=server.run, kwargs={"sockets": sockets}, daemon=True)
    thread.start()
    for _ in range(400):
        if server.started:
            break
        time.sleep(0.05)
    assert server.started, "uvicorn did not start"
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(10)
