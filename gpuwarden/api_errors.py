"""The error answers of serve's API: ``{"error", "field"}``, or on Alertmanager's API a JSON string."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route

FIELD_HEADER = "X-Gpuwarden-Field"


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
