"""``gpuwarden serve`` against clients that hold connections without sending a request."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.integration.servers import free_port, wait_http_ok

OPEN_FILES = 256  # serve's file limit here (1,024 in a plain shell or systemd service): reached sooner
TOKEN = "connections-test-token-123"
GIVE_UP = 60.0  # seconds: without the deadline no request was answered while the idle connections stayed


def answered(send: Callable[[], httpx.Response]) -> httpx.Response:
    """The answer to ``send()``, tried again, as a client would, while serve drops the connection: with
    every file in use, uvloop (libuv) accepts each waiting connection and closes it at once."""
    give_up = time.monotonic() + GIVE_UP
    while True:
        try:
            return send()
        except (httpx.RemoteProtocolError, httpx.ReadError, httpx.ConnectError):
            if time.monotonic() > give_up:
                raise
            time.sleep(0.1)


def test_idle_connections_past_the_open_file_limit_no_longer_keep_serve_from_answering(
    tmp_path: Path,
) -> None:
    # 1,100 connections that never sent a byte used up serve's 1,024 file descriptors for as long as the
    # client kept them, and POSTs and /healthz went unanswered. Now each is closed after
    # api.header_timeout_seconds, so the requests behind them in the listen queue are answered.
    config = tmp_path / "gw.yml"
    config.write_text("api:\n  header_timeout_seconds: 1\n")
    port = free_port()
    serve = [sys.executable, "-c", "from gpuwarden.cli import main; main()", "serve", "--port", str(port)]
    serve += ["--db", str(tmp_path / "serve.db"), "--config", str(config)]
    argv = ["sh", "-c", f'ulimit -n {OPEN_FILES} && exec "$@"', "sh", *serve]
    url = f"http://127.0.0.1:{port}"
    with (tmp_path / "serve.log").open("wb") as log:
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "GPUWARDEN_API_TOKEN": TOKEN}
        )
        idle: list[socket.socket] = []
        try:
            wait_http_ok(f"{url}/-/ready", proc)
            idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(OPEN_FILES + 100)]
            assert answered(lambda: httpx.get(f"{url}/healthz", timeout=GIVE_UP)).status_code == 200
            alert = [{"labels": {"alertname": "NodeDown", "node": "node-01"}}]
            auth = {"Authorization": f"Bearer {TOKEN}"}
            posted = answered(
                lambda: httpx.post(f"{url}/api/v2/alerts", json=alert, headers=auth, timeout=GIVE_UP)
            )
            assert posted.status_code == 200
            assert all(sock.recv(1) == b"" for sock in idle)  # each closed by serve, without an answer
        finally:
            for sock in idle:
                sock.close()
            proc.terminate()
            proc.wait(30)
