"""The error answers of serve's API: ``{"error", "field"}``, or on Alertmanager's API a JSON string."""

from __future__ import annotations

import re

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route

FIELD_HEADER = "X-Gpuwarden-Field"

REPEATS_CHANGE_NOTHING = re.compile(
    r"/api/v2/alerts|/api/v1/webhook/alertmanager|/api/v1/incidents/[^/]+/(ack|mitigate|resolve|silence)"
    r"|/api/v2/silence/[^/]+|/api/v1/outbox/(?:retry|discard)"
)
"""Writes that change nothing when repeated: alerts (Prometheus re-posts them anyway), an incident's ack,
mitigate (the same action), resolve and silence (the same person's, or one a silence covers), expiring a
silence, queueing failed messages again. Not a note (stored again) nor a new silence (added again)."""


def failure_text(method: str, path: str, unreachable: bool) -> str:
    """What a request that failed unexpectedly says (a 503). A read changed nothing. A write may have: the
    store can fail after its COMMIT went through (the answer lost with the connection), so it says the
    outcome is unknown, and whether sending it again is safe."""
    cause = "the store is unreachable" if unreachable else "internal error"
    if method in ("GET", "HEAD"):
        return f"{cause}; the store could not be read, retry later"
    unknown = f"{cause}; whether the change was stored is unknown (its commit may have gone through)"
    if REPEATS_CHANGE_NOTHING.fullmatch(path):
        return f"{unknown}; a retry is safe: if it was stored, the repeat changes nothing"
    return f"{unknown}; look before you retry: if it was stored, a repeat stores it again"


def error_response(status: int, message: str, field: str = "", *, route: str = "") -> JSONResponse:
    """``{"error", "field"}``; on Alertmanager's API (``/api/v2``) a JSON string, as Alertmanager answers
    and ``amtool`` prints ("json: cannot unmarshal object" otherwise), with the field in a header."""
    if route.startswith("/api/v2/"):
        return JSONResponse(
            message,  # names its field: "field: what is wrong"
            status_code=status,
            headers={FIELD_HEADER: header_text(field)} if field else None,
        )
    return JSONResponse({"error": message, **({"field": field} if field else {})}, status_code=status)


def header_text(value: str) -> str:
    """``value`` as a header can carry it: printable ASCII, the rest escaped as Python writes it
    (``[0].annotations.\\x80``). A field names what the client sent, which may be any text; raw, a
    non-ASCII key failed the response (a 500) and a newline would end the header."""
    if value.isascii() and value.isprintable() and "\\" not in value:
        return value
    return value.encode("unicode_escape").decode("ascii")


async def no_route(request: Request, exc: Exception) -> Response:
    """Starlette's 404 (no such route) and 405 (not that method) in the API's error shape."""
    path, method = request.url.path, request.method
    if isinstance(exc, HTTPException) and exc.status_code == 405:
        # Every method of the routes of that path (Starlette names the first route's only).
        methods = {
            m
            for r in request.app.router.routes
            if isinstance(r, Route) and r.matches(request.scope)[0] != Match.NONE
            for m in r.methods or ()
        }
        allow = ", ".join(sorted(methods))
        response = error_response(
            405, f"method: {method} is not allowed on {path}; use {allow}", "method", route=path
        )
        response.headers["Allow"] = allow
        return response
    return error_response(404, f"path: no route for {method} {path}", "path", route=path)
