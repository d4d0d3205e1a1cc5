"""Tracing setup, the ASGI middleware and the endpoint decorator, checked with the in-memory exporter."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from exporters.tracing import (
    GPU_UUIDS_RESOURCE,
    TracingMiddleware,
    build_tracer_provider,
    configured_span_exporter,
    current_generation,
    inference_endpoint,
)
from gpuwarden.clock import FakeClock
from gpuwarden.config import TracingConfig
from tests.exporters.asgi_client import AsgiClient

CLOCK_START = 1_767_225_600.0


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    p = build_tracer_provider(TracingConfig(service_name="toy"), span_exporter=exporter)
    yield p
    p.shutdown()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(CLOCK_START)


def finished(provider: TracerProvider, exporter: InMemorySpanExporter) -> list[ReadableSpan]:
    provider.force_flush()
    return list(exporter.get_finished_spans())


def toy_app(clock: FakeClock) -> list[Route]:
    async def chat(request: Request) -> Response:
        gen = current_generation()
        assert gen is not None
        body = await request.json()
        gen.set_request(
            operation="chat", model=body["model"], input_tokens=3, max_tokens=4, stream=body["stream"]
        )
        if not body["stream"]:
            clock.advance(0.2)
            gen.token(4)
            gen.finish(response_model="toy-1")
            return JSONResponse({"ok": True})

        async def tokens() -> AsyncIterator[bytes]:
            clock.advance(0.05)  # prefill
            for i in range(5):
                if i:
                    clock.advance(0.01)
                gen.token()
                yield f"data: {i}\n\n".encode()
            gen.finish(response_model="toy-1")
            yield b"data: [DONE]\n\n"

        return StreamingResponse(tokens(), media_type="text/event-stream")

    async def fail(request: Request) -> Response:
        return JSONResponse({"error": "gpu lost"}, status_code=503)

    async def bad(request: Request) -> Response:
        return JSONResponse({"error": "messages"}, status_code=400)

    async def crash(request: Request) -> Response:
        raise RuntimeError("boom")

    async def plain_sse(request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            for i in range(3):
                clock.advance(0.02)
                yield b'data: {"choices":[{"index":0,"delta":{"content":"t%d"}}]}\n\n' % i
            yield b"data: [DONE]\n\n"

        return StreamingResponse(chunks(), media_type="text/event-stream")

    async def metrics(request: Request) -> Response:
        return Response("ok")

    return [
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/fail", fail, methods=["POST"]),
        Route("/v1/bad", bad, methods=["POST"]),
        Route("/v1/crash", crash, methods=["POST"]),
        Route("/v1/sse", plain_sse),
        Route("/metrics", metrics),
    ]


@pytest.fixture
def client(provider: TracerProvider, clock: FakeClock) -> AsgiClient:
    app = Starlette(
        routes=toy_app(clock),
        middleware=[Middleware(TracingMiddleware, tracer_provider=provider, clock=clock)],
    )
    return AsgiClient(app)


def test_chat_request_is_one_server_span_with_genai_attributes(
    client: AsgiClient, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    r = client.post("/v1/chat/completions", json={"model": "toy-1", "stream": False})
    assert r.status_code == 200
    [span] = finished(provider, exporter)
    assert span.kind is SpanKind.SERVER
    assert span.name == "chat toy-1"
    attrs = dict(span.attributes or {})
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.request.model"] == "toy-1"
    assert attrs["gen_ai.response.model"] == "toy-1"
    assert attrs["gen_ai.usage.input_tokens"] == 3
    assert attrs["gen_ai.usage.output_tokens"] == 4
    assert attrs["gen_ai.request.max_tokens"] == 4
    assert attrs["http.route"] == "/v1/chat/completions"
    assert attrs["http.response.status_code"] == 200
    assert "gpuwarden.server.time_to_first_token" not in attrs  # only streamed responses have a TTFT
    assert span.end_time is not None and span.start_time is not None
    assert (span.end_time - span.start_time) / 1e9 == pytest.approx(0.2, abs=1e-6)
    assert span.status.status_code is StatusCode.UNSET


def test_streamed_response_records_time_to_first_token_and_time_per_output_token(
    client: AsgiClient, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    r = client.post("/v1/chat/completions", json={"model": "toy-1", "stream": True})
    assert r.text.endswith("data: [DONE]\n\n")
    [span] = finished(provider, exporter)
    attrs = dict(span.attributes or {})
    assert attrs["gpuwarden.server.time_to_first_token"] == pytest.approx(0.05, abs=1e-6)
    assert attrs["gpuwarden.server.time_per_output_token"] == pytest.approx(0.01, abs=1e-6)
    assert attrs["gen_ai.usage.output_tokens"] == 5
    assert span.end_time is not None and span.start_time is not None
    assert (span.end_time - span.start_time) / 1e9 == pytest.approx(0.09, abs=1e-6)


def test_5xx_response_marks_the_span_as_error_and_4xx_does_not(
    client: AsgiClient, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    assert client.post("/v1/fail").status_code == 503
    assert client.post("/v1/bad").status_code == 400
    fail, bad = finished(provider, exporter)
    assert fail.status.status_code is StatusCode.ERROR
    assert dict(fail.attributes or {})["error.type"] == "503"
    assert bad.status.status_code is StatusCode.UNSET
    assert fail.name == "POST /v1/fail"


def test_unhandled_exception_is_recorded_as_a_500_error_span(
    client: AsgiClient, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    assert client.post("/v1/crash").status_code == 500
    [span] = finished(provider, exporter)
    attrs = dict(span.attributes or {})
    assert attrs["http.response.status_code"] == 500
    assert attrs["error.type"] == "500"
    assert span.status.status_code is StatusCode.ERROR
    assert [e.name for e in span.events] == ["exception"]


def test_sse_from_an_unannotated_handler_counts_each_content_delta_as_a_token(
    client: AsgiClient, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    client.get("/v1/sse")
    [span] = finished(provider, exporter)
    attrs = dict(span.attributes or {})
    assert attrs["gen_ai.usage.output_tokens"] == 3
    assert attrs["gpuwarden.server.time_to_first_token"] == pytest.approx(0.02, abs=1e-6)
    assert attrs["gpuwarden.server.time_per_output_token"] == pytest.approx(0.02, abs=1e-6)


def test_incoming_traceparent_makes_the_request_span_a_child_of_the_callers_trace(
    client: AsgiClient, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    parent_id = "00f067aa0ba902b7"
    client.post(
        "/v1/chat/completions",
        json={"model": "toy-1", "stream": False},
        headers={"traceparent": f"00-{trace_id}-{parent_id}-01"},
    )
    [span] = finished(provider, exporter)
    assert format(span.context.trace_id, "032x") == trace_id
    assert span.parent is not None and format(span.parent.span_id, "016x") == parent_id


def test_metrics_and_health_paths_are_not_traced(
    client: AsgiClient, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    client.get("/metrics")
    assert finished(provider, exporter) == []


def test_unknown_path_span_is_named_by_its_method_alone_with_no_route(
    client: AsgiClient, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    # HTTP semantic conventions: the name is {method} when there is no route, and http.route is left out
    # (neither the raw path, an unbounded value, nor a made-up "unmatched" route).
    assert client.get("/v1/user-1234").status_code == 404
    [span] = finished(provider, exporter)
    assert span.name == "GET"
    assert "http.route" not in dict(span.attributes or {})


def test_decorator_without_middleware_traces_a_streamed_endpoint_until_its_last_chunk(
    provider: TracerProvider, exporter: InMemorySpanExporter, clock: FakeClock
) -> None:
    @inference_endpoint("text_completion", tracer_provider=provider, clock=clock)
    async def complete(request: Request) -> Response:
        gen = current_generation()
        assert gen is not None
        gen.set_request(operation="text_completion", model="toy-1", input_tokens=2, stream=True)

        async def tokens() -> AsyncIterator[str]:
            for i in range(3):
                clock.advance(0.1)
                gen.token()
                yield f"data: {i}\n\n"
            gen.finish()

        return StreamingResponse(tokens(), media_type="text/event-stream")

    app = Starlette(routes=[Route("/v1/completions", complete, methods=["POST"])])
    AsgiClient(app).post("/v1/completions")
    [span] = finished(provider, exporter)
    attrs = dict(span.attributes or {})
    assert attrs["gen_ai.operation.name"] == "text_completion"
    assert attrs["gen_ai.usage.output_tokens"] == 3
    assert attrs["http.route"] == "/v1/completions"
    assert span.end_time is not None and span.start_time is not None
    assert (span.end_time - span.start_time) / 1e9 == pytest.approx(0.3, abs=1e-6)


def test_decorator_under_the_middleware_adds_the_operation_to_the_one_request_span(
    provider: TracerProvider, exporter: InMemorySpanExporter, clock: FakeClock
) -> None:
    @inference_endpoint("embeddings", tracer_provider=provider, clock=clock)
    async def embed(request: Request) -> Response:
        return JSONResponse({})

    app = Starlette(
        routes=[Route("/v1/embeddings", embed, methods=["POST"])],
        middleware=[Middleware(TracingMiddleware, tracer_provider=provider, clock=clock)],
    )
    AsgiClient(app).post("/v1/embeddings")
    [span] = finished(provider, exporter)
    assert dict(span.attributes or {})["gen_ai.operation.name"] == "embeddings"


def test_provider_carries_service_pod_and_gpu_uuids_and_is_not_made_global(
    exporter: InMemorySpanExporter,
) -> None:
    cfg = TracingConfig(service_name="llama-serve", pod_name="llama-serve-0")
    p = build_tracer_provider(cfg, gpu_uuids=["GPU-a", "GPU-b"], span_exporter=exporter)
    try:
        attrs = p.resource.attributes
        assert attrs["service.name"] == "llama-serve"
        assert attrs["k8s.pod.name"] == "llama-serve-0"
        assert tuple(attrs[GPU_UUIDS_RESOURCE]) == ("GPU-a", "GPU-b")  # type: ignore[arg-type]
        assert trace.get_tracer_provider() is not p
    finally:
        p.shutdown()


def test_sample_ratio_zero_exports_no_span_yet_span_processors_still_see_every_request(
    exporter: InMemorySpanExporter, clock: FakeClock
) -> None:
    seen: list[str] = []

    class Seen(SpanProcessor):
        def on_end(self, span: ReadableSpan) -> None:
            seen.append(span.name)

    p = build_tracer_provider(TracingConfig(sample_ratio=0.0), span_exporter=exporter, processors=[Seen()])
    app = Starlette(
        routes=toy_app(clock), middleware=[Middleware(TracingMiddleware, tracer_provider=p, clock=clock)]
    )
    AsgiClient(app).post("/v1/chat/completions", json={"model": "toy-1", "stream": False})
    p.force_flush()
    assert exporter.get_finished_spans() == ()
    assert seen == ["chat toy-1"]
    p.shutdown()


@pytest.mark.parametrize(
    ("cfg", "kind"),
    [
        (TracingConfig(), ConsoleSpanExporter),
        (TracingConfig(otlp_endpoint="http://127.0.0.1:4318/v1/traces"), OTLPSpanExporter),
        (TracingConfig(span_exporter="none", otlp_endpoint="http://127.0.0.1:4318/v1/traces"), type(None)),
    ],
    ids=["console-without-endpoint", "otlp-with-endpoint", "none"],
)
def test_exporter_follows_the_configuration(cfg: TracingConfig, kind: type) -> None:
    exp = configured_span_exporter(cfg)
    assert isinstance(exp, kind)
    if exp is not None:
        exp.shutdown()


def test_otlp_exporter_without_an_endpoint_is_refused_at_setup() -> None:
    with pytest.raises(ValueError, match="otlp_endpoint"):
        configured_span_exporter(TracingConfig(span_exporter="otlp"))


@pytest.mark.parametrize(
    ("ratio", "flags", "exported"),
    [(1.0, "00", False), (0.0, "01", True)],
    ids=["unsampled-parent-wins-over-ratio-1", "sampled-parent-wins-over-ratio-0"],
)
def test_callers_sampling_decision_decides_export_yet_every_request_is_recorded(
    clock: FakeClock, ratio: float, flags: str, exported: bool
) -> None:
    seen: list[bool] = []

    class Seen(SpanProcessor):
        def on_end(self, span: ReadableSpan) -> None:
            seen.append(span.context.trace_flags.sampled)

    exporter = InMemorySpanExporter()
    p = build_tracer_provider(TracingConfig(sample_ratio=ratio), span_exporter=exporter, processors=[Seen()])
    app = Starlette(
        routes=toy_app(clock), middleware=[Middleware(TracingMiddleware, tracer_provider=p, clock=clock)]
    )
    AsgiClient(app).post(
        "/v1/chat/completions",
        json={"model": "toy-1", "stream": False},
        headers={"traceparent": f"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-{flags}"},
    )
    p.force_flush()
    assert seen == [exported]
    assert len(exporter.get_finished_spans()) == (1 if exported else 0)
    p.shutdown()


def test_ratio_samples_about_that_share_of_root_traces(clock: FakeClock) -> None:
    exporter = InMemorySpanExporter()
    p = build_tracer_provider(TracingConfig(sample_ratio=0.25), span_exporter=exporter)
    tracer = p.get_tracer("t")
    for _ in range(2000):
        tracer.start_span("root", kind=SpanKind.SERVER).end()
    p.force_flush()
    assert 350 < len(exporter.get_finished_spans()) < 650
    p.shutdown()
