"""The GenAI view of one request's span (``GenerationSpan``) and the attribute names it writes.

Attribute names follow the OpenTelemetry semantic conventions: HTTP server spans, and GenAI spans as of
semantic conventions 1.37 (``gen_ai.provider.name``; the older ``gen_ai.system`` is not written). The two
timing attributes reuse the GenAI server metric names.

A request whose client goes away before the last byte was sent is *cancelled*: its span gets
``error.type="cancelled"``, the status actually sent (499, nginx's "client closed request", when none was)
and the tokens counted until then, and its span status stays UNSET. The client's leaving is not the
server's failure, as for gRPC server spans, where CANCELLED is not an error status; span metrics count it
as a cancellation, not as a 5xx.

A request that fails after its 2xx status line went out (a stream ended by an in-band error event) has
its ``error.type`` set by the handler or read from the stream: its span keeps that status, gets status
ERROR and the tokens sent until then, and span metrics count it as an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import ContextVar

from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode
from opentelemetry.util.types import AttributeValue

from gpuwarden.clock import Clock

HTTP_METHOD = "http.request.method"
HTTP_ROUTE = "http.route"
HTTP_STATUS = "http.response.status_code"
URL_PATH = "url.path"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
ERROR_TYPE = "error.type"
GEN_AI_OPERATION = "gen_ai.operation.name"
GEN_AI_PROVIDER = "gen_ai.provider.name"
GEN_AI_REQUEST_MODEL = "gen_ai.request.model"
GEN_AI_REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
GEN_AI_REQUEST_TEMPERATURE = "gen_ai.request.temperature"
GEN_AI_REQUEST_TOP_P = "gen_ai.request.top_p"
GEN_AI_RESPONSE_MODEL = "gen_ai.response.model"
GEN_AI_RESPONSE_ID = "gen_ai.response.id"
GEN_AI_FINISH_REASONS = "gen_ai.response.finish_reasons"
GEN_AI_INPUT_TOKENS = "gen_ai.usage.input_tokens"
GEN_AI_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
# Server-side time to first token and per output token, in seconds. The GenAI semantic conventions name
# these only as metrics (gen_ai.server.time_to_first_token, ...); their span attribute
# gen_ai.response.time_to_first_chunk is the client's view. So the span attributes are gpuwarden's own.
SERVER_TTFT = "gpuwarden.server.time_to_first_token"
SERVER_TPOT = "gpuwarden.server.time_per_output_token"
GEN_AI_STREAM = "gpuwarden.gen_ai.stream"
UNMATCHED_ROUTE = "unmatched"
CANCELLED = "cancelled"
CLIENT_CLOSED_REQUEST = 499  # nginx's status for a client that left before the answer
# Characters kept of a span's name and of each text attribute. Clients choose some of them (the model of
# a refused request, the Host header), up to the 1 MiB body or header limit, and a span waits in the
# export queue (2,048 of them) while the collector is slow: whole, they held gigabytes. 2048 is Grafana
# Tempo's default max_attribute_bytes; a model name or path an operator reads is far shorter.
MAX_SPAN_TEXT = 2048

_ERROR_STATUS = Status(StatusCode.ERROR)


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
        "_monotonic",
        "_monotonic_start",
        "_name",
        "_start",
        "annotated",
        "provider",
        "span",
        "stream",
        "tokens",
    )

    def __init__(self, span: trace.Span, clock: Clock, start: float, provider: str | None = None) -> None:
        self.span = span
        self._monotonic = clock.monotonic
        self._monotonic_start = clock.monotonic()
        self._start = start
        self._first = 0.0
        self._last = 0.0
        self._attributes: dict[str, AttributeValue] = {}
        self._name: str | None = None
        self.tokens = 0
        self.stream = False
        self.annotated = False
        self.provider = provider

    def now(self) -> float:
        """The request's time now: its start (wall clock) plus the time since on the monotonic clock.

        A step of the wall clock during the request (an NTP correction, a VM restored) moved its end, time
        to first token and time per token with it: a minute set back ended a 5 s request 55 s before it
        began, and its negative latency took the histogram's sum down (a counter reset to ``rate()``)."""
        return self._start + (self._monotonic() - self._monotonic_start)

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
        temperature: float | None = None,
        top_p: float | None = None,
        provider: str | None = None,
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
        if temperature is not None:
            attributes[GEN_AI_REQUEST_TEMPERATURE] = temperature
        if top_p is not None:
            attributes[GEN_AI_REQUEST_TOP_P] = top_p
        if provider is not None:
            self.provider = provider
        self._name = f"{operation} {model}"

    def token(self, count: int = 1) -> None:
        """Note ``count`` output tokens produced now; the first one sets time to first token."""
        now = self.now()
        if not self.tokens:
            self._first = now
        self._last = now
        self.tokens += count

    def finish(
        self,
        *,
        response_model: str | None = None,
        output_tokens: int | None = None,
        finish_reasons: Sequence[str] = (),
        response_id: str | None = None,
    ) -> None:
        """Record the response: output tokens (default: those counted) and time per output token."""
        attributes = self._attributes
        produced = self.tokens if output_tokens is None else output_tokens
        attributes[GEN_AI_OUTPUT_TOKENS] = produced
        if response_model is not None:
            attributes[GEN_AI_RESPONSE_MODEL] = response_model
        if finish_reasons:
            attributes[GEN_AI_FINISH_REASONS] = list(finish_reasons)
        if response_id is not None:
            attributes[GEN_AI_RESPONSE_ID] = response_id
        if self.stream and self.tokens and produced > 1:
            attributes[SERVER_TPOT] = (self._last - self._first) / (produced - 1)

    def _end_span(self, method: str, route: str, status: int, *, cancelled: bool = False) -> None:
        """Write the gathered attributes, the HTTP outcome and the name, then end the span now."""
        span = self.span
        attributes = self._attributes
        if self.stream and self.tokens:
            attributes[SERVER_TTFT] = self._first - self._start
        if self.provider is not None and GEN_AI_OPERATION in attributes:
            attributes[GEN_AI_PROVIDER] = self.provider
        if status == 405:  # the path matched but the method did not: no route served it
            route = UNMATCHED_ROUTE
        if route != UNMATCHED_ROUTE:  # HTTP conventions: no http.route, and the name is {method} alone
            attributes[HTTP_ROUTE] = route
        attributes[HTTP_STATUS] = status
        if cancelled:
            attributes[ERROR_TYPE] = CANCELLED
            if self.tokens and GEN_AI_OUTPUT_TOKENS not in attributes:
                attributes[GEN_AI_OUTPUT_TOKENS] = self.tokens  # what was produced before the client left
        elif status >= 500:
            attributes[ERROR_TYPE] = str(status)
            span.set_status(_ERROR_STATUS)
        elif status < 400 and ERROR_TYPE in attributes:  # failed after its 2xx went out: an in-band error
            if self.tokens and GEN_AI_OUTPUT_TOKENS not in attributes:
                attributes[GEN_AI_OUTPUT_TOKENS] = self.tokens  # what the client got before the failure
            span.set_status(_ERROR_STATUS)
        span.set_attributes(attributes)
        if self._name is not None:
            span.update_name(self._name[:MAX_SPAN_TEXT])
        elif span.is_recording() and getattr(span, "name", "") == method and route != UNMATCHED_ROUTE:
            span.update_name(f"{method} {route}")
        span.end(end_time=round(self.now() * 1e9))


_current: ContextVar[GenerationSpan | None] = ContextVar("gpuwarden_generation", default=None)


def current_generation() -> GenerationSpan | None:
    """The GenAI span of the request being handled, or None outside an instrumented request."""
    return _current.get()
