"""Whether a text is a URI as Alertmanager's API takes an alert's ``generatorURL``: its OpenAPI format
``uri``, which Alertmanager 0.25 checks with Go's ``url.ParseRequestURI`` (an absolute URI, or an absolute
path), answering 422 otherwise. Measured against it: ``http://prom:9090/graph?g0.expr=up``, ``/graph``,
``h:9090`` and ``mailto:x@y`` are taken; ``prometheus``, ``graph?g0.expr=up``, ``x/y``, ``%zz``, ``/a%zz``,
``http://[::1``, ``::`` and a tab are refused. Prometheus always sends an absolute URL (its
``--web.external-url``, or ``http://<hostname>:<port>`` when that is unset), so none of its alerts is refused.
"""

from __future__ import annotations

import re

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*")
_HEX = "0123456789abcdefABCDEF"
_HOST_OK = frozenset("!$&'()*+,;=:[]<>\"-_.~")  # besides letters, digits and non-ASCII bytes
_USERINFO_OK = frozenset("-._:~!$&'()*+,;=%@")


def request_uri_problem(text: str) -> str | None:
    """Why Go's ``url.ParseRequestURI`` refuses ``text``, or None when it takes it."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in text):
        return "contains a control character"
    if text == "*":
        return None
    scheme, rest = _split_scheme(text)
    if scheme is None:
        return "missing protocol scheme"
    rest = rest[:-1] if rest.endswith("?") and rest.count("?") == 1 else rest.partition("?")[0]
    if not rest.startswith("/"):
        return None if scheme else "is neither an absolute URI nor an absolute path"
    if scheme and rest.startswith("//"):
        authority, slash, path = rest[2:].partition("/")
        problem = _authority_problem(authority)
        if problem is not None:
            return problem
        rest = slash + path
    return _escape_problem(rest)


def _split_scheme(text: str) -> tuple[str | None, str]:
    """(scheme, rest) as Go's ``getScheme`` reads them: "" when there is none; None for a leading colon."""
    if text.startswith(":"):
        return None, text
    match = _SCHEME.match(text)
    if match is not None and text[match.end() : match.end() + 1] == ":":
        return match.group().lower(), text[match.end() + 1 :]
    return "", text


def _authority_problem(authority: str) -> str | None:
    userinfo, at, host = authority.rpartition("@")
    if at and any(not (c.isascii() and c.isalnum()) and c not in _USERINFO_OK for c in userinfo):
        return "invalid userinfo"
    if at and _escape_problem(userinfo) is not None:
        return "invalid userinfo"
    if host.startswith("["):
        close = host.rfind("]")
        if close < 0:
            return "missing ']' in host"
        port = host[close + 1 :]
    else:
        colon = host.rfind(":")
        port = host[colon:] if colon >= 0 else ""
    if port and (port[0] != ":" or not all(c in "0123456789" for c in port[1:])):
        return f"invalid port {port!r} after host"
    if any(c.isascii() and not c.isalnum() and c not in _HOST_OK and c != "%" for c in host):
        return "invalid character in host name"
    problem = _escape_problem(host)
    if problem is None and re.search(r"%(?!25)[0-7]", host):
        return "invalid URL escape in host (an ASCII character)"
    return problem


def _escape_problem(text: str) -> str | None:
    """A ``%`` not followed by two hex digits, which Go's unescape refuses."""
    i = text.find("%")
    while i >= 0:
        if len(text) < i + 3 or text[i + 1] not in _HEX or text[i + 2] not in _HEX:
            return f"invalid URL escape {text[i : i + 3]!r}"
        i = text.find("%", i + 3)
    return None
