"""Whether requests can be sent to a URL a person typed (``--url``, ``GPUWARDEN_URL``), checked before the
first request: httpx raises ``InvalidURL`` (not an ``httpx.HTTPError``) for ``http://[::1``, and a hostname
label over 63 characters fails in the idna codec with a ``UnicodeError``, both as tracebacks."""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import unquote, urlsplit

from gpuwarden.redaction import hidden_password, quoting_only

# httpx is imported where a URL is parsed: the configuration model and every command import this module, and
# httpx (~0.2 s) would be loaded by an exporter or a demo that never parses one.

SCHEMES = ("http", "https")
# A host name as httpx sends it (an IDN already xn--; an IPv6 address, without brackets, is not one)
_HOST_NAME = re.compile(rb"[A-Za-z0-9._-]+")
_NOT_IN_HOST_NAME = re.compile(r"[^A-Za-z0-9._\-\x80-\U0010ffff]")  # a character of none, as written


def host_port(host: str, port: int) -> str:
    """``host:port`` as a URL writes it: an IPv6 address in brackets (``[::1]:9701``)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def url_problem(url: str) -> str | None:
    """Why no request can be sent to ``url`` (an http or https URL with a host), or None."""
    import httpx  # noqa: PLC0415

    try:
        parsed = httpx.URL(url)
        port = parsed.port
    except httpx.InvalidURL as exc:
        return str(exc)
    try:  # urllib reads it too (the CLI's checks, push_to_gateway): "http://[bad", which httpx escapes
        urlsplit(url)
    except ValueError as exc:  # "Invalid IPv6 URL": a [ or ] outside an address's pair
        return f"{exc}: brackets hold an IPv6 address, closed before the port (http://[::1]:8080)"
    if parsed.scheme not in SCHEMES:
        return "it must start with http:// or https://"
    try:  # httpx decodes an xn-- host as it reads it: an invalid one raises idna's error (xn--a)
        if not parsed.host:
            return "it names no host"
        parsed.host.encode("idna")  # what the resolver does with it
    except UnicodeError as exc:
        return f"host: {exc}"
    if b":" not in parsed.raw_host and not _HOST_NAME.fullmatch(parsed.raw_host):
        # httpx percent-encodes a space or a quote in the host ("hooks%20example.com"), and only the
        # resolver failed, at every request ("Name or service not known")
        host = urlsplit(url).hostname or parsed.host  # as written (lower case), not as httpx escapes it
        found = _NOT_IN_HOST_NAME.search(host)
        bad = found.group() if found is not None else host
        return f"host {host!r} holds {bad!r}, which no host name can (letters, digits, '-' and '.')"
    if port is not None and not 1 <= port <= 65535:
        return f"port {port} is not in 1-65535"
    return None


def pushgateway_base_url(raw: str) -> str:
    """``raw`` as a Pushgateway base URL ``push_to_gateway`` can use: stripped of surrounding whitespace,
    ``http://`` added to a bare ``host:port``, no trailing slash. Raises ``ValueError`` saying what is wrong.

    A path is a prefix (a gateway run with ``--web.route-prefix``, or behind a reverse proxy): pushes go to
    ``<url>/metrics/job/<job>/...``. A push path pasted from the Pushgateway's documentation
    (``.../metrics/job/training``) would double it and every push would get HTTP 400 or 404, so it is refused.
    """
    if not isinstance(raw, str):
        raise TypeError(f"a Pushgateway URL is a string, got {type(raw).__name__}")
    url = raw.strip()
    if not url:
        raise ValueError("the Pushgateway URL is empty")
    if "://" not in url:
        url = f"http://{url}"  # what push_to_gateway does with host:port
    shown = hidden_password(raw)  # said in every refusal: a password or token of the URL stays out
    bad = next((c for c in url if c.isspace() or not c.isprintable()), None)
    if bad is not None:
        raise ValueError(f"not a valid Pushgateway URL {shown!r}: it contains {bad!r}")
    problem = url_problem(url)
    if problem is not None:
        raise ValueError(f"not a valid Pushgateway URL {shown!r}: {quoting_only(problem, url, shown)}")
    if "?" in url or "#" in url:
        raise ValueError(
            f"not a valid Pushgateway URL {shown!r}: pushes append a path, so no query or fragment"
        )
    url = url.rstrip("/")
    import httpx  # noqa: PLC0415

    path = httpx.URL(url).path.rstrip("/")
    if path.endswith("/metrics") or "/metrics/job" in path:
        base = url[: len(url) - len(path)] + path[: path.find("/metrics")]
        raise ValueError(
            f"not a valid Pushgateway URL {shown!r}: give the gateway's base URL"
            f" ({hidden_password(base)}, with a --web.route-prefix path if it has one), not a push path:"
            " pushes append /metrics/job/<job>"
        )
    return url


def without_credentials(url: str) -> tuple[str, tuple[str, str] | None]:
    """``url`` without its ``user:password@``, and that user and password (percent-decoded; a password
    left out is empty), or None when it names no user. urllib (``push_to_gateway``) reads a ``user:password@``
    as part of the host's name, so a client sends them in an ``Authorization`` header instead."""
    parts = urlsplit(url)
    userinfo, at, host = parts.netloc.rpartition("@")
    if not at:
        return url, None
    user, _, password = userinfo.partition(":")
    return parts._replace(netloc=host).geturl(), (unquote(user), unquote(password))


def verify_tls(url: str) -> bool:
    """httpx's ``verify`` for one request to ``url`` (redirects not followed): a plain-HTTP request makes
    no TLS handshake, so it skips loading the CA bundle (~60 ms of CPU, a sixth of a CLI command's own).
    Through a proxy from the environment (``http_proxy``, ``all_proxy``), which may speak TLS, it verifies."""
    if urlsplit(url).scheme.lower() != "http":
        return True
    from urllib.request import getproxies  # noqa: PLC0415 - httpx loads it; at import, every command paid 38 ms

    proxies = getproxies()
    return bool(proxies.get("http") or proxies.get("all"))


def plain_http_host(url: str) -> str | None:
    """The host ``url`` reaches over plain http on another machine, where a secret sent to it is readable on
    the way; None for https and for this machine (localhost, 127.0.0.0/8, ::1)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    return None if parts.scheme.lower() != "http" or _loopback(host) else host


def _loopback(host: str) -> bool:
    """Whether ``host`` names this machine (localhost, 127.0.0.0/8, ::1)."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
