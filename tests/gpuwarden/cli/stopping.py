"""Helpers for tests that stop a server process the way Kubernetes does (SIGTERM) and look at what it left."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from tests.integration.servers import sigterm_once, wait_http_ok


def run_then_sigterm(
    argv: Sequence[str],
    ready_url: str,
    log_path: Path,
    *,
    env: Mapping[str, str] | None = None,
    meanwhile: Callable[[], None] = lambda: None,
) -> int:
    """Start ``argv``, wait until ``ready_url`` answers, run ``meanwhile``, send SIGHUP (a closing SSH
    session, a `systemctl reload`: the server must log that and go on), then SIGTERM; the exit status
    (negative: killed by that signal). SIGKILL after 30 s so that a hang fails instead of blocking."""

    def until(proc: subprocess.Popen[bytes]) -> None:
        wait_http_ok(ready_url, proc)
        meanwhile()
        proc.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 30
        while "SIGHUP: config reload is not supported" not in log_path.read_text():
            assert proc.poll() is None, f"SIGHUP ended it: {log_path.read_text()}"
            assert time.monotonic() < deadline, f"SIGHUP never logged: {log_path.read_text()}"
            time.sleep(0.05)

    return sigterm_once(argv, log_path, until, env=env)


@contextmanager
def sigterm_uncaught() -> Iterator[list[int]]:
    """Within the block, a SIGTERM that the code under test does not catch is put in the list instead of
    killing the test process (its default action): that code went on past the signal."""
    uncaught: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, _frame: uncaught.append(signum))
    try:
        yield uncaught
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass
class ReceivedSpan:
    """One span as an OTLP/HTTP collector received it."""

    name: str
    attributes: dict[str, Any]
    resource: dict[str, Any]


@dataclass
class OtlpCollector:
    """An OTLP/HTTP traces receiver on 127.0.0.1 that decodes and keeps every span posted to it."""

    base_url: str
    spans: list[ReceivedSpan] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)


def _value(v: Any) -> Any:
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind and kind != "array_value" else [_value(x) for x in v.array_value.values]


@contextmanager
def otlp_collector() -> Iterator[OtlpCollector]:
    """Run an ``OtlpCollector`` for the duration of the block."""
    lock = threading.Lock()
    holder: list[OtlpCollector] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            request = ExportTraceServiceRequest()
            request.ParseFromString(self.rfile.read(int(self.headers.get("content-length", 0))))
            with lock:
                holder[0].paths.append(self.path)
                for resource_spans in request.resource_spans:
                    resource = {kv.key: _value(kv.value) for kv in resource_spans.resource.attributes}
                    for scope_spans in resource_spans.scope_spans:
                        for span in scope_spans.spans:
                            attributes = {kv.key: _value(kv.value) for kv in span.attributes}
                            holder[0].spans.append(ReceivedSpan(span.name, attributes, resource))
            body = ExportTraceServiceResponse().SerializeToString()
            self.send_response(200)
            self.send_header("content-type", "application/x-protobuf")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder.append(OtlpCollector(f"http://127.0.0.1:{server.server_address[1]}"))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield holder[0]
    finally:
        server.shutdown()
        server.server_close()
