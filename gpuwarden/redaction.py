"""URLs as gpuwarden shows them in logs, errors and ``config show``: without what may be a credential.

A store URL keeps everything but its password (``postgresql+psycopg://gw:***@db:5432/gw``, and libpq's
``?password=***`` and ``?sslpassword=***``, with which psycopg connects as well): the host and the database
are what a person needs to find the problem. A webhook URL often *is* the credential (Slack's
``/services/T000/B000/XXXX``, a ``?api_key=``), so only its scheme and host are shown.
"""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

MASK = "**********"
# user:password@ as SQLAlchemy's make_url reads it: the user has no ':' or '/', the password no '@'.
_PASSWORD = re.compile(r"(://[^:/]*:)[^@]*@")
# libpq's password keywords in the query, which SQLAlchemy hands psycopg as connection arguments.
_QUERY_PASSWORD = re.compile(r"([?&](?:ssl)?password=)[^&#]*")


def hidden_password(url: str) -> str:
    """``url`` with the password of its ``user:password@`` and those in its query replaced by ``***`` (the
    rest as given)."""
    return _QUERY_PASSWORD.sub(r"\1***", _PASSWORD.sub(r"\1***@", url, count=1))


def shown_url(url: str) -> str:
    """The scheme, host and port of ``url``, and ``/**********`` when it has a path, query or user."""
    where = shown_host(url)
    if where == MASK:
        return MASK
    parts = urlsplit(url)
    hidden = f"/{MASK}" if parts.path.strip("/") or parts.query or parts.username else "/"
    return f"{parts.scheme}://{where}{hidden}"


def shown_host(url: str) -> str:
    """The host and port of ``url`` (``am.example:9093``, ``[::1]:8080``), where a line names a receiver in
    few words: no user, password, path or query."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:  # not a URL (a bad port, an unclosed [): nothing of it is shown
        return MASK
    host = f"[{host}]" if ":" in host else host
    return f"{host}{port}"


def shown_redirect(url: str, location: str) -> str:
    """Where a redirect answered to a request for ``url`` points (``location``, relative to ``url``), as
    ``shown_url`` shows it: the rest may be a credential, as the request's own URL's."""
    try:
        return shown_url(urljoin(url, location))
    except ValueError:  # urljoin of an unclosed [
        return "an invalid URL"
