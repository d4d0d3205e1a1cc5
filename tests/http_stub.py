"""A local HTTP server for tests that stands in for a peer (a Prometheus, an address that is no gpuwarden)."""

from __future__ import annotations

import http.server
import threading


class QuietHandler(http.server.BaseHTTPRequestHandler):
    """A request handler that logs nothing."""

    def log_message(self, format: str, *args: object) -> None:
        pass


class LocalServer:
    """Serves ``handler`` on a free port of 127.0.0.1 in a thread; ``url`` reaches it."""

    def __init__(self, handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        # Polled every 50 ms, not 0.5 s: ``close`` waits for the next poll, and tests start many of these.
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class FixedAnswer(LocalServer):
    """A server that answers every request with one status and body, and remembers the paths asked and the
    ``Authorization`` each request carried."""

    def __init__(self, status: int, body: bytes) -> None:
        stub = self
        self.paths: list[str] = []
        self.authorizations: list[str | None] = []

        class Handler(QuietHandler):
            def _answer(self) -> None:
                stub.paths.append(self.path)
                stub.authorizations.append(self.headers.get("Authorization"))
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

        super().__init__(Handler)
