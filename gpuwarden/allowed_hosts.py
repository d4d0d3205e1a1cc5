"""``api.allowed_hosts``: serve answers only requests whose ``Host`` names it, against DNS rebinding.

A web page an operator opens can point its own name at 127.0.0.1 (DNS rebinding) and then read serve's API
from the browser as if it were the page's own site: incidents, silences and the inventory need no token. The
browser still sends the page's name in ``Host``, so a server that answers only the names it is reached by
refuses it, as Django's ``ALLOWED_HOSTS``, Starlette's ``TrustedHostMiddleware`` and Prometheus' guides
advise. The check is off unless names are listed: which names reach serve (a proxy's, a Service's, a node's)
only the operator knows.

A request without ``Host`` (HTTP/1.0) is taken: no browser sends one. The health probes (``/-/healthy``,
``/-/ready``, ``/healthz``) are answered whatever ``Host`` says: Kubernetes' probes send the pod's address,
which changes, and they tell nothing.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # config.py validates the names with this module: no starlette for every CLI command
    from starlette.types import ASGIApp, Receive, Scope, Send

logger = logging.getLogger(__name__)

PROBE_PATHS = frozenset({"/-/healthy", "/-/ready", "/healthz"})
_LOGGED_HOSTS_MAX = 100  # refused names logged once each, up to this many (a page can send any number)


def allowed_host_entry(value: str) -> str:
    """``value`` as it is compared (lower case, an IPv6 address without brackets); ``ValueError`` for
    what is not a host name or address alone (a port, a scheme, a path, blanks)."""
    name = value.strip().lower()
    if not name or name != value.lower():
        raise ValueError(f"{value!r}: write a host name or address, without blanks")
    if "/" in name or "@" in name:
        raise ValueError(f"{value!r}: write the host name alone, without scheme or path (oncall.example.com)")
    bare = name[1:-1] if name.startswith("[") and name.endswith("]") else name
    if ":" in bare:
        try:
            return str(ipaddress.IPv6Address(bare))
        except ValueError:
            raise ValueError(
                f"{value!r}: write the host name without the port (any port of an allowed name is taken)"
            ) from None
    return bare.removesuffix(".")


def request_host(header: str) -> str:
    """The host a ``Host`` header names, compared as ``allowed_host_entry`` writes it (port dropped)."""
    value = header.strip().lower()
    if value.startswith("["):  # [::1]:8080
        end = value.find("]")
        bare = value[1:end] if end > 0 else value
        try:
            return str(ipaddress.IPv6Address(bare))
        except ValueError:
            return bare
    return value.rsplit(":", 1)[0].removesuffix(".") if value.count(":") == 1 else value


class AllowedHosts:
    """ASGI middleware answering 400 to a request whose ``Host`` is not in ``api.allowed_hosts``."""

    def __init__(self, app: ASGIApp, hosts: Iterable[str]) -> None:
        self.app = app
        self.hosts = frozenset(allowed_host_entry(h) for h in hosts)
        self._logged: set[str] = set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass the request on when its ``Host`` is allowed (or absent, or a probe's, or no names are listed);
        else refuse it."""
        if not self.hosts or scope["type"] != "http" or scope["path"] in PROBE_PATHS:
            await self.app(scope, receive, send)
            return
        header = next((v for k, v in scope["headers"] if k == b"host"), None)
        if header is None:
            await self.app(scope, receive, send)
            return
        shown = header.decode("latin-1")
        if request_host(shown) in self.hosts:
            await self.app(scope, receive, send)
            return
        if shown not in self._logged and len(self._logged) < _LOGGED_HOSTS_MAX:
            self._logged.add(shown)
            # The client behind a proxy on this machine: uvicorn takes X-Forwarded-For from 127.0.0.1.
            client = scope.get("client")
            logger.warning(
                "request refused: its Host is not in api.allowed_hosts host=%r path=%s client=%s",
                shown,
                scope["path"],
                client[0] if client else "",
            )
        from gpuwarden.api_errors import error_response  # noqa: PLC0415 - see TYPE_CHECKING above

        message = (
            f"Host: {shown!r} is not in api.allowed_hosts; reach serve by a name listed there"
            " (or add this one)"
        )
        await error_response(400, message, "Host", route=scope["path"])(scope, receive, send)
