"""The web configuration file is read again when it changes, as exporter-toolkit reads it for each request
and connection: a rotated password is taken by the next requests and a changed ``tls_server_config`` by the
next connections without a restart, an edit that would not serve as written keeps the last good file with one
warning naming the file, line and field."""

from __future__ import annotations

import logging
import shutil
import ssl
from pathlib import Path

import bcrypt
import pytest

from gpuwarden import tls_reload
from gpuwarden.webconfig import load_web_config
from tests.gpuwarden.test_tls_reload import serial
from tests.gpuwarden.test_webconfig import _client, _handshake
from tests.tls_certs import TestCerts, make_certs, renewed_server_cert

OLD = bcrypt.hashpw(b"old", bcrypt.gensalt(4)).decode()
NEW = bcrypt.hashpw(b"new", bcrypt.gensalt(4)).decode()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TestCerts:
    return make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(autouse=True)
def every_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tls_reload, "CHECK_SECONDS", 0.0)  # each request looks at the file


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]


def test_rotated_users_and_headers_are_read_again_and_a_broken_edit_keeps_the_last_good_ones(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "web.yml"
    path.write_text(f"basic_auth_users:\n  prom: '{OLD}'\n")
    web = load_web_config(path)
    assert web.access is not None
    assert web.access().users == {"prom": OLD}

    path.write_text(
        f"http_server_config:\n  headers:\n    X-Frame-Options: deny\nbasic_auth_users:\n  prom: '{NEW}'\n"
    )
    rotated = web.access()
    assert rotated.users == {"prom": NEW}
    assert rotated.headers == {"X-Frame-Options": "deny"}

    caplog.set_level(logging.WARNING, logger="gpuwarden.webconfig")
    path.write_text("basic_auth_users:\n  prom: new\n")  # the password, not its hash
    for _ in range(3):
        assert web.access() is rotated
    warned = _warnings(caplog)
    assert len(warned) == 1, warned  # once, not once per request
    assert f"{path}:2" in warned[0] and "basic_auth_users.prom" in warned[0], warned
    assert "still using" in warned[0]

    path.write_text(f"basic_auth_users:\n  ops: '{OLD}'\n")  # fixed: read again
    assert web.access().users == {"ops": OLD}
    path.write_text("")  # emptied: no basic auth any more, as exporter-toolkit reads it
    assert web.access().users == {}


def _served(web: Path) -> ssl.SSLContext:
    context = load_web_config(web).ssl_context
    assert context is not None
    return context


def test_a_changed_tls_section_serves_the_next_connections_without_a_restart(
    tmp_path: Path, certs: TestCerts, caplog: pytest.LogCaptureFixture
) -> None:
    tls = f"tls_server_config:\n  cert_file: {certs.cert}\n  key_file: {certs.key}\n"
    path = tmp_path / "web.yml"
    path.write_text(tls)
    server = _served(path)
    _handshake(server, _client(certs, with_cert=False))
    caplog.set_level(logging.WARNING, logger="gpuwarden.webconfig")

    mtls = f"  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: {certs.ca}\n"
    path.write_text(tls + mtls)
    with pytest.raises(ssl.SSLError):  # a client without a certificate is no longer let in
        _handshake(server, _client(certs, with_cert=False))
    _handshake(server, _client(certs, with_cert=True))

    path.write_text(tls + mtls + "  client_allowed_sans: [prometheus.example]\n")
    with pytest.raises(ssl.SSLError, match="client_allowed_sans"):  # the client's certificate has no SAN
        _handshake(server, _client(certs, with_cert=True))

    path.write_text(tls + "  min_version: TLS13\n")
    _handshake(server, _client(certs, with_cert=False))  # no client certificate asked for again
    with pytest.raises(ssl.SSLError):
        _handshake(server, _client(certs, with_cert=False, version=ssl.TLSVersion.TLSv1_2))
    assert _handshake(server, _client(certs, with_cert=False)).version() == "TLSv1.3"
    assert not [w for w in _warnings(caplog) if "restart" in w or "still" in w], _warnings(caplog)


def test_a_tls_section_that_would_not_serve_keeps_the_last_good_one_with_one_warning(
    tmp_path: Path, certs: TestCerts, caplog: pytest.LogCaptureFixture
) -> None:
    tls = f"tls_server_config:\n  cert_file: {certs.cert}\n  key_file: {certs.key}\n"
    path = tmp_path / "web.yml"
    path.write_text(tls + f"basic_auth_users:\n  prom: '{OLD}'\n")
    web = load_web_config(path)
    server, web_access = web.ssl_context, web.access
    assert server is not None and web_access is not None
    caplog.set_level(logging.WARNING, logger="gpuwarden.webconfig")

    # client certificates required, but against no CA: a restart would refuse it
    path.write_text(
        tls + "  client_auth_type: RequireAndVerifyClientCert\n" + f"basic_auth_users:\n  o: '{NEW}'\n"
    )
    for _ in range(3):
        _handshake(server, _client(certs, with_cert=False))  # let in as before
    warned = _warnings(caplog)
    assert len(warned) == 1, warned  # once, not once per connection
    assert f"{path}:4: tls_server_config.client_auth_type" in warned[0], warned
    assert "give it (the PEM file of the CA" in warned[0] and "still serving the TLS settings" in warned[0]
    assert web_access().users == {"prom": OLD}  # the whole file is kept: its users too

    caplog.clear()
    path.write_text(tls.replace(str(certs.key), str(certs.other_key)) + "  min_version: TLS13\n")
    _handshake(server, _client(certs, with_cert=False, version=ssl.TLSVersion.TLSv1_2))
    warned = _warnings(caplog)
    assert len(warned) == 1 and "tls_server_config.key_file" in warned[0], warned
    assert "is not the key of the certificate" in warned[0]


def test_certificate_files_named_before_they_are_there_are_served_once_they_are(
    tmp_path: Path, certs: TestCerts, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "web.yml"
    path.write_text(f"tls_server_config:\n  cert_file: {certs.cert}\n  key_file: {certs.key}\n")
    server = _served(path)
    caplog.set_level(logging.WARNING, logger="gpuwarden.webconfig")
    path.write_text("tls_server_config:\n  cert_file: new/server.pem\n  key_file: new/server.key\n")
    client = _client(certs, with_cert=False)
    assert _handshake(server, client).getpeercert()["serialNumber"] == serial(certs.cert)
    assert len(_warnings(caplog)) == 1 and "new/server.pem" in _warnings(caplog)[0]

    new_cert, new_key = renewed_server_cert(certs.ca.parent, "named-before")
    (tmp_path / "new").mkdir()
    shutil.copy(new_key, tmp_path / "new" / "server.key")
    shutil.copy(new_cert, tmp_path / "new" / "server.pem")  # the file itself has not changed again
    assert _handshake(server, client).getpeercert()["serialNumber"] == serial(new_cert)

    renewed, renewed_key = renewed_server_cert(certs.ca.parent, "named-before-renewed")
    shutil.copy(renewed_key, tmp_path / "new" / "server.key")
    shutil.copy(renewed, tmp_path / "new" / "server.pem")  # the new section's files are renewed too
    assert _handshake(server, client).getpeercert()["serialNumber"] == serial(renewed)


def test_turning_tls_on_or_off_waits_for_a_restart_and_says_so(
    tmp_path: Path, certs: TestCerts, caplog: pytest.LogCaptureFixture
) -> None:
    tls = f"tls_server_config:\n  cert_file: {certs.cert}\n  key_file: {certs.key}\n  min_version: TLS13\n"
    path = tmp_path / "web.yml"
    path.write_text(tls)
    server = _served(path)
    caplog.set_level(logging.WARNING, logger="gpuwarden.webconfig")
    path.write_text(f"basic_auth_users:\n  prom: '{OLD}'\n")
    with pytest.raises(ssl.SSLError):  # TLS still, with the settings read before
        _handshake(server, _client(certs, with_cert=False, version=ssl.TLSVersion.TLSv1_2))
    warned = _warnings(caplog)
    assert len(warned) == 1 and "tls_server_config removed" in warned[0] and "restart" in warned[0], warned

    caplog.clear()
    plain = tmp_path / "plain.yml"
    plain.write_text(f"basic_auth_users:\n  prom: '{OLD}'\n")
    web = load_web_config(plain)
    assert web.access is not None and web.ssl_context is None
    plain.write_text(tls + f"basic_auth_users:\n  prom: '{NEW}'\n")
    assert web.access().users == {"prom": NEW}
    warned = _warnings(caplog)
    assert len(warned) == 1 and "tls_server_config added" in warned[0] and "restart" in warned[0], warned
