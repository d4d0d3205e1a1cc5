"""What a collector answers an OTLP/HTTP export, against a local stand-in: a partial success's rejected spans
are counted and said, and the standard timeout variables bound how long an export waits for the answer."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace import TracerProvider

from exporters.otlp_answers import partial_success
from exporters.span_export import SpanExportCounts, build_tracer_provider
from exporters.span_settings import resolve_tracing
from exporters.spanmetrics import SpanMetrics
from gpuwarden.config import TracingConfig
from tests.integration.servers import free_port

Answer = Callable[[int], bytes]  # the body answered to a batch of that many spans


def rejecting(reason: str, kept: int = 1) -> Answer:
    """A collector that keeps ``kept`` spans of each batch and rejects the rest, saying ``reason``."""

    def answer(n: int) -> bytes:
        body = ExportTraceServiceResponse()
        body.partial_success.rejected_spans = max(0, n - kept)
        body.partial_success.error_message = reason
        return bytes(body.SerializeToString())

    return answer


@contextmanager
def collector(answer: Answer, hold_seconds: float = 0.0) -> Iterator[str]:
    """A local OTLP/HTTP traces receiver answering 200 with ``answer``'s body, each answer held
    ``hold_seconds`` (or until the receiver stops): yields its traces URL."""
    stopping = threading.Event()

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            batch = ExportTraceServiceRequest.FromString(self.rfile.read(int(self.headers["Content-Length"])))
            n = sum(len(scope.spans) for resource in batch.resource_spans for scope in resource.scope_spans)
            stopping.wait(hold_seconds)
            body = answer(n)
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", free_port()), Receiver)
    server.daemon_threads, server.block_on_close = True, False  # a held answer does not hold the test
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1/traces"
    finally:
        stopping.set()
        server.shutdown()
        server.server_close()


def spans(provider: TracerProvider, n: int) -> None:
    tracer = provider.get_tracer("t")
    for _ in range(n):
        tracer.start_span("s").end()


def test_spans_a_collector_rejects_in_a_partial_success_are_counted_rejected_and_said_once_per_reason(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A 200 whose ``partial_success`` rejected 4 of 5 spans counted all 5 exported, and nothing said so."""
    metrics = SpanMetrics()
    reasons = iter(["span too old", "span too old", "tenant over quota"])

    def answer(n: int) -> bytes:  # a reason per batch, the second as the first
        return rejecting(next(reasons))(n)

    with collector(answer) as url:
        provider = build_tracer_provider(
            TracingConfig(otlp_endpoint=url), export_counts=metrics.export_counts
        )
        with caplog.at_level(logging.WARNING, logger="exporters.span_export"):
            for _ in range(3):
                spans(provider, 5)
                provider.force_flush()
        provider.shutdown()
    name = "gpuwarden_inference_trace_spans_total"
    assert metrics.registry.get_sample_value(name, {"outcome": "exported"}) == 3
    assert metrics.registry.get_sample_value(name, {"outcome": "rejected"}) == 12
    assert metrics.export_counts.snapshot() == {"exported": 3, "failed": 0, "dropped": 0, "rejected": 12}
    said = [r.getMessage() for r in caplog.records]
    assert said == [
        f"span export: the collector rejected 4 of 5 spans (OTLP partial success): {reason}; counted in"
        ' _trace_spans_total{outcome="rejected"}, said again when its reason changes'
        for reason in ("span too old", "tenant over quota")
    ]


def test_a_collectors_warning_in_a_whole_success_is_said_and_every_span_counted_exported(
    caplog: pytest.LogCaptureFixture,
) -> None:
    counts = SpanExportCounts()
    with collector(rejecting("\x1b[2Jattribute cut", kept=5)) as url:
        provider = build_tracer_provider(TracingConfig(otlp_endpoint=url), export_counts=counts)
        with caplog.at_level(logging.WARNING, logger="exporters.span_export"):
            spans(provider, 5)
            provider.force_flush()
        provider.shutdown()
    assert counts.snapshot() == {"exported": 5, "failed": 0, "dropped": 0, "rejected": 0}
    assert [r.getMessage() for r in caplog.records] == [
        "span export: the collector took every span and warns: \\x1b[2Jattribute cut"
    ]


@pytest.mark.parametrize(
    ("body", "read"),
    [
        (b"", (0, "")),
        (b"\xff\xff", (0, "")),  # not OTLP's answer: a proxy's
        (rejecting("too old", kept=0)(3), (3, "too old")),
    ],
    ids=["empty", "not-protobuf", "partial-success"],
)
def test_an_answer_is_read_as_a_partial_success_only_where_it_is_one(
    body: bytes, read: tuple[int, str]
) -> None:
    assert partial_success(body) == read


@pytest.mark.parametrize("variable", ["OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"])
def test_a_collector_slower_than_the_timeout_variable_fails_the_export(variable: str) -> None:
    """The variables were not read: each export waited gpuwarden's own 10 s for the answer, and a collector
    answering in 9 s counted every span exported."""
    counts = SpanExportCounts()
    with collector(rejecting("", kept=5), hold_seconds=5) as url:  # in 5 s: within 10 s, past 300 ms
        settings = resolve_tracing(TracingConfig(otlp_endpoint=url), {variable: "300"})
        provider = build_tracer_provider(settings.config, export_counts=counts)
        spans(provider, 3)
        provider.force_flush()
        outcome = counts.snapshot()
        provider.shutdown()
    assert outcome == {"exported": 0, "failed": 3, "dropped": 0, "rejected": 0}
