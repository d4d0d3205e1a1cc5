"""HTTP requests of the integration tests through one client, for their many polls.

``httpx.get`` builds a client for every call, and with it an SSL context that loads the whole CA bundle:
85 ms of CPU a call here, half a second of wall on the loaded two-core machine, paid at every turn of a
poll loop while the servers it waits for need those cores. This client keeps no connection alive, so each
request opens its own connection as ``httpx.get`` does and a server sees the same traffic.
"""

from __future__ import annotations

from typing import Any

import httpx

_CLIENT = httpx.Client(limits=httpx.Limits(max_keepalive_connections=0))


def get(url: str, **kwargs: Any) -> httpx.Response:
    """``httpx.get`` (the same defaults: a 5 s timeout, no redirects followed) on the shared client."""
    return _CLIENT.get(url, **kwargs)


def post(url: str, **kwargs: Any) -> httpx.Response:
    """``httpx.post`` on the shared client."""
    return _CLIENT.post(url, **kwargs)


def request(method: str, url: str, **kwargs: Any) -> httpx.Response:
    """``httpx.request`` on the shared client."""
    return _CLIENT.request(method, url, **kwargs)
