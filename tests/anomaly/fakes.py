"""Small collectors and a fake Prometheus for feeding the anomaly service in tests."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import parse_qs, urlparse

import numpy as np
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


class FakePrometheus:
    """Prometheus' ``/api/v1/query_range`` on 127.0.0.1, answered from Python.

    ``answers[expr](t)`` gives the samples of ``expr`` at time ``t``; ``errors[expr] = (status, message)``
    answers an error instead. Every request's parameters are kept in ``requests``.
    """

    def __init__(self) -> None:
        self.answers: dict[str, Callable[[float], list[Sample]]] = {}
        self.errors: dict[str, tuple[int, str]] = {}
        self.requests: list[dict[str, str]] = []
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

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def answer(self, params: dict[str, str]) -> tuple[int, dict[str, Any]]:
        expr = params.get("query", "")
        if expr in self.errors:
            status, message = self.errors[expr]
            return status, {"status": "error", "errorType": "bad_data", "error": message}
        start, end, step = float(params["start"]), float(params["end"]), float(params["step"])
        series: dict[tuple[tuple[str, str], ...], list[list[Any]]] = {}
        for t in np.arange(start, end + step / 2, step).tolist():
            for labels, value in self.answers.get(expr, lambda _: [])(t):
                series.setdefault(tuple(sorted(labels.items())), []).append([t, repr(value)])
        result = [{"metric": dict(k), "values": v} for k, v in series.items()]
        return 200, {"status": "success", "data": {"resultType": "matrix", "result": result}}

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
