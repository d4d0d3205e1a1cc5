"""The exporter's own HTTP server, over a real socket: what uvicorn's parser decides before the app."""

from __future__ import annotations

import http.client
import socket
from collections.abc import Iterator

import pytest
import uvicorn

from exporters.server import create_app, server_config
from gpuwarden.clock import FakeClock
from gpuwarden.sim import SimNvml
from tests.integration.servers import free_port, uvicorn_in_thread

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
