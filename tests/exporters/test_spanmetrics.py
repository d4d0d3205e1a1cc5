"""Span metrics: request spans become Prometheus counters and histograms with trace-id exemplars."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics import exposition as openmetrics
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from exporters.spanmetrics import SpanMetrics, status_class
from exporters.tracing import TracingMiddleware, build_tracer_provider, current_generation
from gpuwarden.clock import FakeClock
from gpuwarden.config import TracingConfig
from tests.exporters.asgi_client import AsgiClient

P = "gpuwarden_inference"


def openmetrics_latest(registry: CollectorRegistry) -> bytes:
    return bytes(openmetrics.generate_latest(registry))  # type: ignore[no-untyped-call]


class Stack:
    """A traced toy app wired to a SpanMetrics processor."""

    def __init__(self, sample_ratio: float = 1.0) -> None:
        self.clock = FakeClock()
        self.metrics = SpanMetrics()
        self.exporter = InMemorySpanExporter()
        self.provider: TracerProvider = build_tracer_provider(
            TracingConfig(sample_ratio=sample_ratio), span_exporter=self.exporter, processors=[self.metrics]
        )
        self.in_flight_seen: list[float | None] = []
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/status/{code:int}", self.status, methods=["POST"]),
                Route("/v1/completions", self.broken_stream, methods=["POST"]),
                Route("/metrics", self.metrics.asgi_app()),
            ],
            middleware=[Middleware(TracingMiddleware, tracer_provider=self.provider, clock=self.clock)],
        )
        self.client = AsgiClient(self.app)

    def value(self, name: str, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value(f"{P}_{name}", labels)

    async def chat(self, request: Request) -> Response:
        gen = current_generation()
        assert gen is not None
        self.in_flight_seen.append(self.value("requests_in_flight"))
        gen.set_request(operation="chat", model="toy-1", input_tokens=7, stream=True)

        async def tokens() -> AsyncIterator[bytes]:
            self.clock.advance(0.3)
            for i in range(4):
                if i:
                    self.clock.advance(0.02)
                gen.token()
                yield b"data: {}\n\n"
            gen.finish(response_model="toy-1")

        return StreamingResponse(tokens(), media_type="text/event-stream")

    async def broken_stream(self, request: Request) -> Response:
        """A third-party server's stream (it reports nothing itself): two tokens, then an in-band error."""

        async def events() -> AsyncIterator[bytes]:
            for piece in ("a", "b"):
                self.clock.advance(0.02)
                yield b'data: {"choices":[{"index":0,"text":"%s"}]}\n\n' % piece.encode()
            yield b'data: {"error":{"message":"gpu lost","type":"service_unavailable","code":503}}\n\n'

        return StreamingResponse(events(), media_type="text/event-stream")

    async def status(self, request: Request) -> Response:
        self.clock.advance(0.04)
        return JSONResponse({}, status_code=request.path_params["code"])


@pytest.fixture
def stack() -> Iterator[Stack]:
    s = Stack()
    yield s
    s.provider.shutdown()


@pytest.mark.parametrize(
    ("status", "expected"), [(200, "2xx"), (404, "4xx"), (503, "5xx"), (0, "0xx")], ids=str
)
def test_status_class_groups_by_hundreds(status: int, expected: str) -> None:
    assert status_class(status) == expected


def test_requests_are_counted_by_route_and_status_class_and_errors_by_4xx_and_5xx(stack: Stack) -> None:
    for code in (200, 200, 429, 503):
        stack.client.post(f"/v1/status/{code}")
    route = "/v1/status/{code:int}"
    assert stack.value("requests_total", route=route, status_class="2xx") == 2
    assert stack.value("requests_total", route=route, status_class="4xx") == 1
    assert stack.value("errors_total", route=route, status_class="4xx") == 1
    assert stack.value("errors_total", route=route, status_class="5xx") == 1
    assert stack.value("errors_total", route=route, status_class="2xx") is None
    assert stack.value("request_duration_seconds_count", route=route) == 4
    assert stack.value("request_duration_seconds_sum", route=route) == pytest.approx(0.16, abs=1e-5)


def test_a_stream_ended_by_an_in_band_error_is_an_error_with_the_tokens_sent(stack: Stack) -> None:
    # Its 200 went out before the failure: it was counted a success, its span UNSET, its tokens lost.
    assert stack.client.post("/v1/completions", json={"model": "toy-1", "stream": True}).status_code == 200
    route = "/v1/completions"
    assert stack.value("errors_total", route=route, status_class="2xx") == 1
    assert stack.value("output_tokens_total", route=route) == 2
    assert stack.value("cancelled_requests_total", route=route) == 0
    stack.provider.force_flush()
    [span] = stack.exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert dict(span.attributes or {})["error.type"] == "service_unavailable"


def test_streamed_chat_fills_ttft_inter_token_tokens_and_throughput_histograms(stack: Stack) -> None:
    stack.client.post("/v1/chat/completions", json={})
    route = "/v1/chat/completions"
    assert stack.value("time_to_first_token_seconds_sum", route=route) == pytest.approx(0.3, abs=1e-5)
    # 0.3 s lies in the (0.25, 0.5] bucket: not below 0.25, below 0.5.
    assert stack.value("time_to_first_token_seconds_bucket", route=route, le="0.25") == 0
    assert stack.value("time_to_first_token_seconds_bucket", route=route, le="0.5") == 1
    assert stack.value("time_per_output_token_seconds_sum", route=route) == pytest.approx(0.02, abs=1e-5)
    assert stack.value("input_tokens_total", route=route) == 7
    assert stack.value("output_tokens_total", route=route) == 4
    assert stack.value("output_tokens_per_second_sum", route=route) == pytest.approx(4 / 0.36, rel=1e-4)
    assert stack.value("request_duration_seconds_sum", route=route) == pytest.approx(0.36, abs=1e-5)


def test_in_flight_gauge_counts_a_request_while_it_runs_and_drops_after(stack: Stack) -> None:
    stack.client.post("/v1/chat/completions", json={})
    assert stack.in_flight_seen == [1.0]
    assert stack.value("requests_in_flight") == 0


def test_openmetrics_exposition_carries_the_trace_id_of_the_request_as_exemplar(stack: Stack) -> None:
    stack.client.post("/v1/status/503")
    stack.provider.force_flush()
    [span] = stack.exporter.get_finished_spans()
    trace_id = format(span.context.trace_id, "032x")
    text = openmetrics_latest(stack.metrics.registry).decode()
    line = next(
        ln
        for ln in text.splitlines()
        if ln.startswith(f"{P}_request_duration_seconds_bucket") and "0.05" in ln
    )
    assert f'# {{trace_id="{trace_id}"}} 0.04' in line


def test_metrics_endpoint_negotiates_openmetrics_with_exemplars_and_plain_text_without(stack: Stack) -> None:
    stack.client.post("/v1/status/200")
    om = stack.client.get("/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"})
    assert om.status_code == 200
    assert om.headers["content-type"].startswith("application/openmetrics-text")
    assert re.search(r'# \{trace_id="[0-9a-f]{32}"\}', om.text)
    plain = stack.client.get("/metrics")
    assert plain.status_code == 200
    assert plain.headers["content-type"].startswith("text/plain")
    assert "trace_id" not in plain.text
    assert f"{P}_requests_total" in plain.text


def test_unsampled_requests_are_counted_but_give_no_dead_link_exemplar() -> None:
    s = Stack(sample_ratio=0.0)
    try:
        s.client.post("/v1/status/200")
        assert s.value("requests_total", route="/v1/status/{code:int}", status_class="2xx") == 1
        assert "trace_id" not in openmetrics_latest(s.metrics.registry).decode()
    finally:
        s.provider.shutdown()


def test_requests_of_a_server_that_exports_no_span_give_no_dead_link_exemplar() -> None:
    # inference-server without an OTLP endpoint ("spans exported: none"), with --quiet-spans or under
    # OTEL_SDK_DISABLED: every request's trace id was an exemplar, a link to a trace no backend has.
    metrics = SpanMetrics()
    provider = build_tracer_provider(TracingConfig(span_exporter="none"), processors=[metrics])
    app = Starlette(
        routes=[Route("/v1/models", lambda request: JSONResponse({"data": []}))],
        middleware=[Middleware(TracingMiddleware, tracer_provider=provider)],
    )
    client = AsgiClient(app)
    try:
        assert client.get("/v1/models").status_code == 200
        parent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"  # sampled by the caller
        assert client.get("/v1/models", headers={"traceparent": parent}).status_code == 200
        assert (
            metrics.registry.get_sample_value(
                f"{P}_requests_total", {"route": "/v1/models", "status_class": "2xx"}
            )
            == 2
        )
        exemplars = re.findall(r'trace_id="([0-9a-f]{32})"', openmetrics_latest(metrics.registry).decode())
        assert set(exemplars) == {"4bf92f3577b34da6a3ce929d0e0e4736"}  # the caller's trace is in its backend
    finally:
        provider.shutdown()


def test_internal_spans_are_not_request_metrics(stack: Stack) -> None:
    tracer = stack.provider.get_tracer("t")
    with tracer.start_as_current_span("tokenize", kind=SpanKind.INTERNAL):
        pass
    assert stack.value("requests_in_flight") == 0
    assert "requests_total{" not in openmetrics_latest(stack.metrics.registry).decode()


def test_minutes_of_queueing_land_in_finite_ttft_and_latency_buckets_not_in_inf() -> None:
    metrics = SpanMetrics()
    provider = TracerProvider()
    provider.add_span_processor(metrics)
    span = provider.get_tracer("t").start_span("chat", kind=SpanKind.SERVER, start_time=0)
    span.set_attributes(
        {
            "http.route": "/v1/chat/completions",
            "http.response.status_code": 200,
            "gpuwarden.server.time_to_first_token": 300.0,  # five minutes in a queue
        }
    )
    span.end(end_time=1500 * 10**9)  # and 25 minutes to the last token
    route = {"route": "/v1/chat/completions"}

    def bucket(name: str, le: str) -> float | None:
        return metrics.registry.get_sample_value(f"{P}_{name}_bucket", {**route, "le": le})

    assert bucket("time_to_first_token_seconds", "160.0") == 0
    assert bucket("time_to_first_token_seconds", "640.0") == 1
    assert bucket("request_duration_seconds", "960.0") == 0
    assert bucket("request_duration_seconds", "1920.0") == 1


def test_a_span_ended_before_it_began_or_with_negative_counts_takes_no_sum_or_counter_down() -> None:
    # SpanMetrics is a span processor any provider can carry: a span ended (end_time) before its start, as
    # the SDK's own wall-clock times give across an NTP step back, observed a negative latency, and a
    # negative token count or timing took a counter or a histogram's sum down (rate() reads a reset).
    metrics = SpanMetrics()
    provider = TracerProvider()
    provider.add_span_processor(metrics)
    tracer = provider.get_tracer(__name__)
    attributes = {
        "http.route": "/v1/chat/completions",
        "http.response.status_code": 200,
        "gen_ai.usage.input_tokens": -5,
        "gen_ai.usage.output_tokens": -7,
        "gpuwarden.server.time_to_first_token": -3.0,
        "gpuwarden.server.time_per_output_token": float("nan"),
    }
    start = 1_767_225_600 * 10**9
    span = tracer.start_span("chat m", kind=SpanKind.SERVER, attributes=attributes, start_time=start)
    span.end(end_time=start - 60 * 10**9)
    route = {"route": "/v1/chat/completions"}
    value = metrics.registry.get_sample_value
    assert value(f"{P}_requests_total", {**route, "status_class": "2xx"}) == 1.0
    assert value(f"{P}_request_duration_seconds_count", route) == 1.0
    assert value(f"{P}_request_duration_seconds_sum", route) == 0.0
    assert value(f"{P}_input_tokens_total", route) == 0.0
    assert value(f"{P}_output_tokens_total", route) == 0.0
    assert value(f"{P}_time_to_first_token_seconds_count", route) == 0.0
    assert value(f"{P}_time_per_output_token_seconds_count", route) == 0.0
    provider.shutdown()


def test_a_routes_error_counters_start_at_0_with_its_first_request() -> None:
    # A third-party app's routes are known only once served: the first request on one brings its 4xx and
    # 5xx error counters at 0, so that the first errors later are an increase rate() sees.
    stack = Stack()
    assert stack.client.post("/v1/chat/completions", json={"model": "m"}).status_code == 200
    for klass in ("4xx", "5xx"):
        assert stack.value("errors_total", route="/v1/chat/completions", status_class=klass) == 0
    assert stack.value("cancelled_requests_total", route="/v1/chat/completions") == 0
    stack.provider.shutdown()
