"""``gpuwarden exporter --web.config.file``: a certificate renewed in place (cert-manager, certbot) is served
to the next connections without a restart, as exporter-toolkit serves it; a renewal that leaves a key that is
not the certificate's keeps the last good pair serving, with one warning naming the file. A password rotated
in the file is taken the same way, and a changed ``tls_server_config`` (client certificates required) by the
next connections; an edit that would not serve keeps the last good file, one warning."""

from __future__ import annotations

import shutil
import socket
import ssl
import time
from collections.abc import Callable
from pathlib import Path

import bcrypt
import httpx
import pytest

from tests.gpuwarden.test_tls_reload import serial
from tests.integration.gpuwarden_server import simulated_exporter_argv
from tests.integration.https_server import running_https
from tests.integration.servers import free_port
from tests.tls_certs import TestCerts, make_certs, renewed_server_cert

pytestmark = pytest.mark.integration
WAIT_SECONDS = 30  # the exporter looks at the files once a second


def _served_serial(port: int, ca: Path) -> str:
    client = ssl.create_default_context(cafile=str(ca))
    with (
        socket.create_connection(("127.0.0.1", port), timeout=10) as raw,
        client.wrap_socket(raw, server_hostname="localhost") as tls,
    ):
        peer = tls.getpeercert()
    assert peer is not None
    return str(peer["serialNumber"])


def _warned(log: Path) -> bool:
    return "still serving" in log.read_text()


def _until(what: str, done: Callable[[], bool]) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not done():
        if time.monotonic() > deadline:
            pytest.fail(f"not seen within {WAIT_SECONDS} s: {what}")
        time.sleep(0.2)


def test_the_exporter_serves_a_renewed_certificate_without_a_restart(tmp_path: Path) -> None:
    certs = make_certs(tmp_path / "certs")
    new_cert, new_key = renewed_server_cert(certs.ca.parent, "renewed")
    old, new = serial(certs.cert), serial(new_cert)
    assert old != new
    cert, key = tmp_path / "tls" / "server.pem", tmp_path / "tls" / "server.key"
    cert.parent.mkdir()
    shutil.copy(certs.cert, cert)
    shutil.copy(certs.key, key)
    web = tmp_path / "web.yml"
    web.write_text("tls_server_config:\n  cert_file: tls/server.pem\n  key_file: tls/server.key\n")
    port = free_port()
    log = tmp_path / "exporter.log"
    argv = [*simulated_exporter_argv("1x1", port), "--web.config.file", str(web)]
    verify = ssl.create_default_context(cafile=certs.ca)
    with running_https(argv, f"https://127.0.0.1:{port}/metrics", log, verify=verify):
        assert _served_serial(port, certs.ca) == old
        shutil.copy(new_cert, cert)  # renewed halfway: the new certificate, the old key
        # the files are looked at when a connection comes: each one shows the old certificate meanwhile
        _until("a warning naming the key", lambda: _served_serial(port, certs.ca) == old and _warned(log))
        for _ in range(5):
            assert _served_serial(port, certs.ca) == old
        shutil.copy(new_key, key)
        _until("the renewed certificate served", lambda: _served_serial(port, certs.ca) == new)
        for _ in range(5):
            assert _served_serial(port, certs.ca) == new
        warned = [line for line in log.read_text().splitlines() if "still serving" in line]
        assert len(warned) == 1, log.read_text()
        assert "tls_server_config.key_file" in warned[0] and str(key) in warned[0]


def test_the_exporter_takes_a_rotated_password_without_a_restart_and_keeps_it_through_a_broken_edit(
    tmp_path: Path,
) -> None:
    old, new = (bcrypt.hashpw(p, bcrypt.gensalt(4)).decode() for p in (b"old", b"new"))
    web = tmp_path / "web.yml"
    web.write_text(f"basic_auth_users:\n  prom: '{old}'\n")
    port = free_port()
    log = tmp_path / "exporter.log"
    argv = [*simulated_exporter_argv("1x1", port), "--web.config.file", str(web)]
    url = f"http://127.0.0.1:{port}/metrics"
    with running_https(argv, url, log, auth=("prom", "old")), httpx.Client(timeout=10) as client:

        def status(password: str) -> int:
            return client.get(url, auth=("prom", password)).status_code

        assert (status("old"), status("new")) == (200, 401)
        web.write_text(
            "http_server_config:\n  headers:\n    X-Frame-Options: deny\n"
            f"basic_auth_users:\n  prom: '{new}'\n"
        )
        _until("the new password taken", lambda: status("new") == 200)
        assert status("old") == 401
        assert client.get(url, auth=("prom", "new")).headers["x-frame-options"] == "deny"
        web.write_text("basic_auth_users:\n  prom: s3cret\n")  # a password where its hash goes
        # the file is looked at when a request comes: each one is let in with the last good users meanwhile
        _until(
            "a warning naming the field", lambda: status("new") == 200 and "still using" in log.read_text()
        )
        for _ in range(5):
            assert (status("old"), status("new")) == (401, 200)
        warned = [line for line in log.read_text().splitlines() if "still using" in line]
        assert len(warned) == 1, log.read_text()
        assert f"{web}:2" in warned[0] and "basic_auth_users.prom" in warned[0], warned


def _status(port: int, certs: TestCerts, with_cert: bool) -> int | str:
    """The status of /metrics on a new connection, with or without the client certificate; the TLS error
    when the handshake or the request fails."""
    verify = ssl.create_default_context(cafile=certs.ca)
    if with_cert:
        verify.load_cert_chain(certs.client_cert, certs.client_key)
    try:
        with httpx.Client(verify=verify, timeout=10) as client:
            return client.get(f"https://127.0.0.1:{port}/metrics").status_code
    except (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError) as exc:
        return str(exc)


def test_the_exporter_takes_a_changed_client_auth_type_without_a_restart_and_keeps_it_through_a_broken_edit(
    tmp_path: Path,
) -> None:
    certs = make_certs(tmp_path / "certs")
    tls = "tls_server_config:\n  cert_file: certs/server.pem\n  key_file: certs/server.key\n"
    web = tmp_path / "web.yml"
    web.write_text(tls)
    port = free_port()
    log = tmp_path / "exporter.log"
    argv = [*simulated_exporter_argv("1x1", port), "--web.config.file", str(web)]
    verify = ssl.create_default_context(cafile=certs.ca)
    with running_https(argv, f"https://127.0.0.1:{port}/metrics", log, verify=verify):
        assert _status(port, certs, with_cert=False) == 200
        web.write_text(
            tls + "  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: certs/ca.pem\n"
        )
        _until("a client without a certificate refused", lambda: _status(port, certs, with_cert=False) != 200)
        assert _status(port, certs, with_cert=True) == 200
        web.write_text(tls + "  client_auth_type: RequireAndVerifyClientCert\n")  # no CA to check against
        # the file is looked at when a connection comes: each one gets the last good settings meanwhile
        _until(
            "a warning naming the field",
            lambda: (
                _status(port, certs, with_cert=True) == 200 and "still serving the TLS" in log.read_text()
            ),
        )
        for _ in range(3):  # the last good settings: a certificate still required
            assert _status(port, certs, with_cert=False) != 200
            assert _status(port, certs, with_cert=True) == 200
        warned = [line for line in log.read_text().splitlines() if "still serving" in line]
        assert len(warned) == 1, log.read_text()
        assert f"{web}:4: tls_server_config.client_auth_type" in warned[0], warned
        assert "restart" not in log.read_text()
