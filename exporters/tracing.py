"""OpenTelemetry tracing for inference endpoints: an ASGI middleware and a decorator.

One span per request (kind SERVER) carries the HTTP attributes and the GenAI semantic-convention
attributes (``exporters.generation``) plus, for streamed responses, time to first token and time per
output token; a client that leaves mid-answer marks it cancelled, not failed. Nothing here installs a
global provider: the caller passes the provider it built (``build_tracer_provider``), so tests and several
servers in one process never fight over it. The names most callers need are importable from here.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Awaitable, Callable, Sequence

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import TracerProvider
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from exporters.generation import (
    CANCELLED,
    ERROR_TYPE,
    GEN_AI_INPUT_TOKENS,
    GEN_AI_OPERATION,
    GEN_AI_OUTPUT_TOKENS,
    HTTP_ROUTE,
    HTTP_STATUS,
    SERVER_TPOT,
    SERVER_TTFT,
    UNMATCHED_ROUTE,
    GenerationSpan,
    _current,
    current_generation,
)
from exporters.http_exchange import Exchange, start_span
from exporters.span_export import (
    GPU_UUIDS_RESOURCE,
    RecordAllSampler,
    build_tracer_provider,
    configured_span_exporter,
)
from gpuwarden.clock import Clock, SystemClock

__all__ = [
    "CANCELLED",
    "ERROR_TYPE",
    "GEN_AI_INPUT_TOKENS",
    "GEN_AI_OPERATION",
    "GEN_AI_OUTPUT_TOKENS",
    "GPU_UUIDS_RESOURCE",
    "HTTP_ROUTE",
    "HTTP_STATUS",
    "SERVER_TPOT",
    "SERVER_TTFT",
    "UNMATCHED_ROUTE",
    "GenerationSpan",
    "RecordAllSampler",
    "TracingMiddleware",
    "build_tracer_provider",
    "configured_span_exporter",
    "current_generation",
    "inference_endpoint",
]

logger = logging.getLogger(__name__)


class TracingMiddleware:
    """Pure ASGI middleware: one SERVER span per HTTP request, ended when the last byte is sent.

    Handlers reach the span through ``current_generation()``. For a handler that never called
    ``set_request`` nor ``token()``, the OpenAI-compatible request and response bodies are read instead
    (``exporters.completion_sniffer``): model and sampling parameters, content deltas of an SSE stream,
    ``usage`` when present. ``provider_name`` is the ``gen_ai.provider.name`` of GenAI requests.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        tracer_provider: TracerProvider,
        clock: Clock | None = None,
        excluded_paths: Sequence[str] = ("/metrics", "/healthz"),
        excluded_prefixes: Sequence[str] = (),
        provider_name: str | None = None,
    ) -> None:
        self.app = app
        self._tracer = tracer_provider.get_tracer(__name__)
        self._clock = clock or SystemClock()
        self._excluded = frozenset(excluded_paths)
        self._excluded_prefixes = tuple(excluded_prefixes)
        self._provider_name = provider_name

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Trace one HTTP request; pass everything else through."""
        if (
            scope["type"] != "http"
            or scope["path"] in self._excluded
            or (self._excluded_prefixes and scope["path"].startswith(self._excluded_prefixes))
        ):
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        clock = self._clock
        start = clock.time()
        span = start_span(self._tracer, scope, method, start, {})
        gen = GenerationSpan(span, clock, start, self._provider_name)
        exchange = Exchange(gen, method, send, receive)
        await _run_traced(self.app, scope, exchange, trace.set_span_in_context(span))


async def _run_traced(app: ASGIApp, scope: Scope, exchange: Exchange, context: Context) -> None:
    """Run ``app`` through ``exchange`` with the span's context and generation current, then end the span
    (with the failure, if ``app`` raised)."""
    ctx_token = otel_context.attach(context)
    gen_token = _current.set(exchange.gen)
    failure: BaseException | None = None
    try:
        await app(scope, exchange.receive, exchange.send)
    except BaseException as exc:
        failure = exc
        raise
    finally:
        _current.reset(gen_token)
        otel_context.detach(ctx_token)
        exchange.end(scope, failure)


Endpoint = Callable[[Request], Awaitable[Response]]


def inference_endpoint(
    operation: str,
    *,
    tracer_provider: TracerProvider | None = None,
    clock: Clock | None = None,
    provider_name: str | None = None,
) -> Callable[[Endpoint], Endpoint]:
    """Decorate a Starlette endpoint as a GenAI operation.

    Under ``TracingMiddleware`` it names the operation on the request's span. Without the middleware it
    opens the span itself (when given a provider) and keeps it, and ``current_generation()``, until the
    response's last byte is sent, so a streamed body is traced (tokens, TTFT, a client that leaves) the
    same way either way.
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
            return await _traced_call(
                endpoint, request, tracer, the_clock, operation=operation, provider=provider_name
            )

        return wrapper

    return decorate


async def _traced_call(
    endpoint: Endpoint,
    request: Request,
    tracer: trace.Tracer,
    clock: Clock,
    *,
    operation: str,
    provider: str | None,
) -> Response:
    scope = request.scope
    method = request.method
    start = clock.time()
    span = start_span(tracer, scope, method, start, {GEN_AI_OPERATION: operation})
    gen = GenerationSpan(span, clock, start, provider)
    gen._attributes[GEN_AI_OPERATION] = operation
    context = trace.set_span_in_context(span)
    ctx_token = otel_context.attach(context)
    gen_token = _current.set(gen)
    try:
        response = await endpoint(request)
    except BaseException as exc:
        Exchange(gen, method, _unbound_send, _unbound_receive).end(scope, exc)
        raise
    finally:
        _current.reset(gen_token)
        otel_context.detach(ctx_token)
    exchange = Exchange(gen, method, _unbound_send, _unbound_receive)
    if not gen.annotated and method == "POST":
        try:
            exchange.body = [await request.body()]  # cached when the endpoint read it
        except (RuntimeError, ClientDisconnect):
            exchange.body = None
    return _TracedResponse(response, exchange, context)


async def _unbound_send(message: Message) -> None:
    raise RuntimeError("an exchange's send is bound when its response is sent")


async def _unbound_receive() -> Message:
    raise RuntimeError("an exchange's receive is bound when its response is sent")


class _TracedResponse(Response):
    """Sends the endpoint's response through an ``_Exchange``, with the request's span and generation
    current while the body is produced, and ends the span after the last byte (or the client's leaving)."""

    def __init__(self, inner: Response, exchange: Exchange, context: Context) -> None:
        # Response.__init__ is not called: this object renders nothing itself, the inner response does.
        self.inner = inner
        self.exchange = exchange
        self.context = context
        self.status_code = inner.status_code
        self.background = None
        self.raw_headers = inner.raw_headers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Send the inner response, traced."""
        exchange = self.exchange
        exchange._send, exchange._receive = send, receive
        await _run_traced(self.inner, scope, exchange, self.context)
