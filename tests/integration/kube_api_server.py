"""Serve kmock's in-memory Kubernetes API on 127.0.0.1 until SIGTERM: `python kube_api_server.py --port P`.

It prints `ready` once listening. `POST /_control/fail?count=N&status=S` makes the next N requests under
/api or /apis answer S (default 429) with a Kubernetes `Status` body and `Retry-After: 1`, before the
emulator sees them (a refused create stores nothing, as on a real API server).

On top of kmock it stamps what an API server always sets and readers rely on: `metadata.uid`,
`creationTimestamp`, `resourceVersion` (one counter, bumped on every create and merge patch), the
namespace from the URL; it gives lists their `kind`, `apiVersion` and `resourceVersion`, and errors the
API server's `reason` (`NotFound`, `AlreadyExists`). Run as a separate process because kmock is async.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import signal
import uuid
from typing import Any

import aiohttp.web
import attrs
import kmock

CONTROL_PATH = "/_control/fail"

# The `reason` a Kubernetes API server puts in a `Status` with this code.
REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    409: "AlreadyExists",
    410: "Expired",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def status_response(code: int, message: str, headers: dict[str, str] | None = None) -> aiohttp.web.Response:
    """A Kubernetes `Status` failure, as the API server sends it."""
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": REASONS.get(code, "Unknown"),
        "details": {"retryAfterSeconds": 1} if code == 429 else {},
        "code": code,
    }
    return aiohttp.web.json_response(body, status=code, headers=headers)


def is_api_path(path: str) -> bool:
    """Whether ``path`` is a Kubernetes API request (the ones injected failures apply to)."""
    return path in ("/api", "/apis") or path.startswith(("/api/", "/apis/"))


@attrs.define(kw_only=True)
class FaultyKubernetesEmulator(kmock.KubernetesEmulator):
    """kmock's emulator plus injected failures and the metadata a real API server fills in."""

    _fail_count: int = attrs.field(default=0, init=False)
    _fail_status: int = attrs.field(default=429, init=False)
    _version: int = attrs.field(default=0, init=False)  # the last resourceVersion handed out

    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        if raw_request.path == CONTROL_PATH and raw_request.method == "POST":
            self._fail_count = int(raw_request.query.get("count", "1"))
            self._fail_status = int(raw_request.query.get("status", "429"))
            return aiohttp.web.json_response({"count": self._fail_count, "status": self._fail_status})
        if self._fail_count > 0 and is_api_path(raw_request.path):
            self._fail_count -= 1
            message = f"injected failure ({self._fail_count} more to come)"
            return status_response(self._fail_status, message, headers={"Retry-After": "1"})
        return await super().__call__(raw_request)

    async def _handle(self, request: kmock.Request) -> aiohttp.web.StreamResponse:
        self._stamp(request)
        return await super()._handle(request)

    def _stamp(self, request: kmock.Request) -> None:
        """Fill in on a create or merge patch what the API server would."""
        if not isinstance(request.data, dict):
            return  # not an object, or a JSON patch (a list of operations)
        if request.action == kmock.action.CREATE:
            meta = request.data.setdefault("metadata", {})
            meta.setdefault("uid", str(uuid.uuid4()))
            now = datetime.datetime.now(tz=datetime.UTC).replace(microsecond=0)
            meta.setdefault("creationTimestamp", now.isoformat().replace("+00:00", "Z"))
            if request.namespace is not None:
                meta.setdefault("namespace", request.namespace)
        elif request.action != kmock.action.UPDATE:
            return
        self._version += 1
        request.data.setdefault("metadata", {})["resourceVersion"] = str(self._version)

    async def _serve_list(self, request: kmock.Request) -> dict[str, Any]:
        listing = await super()._serve_list(request)
        assert isinstance(listing, dict)  # kmock's list is a dict
        assert request.resource is not None  # a list is always of a resource
        group, version = request.resource.group, request.resource.version
        return {
            "apiVersion": f"{group}/{version}" if group else version,
            "kind": f"{self.resources[request.resource].kind or 'Unknown'}List",
            "metadata": {"resourceVersion": str(self._version)},
            "items": listing["items"],
        }

    async def _render_error(self, exc: Exception) -> aiohttp.web.StreamResponse:
        if isinstance(exc, kmock.KubernetesError):
            return status_response(exc.status, exc.message or exc.reason or type(exc).__name__)
        return await super()._render_error(exc)


async def serve(port: int) -> None:
    """Listen on 127.0.0.1:``port`` until SIGTERM or SIGINT."""
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stopping.set)
    async with FaultyKubernetesEmulator() as emulator:
        emulator.resources.load_bundled()  # built-in kinds list as empty, not 404, before any object exists
        # Short shutdown: a watch never ends by itself, and tests stop us with SIGKILL after 10 s.
        runner = aiohttp.web.ServerRunner(aiohttp.web.Server(emulator), shutdown_timeout=1.0)
        await runner.setup()
        try:
            await aiohttp.web.TCPSite(runner, "127.0.0.1", port).start()
            print("ready", flush=True)
            await stopping.wait()
        finally:
            await runner.cleanup()


def main() -> None:
    """Parse the command line and serve."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
