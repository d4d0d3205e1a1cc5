"""What an HTTP header value can carry: printable ASCII (and tab), as httpx sends them.

httpx encodes a ``str`` header value as ASCII: a value with any other character (``GPU团队``, ``café``,
``tökén``) raises ``UnicodeEncodeError`` at every request, and a control character (a newline) would end the
header. Values that come from configuration or the environment are checked against this before anything
runs, so a setting no request can carry is refused with its name instead of failing every request later.
"""

from __future__ import annotations

FIELD_HEADER = "X-Gpuwarden-Field"
"""The header naming the field a refusal on serve's Alertmanager API (``/api/v2``) is about; it also tells
serve's ``{"code", "message"}`` there from another server's (a real Alertmanager's) answer."""

HEADER_TIMEOUT_SECONDS = 10.0
"""The default deadline on a request's line and headers (``gpuwarden.httpprotocol``) for serve, the standby
and the exporter: not all there this long after the connection opened (or the request's first byte), the
connection is closed, with a 408 if part of a request came. A client sends its request at once (Prometheus'
whole scrape has 10 s by default); a connection that sends nothing held a descriptor."""

TOKEN_ENV = "GPUWARDEN_API_TOKEN"  # noqa: S105 - the variable's name, not a secret
"""The variable holding the bearer token: serve takes writes with it, the CLI and ``anomaly run`` send it.
Named here, where the lightest command may import it (``config_source`` brings pydantic-settings)."""


def token_missing(token: str | None) -> str:
    """Why no token is sent: ``TOKEN_ENV`` empty (``token`` "") or not set (None)."""
    return f"{TOKEN_ENV} is {'empty' if token == '' else 'not set'}"


STANDBY_HEADER = "X-Gpuwarden-Standby"
"""On a ``serve --standby``'s refusals (503): ``active-elsewhere`` while another serve holds the store,
``store-unanswered`` while the standby cannot ask the store for its lock. The CLI says what to do by it:
point ``--url`` at the active serve, or read the standby's log for the store's error."""
STANDBY_ACTIVE_ELSEWHERE, STANDBY_STORE_UNANSWERED = "active-elsewhere", "store-unanswered"

LAG_HEADER = "X-Gpuwarden-Ingest-Lag"
"""serve's answer to a read made while it was still applying alerts it had acknowledged (bytes not applied
after ``READ_BARRIER_SECONDS``): the answer may be behind."""

BLANKS_AROUND = "begins or ends with a space or a newline, which no client sends; remove it"
"""Why a secret with blanks around it is refused: clients and the HTTP stack strip them, or refuse to send
them (h11: "Illegal header value"), so it matches no request."""

TOKEN_UNSENDABLE = "holds characters an HTTP header cannot carry (a token is printable ASCII)"  # noqa: S105
"""Why a bearer token is refused; its characters are not shown (it is a secret)."""


def unsendable_character(text: str, *, tab: bool = True) -> str | None:
    """The first character of ``text`` an HTTP header value cannot carry, or None (``tab``: allow tabs)."""
    for char in text:
        if char == "\t" and tab:
            continue
        if not (char.isascii() and char.isprintable()):
            return char
    return None


def header_value_problem(text: str) -> str | None:
    """Why ``text`` cannot be sent as a header value (naming the character), or None."""
    char = unsendable_character(text)
    if char is None:
        return None
    if char.isascii() or not char.isprintable():
        return f"holds a control character ({char!r}: a newline?), which an HTTP header cannot carry"
    return (
        f"holds {char!r}, which an HTTP header cannot carry (only printable ASCII is sent); write the value"
        " in ASCII, for instance percent-encoded"
    )


def secret_problem(text: str) -> str | None:
    """Why a secret cannot work, or None: an empty one would let every request through (an empty bearer
    token matches an empty header), and one with spaces or a newline around it matches no request (clients
    and the HTTP stack strip them) and no Slack token."""
    if not text.strip():
        return "is empty; give the secret's value"
    if text != text.strip():
        return BLANKS_AROUND
    return None


def token_problem(text: str) -> str | None:
    """Why a bearer token cannot work, or None: as any secret (``secret_problem``), and it must be printable
    ASCII, which is all an ``Authorization`` header can carry (a server holding another token answered every
    write 401, since no client can send it)."""
    problem = secret_problem(text)
    if problem is None and unsendable_character(text, tab=False) is not None:
        return TOKEN_UNSENDABLE
    return problem
