"""The web configuration file (exporter-toolkit's format): what serves as written, and each refusal naming
the file, line, field and fix."""

from __future__ import annotations

import ssl
from pathlib import Path

import bcrypt
import pytest

from gpuwarden.errors import ConfigError
from gpuwarden.webconfig import load_web_config
from tests.tls_certs import TestCerts, make_certs

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
