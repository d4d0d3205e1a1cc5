"""The exporter's own HTTP server, over a real socket: what uvicorn's parser decides before the app."""

from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from exporters.server import create_app, server_config
from gpuwarden.clock import FakeClock
from gpuwarden.forced_stop import ForcingServer
from gpuwarden.graceful import run_until_stopped
from gpuwarden.sim import SimNvml
from gpuwarden.tls_handshake import PLAIN_HTTP_ANSWER
from gpuwarden.webconfig import load_web_config
from tests.integration.servers import free_port, uvicorn_in_thread
from tests.tls_certs import make_certs

from .collection_loops import loop_for

DEADLINE = 1.0


@pytest.fixture
def exporter(nvml: SimNvml, clock: FakeClock) -> Iterator[int]:
    """The exporter's app under its own uvicorn configuration (a 1 s header deadline), on a free port, in a
    thread."""
    port = free_port()
    sock = socket.create_server(("127.0.0.1", port))
    server = uvicorn.Server(server_config(create_app(loop_for(nvml, clock)), header_timeout=DEADLINE))
    with sock, uvicorn_in_thread(server, [sock]):
        yield port


def answer(sock: socket.socket) -> tuple[int, str]:
    """The status and ``Allow`` header of one whole answer; the connection stays open."""
    response = http.client.HTTPResponse(sock)
    response.begin()
    response.read()
    return response.status, response.getheader("allow", "")


@pytest.mark.parametrize("method", [b"POST", b"FOO"])
def test_a_method_metrics_does_not_take_is_answered_405_naming_get_and_the_connection_serves_on(
    exporter: int, method: bytes
) -> None:
    # uvicorn's httptools answered FOO (a method llhttp does not know) "400 Invalid HTTP request received."
    # and closed the connection, while POST, which it knows, reached the app: 405 with Allow.
    with socket.create_connection(("127.0.0.1", exporter), timeout=30) as sock:
        sock.sendall(method + b" /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        status, allow = answer(sock)
        assert (status, "GET" in allow) == (405, True), (status, allow)
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer(sock) == (200, "")


def test_a_scrape_whose_headers_never_end_is_closed_with_a_408(exporter: int) -> None:
    # uvicorn has no header timeout: a client trickling headers kept its connection and a descriptor.
    with socket.create_connection(("127.0.0.1", exporter), timeout=30) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")  # and never the end of the headers
        received = b""
        while chunk := sock.recv(4096):
            received += chunk
        assert received.startswith(b"HTTP/1.1 408 ")


def test_a_client_silent_on_the_tls_port_is_closed_at_the_header_deadline_and_holds_up_no_other(
    nvml: SimNvml, clock: FakeClock, tmp_path: Path
) -> None:
    # The TLS handshake waited for asyncio's (and uvloop's) 60 s, where the plain port closes a silent client
    # at the header deadline, as Go's net/http bounds the handshake by its header timeout; a plain HTTP
    # client answered 400 was held as long.
    certs = make_certs(tmp_path)
    (tmp_path / "web.yml").write_text(
        f"tls_server_config:\n  cert_file: {certs.cert}\n  key_file: {certs.key}\n"
    )
    web = load_web_config(tmp_path / "web.yml")
    port = free_port()
    sock = socket.create_server(("127.0.0.1", port))
    server = ForcingServer(server_config(create_app(loop_for(nvml, clock)), header_timeout=DEADLINE, web=web))
    thread = threading.Thread(target=run_until_stopped, args=(server, [sock]), daemon=True)  # as ``serve``
    thread.start()
    try:
        for _ in range(400):
            if server.started:
                break
            time.sleep(0.05)
        with (
            socket.create_connection(("127.0.0.1", port), timeout=30) as silent,
            socket.create_connection(("127.0.0.1", port), timeout=30) as plain,
        ):
            plain.sendall(b"GET /metrics HTTP/1.1\r\nHost: gpu-node\r\n\r\n")
            tls = ssl.create_default_context(cafile=certs.ca)
            with (
                socket.create_connection(("127.0.0.1", port), timeout=30) as raw,
                tls.wrap_socket(raw, server_hostname="localhost") as other,
            ):
                other.sendall(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
                assert answer(other)[0] == 200  # served while the other two wait
            assert silent.recv(1) == b""  # closed by the server, long before the client's 30 s
            assert b"".join(iter(lambda: plain.recv(4096), b"")) == PLAIN_HTTP_ANSWER  # then closed
    finally:
        server.should_exit = True
        thread.join(10)
