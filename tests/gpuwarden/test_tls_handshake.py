"""Plain HTTP sent to the TLS port of ``--web.config.file`` gets Go's ``400 Bad Request`` (exporter-toolkit's
answer), not a silent close; TLS is served as before."""

from __future__ import annotations

import asyncio
import ssl
from pathlib import Path

import pytest

from gpuwarden.tls_handshake import PLAIN_HTTP_ANSWER, peer_sans
from gpuwarden.webconfig import load_web_config
from tests.integration.servers import free_port
from tests.tls_certs import TestCerts, make_certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TestCerts:
    return make_certs(tmp_path_factory.mktemp("certs"))


def _context(tmp_path: Path, certs: TestCerts) -> ssl.SSLContext:
    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {certs.cert}\n  key_file: {certs.key}\n")
    context = load_web_config(web).ssl_context
    assert context is not None
    return context


class _Ok(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n")
        transport.close()


async def _exchange(context: ssl.SSLContext, port: int, send: bytes) -> bytes:
    """What a server with ``context``, run by asyncio as uvicorn runs it, answers a client that sends
    ``send`` in plain text: as many bytes as Go's answer holds, or fewer when the server closes first."""

    server = await asyncio.get_running_loop().create_server(_Ok, "127.0.0.1", port, ssl=context)
    async with server:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(send)
        try:
            answer = await asyncio.wait_for(reader.readexactly(len(PLAIN_HTTP_ANSWER)), 10)
        except asyncio.IncompleteReadError as short:
            answer = short.partial
        writer.close()  # the client's close (curl's, Prometheus') ends the connection at the server too
        await writer.wait_closed()
        return answer


async def _served_over_tls(context: ssl.SSLContext, port: int, client: ssl.SSLContext) -> bytes:
    server = await asyncio.get_running_loop().create_server(_Ok, "127.0.0.1", port, ssl=context)
    async with server:
        reader, writer = await asyncio.open_connection(
            "127.0.0.1", port, ssl=client, server_hostname="localhost"
        )
        answer = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        return answer.rpartition(b"\r\n\r\n")[2]


def test_plain_http_to_the_tls_port_gets_gos_400(tmp_path: Path, certs: TestCerts) -> None:
    context = _context(tmp_path, certs)
    answer = asyncio.run(_exchange(context, free_port(), b"GET /metrics HTTP/1.1\r\nHost: gpu-node\r\n\r\n"))
    assert answer == PLAIN_HTTP_ANSWER
    assert answer.startswith(b"HTTP/1.0 400 Bad Request\r\n")
    assert answer.endswith(b"\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
    garbage = asyncio.run(_exchange(context, free_port(), b"\x00\x01 not TLS, not HTTP\r\n\r\n"))
    assert garbage == b""  # not a request: closed without an answer, as Go closes it
    tls = ssl.create_default_context(cafile=certs.ca)
    assert asyncio.run(_served_over_tls(context, free_port(), tls)) == b"ok\n"  # TLS as before


def test_sans_are_written_as_go_writes_them() -> None:
    peer = {
        "subjectAltName": (
            ("DNS", "prometheus.example"),
            ("IP Address", "2001:DB8:0:0:0:0:0:1\n"),
            ("IP Address", "10.0.0.7"),
            ("email", "ops@example.com"),
            ("URI", "spiffe://cluster/prometheus"),
            ("DirName", "ignored"),
        )
    }
    assert peer_sans(peer) == {
        "prometheus.example", "2001:db8::1", "10.0.0.7", "ops@example.com", "spiffe://cluster/prometheus"
    }  # fmt: skip
