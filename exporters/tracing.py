"""OpenTelemetry tracing for inference endpoints: provider setup, an ASGI middleware and a decorator.

One span per request (kind SERVER) carries the HTTP attributes and the GenAI semantic-convention
attributes (``gen_ai.operation.name``, ``gen_ai.request.model``, ``gen_ai.usage.*``) plus, for streamed
responses, time to first token and time per output token. Nothing here installs a global provider: the
caller passes the provider it built, so tests and several servers in one process never fight over it.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncIterable, Awaitable, Callable, Sequence
from contextvars import ContextVar
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from opentelemetry.sdk.trace.sampling import (
    Decision,
    ParentBased,
    Sampler,
    SamplingResult,
    TraceIdRatioBased,
)
from opentelemetry.trace import Link, SpanKind, Status, StatusCode, TraceState
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gpuwarden.clock import Clock, SystemClock
from gpuwarden.config import TracingConfig

logger = logging.getLogger(__name__)

# Attribute names (OpenTelemetry semantic conventions; the two timing ones reuse the GenAI metric names).
HTTP_METHOD = "http.request.method"
HTTP_ROUTE = "http.route"
HTTP_STATUS = "http.response.status_code"
URL_PATH = "url.path"
ERROR_TYPE = "error.type"
GEN_AI_OPERATION = "gen_ai.operation.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
GEN_AI_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
GEN_AI_TTFT = "gen_ai.server.time_to_first_token"
GEN_AI_TPOT = "gen_ai.server.time_per_output_token"
GEN_AI_STREAM = "gpuwarden.gen_ai.stream"
GPU_UUIDS_RESOURCE = "gpuwarden.gpu.uuids"
UNMATCHED_ROUTE = "unmatched"


class RecordAllSampler(Sampler):
    """Record every span (so span metrics count every request) but export only a sampled share.

    Spans the ratio drops become RECORD_ONLY: span processors see them, the batch exporter skips them.
    """

    def __init__(self, ratio: float) -> None:
        self._inner = ParentBased(TraceIdRatioBased(ratio))
        self._ratio = ratio

    def should_sample(  # noqa: PLR0917 - the SDK's Sampler signature
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: TraceState | None = None,
    ) -> SamplingResult:
        """Sample like ParentBased(TraceIdRatioBased), but turn DROP into RECORD_ONLY."""
        result = self._inner.should_sample(
            parent_context, trace_id, name, kind, attributes, links, trace_state
        )
        if result.decision is Decision.DROP:
            return SamplingResult(Decision.RECORD_ONLY, attributes, result.trace_state)
        return result

    def get_description(self) -> str:
        """Name shown in SDK diagnostics."""
        return f"RecordAllSampler{{{self._ratio}}}"


def build_tracer_provider(
    config: TracingConfig,
    *,
    gpu_uuids: Sequence[str] = (),
    span_exporter: SpanExporter | None = None,
    processors: Sequence[SpanProcessor] = (),
) -> TracerProvider:
    """Set up the OpenTelemetry SDK for one service; the provider is returned, never made global.

    ``processors`` (span metrics, say) run before the batch exporter. ``span_exporter`` overrides the
    exporter chosen by ``config.span_exporter`` (tests pass an ``InMemorySpanExporter``).
    """
    attributes: dict[str, str | list[str]] = {"service.name": config.service_name}
    if config.pod_name:
        attributes["k8s.pod.name"] = config.pod_name
    if gpu_uuids:
        attributes[GPU_UUIDS_RESOURCE] = list(gpu_uuids)
    provider = TracerProvider(
        resource=Resource.create(attributes), sampler=RecordAllSampler(config.sample_ratio)
    )
    for processor in processors:
        provider.add_span_processor(processor)
    exporter = span_exporter if span_exporter is not None else configured_span_exporter(config)
    if exporter is not None:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def configured_span_exporter(config: TracingConfig) -> SpanExporter | None:
    """The exporter the configuration asks for: OTLP/HTTP, console, or None for no export."""
    kind = config.span_exporter
    if kind == "auto":
        kind = "otlp" if config.otlp_endpoint else "console"
    if kind == "none":
        return None
    if kind == "console":
        return ConsoleSpanExporter()
    if not config.otlp_endpoint:
        # TracingConfig validation cannot see this pairing; fail at start, not at first export.
        raise ValueError("tracing.span_exporter is otlp but tracing.otlp_endpoint is not set")
    return OTLPSpanExporter(endpoint=config.otlp_endpoint, timeout=config.otlp_timeout_seconds)


def _now_ns(clock: Clock) -> int:
    return round(clock.time() * 1e9)


class GenerationSpan:
    """The GenAI view of one request's span: what the handler tells it about the model and tokens."""

    __slots__ = ("_clock", "_first_ns", "_last_ns", "_start_ns", "annotated", "span", "stream", "tokens")

    def __init__(self, span: trace.Span, clock: Clock, start_ns: int) -> None:
        self.span = span
        self._clock = clock
        self._start_ns = start_ns
        self._first_ns = 0
        self._last_ns = 0
        self.tokens = 0
        self.stream = False
        self.annotated = False

    def set_request(
        self,
        *,
        operation: str,
        model: str,
        input_tokens: int,
        max_tokens: int | None = None,
        stream: bool = False,
    ) -> None:
        """Record what was asked for; a handler that calls this counts its own tokens."""
        self.annotated = True
        self.stream = stream
        attributes: dict[str, str | int | bool] = {
            GEN_AI_OPERATION: operation,
            GEN_AI_REQUEST_MODEL: model,
            GEN_AI_INPUT_TOKENS: input_tokens,
            GEN_AI_STREAM: stream,
        }
        if max_tokens is not None:
            attributes[GEN_AI_REQUEST_MAX_TOKENS] = max_tokens
        self.span.set_attributes(attributes)  # one lock round-trip instead of five
        self.span.update_name(f"{operation} {model}")

    def token(self, count: int = 1) -> None:
        """Note ``count`` output tokens produced now; the first one sets time to first token."""
        now = _now_ns(self._clock)
        if self.tokens == 0:
            self._first_ns = now
            if self.stream:
                self.span.set_attribute(GEN_AI_TTFT, (now - self._start_ns) / 1e9)
        self._last_ns = now
        self.tokens += count

    def finish(self, *, response_model: str | None = None, output_tokens: int | None = None) -> None:
        """Record the response: output tokens (default: those counted) and time per output token."""
        produced = self.tokens if output_tokens is None else output_tokens
        attributes: dict[str, str | int | float] = {GEN_AI_OUTPUT_TOKENS: produced}
        if response_model is not None:
            attributes[GEN_AI_RESPONSE_MODEL] = response_model
        if self.stream and self.tokens > 1:
            attributes[GEN_AI_TPOT] = (self._last_ns - self._first_ns) / 1e9 / (self.tokens - 1)
        self.span.set_attributes(attributes)


_current: ContextVar[GenerationSpan | None] = ContextVar("gpuwarden_generation", default=None)


def current_generation() -> GenerationSpan | None:
    """The GenAI span of the request being handled, or None outside an instrumented request."""
    return _current.get()


_PROPAGATOR = TraceContextTextMapPropagator()
_TRACE_HEADERS = frozenset({b"traceparent", b"tracestate"})


def _parent_context(scope: Scope) -> Context | None:
    carrier = {
        name.decode("latin-1"): value.decode("latin-1")
        for name, value in scope.get("headers", ())
        if name in _TRACE_HEADERS
    }
    return _PROPAGATOR.extract(carrier) if carrier else None


def _route_of(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE


def _finish_http_span(span: trace.Span, method: str, route: str, status: int) -> None:
    if status >= 500:
        span.set_attributes({HTTP_ROUTE: route, HTTP_STATUS: status, ERROR_TYPE: str(status)})
        span.set_status(Status(StatusCode.ERROR))
    else:
        span.set_attributes({HTTP_ROUTE: route, HTTP_STATUS: status})
    if not span.is_recording():
        return
    name = getattr(span, "name", "")
    if name == method:
        span.update_name(f"{method} {route}")


class TracingMiddleware:
    """Pure ASGI middleware: one SERVER span per HTTP request, ended when the last byte is sent.

    Handlers reach the span through ``current_generation()``. For an SSE response whose handler never
    called ``set_request``, each body chunk other than ``data: [DONE]`` counts as one token, which is what
    OpenAI-compatible servers stream.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        tracer_provider: TracerProvider,
        clock: Clock | None = None,
        excluded_paths: Sequence[str] = ("/metrics", "/healthz"),
    ) -> None:
        self.app = app
        self._tracer = tracer_provider.get_tracer(__name__)
        self._clock = clock or SystemClock()
        self._excluded = frozenset(excluded_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Trace one HTTP request; pass everything else through."""
        if scope["type"] != "http" or scope["path"] in self._excluded:
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        start_ns = _now_ns(self._clock)
        span = self._tracer.start_span(
            method,
            context=_parent_context(scope),
            kind=SpanKind.SERVER,
            attributes={HTTP_METHOD: method, URL_PATH: scope["path"]},
            start_time=start_ns,
        )
        gen = GenerationSpan(span, self._clock, start_ns)
        status = 500
        sse = False

        async def traced_send(message: Message) -> None:
            nonlocal status, sse
            if message["type"] == "http.response.start":
                status = message["status"]
                sse = any(
                    name == b"content-type" and value.startswith(b"text/event-stream")
                    for name, value in message.get("headers", ())
                )
                gen.stream = gen.stream or sse
            elif sse and not gen.annotated:
                body = message.get("body", b"")
                if body and not body.startswith(b"data: [DONE]"):
                    gen.token()
            await send(message)

        ctx_token = otel_context.attach(trace.set_span_in_context(span))
        gen_token = _current.set(gen)
        try:
            await self.app(scope, receive, traced_send)
        except BaseException as exc:
            span.record_exception(exc)
            span.set_attribute(ERROR_TYPE, type(exc).__qualname__)
            status = 500
            raise
        finally:
            _current.reset(gen_token)
            otel_context.detach(ctx_token)
            if sse and not gen.annotated:
                gen.finish()
            _finish_http_span(span, method, _route_of(scope), status)
            span.end(end_time=_now_ns(self._clock))


Endpoint = Callable[[Request], Awaitable[Response]]


def inference_endpoint(
    operation: str, *, tracer_provider: TracerProvider | None = None, clock: Clock | None = None
) -> Callable[[Endpoint], Endpoint]:
    """Decorate a Starlette endpoint as a GenAI operation.

    Under ``TracingMiddleware`` it names the operation on the request's span. Without the middleware it
    opens the span itself (when given a provider) and, for a streamed response, ends it after the last
    chunk, so the endpoint is traced the same way either way.
    """
    tracer = tracer_provider.get_tracer(__name__) if tracer_provider is not None else None
    the_clock = clock or SystemClock()

    def decorate(endpoint: Endpoint) -> Endpoint:
        @functools.wraps(endpoint)
        async def wrapper(request: Request) -> Response:
            gen = current_generation()
            if gen is not None or tracer is None:
                if gen is not None:
                    gen.span.set_attribute(GEN_AI_OPERATION, operation)
                return await endpoint(request)
            return await _traced_call(endpoint, request, tracer, the_clock, operation)

        return wrapper

    return decorate


async def _traced_call(
    endpoint: Endpoint, request: Request, tracer: trace.Tracer, clock: Clock, operation: str
) -> Response:
    method = request.method
    start_ns = _now_ns(clock)
    span = tracer.start_span(
        method,
        context=_parent_context(request.scope),
        kind=SpanKind.SERVER,
        attributes={HTTP_METHOD: method, URL_PATH: request.url.path, GEN_AI_OPERATION: operation},
        start_time=start_ns,
    )
    gen = GenerationSpan(span, clock, start_ns)
    route = _route_of(request.scope)
    ctx_token = otel_context.attach(trace.set_span_in_context(span))
    gen_token = _current.set(gen)
    try:
        response = await endpoint(request)
    except BaseException as exc:
        span.record_exception(exc)
        _finish_http_span(span, method, route, 500)
        span.end(end_time=_now_ns(clock))
        raise
    finally:
        _current.reset(gen_token)
        otel_context.detach(ctx_token)
    if isinstance(response, StreamingResponse):
        response.body_iterator = _end_after(
            response.body_iterator,
            span=span,
            method=method,
            route=route,
            status=response.status_code,
            clock=clock,
        )
    else:
        _finish_http_span(span, method, route, response.status_code)
        span.end(end_time=_now_ns(clock))
    return response


async def _end_after(
    body: AsyncIterable[Any], *, span: trace.Span, method: str, route: str, status: int, clock: Clock
) -> AsyncIterable[Any]:
    # The stream runs in another task after the endpoint returned: handlers keep the GenerationSpan
    # they got from current_generation() rather than looking it up again inside the stream.
    try:
        async for chunk in body:
            yield chunk
    except BaseException as exc:
        span.record_exception(exc)
        status = 500
        raise
    finally:
        _finish_http_span(span, method, route, status)
        span.end(end_time=_now_ns(clock))
