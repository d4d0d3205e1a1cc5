"""The error answers of serve's API: ``{"error", "field"}``, or on Alertmanager's API its own shapes."""

from __future__ import annotations

import re
from collections.abc import Sequence
from urllib.parse import quote

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Match, Route

from gpuwarden.headers import FIELD_HEADER

REPEATS_CHANGE_NOTHING = re.compile(
    r"/api/v2/alerts|/api/v1/webhook/alertmanager|/api/v1/incidents/[^/]+/(ack|mitigate|resolve|silence)"
    r"|/api/v2/silence/[^/]+|/api/v1/outbox/(?:retry|discard)"
)
"""Writes that change nothing when repeated: alerts (Prometheus re-posts them anyway), an incident's ack,
mitigate (the same action), resolve and silence (the same person's, or one a silence covers), expiring a
silence, queueing failed messages again. Not a note (stored again) nor a new silence (added again)."""


def failure_text(method: str, path: str, unreachable: bool, cannot_write: str = "") -> str:
    """What a request that failed unexpectedly says (a 503). A read changed nothing. A write may have: the
    store can fail after its COMMIT went through (the answer lost with the connection), so it says the
    outcome is unknown, and whether sending it again is safe. ``cannot_write``: why the store could not
    write its files (a full disk, a read-only file), as readiness says it; the store itself refused the
    write then (SQLite rolls a failed COMMIT of SQLITE_FULL back, PostgreSQL aborts the transaction), and a
    request writes in one transaction, so nothing of it was stored."""
    if cannot_write:
        cause = f"the store cannot write its files: {cannot_write}"
        if method in ("GET", "HEAD"):
            return f"{cause}; the store could not be read, retry later"
        return f"{cause}; the change was not stored: send it again once the store can write"
    cause = "the store is unreachable" if unreachable else "internal error"
    if method in ("GET", "HEAD"):
        return f"{cause}; the store could not be read, retry later"
    unknown = f"{cause}; whether the change was stored is unknown (its commit may have gone through)"
    if REPEATS_CHANGE_NOTHING.fullmatch(path):
        return f"{unknown}; a retry is safe: if it was stored, the repeat changes nothing"
    return f"{unknown}; look before you retry: if it was stored, a repeat stores it again"


def error_response(
    status: int, message: str, field: str = "", *, route: str = "", code: int | None = None
) -> JSONResponse:
    """``{"error", "field"}``; on Alertmanager's API (``/api/v2``) its shapes, with the field in a header
    and at the start of the message ("field: what is wrong"): a JSON string where Alertmanager's OpenAPI
    spec declares one (``string_answer``), which amtool's generated client decodes ("json: cannot
    unmarshal object" otherwise), and go-openapi's ``{"code", "message"}`` for every other error, as
    Alertmanager 0.25 answers an unknown path (404), a wrong method (405) or a body breaking its schema
    (422, ``code`` the schema rule's: ``gpuwarden.errors.REQUIRED``...), for a client reading ``message``."""
    if route.startswith("/api/v2/"):
        headers = {FIELD_HEADER: header_text(field)} if field else None
        if string_answer(status, route):
            return JSONResponse(message, status_code=status, headers=headers)
        body = {"code": status if code is None else code, "message": message}
        return JSONResponse(body, status_code=status, headers=headers)
    return JSONResponse({"error": message, **({"field": field} if field else {})}, status_code=status)


def string_answer(status: int, route: str) -> bool:
    """Whether Alertmanager's OpenAPI spec (api/v2/openapi.yaml) declares this error a string: 400 (its
    ``BadRequest``) and 500 (``InternalServerError``; gpuwarden's 503s stand for it: a failure to retry),
    and 404 of ``POST /silences`` (an update of an unknown id; with one trailing slash, the same route).
    Not a path with more (``/api/v2/silences//``): no route, a 404 like every other unknown path."""
    silences = route.removesuffix("/") == "/api/v2/silences"
    return status == 400 or status >= 500 or (status == 404 and silences)


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
    return slash_redirect(request) or error_response(
        404, f"path: no route for {method} {path}", "path", route=path
    )


def slash_redirect(request: Request, routes: Sequence[BaseRoute] | None = None) -> Response | None:
    """A 307 to the path without its trailing slash (or with one) where that path has a route, as Starlette
    redirects, but to a relative reference (``/-/healthy/`` to ``../healthy``): Starlette's absolute URL,
    built from the Host header, sent a client behind a TLS-terminating proxy to plain ``http://`` (and to
    the wrong path behind one that strips a prefix). Alertmanager's ``Location`` is relative too
    (``/-/healthy``, measured). None when neither path has a route (of ``routes``, else the app's), or for
    more than one trailing slash."""
    path = request.url.path
    if path.endswith("//"):  # clients resolve ``../`` over an empty segment differently: not guessed
        return None
    stripped = path.removesuffix("/")
    if not stripped:  # the root: no path without its slash (its last segment raised IndexError: a 503)
        return None
    if stripped == path:
        toggled, location = path + "/", _segment(path.rsplit("/", 1)[1]) + "/"
    else:
        toggled, location = stripped, "../" + _segment(stripped.rsplit("/", 1)[1])
    if not any(
        isinstance(r, Route) and r.matches({**request.scope, "path": toggled})[0] != Match.NONE
        for r in (request.app.router.routes if routes is None else routes)
    ):
        return None
    query = request.url.query
    return RedirectResponse(location + (f"?{query}" if query else ""), status_code=307)


def _segment(name: str) -> str:
    """A path segment as a relative reference starts with it: percent-encoded, and after ``./`` if it holds
    a colon (``a:b`` would read as a URL scheme)."""
    quoted = quote(name, safe="!$&'()*+,;=:@-._~")
    return f"./{quoted}" if ":" in quoted else quoted
