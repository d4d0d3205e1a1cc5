"""Basic auth and the response headers of the web configuration file (``gpuwarden.webconfig``), as an ASGI
middleware around the exporter's or serve's app.

A bcrypt check costs about 100 ms at cost 10: paid by each scrape every 15 s and by each CLI call, it would
be most of the exporter's CPU. A password once found right is remembered (a SHA-256 of the user, hash and
password, never the password), as exporter-toolkit caches it; a wrong one is never remembered, so guessing
pays the full price each time. The check runs on a worker thread: the event loop keeps answering.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from gpuwarden.webconfig import Access, WebConfig

CACHE_SIZE = 128
# Checked for an unknown user, so that its answer takes as long as a known user's wrong password.
_DUMMY_HASH = b"$2b$10$0WNXUGHWbijItYjMFxrDFeElfWk5BQFfYKCOslJFzv0ZdPYvZrsFi"


class PasswordCheck:
    """Whether a user and password match the bcrypt hashes of ``basic_auth_users``; right answers cached."""

    def __init__(self, users: Mapping[str, str]) -> None:
        self.users = {user: hashed.encode() for user, hashed in users.items()}
        self._right: OrderedDict[bytes, str] = OrderedDict()  # a right password's key -> its user
        self._lock = threading.Lock()

    def update(self, users: Mapping[str, str]) -> None:
        """Check against ``users`` from now on (the file was read again): the remembered passwords of a user
        whose hash changed, or who is gone, are forgotten; the others' are kept."""
        hashes = {user: hashed.encode() for user, hashed in users.items()}
        with self._lock:
            changed = {u for u, h in self.users.items() if hashes.get(u) != h}
            self.users = hashes
            for key in [k for k, user in self._right.items() if user in changed]:
                del self._right[key]

    def _key(self, user: str, hashed: bytes, password: bytes) -> bytes:
        return hashlib.sha256(b"\0".join((user.encode(), hashed, password))).digest()

    def cached(self, user: str, password: bytes) -> bool:
        """True when this user and password were found right before (no bcrypt)."""
        with self._lock:
            hashed = self.users.get(user)
            if hashed is None:
                return False
            key = self._key(user, hashed, password)
            if key in self._right:
                self._right.move_to_end(key)
                return True
        return False

    def check(self, user: str, password: bytes) -> bool:
        """The bcrypt check (slow: call it off the event loop), its right answers remembered."""
        import bcrypt  # noqa: PLC0415 - only a server with basic_auth_users needs it

        with self._lock:
            hashed = self.users.get(user)
        # bcrypt only reads 72 bytes: a longer password is refused rather than cut (bcrypt 5 raises)
        candidate = password[:72]
        computed = bcrypt.hashpw(candidate, hashed if hashed is not None else _DUMMY_HASH)
        right = hashed is not None and len(password) <= 72 and hmac.compare_digest(computed, hashed)
        if right and hashed is not None:
            with self._lock:
                if self.users.get(user) != hashed:  # the file changed while bcrypt ran
                    return right
                self._right[self._key(user, hashed, password)] = user
                while len(self._right) > CACHE_SIZE:
                    self._right.popitem(last=False)
        return right


def _encoded(headers: Mapping[str, str]) -> list[tuple[bytes, bytes]]:
    return [(name.lower().encode(), value.encode()) for name, value in headers.items()]


def credentials(header: str) -> tuple[str, bytes] | None:
    """(user, password) of an ``Authorization: Basic`` header; None when it is no such header."""
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None
    user, colon, password = decoded.partition(b":")
    if not colon:
        return None
    try:
        return user.decode("utf-8"), password
    except UnicodeDecodeError:
        return None


class WebConfigMiddleware:
    """Refuses a request without the right basic-auth credentials (401 with ``WWW-Authenticate``) when
    ``users`` is not empty, and adds ``headers`` to every answer, a refusal's too. ``access``: the users and
    headers as the file says now, asked at each request (the file read again when it changed).

    ``bearer``: serve's API token. A request that carries it (``Authorization: Bearer``, the CLI's and
    Prometheus' way to post alerts) is let in without basic auth: it holds one header, which cannot carry
    both, and the token is a credential of its own, which serve's writes check again."""

    def __init__(
        self,
        app: ASGIApp,
        users: Mapping[str, str],
        headers: Mapping[str, str],
        bearer: str | None = None,
        access: Callable[[], Access] | None = None,
    ) -> None:
        self.app = app
        self.check = PasswordCheck(users)
        self.headers = _encoded(headers)
        self.bearer = bearer.encode() if bearer else None
        self._access = access
        self._seen: Access | None = None  # the first request takes what access() says then

    def _now(self) -> None:
        """Users and headers as the file says now."""
        if self._access is None:
            return
        access = self._access()
        if access is not self._seen:
            self._seen = access
            self.check.update(access.users)
            self.headers = _encoded(access.headers)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):  # lifespan
            await self.app(scope, receive, send)
            return
        self._now()
        if scope["type"] == "websocket" and self.check.users:  # none is served: nothing gets past
            await send({"type": "websocket.close", "code": 1008})
            return
        if self.check.users and not await self._allowed(scope):
            await self._unauthorized(send)
            return
        headers = self.headers
        if not headers:
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *headers]}
            await send(message)

        await self.app(scope, receive, with_headers)

    async def _allowed(self, scope: Scope) -> bool:
        header = next((v for k, v in scope.get("headers", []) if k == b"authorization"), None)
        if header is None:
            return False
        scheme, _, token = header.partition(b" ")
        if self.bearer is not None and scheme.lower() == b"bearer":
            return hmac.compare_digest(token.strip(), self.bearer)
        given = credentials(header.decode("latin-1"))
        if given is None:
            return False
        user, password = given
        if self.check.cached(user, password):
            return True
        return await run_in_threadpool(self.check.check, user, password)

    async def _unauthorized(self, send: Send) -> None:
        body = b"Unauthorized\n"
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            (b"www-authenticate", b'Basic realm="gpuwarden"'),
            *self.headers,
        ]
        await send({"type": "http.response.start", "status": 401, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def served(app: ASGIApp, web: WebConfig | None, bearer: str | None = None) -> tuple[ASGIApp, dict[str, Any]]:
    """``app`` as a server given ``web`` (``--web.config.file``) serves it, and the uvicorn options for the
    file's TLS: behind its basic auth and with its headers (``bearer``: serve's API token, let in too);
    ``app`` itself and no options without a file. The exporter, inference-server and serve all use it."""
    if web is None:
        return app, {}
    guarded = WebConfigMiddleware(app, web.users, web.headers, bearer=bearer, access=web.access)
    context = web.ssl_context
    return guarded, ({} if context is None else {"ssl_context_factory": lambda _config, _default: context})
