"""What a stop signal says in the log of a server that drains its requests (inference-server, serve)."""

from __future__ import annotations

import asyncio
import logging
import signal
import socket
import threading
from typing import Any

import httpx
import pytest
import uvicorn

from gpuwarden.forced_stop import ForcingServer
from tests.integration.servers import free_port


class ShortRequestApp:
    """An ASGI app whose one request takes 0.1 s: in flight when the signal comes, ended before 0.5 s."""

    def __init__(self) -> None:
        self.arrived = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        self.loop = asyncio.get_running_loop()
        self.arrived.set()
        await asyncio.sleep(0.1)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def test_a_stop_signal_whose_request_in_flight_ends_at_once_is_still_said(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The first signal with a request in flight waited 0.5 s to say "stopping once 1 request(s) in flight
    # finish"; a request that ended sooner let the server stop first, the timer died with the loop, and
    # the stop logged nothing at all: an operator's SIGTERM looked unheard (loadgen at 5 req/s did it).
    app = ShortRequestApp()
    port = free_port()
    sock = socket.create_server(("127.0.0.1", port))
    server = ForcingServer(uvicorn.Config(app, lifespan="off", log_config=None))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    caplog.set_level(logging.INFO, logger="gpuwarden.forced_stop")
    with sock:
        thread.start()
        answers: list[int] = []
        client = threading.Thread(
            target=lambda: answers.append(httpx.get(f"http://127.0.0.1:{port}/", timeout=10).status_code)
        )
        client.start()
        assert app.arrived.wait(10)
        assert app.loop is not None
        app.loop.call_soon_threadsafe(server.handle_exit, signal.SIGTERM, None)  # as the signal, on the loop
        client.join(10)
        thread.join(10)
    assert not thread.is_alive()
    for said in [t for t in threading.enumerate() if t.name == "stop-signal-said"]:
        said.join(5)
    assert answers == [200]  # the request in flight finished: a drain
    assert "SIGTERM: stopping; SIGTERM or Ctrl-C again stops at once" in caplog.messages
