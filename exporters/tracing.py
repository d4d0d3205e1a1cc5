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
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult, TraceIdRatioBased
from opentelemetry.trace import Link, SpanKind, Status, StatusCode, TraceState
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import Attributes, AttributeValue
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

    It decides like ``ParentBased(TraceIdRatioBased(ratio))`` (a parent's decision wins; a root is sampled
    when the low 64 bits of its trace id fall under the ratio), except that a span that would be dropped
    becomes RECORD_ONLY: span processors see it, the batch exporter skips it. Written out rather than
    wrapping the SDK samplers, because it runs on every request (a third of the wrapped version's cost).
    """

    def __init__(self, ratio: float) -> None:
        self._ratio = ratio
        self._bound = TraceIdRatioBased.get_bound_for_rate(ratio)

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
        """Follow a valid parent's sampled flag; otherwise sample by trace id; never DROP."""
        parent = trace.get_current_span(parent_context).get_span_context()
        if parent.is_valid:
            sampled = parent.trace_flags.sampled
            state: TraceState | None = parent.trace_state
        else:
            sampled = trace_id & _TRACE_ID_LIMIT < self._bound
            state = None
        return SamplingResult(_SAMPLE if sampled else _RECORD, attributes, state)

    def get_description(self) -> str:
        """Name shown in SDK diagnostics."""
        return f"RecordAllSampler{{{self._ratio}}}"


_TRACE_ID_LIMIT = TraceIdRatioBased.TRACE_ID_LIMIT
_SAMPLE = Decision.RECORD_AND_SAMPLE
_RECORD = Decision.RECORD_ONLY


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


_ERROR_STATUS = Status(StatusCode.ERROR)
_DONE = b"data: [DONE]"


class GenerationSpan:
    """The GenAI view of one request's span: what the handler tells it about the model and tokens.

    Attributes are gathered here and written to the span once, when the request ends: one validation pass
    and one lock round-trip per request instead of one per call. ``token()`` only counts and reads the
    clock (about 0.3 us), so a handler may call it for every token it streams.
    """

    __slots__ = (
        "_attributes",
        "_first",
        "_last",
        "_name",
        "_now",
        "_start",
        "annotated",
        "span",
        "stream",
        "tokens",
    )

    def __init__(self, span: trace.Span, clock: Clock, start: float) -> None:
        self.span = span
        self._now = clock.time
        self._start = start
        self._first = 0.0
        self._last = 0.0
        self._attributes: dict[str, AttributeValue] = {}
        self._name: str | None = None
        self.tokens = 0
        self.stream = False
        self.annotated = False

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        """Put one more attribute on the request's span (written when the request ends)."""
        self._attributes[key] = value

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
        attributes = self._attributes
        attributes[GEN_AI_OPERATION] = operation
        attributes[GEN_AI_REQUEST_MODEL] = model
        attributes[GEN_AI_INPUT_TOKENS] = input_tokens
        attributes[GEN_AI_STREAM] = stream
        if max_tokens is not None:
            attributes[GEN_AI_REQUEST_MAX_TOKENS] = max_tokens
        self._name = f"{operation} {model}"

    def token(self, count: int = 1) -> None:
        """Note ``count`` output tokens produced now; the first one sets time to first token."""
        now = self._now()
        if not self.tokens:
            self._first = now
        self._last = now
        self.tokens += count

    def finish(self, *, response_model: str | None = None, output_tokens: int | None = None) -> None:
        """Record the response: output tokens (default: those counted) and time per output token."""
        attributes = self._attributes
        attributes[GEN_AI_OUTPUT_TOKENS] = self.tokens if output_tokens is None else output_tokens
        if response_model is not None:
            attributes[GEN_AI_RESPONSE_MODEL] = response_model
        if self.stream and self.tokens > 1:
            attributes[GEN_AI_TPOT] = (self._last - self._first) / (self.tokens - 1)

    def _end_span(self, method: str, route: str, status: int) -> None:
        """Write the gathered attributes, the HTTP outcome and the name, then end the span now."""
        span = self.span
        attributes = self._attributes
        if self.stream and self.tokens:
            attributes[GEN_AI_TTFT] = self._first - self._start
        attributes[HTTP_ROUTE] = route
        attributes[HTTP_STATUS] = status
        if status >= 500:
            attributes[ERROR_TYPE] = str(status)
            span.set_status(_ERROR_STATUS)
        span.set_attributes(attributes)
        if self._name is not None:
            span.update_name(self._name)
        elif span.is_recording() and getattr(span, "name", "") == method:
            span.update_name(f"{method} {route}")
        span.end(end_time=round(self._now() * 1e9))


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


def _is_sse(message: Message) -> bool:
    for name, value in message.get("headers", ()):  # a loop, not any(genexpr): once per request, cheaper
        if name == b"content-type":
            return bool(value.startswith(b"text/event-stream"))
    return False


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
        start = self._clock.time()
        span = self._tracer.start_span(
            method,
            context=_parent_context(scope),
            kind=SpanKind.SERVER,
            attributes={HTTP_METHOD: method, URL_PATH: scope["path"]},
            start_time=round(start * 1e9),
        )
        gen = GenerationSpan(span, self._clock, start)
        status = 500
        sse = False
        started = False

        def traced_send(message: Message) -> Awaitable[None]:
            # A plain function handing back send's awaitable: no coroutine frame of its own per chunk.
            nonlocal status, sse, started
            if started:
                if sse and not gen.annotated:
                    body = message.get("body", b"")
                    if body and not body.startswith(_DONE):
                        gen.token()
            elif message["type"] == "http.response.start":
                started = True
                status = message["status"]
                sse = _is_sse(message)
                gen.stream = gen.stream or sse
            return send(message)

        ctx_token = otel_context.attach(trace.set_span_in_context(span))
        gen_token = _current.set(gen)
        try:
            await self.app(scope, receive, traced_send)
        except BaseException as exc:
            span.record_exception(exc)
            status = 500
            raise
        finally:
            _current.reset(gen_token)
            otel_context.detach(ctx_token)
            if sse and not gen.annotated:
                gen.finish()
            gen._end_span(method, _route_of(scope), status)


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
            gen = _current.get()
            if gen is not None:
                gen.set_attribute(GEN_AI_OPERATION, operation)
                return await endpoint(request)
            if tracer is None:
                return await endpoint(request)
            return await _traced_call(endpoint, request, tracer, the_clock, operation)

        return wrapper

    return decorate


async def _traced_call(
    endpoint: Endpoint, request: Request, tracer: trace.Tracer, clock: Clock, operation: str
) -> Response:
    method = request.method
    start = clock.time()
    span = tracer.start_span(
        method,
        context=_parent_context(request.scope),
        kind=SpanKind.SERVER,
        attributes={HTTP_METHOD: method, URL_PATH: request.url.path, GEN_AI_OPERATION: operation},
        start_time=round(start * 1e9),
    )
    gen = GenerationSpan(span, clock, start)
    route = _route_of(request.scope)
    ctx_token = otel_context.attach(trace.set_span_in_context(span))
    gen_token = _current.set(gen)
    try:
        response = await endpoint(request)
    except BaseException as exc:
        span.record_exception(exc)
        gen._end_span(method, route, 500)
        raise
    finally:
        _current.reset(gen_token)
        otel_context.detach(ctx_token)
    if isinstance(response, StreamingResponse):
        response.body_iterator = _end_after(
            response.body_iterator, gen=gen, method=method, route=route, status=response.status_code
        )
    else:
        gen._end_span(method, route, response.status_code)
    return response


async def _end_after(
    body: AsyncIterable[Any], *, gen: GenerationSpan, method: str, route: str, status: int
) -> AsyncIterable[Any]:
    # The stream runs in another task after the endpoint returned: handlers keep the GenerationSpan
    # they got from current_generation() rather than looking it up again inside the stream.
    try:
        async for chunk in body:
            yield chunk
    except BaseException as exc:
        gen.span.record_exception(exc)
        status = 500
        raise
    finally:
        gen._end_span(method, route, status)
