"""Span metrics: every finished request span becomes Prometheus RED and GenAI metrics in-process.

The same idea as the OpenTelemetry Collector's span-metrics connector, done as a span processor so a
service needs no collector to get request rate, errors, latency, TTFT, inter-token time, tokens/s and
in-flight requests. Histogram observations carry the trace id as an exemplar (OpenMetrics exposition), so a
latency spike on a Grafana panel links to the trace that caused it. Only sampled (exported) traces are used
as exemplars: an exemplar pointing at a trace that was never exported would be a dead link.
"""

from __future__ import annotations

from dataclasses import dataclass

from opentelemetry.context import Context
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor
from opentelemetry.trace import SpanKind
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.asgi import make_asgi_app
from starlette.types import Receive, Scope, Send

from exporters.tracing import (
    GEN_AI_INPUT_TOKENS,
    GEN_AI_OUTPUT_TOKENS,
    GEN_AI_TPOT,
    GEN_AI_TTFT,
    HTTP_ROUTE,
    HTTP_STATUS,
    UNMATCHED_ROUTE,
)

# End-to-end latency of LLM requests runs from milliseconds (a cached short answer) to minutes.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
INTER_TOKEN_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
TOKENS_PER_SECOND_BUCKETS = (1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 10000.0)


def status_class(status: int) -> str:
    """``2xx``..``5xx`` for an HTTP status; ``0xx`` when the request died before a response."""
    return f"{status // 100}xx"


@dataclass(frozen=True, slots=True)
class _RouteSeries:
    latency: Histogram
    ttft: Histogram
    inter_token: Histogram
    tokens_per_second: Histogram
    input_tokens: Counter
    output_tokens: Counter


class SpanMetrics(SpanProcessor):
    """A span processor that turns SERVER spans into Prometheus metrics in its own registry."""

    def __init__(
        self, registry: CollectorRegistry | None = None, *, prefix: str = "gpuwarden_inference"
    ) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            f"{prefix}_requests",
            "Requests served, by route and status class.",
            ["route", "status_class"],
            registry=r,
        )
        self.errors = Counter(
            f"{prefix}_errors", "Requests answered 4xx or 5xx.", ["route", "status_class"], registry=r
        )
        self.latency = Histogram(
            f"{prefix}_request_duration_seconds",
            "End-to-end request latency, last byte sent.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            f"{prefix}_time_to_first_token_seconds",
            "Time to first output token of streamed responses.",
            ["route"],
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.inter_token = Histogram(
            f"{prefix}_time_per_output_token_seconds",
            "Mean time between output tokens after the first, per streamed response.",
            ["route"],
            buckets=INTER_TOKEN_BUCKETS,
            registry=r,
        )
        self.tokens_per_second = Histogram(
            f"{prefix}_output_tokens_per_second",
            "Output tokens per second of each request.",
            ["route"],
            buckets=TOKENS_PER_SECOND_BUCKETS,
            registry=r,
        )
        self.input_tokens = Counter(
            f"{prefix}_input_tokens", "Prompt tokens received.", ["route"], registry=r
        )
        self.output_tokens = Counter(
            f"{prefix}_output_tokens", "Output tokens produced.", ["route"], registry=r
        )
        self._by_route: dict[str, _RouteSeries] = {}
        self._requests_by: dict[tuple[str, str], Counter] = {}
        self.in_flight = Gauge(f"{prefix}_requests_in_flight", "Requests being served now.", registry=r)

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Count a server request as in flight."""
        if span.kind is SpanKind.SERVER:
            self.in_flight.inc()

    def _series(self, route: str) -> _RouteSeries:
        # labels() costs a lock and a tuple build per call; a request needs six children, so cache them.
        found = self._by_route.get(route)
        if found is None:
            found = self._by_route[route] = _RouteSeries(
                latency=self.latency.labels(route),
                ttft=self.ttft.labels(route),
                inter_token=self.inter_token.labels(route),
                tokens_per_second=self.tokens_per_second.labels(route),
                input_tokens=self.input_tokens.labels(route),
                output_tokens=self.output_tokens.labels(route),
            )
        return found

    def on_end(self, span: ReadableSpan) -> None:
        """Turn a finished server span into metric observations."""
        if span.kind is not SpanKind.SERVER:
            return
        self.in_flight.dec()
        attrs = span.attributes or {}
        route = str(attrs.get(HTTP_ROUTE, UNMATCHED_ROUTE))
        status = _int(attrs.get(HTTP_STATUS))
        key = (route, status_class(status))
        counter = self._requests_by.get(key)
        if counter is None:
            counter = self._requests_by[key] = self.requests.labels(*key)
        counter.inc()
        if status >= 400 or status == 0:
            self.errors.labels(*key).inc()
        series = self._series(route)
        ctx = span.context
        # Exemplars go on the two latency views a person clicks from; they cost a validation each.
        exemplar = (
            {"trace_id": format(ctx.trace_id, "032x")}
            if ctx is not None and ctx.trace_flags.sampled
            else None
        )
        duration = ((span.end_time or 0) - (span.start_time or 0)) / 1e9
        series.latency.observe(duration, exemplar)
        ttft = attrs.get(GEN_AI_TTFT)
        if isinstance(ttft, float):
            series.ttft.observe(ttft, exemplar)
        tpot = attrs.get(GEN_AI_TPOT)
        if isinstance(tpot, float):
            series.inter_token.observe(tpot)
        input_tokens = _int(attrs.get(GEN_AI_INPUT_TOKENS))
        if input_tokens:
            series.input_tokens.inc(input_tokens)
        output_tokens = _int(attrs.get(GEN_AI_OUTPUT_TOKENS))
        if output_tokens:
            series.output_tokens.inc(output_tokens)
            if duration > 0:
                series.tokens_per_second.observe(output_tokens / duration)

    def shutdown(self) -> None:
        """Nothing to release."""

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Observations are synchronous; nothing is pending."""
        return True

    def asgi_app(self) -> MetricsApp:
        """An ASGI ``/metrics`` app that negotiates OpenMetrics (with exemplars) or the text format."""
        return MetricsApp(self.registry)


class MetricsApp:
    """An ASGI app serving one registry. A class, not a function, so a Starlette ``Route`` mounts it as an
    app rather than calling it as a request handler."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._app = make_asgi_app(registry)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Render the registry for one scrape."""
        await self._app(scope, receive, send)


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
