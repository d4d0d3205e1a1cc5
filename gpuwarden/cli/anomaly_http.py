"""``anomaly run``'s HTTP port: ``/metrics`` (scores, bands, health), liveness (``/healthz``, ``/-/healthy``),
readiness (``/-/ready``), and 404 for the rest.

prometheus_client's own server answered every path with the whole of ``/metrics``, so a probe of
``/healthz`` always saw 200, whatever the service's state.
"""

from __future__ import annotations

import json
import logging
import socket
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted

from anomaly.exposition import Chunks, gzip_member
from anomaly.health import liveness, readiness
from anomaly.service import AnomalyService

logger = logging.getLogger(__name__)
INDEX = b"gpuwarden anomaly run: see /metrics, /healthz (liveness) and /-/ready (readiness)\n"
PROBES = {"/healthz": liveness, "/-/healthy": liveness, "/-/ready": readiness}
ALLOWED = "GET, HEAD"
ALLOWED_TEXT = f"method not allowed: this port answers {ALLOWED}\n".encode()


def metrics_body(
    service: AnomalyService, registry: CollectorRegistry, accept: str, accept_encoding: str = ""
) -> tuple[Chunks, str, bool]:
    """``/metrics``' body in chunks, its content type and whether it is gzipped, for a scrape's ``Accept`` and
    ``Accept-Encoding``: the service's scores and bands as the chosen encoder writes them
    (``AnomalyCollector.render_bands``, once a tick), then ``registry``'s families
    (``service.collector.status``, a forwarder's), which must not hold the bands again. Gzipped where the
    scrape takes it (Prometheus asks for it): two gzip members, the bands' compressed once a tick."""
    encoder, content_type = choose_encoder(accept)
    gzipped = gzip_accepted(accept_encoding)  # as prometheus_client's own server reads the header
    bands = service.collector.render_bands(encoder, content_type, gzipped=gzipped)
    rest = encoder(registry)
    return (*bands, *(gzip_member((rest,)) if gzipped else (rest,))), content_type, gzipped


def serve_http(
    service: AnomalyService, registry: CollectorRegistry, host: str, port: int
) -> ThreadingHTTPServer:
    """Start serving in a daemon thread; ``shutdown()`` and ``server_close()`` stop it. Raises ``OSError``
    when the address cannot be bound. ``registry``: what ``/metrics`` serves after the scores and bands."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            if path == "/metrics":
                exposition, content_type, gzipped = metrics_body(
                    service, registry, self.headers.get("Accept", ""), self.headers.get("Accept-Encoding", "")
                )
                self._send(200, content_type, exposition, encoding="gzip" if gzipped else "")
            elif path in PROBES:
                status, body = PROBES[path](service)
                self._send(status, "application/json", json.dumps(body).encode())
            elif path == "/":
                self._send(200, "text/plain; charset=utf-8", INDEX)
            else:
                self._send(
                    404, "text/plain; charset=utf-8", b"not found: see /metrics, /healthz and /-/ready\n"
                )

        def do_HEAD(self) -> None:
            """As GET without the body: serve's probe paths take HEAD, and some probes send it."""
            self.do_GET()

        def __getattr__(self, name: str) -> Callable[[], None]:
            # socketserver answers a method without a do_<METHOD> with a 501 HTML page: this port serves
            # only reads, so any other method is 405 naming them, as serve and the exporter answer.
            if name.startswith("do_"):
                return self._not_allowed
            raise AttributeError(name)

        def _not_allowed(self) -> None:
            self._send(405, "text/plain; charset=utf-8", ALLOWED_TEXT, allow=ALLOWED)

        def _send(
            self, status: int, content_type: str, body: bytes | Chunks, allow: str = "", encoding: str = ""
        ) -> None:
            chunks = (body,) if isinstance(body, bytes) else body  # written in turn, never joined
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            if encoding:
                self.send_header("Content-Encoding", encoding)
            self.send_header("Content-Length", str(sum(map(len, chunks))))
            if allow:
                self.send_header("Allow", allow)
            self.end_headers()
            if self.command != "HEAD":
                for chunk in chunks:
                    self.wfile.write(chunk)

        def log_message(self, format: str, *args: object) -> None:
            """One line per tick says what the service did; a line per scrape would drown it."""

    class Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6 if ":" in host else socket.AF_INET  # "::" listens on IPv6 too

        def handle_error(self, request: object, client_address: object) -> None:
            """A client gone before its answer was written (a scrape that timed out) is not an error of the
            service: socketserver printed a traceback on stderr for each one."""
            if isinstance(sys.exc_info()[1], ConnectionError):
                logger.debug("client left before its answer was written", extra={"client": client_address})
                return
            super().handle_error(request, client_address)  # type: ignore[arg-type]

    server = Server((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="anomaly-http", daemon=True).start()
    return server
