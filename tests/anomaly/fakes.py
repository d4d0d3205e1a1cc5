"""Small collectors and a fake Prometheus for feeding the anomaly service in tests."""

from __future__ import annotations

import http.server
import json
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs, urlparse

from prometheus_client.metrics_core import Metric


class TableCollector:
    """Collects whatever ``rows`` holds now: {(name, kind): [(labels, value), ...]}."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], list[tuple[dict[str, str], float]]] = {}
        self.fail = False

    def set(self, name: str, values: list[tuple[dict[str, str], float]], kind: str = "gauge") -> None:
        self.rows[(name, kind)] = values

    def collect(self) -> Iterable[Metric]:
        if self.fail:
            raise RuntimeError("collector broke")
        out = []
        for (name, kind), samples in self.rows.items():
            family = Metric(name.removesuffix("_total") if kind == "counter" else name, "test", kind)
            for labels, value in samples:
                family.add_sample(name, labels, value)
            out.append(family)
        return out


Sample = tuple[dict[str, str], float]
MAX_RESOLUTION = 11_000  # steps past the first that Prometheus answers in one query_range (11,001 points)
TOO_MANY_POINTS = (
    "exceeded maximum resolution of 11,000 points per timeseries."
    " Try decreasing the query resolution (?step=XX)"
)


def _millis(seconds: str) -> int:
    """A time or step parameter in whole milliseconds, as Prometheus parses and evaluates it."""
    return round(float(seconds) * 1000)


class FakePrometheus:
    """Prometheus' ``/api/v1/query_range`` on 127.0.0.1, answered from Python.

    ``answers[expr](t)`` gives the samples of ``expr`` at time ``t``; ``errors[expr] = (status, message)``
    answers an error instead. Every request's parameters are kept in ``requests``.

    As Prometheus, a range is evaluated at ``start``, ``start + step``, ... up to ``end`` and not past it,
    on whole milliseconds (``end`` off the grid ends at the last step before it), and a range of more than
    11,000 steps past its start is refused with HTTP 400 ``bad_data``.
    """

    def __init__(self) -> None:
        self.answers: dict[str, Callable[[float], list[Sample]]] = {}
        self.errors: dict[str, tuple[int, str]] = {}
        self.requests: list[dict[str, str]] = []
        # An answer of the server's own to a request before any series is read (its limits), or None.
        self.refusal: Callable[[dict[str, str]], tuple[int, dict[str, Any]] | None] = lambda params: None
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                params = {k: v[0] for k, v in parse_qs(urlparse(self.path).query).items()}
                fake.requests.append(params)
                status, body = fake.answer(params)
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, *args: object) -> None:
                pass

        self._handler = Handler
        self._placeholder: socket.socket | None = None  # holds the port while ``refuse`` has it closed
        self._listen(0)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def _listen(self, port: int) -> None:
        # SO_REUSEPORT (same user only) lets the listener and the placeholder be bound to the port at once,
        # so that it is never free between ``refuse`` and ``serve_again``: closed and bound again, a freed
        # port could be taken meanwhile by any other process (a test server, an outgoing connection).
        self._server = _ReusePortServer(("127.0.0.1", port), self._handler)
        self._thread = threading.Thread(  # its shutdown waits out one poll: 0.5 s by default, at every close
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def refusing(self) -> bool:
        """Whether the port is closed (``refuse``): a connection to it is refused, as to a Prometheus down."""
        return self._placeholder is not None

    def refuse(self) -> None:
        """Stop listening: connections are refused (not answered 503) until ``serve_again``. The port stays
        bound, by a socket that does not listen (a connection to it is refused, as to no socket at all),
        so no other process can take it meanwhile."""
        if not self.refusing:
            placeholder = _reuse_port_socket()
            try:
                placeholder.bind(self._server.server_address)
            except OSError:
                placeholder.close()  # else left to the garbage collector, whose warning blames another test
                raise
            self._placeholder = placeholder
            self._stop()

    def serve_again(self) -> None:
        """Listen again on the same port (and ``url``) after ``refuse``."""
        if self._placeholder is not None:
            self._listen(int(self.url.rsplit(":", 1)[1]))
            self._placeholder.close()
            self._placeholder = None

    def answer(self, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        expr = params.get("query", "")
        if expr in self.errors:
            status, message = self.errors[expr]
            return status, {"status": "error", "errorType": "bad_data", "error": message}
        start, end, step = (_millis(params[k]) for k in ("start", "end", "step"))
        if end < start or step <= 0:
            return 400, {"status": "error", "errorType": "bad_data", "error": "bad start, end or step"}
        if (end - start) // step > MAX_RESOLUTION:
            return 400, {"status": "error", "errorType": "bad_data", "error": TOO_MANY_POINTS}
        refused = self.refusal(params)
        if refused is not None:
            return refused
        series: dict[tuple[tuple[str, str], ...], list[list[Any]]] = {}
        for t in (ms / 1000 for ms in range(start, end + 1, step)):
            for labels, value in self.answers.get(expr, lambda _: [])(t):
                series.setdefault(tuple(sorted(labels.items())), []).append([t, repr(value)])
        result = [{"metric": dict(k), "values": v} for k, v in series.items()]
        return 200, {"status": "success", "data": {"resultType": "matrix", "result": result}}

    def close(self) -> None:
        """Stop serving and free the port."""
        self._stop()
        if self._placeholder is not None:
            self._placeholder.close()
            self._placeholder = None

    def _stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def _reuse_port_socket() -> socket.socket:
    """A TCP socket that may share its port with the fake's other sockets (``SO_REUSEPORT``)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    return sock


class _ReusePortServer(http.server.ThreadingHTTPServer):
    """``ThreadingHTTPServer`` bound with ``SO_REUSEPORT`` (see ``FakePrometheus._listen``)."""

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()
