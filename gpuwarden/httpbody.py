"""Reading a request body with a size limit and a deadline, for every endpoint that takes one.

A declared ``Content-Length`` over the limit is refused before reading; a chunked body (no length) is read
only up to the limit, so a client cannot make the server hold an unbounded body in memory. The whole body
must arrive within the deadline: a client that declares a huge length and trickles a byte every few
seconds is answered 408 instead of holding a connection and its buffer forever. A compressed body
(``Content-Encoding``) is refused by name (415), as Alertmanager's API takes none, and so is a JSON
endpoint's body declared as another type (``Content-Type: text/plain``), as Alertmanager 0.25 refuses it.
"""

from __future__ import annotations

import asyncio

from starlette.requests import Request


class BodyTooLarge(Exception):
    """The body is over the limit (413)."""


class BodyTimeout(Exception):
    """The body did not arrive within the deadline (408)."""


class BodyEncoded(Exception):
    """The body carries a ``Content-Encoding`` the API does not decode (415)."""


class BodyNotJson(Exception):
    """A JSON endpoint's body is declared as another media type (415); the type is the message."""


JSON_MEDIA_TYPE = "application/json"


def check_json_body(request: Request, body: bytes) -> None:
    """Raise ``BodyNotJson`` for a body declared as another media type than ``application/json`` (in any
    case, parameters such as ``charset`` aside). A request without a body, or that declares no type, passes:
    Alertmanager refuses the latter (as ``application/octet-stream``), but its body can only be JSON here."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if body and media_type and media_type != JSON_MEDIA_TYPE:
        raise BodyNotJson(media_type)


async def read_limited(request: Request, limit: int, timeout: float = 30.0) -> bytes:
    """The body, or ``BodyTooLarge`` as soon as more than ``limit`` bytes are declared or received,
    ``BodyTimeout`` when it is not all there ``timeout`` seconds after the request, ``BodyEncoded`` for a
    compressed one. A client that goes away raises starlette's ``ClientDisconnect``."""
    encoding = request.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise BodyEncoded(encoding)
    declared = request.headers.get("content-length", "")
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise BodyTooLarge
                chunks.append(chunk)
    except TimeoutError as exc:
        raise BodyTimeout from exc
    return b"".join(chunks)
