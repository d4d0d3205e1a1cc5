"""Call an ASGI app in-process over httpx (Starlette's TestClient now wants a package we do not ship)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
from starlette.types import ASGIApp, Message


class AsgiClient:
    """A synchronous, in-process HTTP client for one ASGI app; a fresh event loop per request."""

    def __init__(self, app: ASGIApp, client: tuple[str, int] = ("127.0.0.1", 123)) -> None:
        self.app = app
        self.client = client

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        """Send one request and return the whole response."""

        async def go() -> httpx.Response:
            transport = httpx.ASGITransport(app=self.app, raise_app_exceptions=False, client=self.client)
            async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1") as c:
                return await c.request(method, url, **kwargs)

        return asyncio.run(go())

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        """GET ``url``."""
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        """POST ``url``."""
        return self.request("POST", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        """DELETE ``url``."""
        return self.request("DELETE", url, **kwargs)


async def asgi_call(
    app: ASGIApp,
    body: bytes = b"",
    *,
    path: str = "/v1/chat/completions",
    method: str = "POST",
    host: bytes = b"llm.example:8443",
    leave_after: int | None = None,
    leave_when: Callable[[], bool] | None = None,
) -> list[Message]:
    """One request over raw ASGI (spec 2.3, as uvicorn serves it); returns the messages sent.

    The client leaves (``http.disconnect``) once ``leave_after`` non-empty body chunks were sent, or at
    the first ``receive`` after the body for which ``leave_when()`` is true."""
    sent: list[Message] = []
    gone = asyncio.Event()
    delivered = False

    async def receive() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        if leave_when is None or not leave_when():
            await gone.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        sent.append(message)
        chunks = sum(1 for m in sent if m["type"] == "http.response.body" and m.get("body"))
        if leave_after is not None and chunks >= leave_after:
            gone.set()

    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", host), (b"content-type", b"application/json")],
        "client": ("127.0.0.1", 50000),
        "server": ("10.0.0.1", 8000),
    }
    await app(scope, receive, send)
    return sent
