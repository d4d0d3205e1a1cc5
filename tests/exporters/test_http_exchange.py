"""How one traced request is read: third-party (unannotated) handlers, the decorator alone, and clients
that leave mid-answer. Checked with the SDK's in-memory span exporter over raw ASGI calls."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from exporters.spanmetrics import SpanMetrics
from exporters.tracing import TracingMiddleware, build_tracer_provider, current_generation, inference_endpoint
from gpuwarden.clock import FakeClock
from gpuwarden.config import TracingConfig
from tests.exporters.asgi_client import asgi_call as call

CHAT = {"model": "llama-3-8b", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 10}


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock(1_767_225_600.0)


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def metrics() -> SpanMetrics:
    return SpanMetrics()


@pytest.fixture
def provider(exporter: InMemorySpanExporter, metrics: SpanMetrics) -> Iterator[TracerProvider]:
    p = build_tracer_provider(TracingConfig(), span_exporter=exporter, processors=[metrics])
    yield p
    p.shutdown()


def the_span(provider: TracerProvider, exporter: InMemorySpanExporter) -> tuple[ReadableSpan, dict[str, Any]]:
    provider.force_flush()
    [span] = exporter.get_finished_spans()
    return span, dict(span.attributes or {})


def sse(obj: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(obj)}\n\n".encode()


def content(text: str) -> bytes:
    return sse(
        {"id": "chatcmpl-9", "model": "llama-3-8b", "choices": [{"index": 0, "delta": {"content": text}}]}
    )


def traced(provider: TracerProvider, clock: FakeClock, routes: Sequence[Route]) -> ASGIApp:
    return TracingMiddleware(
        Starlette(routes=list(routes)), tracer_provider=provider, clock=clock, provider_name="vllm"
    )


def vllm_like(clock: FakeClock, usage_completion_tokens: int | None) -> Route:
    """A vLLM-like app that reports nothing to its span: ping, role chunk, 10 tokens, two events in one
    chunk, a finish chunk with an empty delta, a usage chunk with no choice, [DONE]."""

    async def chat(request: Request) -> Response:
        async def events() -> AsyncIterator[bytes]:
            yield b": ping\n\n"
            clock.advance(0.2)  # prefill
            yield sse({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]})
            clock.advance(0.3)  # the first real token comes 0.5 s after the start
            for i in range(10):
                yield content(f"t{i}")
                clock.advance(0.01)
            yield content("a") + content("b")
            yield sse({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
            if usage_completion_tokens is not None:
                usage = {"prompt_tokens": 7, "completion_tokens": usage_completion_tokens}
                yield sse({"choices": [], "usage": usage})
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return Route("/v1/chat/completions", chat, methods=["POST"])


@pytest.mark.parametrize(
    ("usage", "expected_output"), [(None, 12), (20, 20)], ids=["counted-deltas", "usage-preferred"]
)
def test_vllm_like_stream_counts_content_deltas_and_takes_ttft_at_the_first_one(
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    clock: FakeClock,
    usage: int | None,
    expected_output: int,
) -> None:
    app = traced(provider, clock, [vllm_like(clock, usage)])
    asyncio.run(call(app, json.dumps({**CHAT, "temperature": 0.7, "stream": True}).encode()))
    span, attrs = the_span(provider, exporter)
    assert attrs["gen_ai.usage.output_tokens"] == expected_output
    assert attrs["gpuwarden.server.time_to_first_token"] == pytest.approx(0.5, abs=1e-6)
    assert span.name == "chat llama-3-8b"
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.provider.name"] == "vllm"
    assert attrs["gen_ai.request.model"] == "llama-3-8b"
    assert attrs["gen_ai.request.max_tokens"] == 10
    assert attrs["gen_ai.request.temperature"] == 0.7
    assert attrs["gen_ai.response.id"] == "chatcmpl-9"
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    if usage is not None:
        assert attrs["gen_ai.usage.input_tokens"] == 7


def test_json_answer_of_an_unannotated_handler_gives_its_usage_and_the_requested_model(
    provider: TracerProvider, exporter: InMemorySpanExporter, clock: FakeClock
) -> None:
    async def chat(request: Request) -> Response:
        await request.body()
        answer = {
            "id": "chatcmpl-3",
            "model": "llama-3-8b-instruct",
            "choices": [{"index": 0, "message": {"content": "x"}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10},
        }
        return JSONResponse(answer)

    app = traced(provider, clock, [Route("/v1/chat/completions", chat, methods=["POST"])])
    asyncio.run(call(app, json.dumps(CHAT).encode()))
    span, attrs = the_span(provider, exporter)
    assert (attrs["gen_ai.usage.input_tokens"], attrs["gen_ai.usage.output_tokens"]) == (7, 3)
    assert attrs["gen_ai.request.model"] == "llama-3-8b"
    assert attrs["gen_ai.response.model"] == "llama-3-8b-instruct"
    assert "gpuwarden.server.time_to_first_token" not in attrs
    assert span.name == "chat llama-3-8b"


def test_a_json_answer_on_another_path_gets_no_genai_attributes(
    provider: TracerProvider, exporter: InMemorySpanExporter, clock: FakeClock
) -> None:
    async def fault(request: Request) -> Response:
        return JSONResponse({"id": "f-1", "kind": "xid"}, status_code=201)

    app = traced(provider, clock, [Route("/faults", fault, methods=["POST"])])
    asyncio.run(call(app, b'{"model": "x"}', path="/faults"))
    span, attrs = the_span(provider, exporter)
    assert not [k for k in attrs if k.startswith("gen_ai.")]
    assert span.name == "POST /faults"


def test_a_handler_that_counts_its_own_tokens_is_not_counted_again_from_its_stream(
    provider: TracerProvider, exporter: InMemorySpanExporter, clock: FakeClock
) -> None:
    async def chat(request: Request) -> Response:
        async def events() -> AsyncIterator[bytes]:
            for i in range(3):
                gen = current_generation()
                assert gen is not None
                gen.token()
                yield content(str(i))
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    app = traced(provider, clock, [Route("/v1/chat/completions", chat, methods=["POST"])])
    asyncio.run(call(app, json.dumps(CHAT).encode()))
    _, attrs = the_span(provider, exporter)
    assert attrs["gen_ai.usage.output_tokens"] == 3


def streaming_route(clock: FakeClock, provider: TracerProvider | None, *, stall_after: int | None) -> Route:
    """An endpoint streaming 10 tokens through ``current_generation()`` looked up inside the stream; with
    ``stall_after`` it then waits for a token that never comes (only the client's leaving ends it)."""

    async def chat(request: Request) -> Response:
        async def events() -> AsyncIterator[bytes]:
            for i in range(10):
                clock.advance(0.1)
                yield content(str(i))
                gen = current_generation()
                assert gen is not None, "current_generation() is None inside the stream"
                gen.token()
                if stall_after is not None and i + 1 == stall_after:
                    await asyncio.Event().wait()
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    endpoint = inference_endpoint("chat", tracer_provider=provider, clock=clock)(chat)
    return Route("/v1/chat/completions", endpoint, methods=["POST"])


def test_decorator_alone_keeps_the_generation_current_while_the_stream_is_sent(
    provider: TracerProvider, exporter: InMemorySpanExporter, clock: FakeClock
) -> None:
    app = Starlette(routes=[streaming_route(clock, provider, stall_after=None)])
    sent = asyncio.run(call(app, json.dumps(CHAT).encode()))
    assert sent[-1] == {"type": "http.response.body", "body": b"", "more_body": False}
    _, attrs = the_span(provider, exporter)
    assert attrs["gen_ai.usage.output_tokens"] == 10
    assert attrs["gpuwarden.server.time_to_first_token"] == pytest.approx(0.1, abs=1e-6)


@pytest.mark.parametrize("middleware", [True, False], ids=["middleware", "decorator-alone"])
def test_a_client_leaving_mid_stream_cancels_the_span_with_the_tokens_sent_and_is_no_5xx(
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    metrics: SpanMetrics,
    clock: FakeClock,
    middleware: bool,
) -> None:
    route = streaming_route(clock, None if middleware else provider, stall_after=3)
    app: ASGIApp = traced(provider, clock, [route]) if middleware else Starlette(routes=[route])
    asyncio.run(call(app, json.dumps(CHAT).encode(), leave_after=3))
    span, attrs = the_span(provider, exporter)
    assert attrs["error.type"] == "cancelled"
    assert attrs["http.response.status_code"] == 200  # what the client got before leaving
    assert attrs["gen_ai.usage.output_tokens"] == 3
    assert span.status.status_code is StatusCode.UNSET
    assert (
        metrics.registry.get_sample_value(
            "gpuwarden_inference_cancelled_requests_total", {"route": "/v1/chat/completions"}
        )
        == 1.0
    )
    errors = metrics.registry.get_sample_value(
        "gpuwarden_inference_errors_total", {"route": "/v1/chat/completions", "status_class": "5xx"}
    )
    assert errors == 0  # the route's 5xx counter exists from its first request, at 0


def test_a_method_the_route_does_not_allow_is_not_labelled_with_the_route(
    provider: TracerProvider, exporter: InMemorySpanExporter, clock: FakeClock
) -> None:
    app = traced(provider, clock, [vllm_like(clock, None)])
    for method in ("OPTIONS", "HEAD"):
        sent = asyncio.run(call(app, method=method))
        assert sent[0]["status"] == 405
    provider.force_flush()
    spans = exporter.get_finished_spans()
    assert [s.name for s in spans] == ["OPTIONS", "HEAD"]
    assert all("http.route" not in dict(s.attributes or {}) for s in spans)


@pytest.mark.parametrize(
    ("host", "address", "port"),
    [
        (b"llm.example:8443", "llm.example", 8443),
        (b"[::1]:9000", "::1", 9000),
        (b"llm.example", "llm.example", 80),
    ],
    ids=["name-and-port", "ipv6", "default-port"],
)
def test_server_address_and_port_come_from_the_host_header(
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    clock: FakeClock,
    host: bytes,
    address: str,
    port: int,
) -> None:
    app = traced(provider, clock, [vllm_like(clock, None)])
    asyncio.run(call(app, json.dumps(CHAT).encode(), host=host))
    _, attrs = the_span(provider, exporter)
    assert (attrs["server.address"], attrs["server.port"]) == (address, port)


@pytest.mark.parametrize(
    "host",
    [
        b"llm.example:\xb2",
        b"llm.example:" + b"9" * 5000,
        b"llm.example:99999999999999999999",
        b"llm.example:65536",
    ],
    ids=["superscript-digit", "4300-digits-and-more", "past-int64", "past-65535"],
)
def test_a_host_port_that_is_no_tcp_port_is_left_off_the_span_and_the_request_is_served(
    provider: TracerProvider, exporter: InMemorySpanExporter, clock: FakeClock, host: bytes
) -> None:
    # The client writes the Host header: "²" (latin-1 0xB2) passes str.isdigit() but not int(), and so do
    # 5,000 digits (Python's 4,300-digit limit): the middleware raised and the request was answered 500.
    # A port past int64 reached the span and failed its OTLP encoding, logged with a traceback per request.
    app = traced(provider, clock, [vllm_like(clock, None)])
    sent = asyncio.run(call(app, json.dumps(CHAT).encode(), host=host))
    assert sent[0]["status"] == 200
    _, attrs = the_span(provider, exporter)
    assert attrs["server.address"] == "llm.example"
    assert "server.port" not in attrs


def test_counts_past_int64_in_a_request_or_its_usage_stay_off_the_span_and_encode_without_error(
    provider: TracerProvider,
    exporter: InMemorySpanExporter,
    clock: FakeClock,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A client's "max_tokens": 18446744073709551615 (refused by the app, read by the fallback) went on the
    # span; OTLP's integers are int64, so every such span logged an ERROR with a traceback at export.
    huge = 2**64 - 1

    async def chat(request: Request) -> Response:
        await request.body()
        answer = {
            "id": "c-1",
            "model": "m",
            "choices": [],
            "usage": {"prompt_tokens": huge, "completion_tokens": 3},
        }
        return JSONResponse(answer)

    app = traced(provider, clock, [Route("/v1/chat/completions", chat, methods=["POST"])])
    asyncio.run(call(app, json.dumps({**CHAT, "max_tokens": huge}).encode()))
    span, attrs = the_span(provider, exporter)
    assert "gen_ai.request.max_tokens" not in attrs
    assert "gen_ai.usage.input_tokens" not in attrs
    assert attrs["gen_ai.usage.output_tokens"] == 3
    with caplog.at_level(logging.ERROR):
        encode_spans([span])
    assert not caplog.records
