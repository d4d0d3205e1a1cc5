"""Reading a request body with a size limit and a deadline, for every endpoint that takes one.

A declared ``Content-Length`` over the limit is refused before reading; a chunked body (no length) is read
only up to the limit, so a client cannot make the server hold an unbounded body in memory. The whole body
must arrive within the deadline: a client that declares a huge length and trickles a byte every few
seconds is answered 408 instead of holding a connection and its buffer forever. A compressed body
(``Content-Encoding``) is refused by name (415), as Alertmanager's API takes none, and so is a JSON
endpoint's body declared as another type (``Content-Type: text/plain``) or as none, as Alertmanager 0.25
refuses them.
"""

from __future__ import annotations

import asyncio
import logging

from starlette.requests import ClientDisconnect, Request

from gpuwarden.errors import InputError

logger = logging.getLogger(__name__)

JSON_MEDIA_TYPE = "application/json"


class BodyRefused(Exception):
    """A body not read: every endpoint answers it with ``status``, this message (what is wrong, what to send
    instead) and ``field`` (the header at fault, "" for none), each in its own shape, so that serve, the
    simulator's fault routes, the toy inference server and Slack's interactions word a refusal alike."""

    status = 400
    field = ""


class BodyTooLarge(BodyRefused):
    """The body is over the limit (413)."""

    status = 413

    def __init__(self, limit: int, setting: str = "") -> None:
        raise_it = f"; send it in smaller parts, or raise {setting}" if setting else ""
        super().__init__(f"body larger than {limit} bytes{raise_it}")


class BodyTimeout(BodyRefused):
    """The body did not arrive within the deadline (408)."""

    status = 408

    def __init__(self, timeout: float) -> None:
        super().__init__(f"the body did not arrive within {timeout:g} s")


class BodyEncoded(BodyRefused):
    """The body carries a ``Content-Encoding`` the API does not decode (415)."""

    status = 415
    field = "Content-Encoding"

    def __init__(self, encoding: str) -> None:
        super().__init__(f"Content-Encoding {encoding} is not accepted; send the body uncompressed")


class BodyNotJson(BodyRefused):
    """A JSON endpoint's body is declared as another media type, or as none (415)."""

    status = 415
    field = "Content-Type"

    def __init__(self, media_type: str) -> None:
        declared = repr(media_type) if media_type else "none declared (read as application/octet-stream)"
        super().__init__(f"Content-Type: {declared} is not accepted; send {JSON_MEDIA_TYPE}")


class BodyAbandoned(BodyRefused):
    """The client went away before its whole body arrived (400: nobody reads it; it is no server error).
    A malformed chunked body too, which uvicorn drops."""

    def __init__(self) -> None:
        super().__init__("client disconnected before the body was read")


def check_json_body(request: Request, body: bytes) -> None:
    """Raise ``BodyNotJson`` for a body declared as another media type than ``application/json`` (in any
    case, parameters such as ``charset`` aside) or as none (an empty ``Content-Type`` too: Alertmanager 0.25
    reads either as ``application/octet-stream`` and answers 415), ``InputError`` (400) for a
    ``Content-Type`` that does not parse (``garbage;;``), as Alertmanager answers. A request without a body
    passes, whatever it declares: it is read as ``{}``, and the route says what that lacks (``by``)."""
    if not body:
        return
    declared = request.headers.get("content-type", "")
    if not declared.strip():
        raise BodyNotJson("")
    media_type = parse_media_type(declared)
    if media_type != JSON_MEDIA_TYPE:
        raise BodyNotJson(media_type)


_TSPECIALS = frozenset('()<>@,;:\\"/[]?=')


def _token(text: str) -> tuple[str, str]:
    """The leading token of ``text`` (RFC 2045: printable ASCII but space and tspecials), and the rest."""
    end = 0
    while end < len(text) and "!" <= text[end] <= "~" and text[end] not in _TSPECIALS:
        end += 1
    return text[:end], text[end:]


def _value(text: str) -> tuple[str | None, str]:
    """A parameter's value, a token or a quoted string (None: neither), and the rest."""
    if not text.startswith('"'):
        token, rest = _token(text)
        return (token or None), rest
    out: list[str] = []
    i = 1
    while i < len(text):
        char = text[i]
        if char == '"':
            return "".join(out), text[i + 1 :]
        if char in "\r\n":
            return None, text
        if char == "\\" and i + 1 < len(text) and text[i + 1] in _TSPECIALS:
            i += 1
        out.append(text[i])
        i += 1
    return None, text  # no closing quote


def parse_media_type(header: str) -> str:
    """The media type of a ``Content-Type`` value, lower case, or ``InputError`` naming the header when it
    does not parse as Alertmanager's Go ``mime.ParseMediaType`` reads it: a type and an optional subtype,
    then ``; name=value`` parameters (a token or a quoted string), each name once; a single trailing ``;``
    is let pass."""
    base, semicolon, params = header.partition(";")
    media_type = base.strip().lower()
    kind, rest = _token(media_type)
    problem = ""
    if not kind:
        problem = "no media type"
    elif rest and not rest.startswith("/"):
        problem = "expected / after the type"
    elif rest:
        subtype, rest = _token(rest[1:])
        problem = "no subtype after /" if not subtype else "more after the subtype" if rest else ""
    params = semicolon + params
    names: set[str] = set()
    while not problem and params.strip():
        name, rest = _token(params.lstrip().removeprefix(";").lstrip())
        if not params.lstrip().startswith(";") or not name or not rest.lstrip().startswith("="):
            if params.strip() != ";":
                problem = "a parameter is not name=value"
            break
        value, rest = _value(rest.lstrip()[1:].lstrip())
        if value is None:
            problem = f"parameter {name}: no value, or an unclosed quote"
        elif name.lower() in names:
            problem = f"parameter {name} given twice"
        names.add(name.lower())
        params = rest
    if problem:
        raise InputError(f"{header!r} does not parse: {problem}", field="Content-Type")
    return media_type


async def read_limited(request: Request, limit: int, timeout: float = 30.0, setting: str = "") -> bytes:
    """The body, or ``BodyTooLarge`` as soon as more than ``limit`` bytes are declared or received,
    ``BodyTimeout`` when it is not all there ``timeout`` seconds after the request, ``BodyEncoded`` for a
    compressed one, ``BodyAbandoned`` (logged) when the client goes away: each a ``BodyRefused``.
    ``setting``: the setting ``limit`` comes from, which a refusal names (a fixed limit: none)."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise BodyEncoded(encoding)
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge(limit, setting)
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise BodyTooLarge(limit, setting)
                chunks.append(chunk)
    except TimeoutError as exc:
        raise BodyTimeout(timeout) from exc
    except ClientDisconnect as exc:  # uvicorn logged a traceback for each where it reached it
        logger.info("client disconnected before its body was read", extra={"path": request.url.path})
        raise BodyAbandoned from exc
    return b"".join(chunks)
