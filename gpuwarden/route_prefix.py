"""``api.route_prefix`` (``serve --route-prefix``): every route of serve under a path prefix, for a reverse
proxy that forwards ``https://proxy/gpuwarden/...`` to serve without stripping ``/gpuwarden``, as
Alertmanager's and Prometheus' ``--web.route-prefix``.

The prefix is taken off the path before anything else sees the request, as a proxy that strips it would:
the routes, the error answers (``no route for GET /api/v2/nope``), the allowed-hosts check and the request
counters all see the path below it, and the trailing-slash redirects, relative (``../healthy``), resolve
under it. A path outside it is answered 404 naming the prefix, the probes (``/-/healthy``, ``/-/ready``,
``/healthz``) included, as Alertmanager answers them only under its prefix: a probe is configured with the
path, and one answered at the root too would hide a proxy or a probe that misses the prefix.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # config.py validates the prefix with this module: no starlette for every CLI command
    from starlette.types import ASGIApp, Receive, Scope, Send

FIELD = "api.route_prefix"
_PATH_CHARACTERS = re.compile(r"[A-Za-z0-9._~!$&'()*+,;=:@/-]*")  # RFC 3986 pchar, unencoded
PREFIX_NOTE = ": serve's routes are under "  # how the 404 outside the prefix says it (the CLI reads it)


def route_prefix_entry(value: str) -> str:
    """``value`` as serve uses it: without its trailing slash, ``""`` for none (``/`` or empty);
    ``ValueError`` for what is not a plain URL path (no leading ``/``, a query, a fragment, blanks,
    ``%``-escapes, an empty, ``.`` or ``..`` segment)."""
    if value in ("", "/"):
        return ""
    if "?" in value or "#" in value:
        raise ValueError(f"{value!r}: write the path alone, without a query or fragment (/gpuwarden)")
    if "://" in value:
        raise ValueError(f"{value!r}: write the path alone, without scheme or host (/gpuwarden)")
    if not value.startswith("/"):
        raise ValueError(f"{value!r}: must start with / (/{value.strip().lstrip('/')})")
    if not _PATH_CHARACTERS.fullmatch(value):
        raise ValueError(
            f"{value!r}: write the path with letters, digits and - . _ ~, no blanks or %-escapes (/gpuwarden)"
        )
    segments = value.removesuffix("/").split("/")[1:]
    if any(s in ("", ".", "..") for s in segments):
        raise ValueError(f"{value!r}: an empty, . or .. segment; write it as a client sends it (/gpuwarden)")
    return value.removesuffix("/")


class RoutePrefix:
    """ASGI middleware serving the app under ``prefix`` (``route_prefix_entry``'s; ``""``: at the root, the
    request passed on as it came); a path outside it is answered 404."""

    def __init__(self, app: ASGIApp, prefix: str) -> None:
        self.app = app
        self.prefix = route_prefix_entry(prefix)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on with the prefix taken off its path; 404 when its path is outside it."""
        prefix = self.prefix
        if not prefix or scope["type"] != "http":  # lifespan; serve takes no websocket
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        if path != prefix and not path.startswith(prefix + "/"):
            from gpuwarden.api_errors import error_response  # noqa: PLC0415 - see TYPE_CHECKING above

            message = f"path: no route for {scope.get('method', 'GET')} {path}{PREFIX_NOTE}{prefix} ({FIELD})"
            await error_response(404, message, "path", route=path)(scope, receive, send)
            return
        inner = path[len(prefix) :] or "/"
        raw = scope.get("raw_path")
        child = {**scope, "path": inner}
        if isinstance(raw, bytes) and raw.startswith(prefix.encode()):
            child["raw_path"] = raw[len(prefix) :] or b"/"
        else:  # the client escaped a character of the prefix: the raw path no longer says the same
            child.pop("raw_path", None)
        await self.app(child, receive, send)
