"""Reading a request body with a size limit, for every endpoint that takes one.

A declared ``Content-Length`` over the limit is refused before reading; a chunked body (no length) is read
only up to the limit, so a client cannot make the server hold an unbounded body in memory.
"""

from __future__ import annotations

from starlette.requests import Request


class BodyTooLarge(Exception):
    """The body is over the limit (413)."""


async def read_limited(request: Request, limit: int) -> bytes:
    """The body, or ``BodyTooLarge`` as soon as more than ``limit`` bytes are declared or received."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)
