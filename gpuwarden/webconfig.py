"""The web configuration file (``--web.config.file``) of the exporter and ``serve``: TLS, basic auth and
response headers, in the format and with the field names of Prometheus' exporter-toolkit, so that the file
an operator wrote for node_exporter or dcgm-exporter serves here too.

``load_web_config`` reads and checks the whole file once, at start: an unknown field, a certificate or key
that cannot be loaded, a key that is not the certificate's, a password hash that is no bcrypt hash are
refused with the file, line, field and fix, before anything is served. Relative paths are read from the
file's folder, as exporter-toolkit reads them. A renewed certificate, key or client CA file is read again for
the next connections (``gpuwarden.tls_reload``). exporter-toolkit reads the whole file for each request and
connection, so that a rotated password or a changed ``tls_server_config`` needs no restart: here the file is
read again when it changed (looked at once a second at most, as requests and connections come), checked as at
start, and its users, headers and TLS settings serve the next requests and connections; an edit that would
not serve keeps the last good file, with one warning naming the file, line and field. Turning TLS on or off
(adding or removing ``tls_server_config``) waits for a restart, with a warning.
"""

from __future__ import annotations

import logging
import re
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from gpuwarden.config_problems import suggesting_config_error
from gpuwarden.errors import ConfigError
from gpuwarden.tls_handshake import ServerContext
from gpuwarden.tls_reload import Reloading, ReloadingContext, Signature, signature
from gpuwarden.yamlfile import FILE_NOT_DIRECTORY, read_yaml_mapping

TLS_VERSIONS = {
    "TLS10": ssl.TLSVersion.TLSv1,
    "TLS11": ssl.TLSVersion.TLSv1_1,
    "TLS12": ssl.TLSVersion.TLSv1_2,
    "TLS13": ssl.TLSVersion.TLSv1_3,
}
TlsVersionName = Literal["TLS10", "TLS11", "TLS12", "TLS13"]
ClientAuthType = Literal[
    "NoClientCert",
    "RequestClientCert",
    "RequireAnyClientCert",
    "VerifyClientCertIfGiven",
    "RequireAndVerifyClientCert",
]
# Go's names of the TLS 1.2 suites it calls secure (crypto/tls CipherSuites()), as OpenSSL names them.
GO_CIPHER_SUITES = {
    "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256": "ECDHE-ECDSA-AES128-GCM-SHA256",
    "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384": "ECDHE-ECDSA-AES256-GCM-SHA384",
    "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256": "ECDHE-RSA-AES128-GCM-SHA256",
    "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384": "ECDHE-RSA-AES256-GCM-SHA384",
    "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-ECDSA-CHACHA20-POLY1305",
    "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256": "ECDHE-RSA-CHACHA20-POLY1305",
    "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA": "ECDHE-ECDSA-AES128-SHA",
    "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA": "ECDHE-ECDSA-AES256-SHA",
    "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA": "ECDHE-RSA-AES128-SHA",
    "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA": "ECDHE-RSA-AES256-SHA",
}
# TLS 1.3's suites are not configurable (in Go neither): listed, they are accepted and change nothing.
TLS13_SUITES = ("TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256")
# The headers exporter-toolkit lets the file set, with the values it accepts (None: any).
HEADERS: dict[str, tuple[str, ...] | None] = {
    "Content-Security-Policy": None,
    "X-Frame-Options": ("deny", "sameorigin"),
    "X-Content-Type-Options": ("nosniff",),
    "X-XSS-Protection": None,
    "Strict-Transport-Security": None,
}
BCRYPT_HASH = re.compile(r"\$2[abxy]\$(\d\d)\$[./A-Za-z0-9]{53}")
Refusal = Callable[..., ConfigError]
"""(message, *keys of the field) -> the error naming the file, its line and the field."""
logger = logging.getLogger(__name__)
_UNSUPPORTED = "is not supported by gpuwarden (Python's ssl module offers no such setting): remove it"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TlsServerConfig(_Strict):
    """``tls_server_config``."""

    cert_file: str = ""
    key_file: str = ""
    client_auth_type: ClientAuthType = "NoClientCert"
    client_ca_file: str = ""
    min_version: TlsVersionName = "TLS12"
    max_version: TlsVersionName = "TLS13"
    cipher_suites: list[str] = Field(default_factory=list)
    prefer_server_cipher_suites: bool = True
    client_allowed_sans: list[str] | None = None  # with RequireAndVerifyClientCert: a client's SAN in it
    # exporter-toolkit's, refused with the reason when set (``_ssl_context``)
    cert: str | None = None
    key: str | None = None
    client_ca: str | None = None
    curve_preferences: list[str] | None = None


class HttpServerConfig(_Strict):
    """``http_server_config``."""

    http2: bool = True  # uvicorn speaks HTTP/1.1 only: a client offering h2 over TLS falls back to it
    headers: dict[str, str] = Field(default_factory=dict)


class WebConfigFile(_Strict):
    """The file, as exporter-toolkit defines it."""

    tls_server_config: TlsServerConfig | None = None
    http_server_config: HttpServerConfig = Field(default_factory=HttpServerConfig)
    basic_auth_users: dict[str, str] = Field(default_factory=dict)
    rate_limit: dict[str, object] | None = None


@dataclass(frozen=True)
class Access:
    """Who is let in and what each answer carries: the file's ``basic_auth_users`` (bcrypt hashes; none: no
    basic auth) and the ``http_server_config.headers`` it sets."""

    users: dict[str, str]
    headers: dict[str, str]


@dataclass(frozen=True)
class WebConfig:
    """What the server does with the file: its TLS context (None: plain HTTP), the users allowed in and the
    headers added to each response as the file said at start (``users``, ``headers``), and as it says now
    (``access()``, read again when it changed, as exporter-toolkit reads it for each request; None: as at
    start)."""

    path: str
    ssl_context: ssl.SSLContext | None
    users: dict[str, str]
    headers: dict[str, str]
    access: Callable[[], Access] | None = field(default=None, repr=False, compare=False)

    @property
    def scheme(self) -> str:
        """``https`` with TLS, else ``http``."""
        return "https" if self.ssl_context is not None else "http"


def _read(path: Path) -> tuple[WebConfigFile, Refusal]:
    """The file at ``path`` parsed and validated, and the refusal naming its lines."""
    data, positions = read_yaml_mapping(path, WebConfigFile)
    try:
        model = WebConfigFile.model_validate(data)
    except ValidationError as exc:  # a misspelt field named with the one it was probably meant to be
        raise suggesting_config_error(exc, WebConfigFile, str(path), positions) from exc

    def refusal(message: str, *keys: str) -> ConfigError:
        line = next((positions[keys[:d]] for d in range(len(keys), 0, -1) if keys[:d] in positions), None)
        return ConfigError(message, path=str(path), field=".".join(keys), line=line)

    if model.rate_limit is not None:
        raise refusal(
            "is not supported by gpuwarden: limit the rate in front of it, or remove it", "rate_limit"
        )
    return model, refusal


def _access(model: WebConfigFile, refusal: Refusal) -> Access:
    """The users and headers of ``model``, checked."""
    for user, hashed in model.basic_auth_users.items():
        match = BCRYPT_HASH.fullmatch(hashed)
        if match is None or not 4 <= int(match.group(1)) <= 31:
            raise refusal(
                "not a bcrypt hash ($2y$10$ and 53 characters); hash the password with"
                " `htpasswd -nBC 10 \"\" | tr -d ':\\n'` and give the hash, never the password",
                "basic_auth_users",
                user,
            )
    if model.basic_auth_users:
        try:
            import bcrypt  # noqa: F401, PLC0415 - checked at start: not at the first request
        except ImportError as exc:
            raise refusal(
                "checking these passwords needs the bcrypt package, which is not installed: pip install"
                " bcrypt",
                "basic_auth_users",
            ) from exc
    headers = model.http_server_config.headers
    for name, value in headers.items():
        allowed = HEADERS.get(name, ())
        if name not in HEADERS:
            message = f"this header cannot be set here; these can: {', '.join(HEADERS)}"
            raise refusal(message, "http_server_config", "headers", name)
        if allowed is not None and value and value.lower() not in allowed:
            message = f"{value!r} is not accepted; give {' or '.join(allowed)}"
            raise refusal(message, "http_server_config", "headers", name)
    set_headers = {name: value for name, value in headers.items() if value}  # blank: unset
    return Access(dict(model.basic_auth_users), set_headers)


def load_web_config(path: Path) -> WebConfig:
    """Read and check the web configuration file at ``path``; ``ConfigError`` naming its file, line and
    field for anything that would not serve as written."""
    seen = signature([path])  # before reading it: an edit while it is read is seen later
    model, refusal = _read(path)
    access = _access(model, refusal)
    tls = model.tls_server_config
    context = None if tls is None else _tls(tls, path.parent, refusal, signature)
    reread = ReloadingWebConfig(
        Served(access, tls, context), lambda: _reread(path, tls, reread), [path], seen
    )
    first = None if context is None else context.value
    if isinstance(first, ServerContext):
        first.newest = lambda: _newest(reread, first)
    return WebConfig(str(path), first, access.users, access.headers, lambda: reread.current().access)


@dataclass(frozen=True)
class Served:
    """The web configuration file as last read good: its users and headers, its ``tls_server_config`` and
    the TLS context built from it, rebuilt when its certificate files change (None: plain HTTP)."""

    access: Access
    tls: TlsServerConfig | None
    context: ReloadingContext | None


class ReloadingWebConfig(Reloading[Served]):
    """The web configuration file as it is now."""

    reloaded = "web configuration read again from {files}"

    def keeping(self, exc: ConfigError) -> str:
        """What is served instead of the file refused with ``exc``."""
        if exc.field.startswith("tls_server_config"):
            return "still serving the TLS settings and certificate loaded before"
        return "still using the basic_auth_users, headers and TLS settings read before"


def _tls(
    tls: TlsServerConfig, folder: Path, refusal: Refusal, reads: Callable[[Sequence[Path]], Signature]
) -> ReloadingContext:
    """The TLS context of ``tls``, rebuilt when its files change (``reads``: their signature, taken before
    they are read: a renewal while they are read is seen later)."""
    files = [folder / f for f in (tls.cert_file, tls.key_file, tls.client_ca_file) if f]
    files_seen = reads(files)
    context = _ssl_context(tls, folder, refusal)
    return ReloadingContext(context, lambda: _ssl_context(tls, folder, refusal), files, files_seen)


def _newest(reread: ReloadingWebConfig, first: ssl.SSLContext) -> ssl.SSLContext:
    """The context a new connection gets: the file's and its certificate files' as they are now."""
    context = reread.current().context
    return first if context is None else context.current()


def _reread(path: Path, started: TlsServerConfig | None, reread: ReloadingWebConfig) -> Served:
    """The file at ``path`` changed since it was read last (``reread.value``), read again and checked as at
    start. TLS turned on or off (``started``: the ``tls_server_config`` the server started with) waits for
    a restart: said, and the TLS settings in use kept."""
    before = reread.value
    model, refusal = _read(path)
    access = _access(model, refusal)
    tls, context = model.tls_server_config, before.context
    if started is None or tls is None:
        if tls is not None:
            _ssl_context(tls, path.parent, refusal)  # refused as the restart would
            logger.warning(
                "%s: tls_server_config added; this server serves plain HTTP until a restart: restart it to"
                " serve TLS",
                path,
            )
        elif started is not None:
            logger.warning(
                "%s: tls_server_config removed; this server serves TLS, with the settings read before, until"
                " a restart: restart it to serve plain HTTP, or put tls_server_config back",
                path,
            )
        tls = before.tls
    elif tls != before.tls:
        context = _tls(tls, path.parent, refusal, reread.reads_too)
        logger.info("%s: tls_server_config changed: new connections use it, open ones keep theirs", path)
    if started is None and access.users and not before.access.users:  # else said already
        logger.warning("%s", plain_http_users(str(path)))
    return Served(access, tls, context)


def plain_http_users(path: str) -> str:
    """The warning for basic auth over plain HTTP, the file at ``path`` setting no TLS."""
    return (
        f"{path}: basic_auth_users without tls_server_config: the passwords cross the network readable"
        " (base64, not encrypted); add tls_server_config"
    )


def _ssl_context(tls: TlsServerConfig, folder: Path, refuse: Refusal) -> ssl.SSLContext:
    """The server's TLS context for ``tls``, its files read from ``folder`` when relative."""
    section = "tls_server_config"
    for name in ("cert", "key", "client_ca"):
        if getattr(tls, name) is not None:
            raise refuse(
                f"an inline PEM is not supported by gpuwarden: give {name}_file, a file", section, name
            )
    if tls.curve_preferences is not None:
        raise refuse(_UNSUPPORTED, section, "curve_preferences")
    if not tls.cert_file or not tls.key_file:
        missing = "cert_file" if not tls.cert_file else "key_file"
        raise refuse(
            "TLS needs both cert_file and key_file (the server's certificate and its private key, PEM files);"
            " give both, or remove tls_server_config to serve plain HTTP",
            section,
            missing,
        )
    if TLS_VERSIONS[tls.min_version] > TLS_VERSIONS[tls.max_version]:
        raise refuse(
            f"min_version {tls.min_version} is above max_version {tls.max_version}", section, "min_version"
        )
    context = ServerContext(ssl.PROTOCOL_TLS_SERVER)  # plain HTTP answered 400, client_allowed_sans checked
    context.minimum_version = TLS_VERSIONS[tls.min_version]
    context.maximum_version = TLS_VERSIONS[tls.max_version]
    cert, key = folder / tls.cert_file, folder / tls.key_file
    for name, file, marker, what in (
        ("cert_file", cert, b"-----BEGIN CERTIFICATE-----", "certificate"),
        ("key_file", key, b"PRIVATE KEY-----", "private key"),
    ):
        try:
            text = file.read_bytes()
        except OSError as exc:
            said = f"; {FILE_NOT_DIRECTORY}" if isinstance(exc, IsADirectoryError) else ""
            raise refuse(f"cannot read {file}: {exc.strerror}{said}", section, name) from exc
        if marker not in text:
            raise refuse(f"{file} holds no PEM {what} ({marker.decode()}): give the PEM file", section, name)
        if b"ENCRYPTED" in text and name == "key_file":
            raise refuse(
                f"{file} is encrypted: give the key unencrypted, as exporter-toolkit reads it", section, name
            )
    try:
        context.load_cert_chain(cert, key, password=lambda: b"")  # never a prompt on the terminal
    except ssl.SSLError as exc:
        mismatch = "KEY_VALUES_MISMATCH" in str(exc)
        raise refuse(_cert_problem(exc, cert, key), section, "key_file" if mismatch else "cert_file") from exc
    for suite in tls.cipher_suites:
        if suite not in GO_CIPHER_SUITES and suite not in TLS13_SUITES:
            raise refuse(
                f"unknown cipher suite {suite!r}; give Go's names of the secure TLS 1.2 suites:"
                f" {', '.join(GO_CIPHER_SUITES)}",
                section,
                "cipher_suites",
            )
    if tls.cipher_suites:
        suites = [GO_CIPHER_SUITES[s] for s in tls.cipher_suites if s in GO_CIPHER_SUITES]
        if suites:  # TLS 1.3's alone: nothing to set
            try:
                context.set_ciphers(":".join(suites))
            except ssl.SSLError as exc:
                raise refuse(
                    f"none of these suites is available here ({exc})", section, "cipher_suites"
                ) from exc
    if not tls.prefer_server_cipher_suites:
        context.options &= ~ssl.OP_CIPHER_SERVER_PREFERENCE
    _client_auth(context, tls, folder, refuse)
    return context


def _cert_problem(exc: ssl.SSLError, cert: Path, key: Path) -> str:
    """What ``load_cert_chain`` failing with ``exc`` means for the operator."""
    said = str(exc)
    if "KEY_VALUES_MISMATCH" in said:
        return (
            f"the private key {key} is not the key of the certificate {cert}: give the key the certificate"
            " was issued for"
        )
    return f"cannot load the certificate {cert} with the key {key}: {said}"


def _client_auth(context: ServerContext, tls: TlsServerConfig, folder: Path, refuse: Refusal) -> None:
    """Client certificates as ``client_auth_type`` asks, checked against ``client_ca_file``."""
    section = "tls_server_config"
    verifies = tls.client_auth_type in ("VerifyClientCertIfGiven", "RequireAndVerifyClientCert")
    if tls.client_ca_file and tls.client_auth_type == "NoClientCert":
        raise refuse(
            "client_ca_file is set but client_auth_type is NoClientCert, which asks for no client"
            " certificate: set client_auth_type: RequireAndVerifyClientCert, or remove client_ca_file",
            section,
            "client_ca_file",
        )
    if verifies and not tls.client_ca_file:
        raise refuse(
            f"client_auth_type {tls.client_auth_type} checks client certificates against client_ca_file:"
            " give it (the PEM file of the CA that signs them)",
            section,
            "client_auth_type",
        )
    if tls.client_auth_type in ("RequestClientCert", "RequireAnyClientCert"):
        # Python's ssl cannot ask for a certificate without checking it against a CA (Go can).
        raise refuse(
            f"client_auth_type {tls.client_auth_type} (a certificate no CA checks) is not supported by"
            " gpuwarden: use RequireAndVerifyClientCert with client_ca_file",
            section,
            "client_auth_type",
        )
    _allowed_sans(tls, refuse)
    if not verifies:
        return
    ca = folder / tls.client_ca_file
    try:
        context.load_verify_locations(cafile=ca)
    except (OSError, ssl.SSLError) as exc:
        raise refuse(f"cannot load CA certificates from {ca}: {exc}", section, "client_ca_file") from exc
    required = tls.client_auth_type == "RequireAndVerifyClientCert"
    context.verify_mode = ssl.CERT_REQUIRED if required else ssl.CERT_OPTIONAL
    if tls.client_allowed_sans is not None:
        context.allowed_sans = frozenset(tls.client_allowed_sans)


def _allowed_sans(tls: TlsServerConfig, refuse: Refusal) -> None:
    """Refuse ``client_allowed_sans`` where exporter-toolkit refuses it, and when it lets no client in."""
    if tls.client_allowed_sans is None:
        return
    if tls.client_auth_type != "RequireAndVerifyClientCert":
        raise refuse(
            "client_allowed_sans checks the client certificate, which client_auth_type"
            f" {tls.client_auth_type} does not require: set client_auth_type: RequireAndVerifyClientCert"
            " with client_ca_file",
            "tls_server_config",
            "client_allowed_sans",
        )
    if not tls.client_allowed_sans:
        raise refuse(
            "lists no SAN, so no client certificate would be let in: list the DNS names, IP addresses,"
            " e-mail addresses or URIs of the clients allowed, or remove it",
            "tls_server_config",
            "client_allowed_sans",
        )
