"""`gpuwarden incidents` over https to the TLS proxy in front of serve: a certificate no CA trusted here
signed says what to export, and a CA file that cannot be loaded is named."""

from __future__ import annotations

import http.server
import ssl
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpuwarden.cli import app
from tests.gpuwarden.cli.built_runner import BuiltCliRunner
from tests.http_stub import QuietHandler

runner = BuiltCliRunner()

TLS = Path(__file__).parent / "tls"
CERT = str(TLS / "localhost.pem")  # self-signed for DNS:localhost, valid until 2126
# Set on some machines to the system's bundle: each case says which it reads.
UNSET = {"SSL_CERT_FILE": None, "SSL_CERT_DIR": None, "REQUESTS_CA_BUNDLE": None, "CURL_CA_BUNDLE": None}


class _Listing(QuietHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"[]")


@pytest.fixture(scope="module")
def tls_port() -> Iterator[int]:
    """A TLS server on 127.0.0.1 answering every GET with an empty incident list (a TLS proxy's stand-in)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Listing)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(CERT, str(TLS / "localhost.key"))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _list(port: int, host: str = "localhost", **env: str | None) -> tuple[int, str]:
    result = runner.invoke(
        app, ["incidents", "list", "--url", f"https://{host}:{port}"], env={**UNSET, **env}
    )
    assert "Traceback" not in result.output, result.output
    return result.exit_code, " ".join(result.stderr.split())


def test_untrusted_certificate_says_to_export_ssl_cert_file(tls_port: int) -> None:
    code, said = _list(tls_port)
    assert code == 1
    assert "no CA trusted here signed it: export SSL_CERT_FILE=/path/to/ca.pem" in said, said
    assert "is `gpuwarden serve` running there" not in said  # it is: its certificate is not trusted


def test_untrusted_certificate_says_requests_ca_bundle_is_not_read(tls_port: int) -> None:
    code, said = _list(tls_port, REQUESTS_CA_BUNDLE=CERT)
    assert code == 1
    assert "export SSL_CERT_FILE=" in said and "REQUESTS_CA_BUNDLE is not read" in said, said


def test_ssl_cert_file_naming_the_certificate_is_trusted(tls_port: int) -> None:
    assert _list(tls_port, SSL_CERT_FILE=CERT) == (0, "No incidents found.")


def test_certificate_for_another_name_says_to_use_its_name(tls_port: int) -> None:
    code, said = _list(tls_port, "127.0.0.1", SSL_CERT_FILE=CERT)
    assert code == 1
    assert "the certificate is for other names: give --url with a name it was issued for" in said, said


@pytest.mark.parametrize("content", [None, "not a certificate\n"], ids=["missing", "not-pem"])
def test_ssl_cert_file_that_cannot_be_loaded_is_named(
    tls_port: int, tmp_path: Path, content: str | None
) -> None:
    ca = tmp_path / "ca.pem"
    if content is not None:
        ca.write_text(content)
    code, said = _list(tls_port, SSL_CERT_FILE=str(ca))
    assert code == 2
    assert said.startswith(f"error: SSL_CERT_FILE={ca}: cannot load CA certificates from it ("), said
