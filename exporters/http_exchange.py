"""One traced HTTP exchange: the request's SERVER span from the first byte received to the last byte sent.

``_Exchange`` wraps an ASGI app's ``send`` and ``receive``: it sees the status, the response body (for the
fallback of ``exporters.completion_sniffer`` when a handler reports nothing), the request body and a
client that leaves, and ends the span with what it saw. Shared by ``TracingMiddleware`` and the
``inference_endpoint`` decorator used alone, so both trace a request the same way.
"""

from __future__ import annotations

from asyncio import CancelledError
from collections.abc import Awaitable

from opentelemetry import trace
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue
from starlette.requests import ClientDisconnect
from starlette.types import Message, Receive, Scope, Send

from exporters.completion_sniffer import MAX_BODY_BYTES, ResponseSniffer, operation_for_path, read_request
from exporters.generation import (
    CLIENT_CLOSED_REQUEST,
    ERROR_TYPE,
    GEN_AI_FINISH_REASONS,
    GEN_AI_INPUT_TOKENS,
    GEN_AI_OPERATION,
    GEN_AI_OUTPUT_TOKENS,
    GEN_AI_REQUEST_MAX_TOKENS,
    GEN_AI_REQUEST_MODEL,
    GEN_AI_REQUEST_TEMPERATURE,
    GEN_AI_REQUEST_TOP_P,
    GEN_AI_RESPONSE_ID,
    GEN_AI_RESPONSE_MODEL,
    HTTP_METHOD,
    SERVER_ADDRESS,
    SERVER_PORT,
    SERVER_TPOT,
    UNMATCHED_ROUTE,
    URL_PATH,
    GenerationSpan,
)

_PROPAGATOR = TraceContextTextMapPropagator()
_TRACE_HEADERS = frozenset({b"traceparent", b"tracestate"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_MAX_PORT = 65535


def start_span(
    tracer: trace.Tracer, scope: Scope, method: str, start: float, extra: dict[str, AttributeValue]
) -> trace.Span:
    """The request's SERVER span: parent from ``traceparent``, ``server.*`` from the Host header."""
    carrier: dict[str, str] = {}
    host = b""
    for name, value in scope.get("headers", ()):  # one pass: cheaper than a lookup per header wanted
        if name in _TRACE_HEADERS:
            carrier[name.decode("latin-1")] = value.decode("latin-1")
        elif name == b"host":
            host = value
    attributes: dict[str, AttributeValue] = {HTTP_METHOD: method, URL_PATH: scope["path"], **extra}
    address, port = _server_of(host.decode("latin-1"), scope)
    if address:
        attributes[SERVER_ADDRESS] = address
        if port:
            attributes[SERVER_PORT] = port
    return tracer.start_span(
        method,
        context=_PROPAGATOR.extract(carrier) if carrier else None,
        kind=SpanKind.SERVER,
        attributes=attributes,
        start_time=round(start * 1e9),
    )


def _server_of(host: str, scope: Scope) -> tuple[str, int | None]:
    """(server.address, server.port): the Host header's, as HTTP semantic conventions prefer, else the
    socket's; a Host without a port means the scheme's default port, one whose port is no TCP port none."""
    if not host:
        server = scope.get("server")
        return (str(server[0]), server[1]) if server else ("", None)
    if host.startswith("["):  # [IPv6]:port
        address, _, rest = host[1:].partition("]")
        port_text = rest[1:]
    else:
        address, _, port_text = host.partition(":")
    if not port_text:
        return address, _DEFAULT_PORTS.get(scope.get("scheme", "http"))
    # The client writes the Host header: "²" passes isdigit() but not int(), nor do 4,301 digits (each
    # request was answered 500), and a port past int64 failed the span's OTLP encoding, logged with a
    # traceback per request. A port that is no TCP port is left out.
    if len(port_text) <= 5 and port_text.isascii() and port_text.isdigit() and int(port_text) <= _MAX_PORT:
        return address, int(port_text)
    return address, None


def route_of(scope: Scope) -> str:
    """The matched route template, or ``unmatched``: never the raw path (unbounded label values)."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE


_SSE, _JSON = 1, 2


def _body_kind(message: Message) -> int:
    for name, value in message.get("headers", ()):  # a loop, not any(genexpr): once per request, cheaper
        if name == b"content-type":
            if value.startswith(b"text/event-stream"):
                return _SSE
            return _JSON if value.startswith(b"application/json") else 0
    return 0


class Exchange:
    """One traced request/response: wraps ``send`` and ``receive`` to see the status, the body sent, the
    request body and a client that leaves, then ends the span with what it saw."""

    __slots__ = (
        "_receive",
        "_send",
        "body",
        "body_size",
        "cancelled",
        "completed",
        "gen",
        "method",
        "now",
        "sniffer",
        "started",
        "status",
    )

    def __init__(self, gen: GenerationSpan, method: str, send: Send, receive: Receive) -> None:
        self.gen = gen
        self.method = method
        self.now = gen.now  # the request's clock: a wall-clock step mid-stream moves no token's time
        self._send = send
        self._receive = receive
        self.body: list[bytes] | None = [] if method == "POST" else None
        self.body_size = 0
        self.sniffer: ResponseSniffer | None = None
        self.status = 0
        self.started = False
        self.completed = False
        self.cancelled = False

    def send(self, message: Message) -> Awaitable[None]:
        """Pass one message on (a plain function handing back send's awaitable: no coroutine frame)."""
        if self.started:
            sniffer = self.sniffer
            if sniffer is not None:
                body = message.get("body")
                if body:
                    gen = self.gen
                    if gen.annotated or gen.tokens:  # the handler reports its tokens: fall back no more
                        self.sniffer = None
                    else:
                        sniffer.feed(body)
            if not message.get("more_body", False):
                self.completed = True
        elif message["type"] == "http.response.start":
            self.started = True
            self.status = message["status"]
            kind = _body_kind(message)
            if kind == _SSE:
                self.gen.stream = True
            if kind and not self.gen.annotated:
                self.sniffer = ResponseSniffer(stream=kind == _SSE, now=self.now)
        return self._send(message)

    async def receive(self) -> Message:
        """The next request message; a disconnect before the last byte was sent cancels the request."""
        message = await self._receive()
        kind = message["type"]
        if kind == "http.request":
            body = self.body
            if body is not None:
                chunk = message.get("body", b"")
                self.body_size += len(chunk)
                if self.body_size > MAX_BODY_BYTES:
                    self.body = None  # too big to be worth parsing for a model name
                elif chunk:
                    body.append(chunk)
        elif kind == "http.disconnect" and not self.completed:
            self.cancelled = True
        return message

    def end(self, scope: Scope, exc: BaseException | None) -> None:
        """End the span: status, cancellation, and what the fallback read when the handler said nothing."""
        gen = self.gen
        cancelled = self.cancelled or isinstance(exc, CancelledError | ClientDisconnect)
        if cancelled:
            status = self.status if self.started else CLIENT_CLOSED_REQUEST
        elif exc is not None:
            gen.span.record_exception(exc)
            status = 500
        else:
            status = self.status if self.started else 500
        if not gen.annotated and (
            self.sniffer is not None or self.body or gen.tokens or GEN_AI_OPERATION in gen._attributes
        ):  # something to read (a plain GET answered in text has nothing)
            self._fall_back(scope["path"])
        gen._end_span(self.method, route_of(scope), status, cancelled=cancelled)

    def _fall_back(self, path: str) -> None:
        """For a handler that never called ``set_request``: read the request and response bodies. Only a
        GenAI request (its path, or the decorator, names the operation) or a response with output tokens
        gets GenAI attributes; any other JSON answer is left alone."""
        gen = self.gen
        attributes = gen._attributes
        operation = attributes.get(GEN_AI_OPERATION) or operation_for_path(path)
        sniffer = self.sniffer
        if gen.tokens:  # the handler counted its tokens without set_request: its count wins
            if GEN_AI_OUTPUT_TOKENS not in attributes:
                gen.finish()
        elif sniffer is not None:
            sniffer.close()
            if operation is None and sniffer.output_tokens() is None:
                return
            _apply_response(gen, sniffer)
        if operation is None and not gen.tokens and GEN_AI_OUTPUT_TOKENS not in attributes:
            return
        facts = read_request(b"".join(self.body)) if self.body else None
        if facts is not None:
            for key, value in (
                (GEN_AI_REQUEST_MODEL, facts.model),
                (GEN_AI_REQUEST_MAX_TOKENS, facts.max_tokens),
                (GEN_AI_REQUEST_TEMPERATURE, facts.temperature),
                (GEN_AI_REQUEST_TOP_P, facts.top_p),
            ):
                if value is not None:
                    attributes.setdefault(key, value)
        if operation is None:
            return
        attributes.setdefault(GEN_AI_OPERATION, operation)
        model = attributes.get(GEN_AI_REQUEST_MODEL) or attributes.get(GEN_AI_RESPONSE_MODEL)
        if model is not None:
            gen._name = f"{operation} {model}"


def _apply_response(gen: GenerationSpan, sniffer: ResponseSniffer) -> None:
    """Put what a response said on ``gen``: tokens (usage preferred), timing, id, model, finish reasons."""
    attributes = gen._attributes
    if sniffer.count:
        gen.tokens, gen._first, gen._last = sniffer.count, sniffer.first, sniffer.last
    for key, value in (
        (GEN_AI_INPUT_TOKENS, sniffer.input_tokens()),
        (GEN_AI_RESPONSE_MODEL, sniffer.model),
        (GEN_AI_RESPONSE_ID, sniffer.response_id),
        (ERROR_TYPE, sniffer.error_type),
    ):
        if value is not None:
            attributes[key] = value
    reasons = sniffer.finish_reasons
    if reasons:
        attributes[GEN_AI_FINISH_REASONS] = reasons
    output_tokens = sniffer.output_tokens()
    if output_tokens is not None:
        attributes[GEN_AI_OUTPUT_TOKENS] = output_tokens
        if gen.stream and gen.tokens and output_tokens > 1:
            attributes[SERVER_TPOT] = (gen._last - gen._first) / (output_tokens - 1)
