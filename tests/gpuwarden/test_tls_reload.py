"""A renewed certificate is served to the next connections without a restart, as exporter-toolkit serves it;
a renewal that does not load keeps the last good pair serving, logged once."""

from __future__ import annotations

import logging
import shutil
import socket
import ssl
import subprocess
import threading
from pathlib import Path

import pytest

from gpuwarden import tls_reload
from gpuwarden.webconfig import load_web_config
from tests.tls_certs import TestCerts, make_certs, renewed_server_cert


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TestCerts:
    return make_certs(tmp_path_factory.mktemp("certs"))


def serial(cert: Path) -> str:
    """The certificate's serial as ``getpeercert()`` writes it (upper-case hex)."""
    out = subprocess.run(
        ["openssl", "x509", "-noout", "-serial", "-in", str(cert)], check=True, capture_output=True
    )
    return out.stdout.decode().strip().removeprefix("serial=").upper()


def served_serial(server: ssl.SSLContext, ca: Path, client_cert: tuple[Path, Path] | None = None) -> str:
    """The serial of the certificate a real TLS client (with ``client_cert``, a certificate and its key) is
    shown by a server with context ``server``."""
    ours, theirs = socket.socketpair()
    errors: list[BaseException] = []

    def accept() -> None:
        try:
            with server.wrap_socket(theirs, server_side=True) as tls:
                tls.recv(1)
        except (OSError, ssl.SSLError) as exc:
            errors.append(exc)

    thread = threading.Thread(target=accept)
    thread.start()
    client = ssl.create_default_context(cafile=str(ca))
    if client_cert is not None:
        client.load_cert_chain(*client_cert)
    with client.wrap_socket(ours, server_hostname="localhost") as tls:
        peer = tls.getpeercert()
        tls.sendall(b".")
        tls.recv(1)  # the server's end, or its alert (SSLError) when it refused the handshake
    thread.join()
    assert not errors, errors
    assert peer is not None, errors
    return str(peer["serialNumber"])


def test_a_renewed_certificate_is_served_without_a_restart_and_a_broken_one_is_not(
    tmp_path: Path, certs: TestCerts, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(tls_reload, "CHECK_SECONDS", 0.0)  # every connection looks at the files
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    shutil.copy(certs.cert, cert)
    shutil.copy(certs.key, key)
    web = tmp_path / "web.yml"
    web.write_text("tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n")
    context = load_web_config(web).ssl_context
    assert context is not None
    assert served_serial(context, certs.ca) == serial(certs.cert)

    new_cert, new_key = renewed_server_cert(certs.ca.parent, "renewed")
    assert serial(new_cert) != serial(certs.cert)
    shutil.copy(new_cert, cert)
    shutil.copy(new_key, key)
    assert served_serial(context, certs.ca) == serial(new_cert)

    caplog.set_level(logging.WARNING, logger="gpuwarden.webconfig")
    shutil.copy(certs.key, key)  # the key of another certificate: the pair does not load
    for _ in range(3):
        assert served_serial(context, certs.ca) == serial(new_cert)
    half = cert.read_bytes()[:200]
    cert.write_bytes(half)  # half written
    shutil.copy(new_key, key)
    for _ in range(3):
        assert served_serial(context, certs.ca) == serial(new_cert)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2, warnings  # one per broken state, not one per connection
    assert "tls_server_config.key_file" in warnings[0] and str(key) in warnings[0]
    assert "tls_server_config.cert_file" in warnings[1] and str(cert) in warnings[1]
    assert "still serving" in warnings[1]

    shutil.copy(new_cert, cert)  # the renewal finished: served again
    assert served_serial(context, certs.ca) == serial(new_cert)
    shutil.copy(certs.cert, cert)
    shutil.copy(certs.key, key)
    assert served_serial(context, certs.ca) == serial(certs.cert)


def test_a_renewal_keeps_client_certificates_required(
    tmp_path: Path, certs: TestCerts, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tls_reload, "CHECK_SECONDS", 0.0)
    cert, key = tmp_path / "server.pem", tmp_path / "server.key"
    shutil.copy(certs.cert, cert)
    shutil.copy(certs.key, key)
    web = tmp_path / "web.yml"
    web.write_text(
        "tls_server_config:\n  cert_file: server.pem\n  key_file: server.key\n"
        f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {certs.ca}\n"
    )
    context = load_web_config(web).ssl_context
    assert context is not None
    new_cert, new_key = renewed_server_cert(certs.ca.parent, "renewed-mtls")
    shutil.copy(new_cert, cert)
    shutil.copy(new_key, key)
    assert served_serial(context, certs.ca, (certs.client_cert, certs.client_key)) == serial(new_cert)
    with pytest.raises(ssl.SSLError):
        served_serial(context, certs.ca)  # no client certificate: refused, as before the renewal


def test_the_files_are_looked_at_once_a_second_at_most(tmp_path: Path, certs: TestCerts) -> None:
    now = [100.0]
    built: list[int] = []
    first = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    file = tmp_path / "cert.pem"
    file.write_text("one")

    def build() -> ssl.SSLContext:
        built.append(1)
        return ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)

    reloading = tls_reload.ReloadingContext(
        first, build, [file], tls_reload.signature([file]), lambda: now[0]
    )
    file.write_text("two, renewed")
    now[0] += 0.5
    assert reloading.current() is first and built == []
    now[0] += 0.6
    renewed = reloading.current()
    assert renewed is not first and built == [1]
    now[0] += 5
    assert reloading.current() is renewed and built == [1]  # unchanged files: not rebuilt
