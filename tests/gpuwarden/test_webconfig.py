"""The web configuration file (exporter-toolkit's format): what serves as written, and each refusal naming
the file, line, field and fix."""

from __future__ import annotations

import logging
import ssl
from pathlib import Path

import bcrypt
import pytest

from gpuwarden.errors import ConfigError
from gpuwarden.webconfig import load_web_config
from tests.tls_certs import TestCerts, client_cert_with_sans, make_certs

HASH = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> TestCerts:
    return make_certs(tmp_path_factory.mktemp("certs"))


def _file(folder: Path, text: str) -> Path:
    path = folder / "web.yml"
    path.write_text(text)
    return path


def _tls(certs: TestCerts, *more: str, key: Path | None = None, cert: Path | None = None) -> str:
    lines = [f"  cert_file: {cert or certs.cert}", f"  key_file: {key or certs.key}", *more]
    return "tls_server_config:\n" + "\n".join(lines) + "\n"


def test_a_full_file_gives_tls_users_and_headers(tmp_path: Path, certs: TestCerts) -> None:
    text = _tls(
        certs,
        "  min_version: TLS13",
        "  client_auth_type: RequireAndVerifyClientCert",
        f"  client_ca_file: {certs.ca}",
        "  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]",
    )
    text += "http_server_config:\n  headers:\n    X-Frame-Options: deny\n    X-XSS-Protection: ''\n"
    text += f"basic_auth_users:\n  prom: '{HASH}'\n"
    web = load_web_config(_file(tmp_path, text))
    assert web.ssl_context is not None
    assert web.scheme == "https"
    assert web.ssl_context.minimum_version is ssl.TLSVersion.TLSv1_3
    assert web.ssl_context.verify_mode is ssl.CERT_REQUIRED
    assert web.users == {"prom": HASH}
    assert web.headers == {"X-Frame-Options": "deny"}  # a blank header is unset, as exporter-toolkit does


def test_relative_files_are_read_from_the_files_folder(tmp_path: Path, certs: TestCerts) -> None:
    text = f"tls_server_config:\n  cert_file: {certs.cert.name}\n  key_file: {certs.key.name}\n"
    path = certs.cert.parent / "relative.yml"
    path.write_text(text)
    assert load_web_config(path).ssl_context is not None


@pytest.mark.parametrize(
    ("text", "field", "line", "meant"),
    [
        ("tls_server_config:\n  certfile: a\n  key_file: b\n", "tls_server_config.certfile", 2, "cert_file"),
        ("basic_auth_user:\n  prom: x\n", "basic_auth_user", 1, "basic_auth_users"),
        ("http_server_config:\n  header: {}\n", "http_server_config.header", 2, "headers"),
    ],
    ids=["cert-file", "basic-auth-users", "headers"],
)
def test_a_misspelt_field_is_said_with_the_field_it_was_meant_to_be(
    tmp_path: Path, text: str, field: str, line: int, meant: str
) -> None:
    """``config validate`` names the setting a misspelt one of the configuration file was meant to be; the
    web configuration file's said only "unknown field; remove it or check its spelling"."""
    with pytest.raises(ConfigError) as caught:
        load_web_config(_file(tmp_path, text))
    error = caught.value.alone()
    assert (error.field, error.line) == (field, line)
    assert error.message == f"unknown field; did you mean {meant}? correct its spelling or remove it"


def test_basic_auth_alone_serves_plain_http(tmp_path: Path) -> None:
    web = load_web_config(_file(tmp_path, f"basic_auth_users:\n  prom: '{HASH}'\n"))
    assert web.ssl_context is None
    assert web.scheme == "http"


@pytest.mark.parametrize(
    ("text", "field", "line", "said"),
    [
        pytest.param(
            "tls_server_config:\n  cert_file: a\n  key_fil: b\n",
            "tls_server_config.key_fil", 3, "unknown field", id="unknown-field",
        ),
        pytest.param("rate_limit:\n  burst: 3\n", "rate_limit", 1, "not supported", id="rate-limit"),
        pytest.param(
            "tls_server_config:\n  cert_file: missing.pem\n  key_file: {key}\n",
            "tls_server_config.cert_file", 2, "cannot read", id="missing-cert",
        ),
        pytest.param(
            "tls_server_config:\n  cert_file: {cert}\n  key_file: {other}\n",
            "tls_server_config.key_file", 3, "is not the key of the certificate", id="key-not-the-certs",
        ),
        pytest.param(
            "tls_server_config:\n  cert_file: {cert}\n  key_file: {cert}\n",
            "tls_server_config.key_file", 3, "holds no PEM private key", id="cert-as-key",
        ),
        pytest.param(
            "tls_server_config:\n  cert_file: {key}\n  key_file: {key}\n",
            "tls_server_config.cert_file", 2, "holds no PEM certificate", id="key-as-cert",
        ),
        pytest.param(
            "tls_server_config:\n  cert_file: {cert}\n", "tls_server_config.key_file", 1,
            "needs both cert_file and key_file", id="no-key",
        ),
        pytest.param(
            "tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  min_version: TLS13\n"
            "  max_version: TLS12\n", "tls_server_config.min_version", 4, "above max_version", id="versions",
        ),
        pytest.param(
            "tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  min_version: TLS1.2\n",
            "tls_server_config.min_version", 4, "TLS12", id="version-name",
        ),
        pytest.param(
            "tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  cipher_suites: [RC4]\n",
            "tls_server_config.cipher_suites", 4, "unknown cipher suite 'RC4'", id="cipher-suite",
        ),
        pytest.param(
            "tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n"
            "  client_auth_type: RequireAndVerifyClientCert\n",
            "tls_server_config.client_auth_type", 4, "give it", id="verify-without-ca",
        ),
        pytest.param(
            "tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  client_ca_file: {ca}\n",
            "tls_server_config.client_ca_file", 4, "NoClientCert", id="ca-without-auth-type",
        ),
        pytest.param(
            "tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  client_allowed_sans: [a]\n",
            "tls_server_config.client_allowed_sans", 4, "RequireAndVerifyClientCert", id="sans-no-mtls",
        ),
        pytest.param(
            "tls_server_config:\n  cert_file: {cert}\n  key_file: {key}\n  client_ca_file: {ca}\n"
            "  client_auth_type: RequireAndVerifyClientCert\n  client_allowed_sans: []\n",
            "tls_server_config.client_allowed_sans", 6, "no client certificate would be", id="sans-empty",
        ),
        pytest.param(
            "basic_auth_users:\n  prom: s3cret\n", "basic_auth_users.prom", 2, "not a bcrypt hash",
            id="password-not-hash",
        ),
        pytest.param(
            "http_server_config:\n  headers:\n    Server: me\n", "http_server_config.headers.Server", 3,
            "cannot be set here", id="header-not-allowed",
        ),
        pytest.param(
            "http_server_config:\n  headers:\n    X-Frame-Options: allow\n",
            "http_server_config.headers.X-Frame-Options", 3, "deny or sameorigin", id="header-value",
        ),
    ],
)  # fmt: skip
def test_a_file_that_would_not_serve_as_written_is_refused_naming_line_and_field(
    tmp_path: Path, certs: TestCerts, text: str, field: str, line: int, said: str
) -> None:
    files = {"cert": certs.cert, "key": certs.key, "other": certs.other_key, "ca": certs.ca}
    path = _file(tmp_path, text.format(**files))
    with pytest.raises(ConfigError) as caught:
        load_web_config(path)
    error = caught.value
    assert (error.path, error.field, error.line) == (str(path), field, line), str(error)
    assert said in error.message


def test_a_missing_file_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read file"):
        load_web_config(tmp_path / "absent.yml")


def test_a_file_whose_top_level_is_no_mapping_is_refused_naming_its_sections(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="the top level is a list, not a mapping") as refused:
        load_web_config(_file(tmp_path, "- tls_server_config\n"))
    assert "tls_server_config" in str(refused.value) and refused.value.line == 1


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> ssl.SSLObject:
    """A TLS handshake between the two contexts in memory; the client's side once done, or ssl.SSLError."""
    pipes = [ssl.MemoryBIO() for _ in range(4)]  # client->server, server->client, for each side's in/out
    c = client.wrap_bio(pipes[1], pipes[0], server_hostname="localhost")
    s = server.wrap_bio(pipes[0], pipes[1], server_side=True)
    done = {"c": False, "s": False}
    for _ in range(10):
        for name, side in (("c", c), ("s", s)):
            if not done[name]:
                try:
                    side.do_handshake()
                    done[name] = True
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    pass
        if all(done.values()):
            c.write(b"x")  # TLS 1.3 checks the client's certificate after the client's handshake ends
            s.read()
            return c
    raise AssertionError("the handshake did not end")


def _client(certs: TestCerts, *, with_cert: bool, version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=certs.ca)
    if with_cert:
        context.load_cert_chain(certs.client_cert, certs.client_key)
    if version is not None:
        context.minimum_version = context.maximum_version = version
    return context


def test_client_certificates_are_required_and_checked_against_client_ca_file(
    tmp_path: Path, certs: TestCerts
) -> None:
    text = _tls(certs, "  client_auth_type: RequireAndVerifyClientCert", f"  client_ca_file: {certs.ca}")
    server = load_web_config(_file(tmp_path, text)).ssl_context
    assert server is not None
    _handshake(server, _client(certs, with_cert=True))
    with pytest.raises(ssl.SSLError):
        _handshake(server, _client(certs, with_cert=False))


def test_the_tls_versions_and_cipher_suites_of_the_file_are_the_only_ones_served(
    tmp_path: Path, certs: TestCerts
) -> None:
    text = _tls(certs, "  max_version: TLS12", "  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384]")
    server = load_web_config(_file(tmp_path, text)).ssl_context
    assert server is not None
    client = _handshake(server, _client(certs, with_cert=False))
    assert client.version() == "TLSv1.2"
    assert client.cipher()[0] == "ECDHE-RSA-AES256-GCM-SHA384"
    with pytest.raises(ssl.SSLError):
        _handshake(server, _client(certs, with_cert=False, version=ssl.TLSVersion.TLSv1_3))


def test_a_client_certificate_is_let_in_only_with_a_san_in_client_allowed_sans(
    tmp_path: Path, certs: TestCerts, caplog: pytest.LogCaptureFixture
) -> None:
    folder = certs.ca.parent
    ip_san = client_cert_with_sans(folder, "client-ip", "IP:2001:db8::1,DNS:other.example")
    uri_san = client_cert_with_sans(folder, "client-uri", "URI:spiffe://cluster/prometheus")
    other = client_cert_with_sans(folder, "client-other", "DNS:grafana.example,email:ops@example.com")
    text = _tls(
        certs,
        "  client_auth_type: RequireAndVerifyClientCert",
        f"  client_ca_file: {certs.ca}",
        "  client_allowed_sans: ['2001:db8::1', 'spiffe://cluster/prometheus']",
    )
    server = load_web_config(_file(tmp_path, text)).ssl_context
    assert server is not None
    for cert, key in (ip_san, uri_san):  # the IP address as Go writes it, compressed
        client = _client(certs, with_cert=False)
        client.load_cert_chain(cert, key)
        _handshake(server, client)
    caplog.set_level(logging.WARNING, logger="gpuwarden.webconfig")
    for cert, key in (other, (certs.client_cert, certs.client_key)):  # another SAN; none at all
        client = _client(certs, with_cert=False)
        client.load_cert_chain(cert, key)
        with pytest.raises(ssl.SSLError, match="client_allowed_sans"):
            _handshake(server, client)
    with pytest.raises(ssl.SSLError):
        _handshake(server, _client(certs, with_cert=False))  # no certificate: refused as before
    warned = [r.getMessage() for r in caplog.records]
    assert any("(grafana.example, ops@example.com)" in w for w in warned), warned
