"""Whether requests can be sent to a URL a person typed (``--url``, ``GPUWARDEN_URL``), checked before the
first request: httpx raises ``InvalidURL`` (not an ``httpx.HTTPError``) for ``http://[::1``, and a hostname
label over 63 characters fails in the idna codec with a ``UnicodeError``, both as tracebacks."""

from __future__ import annotations

import httpx

SCHEMES = ("http", "https")


def url_problem(url: str) -> str | None:
    """Why no request can be sent to ``url`` (an http or https URL with a host), or None."""
    try:
        parsed = httpx.URL(url)
        port = parsed.port
    except httpx.InvalidURL as exc:
        return str(exc)
    if parsed.scheme not in SCHEMES:
        return "it must start with http:// or https://"
    if not parsed.host:
        return "it names no host"
    try:
        parsed.host.encode("idna")  # what the resolver does with it
    except UnicodeError as exc:
        return f"host: {exc}"
    if port is not None and not 1 <= port <= 65535:
        return f"port {port} is not in 1-65535"
    return None
