"""Where spans go: the tracer provider, its sampler, the exporter, and an account of what was exported.

``build_tracer_provider`` sets up the OpenTelemetry SDK for one service (never as the global provider).
The batch processor's fate of every sampled span is counted (``SpanExportCounts``: exported, failed,
dropped, rejected by the collector in a partial success: ``otlp_answers``), so a collector that is down or
too slow shows on ``/metrics`` instead of in a log line per batch.
The SDK's ``OTEL_SDK_DISABLED`` does not silence the tracers: the span metrics need every span, and
``span_settings`` turns span export off for that variable instead.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import SERVICE_NAME, OTELResourceDetector, Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanLimits, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult, TraceIdRatioBased
from opentelemetry.trace import Link, SpanKind, TraceState
from opentelemetry.util.types import Attributes

from exporters.generation import MAX_SPAN_TEXT
from exporters.otlp_answers import AccountedOTLPSpanExporter
from gpuwarden.config import TracingConfig
from gpuwarden.redaction import hidden_password

logger = logging.getLogger(__name__)

GPU_UUIDS_RESOURCE = "gpuwarden.gpu.uuids"
# The SDK's default queue (OTEL_BSP_MAX_QUEUE_SIZE's default): passed explicitly so drops can be counted.
MAX_QUEUE_SIZE = 2048
MAX_EXPORT_BATCH_SIZE = 512  # the SDK's default too; a batch may not exceed the queue
DEFAULT_SHUTDOWN_SECONDS = 10.0  # TracingConfig.otlp_timeout_seconds' default: one export's worth


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


class SpanExportCounts:
    """What became of the sampled spans handed to the batch processor, for ``/metrics``.

    ``exported``: the exporter reported success; ``failed``: it reported failure or raised (after its own
    retries); ``dropped``: never handed to the exporter, because the queue was full or the process stopped
    before they went out; ``rejected``: the collector answered success but said it did not keep them (OTLP's
    partial success). ``queued`` spans not yet in any of the four are waiting in the queue.
    """

    __slots__ = ("_lock", "dropped", "exported", "failed", "handed", "queued", "rejected", "settled")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.queued = 0
        self.handed = 0
        self.exported = 0
        self.failed = 0
        self.dropped = 0
        self.rejected = 0
        self.settled = False

    def settle(self) -> None:
        """At shutdown: every queued span not yet exported or failed is dropped, those in an export still
        running included; an outcome that arrives later is not counted again."""
        with self._lock:
            self.dropped += max(0, self.queued - self.exported - self.failed - self.rejected - self.dropped)
            self.settled = True

    def snapshot(self) -> dict[str, int]:
        """Exported, failed, dropped and rejected so far, read consistently."""
        with self._lock:
            return {
                "exported": self.exported,
                "failed": self.failed,
                "dropped": self.dropped,
                "rejected": self.rejected,
            }


class _CountingExporter(SpanExporter):
    """Counts each batch's outcome; the export loop's catch-all is here, so an exporter bug is counted.

    ``expire`` ends exporting at shutdown's deadline: later batches are not attempted (the shutdown counts
    them as dropped) and the wrapped exporter is shut down, which cuts its retry wait short.
    """

    def __init__(self, inner: SpanExporter, counts: SpanExportCounts) -> None:
        self._inner = inner
        self._counts = counts
        self._expired = threading.Event()
        self._inner_shut = threading.Lock()
        self._inner_open = True

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Export one batch through the wrapped exporter and count how it went."""
        if self._expired.is_set():
            return SpanExportResult.FAILURE  # never handed over: the shutdown counts it as dropped
        counts, n = self._counts, len(spans)
        with counts._lock:
            counts.handed += n
        try:
            result = self._inner.export(spans)
        except Exception:  # loop boundary (the batch worker): log with the exception, count, go on
            logger.exception("span export failed", extra={"spans": n})
            result = SpanExportResult.FAILURE
        # Taken whatever the result: a failed export's count is 0, and none is left for the next batch.
        rejected = self._inner.take_rejected() if isinstance(self._inner, AccountedOTLPSpanExporter) else 0
        with counts._lock:
            if counts.settled:
                pass  # the shutdown stopped waiting for this batch and counted it as dropped
            elif result is SpanExportResult.SUCCESS:
                counts.exported += n - rejected
                counts.rejected += rejected
            else:
                counts.failed += n
        return result

    def expire(self) -> None:
        """Attempt no further batch, and stop the one in flight where the wrapped exporter can."""
        self._expired.set()
        self.shutdown()

    def shutdown(self) -> None:
        """Shut the wrapped exporter down, once (the SDK's OTLP exporter logs a warning on a second call)."""
        with self._inner_shut:
            if not self._inner_open:
                return
            self._inner_open = False
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Flush the wrapped exporter."""
        return self._inner.force_flush(timeout_millis)


class AccountedBatchSpanProcessor(SpanProcessor):
    """The SDK's ``BatchSpanProcessor`` with every sampled span's fate counted in ``counts``.

    The SDK drops the oldest queued span when a new one finds the queue full, and at shutdown gives up
    on what it could not send in time; neither is visible from outside, so the queue's length is tracked
    here: spans queued minus spans handed to the exporter minus those already counted as dropped. A batch
    is popped just before it is handed over, so a span arriving in that instant may be counted as dropped
    while the queue had room for it: an overestimate by at most one batch, and only when the queue is full.
    """

    def __init__(
        self,
        exporter: SpanExporter,
        counts: SpanExportCounts,
        *,
        max_queue_size: int = MAX_QUEUE_SIZE,
        shutdown_seconds: float = DEFAULT_SHUTDOWN_SECONDS,
    ) -> None:
        self._counts = counts
        self._max_queue = max_queue_size
        self._shutdown_seconds = shutdown_seconds
        self._closed = False
        self._exporter = _CountingExporter(exporter, counts)
        self._batch = BatchSpanProcessor(
            self._exporter,
            max_queue_size=max_queue_size,
            max_export_batch_size=min(MAX_EXPORT_BATCH_SIZE, max_queue_size),
        )

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        """Nothing to do when a span starts."""

    def on_end(self, span: ReadableSpan) -> None:
        """Queue a sampled span for export, counting it as dropped when the queue has no room."""
        ctx = span.context
        if ctx is None or not ctx.trace_flags.sampled:
            return
        counts = self._counts
        with counts._lock:
            if self._closed:
                counts.dropped += 1
                return
            if counts.queued - counts.handed - counts.dropped >= self._max_queue:
                counts.dropped += 1  # the SDK evicts the oldest queued span to make room for this one
            counts.queued += 1
        self._batch.on_end(span)

    def shutdown(self) -> None:
        """Send what is queued within ``shutdown_seconds`` in all and count what was not sent as dropped.

        The SDK's own shutdown waits up to 30 s for its worker, and the worker sends every queued batch
        with the exporter's full timeout and retries each: with a collector down, SIGTERM outlasted
        Kubernetes' 30 s grace period and the pod was killed. Here the SDK's shutdown runs in a thread
        that is waited for ``shutdown_seconds`` (one OTLP timeout); then exporting ends, and the batch
        still in flight is left to the daemon thread, whose result is no longer counted.
        """
        with self._counts._lock:
            if self._closed:
                return  # the provider's atexit hook shuts down a second time
            self._closed = True
        stopper = threading.Thread(
            target=self._batch.shutdown, name="gpuwarden-span-export-shutdown", daemon=True
        )
        stopper.start()
        stopper.join(self._shutdown_seconds)
        self._exporter.expire()
        self._counts.settle()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Export everything queued now."""
        return self._batch.force_flush(timeout_millis)


def build_tracer_provider(
    config: TracingConfig,
    *,
    gpu_uuids: Sequence[str] = (),
    span_exporter: SpanExporter | None = None,
    processors: Sequence[SpanProcessor] = (),
    export_counts: SpanExportCounts | None = None,
) -> TracerProvider:
    """Set up the OpenTelemetry SDK for one service; the provider is returned, never made global.

    ``processors`` (span metrics, say) run before the batch exporter. ``span_exporter`` overrides the
    exporter chosen by ``config.span_exporter`` (tests pass an ``InMemorySpanExporter``). The batch
    processor counts in ``export_counts`` what it exported, failed to export and dropped, and its shutdown
    takes at most ``config.otlp_timeout_seconds``.
    """
    attributes: dict[str, str | list[str]] = {}
    # OpenTelemetry's order: an explicit name (option, configuration, or OTEL_SERVICE_NAME, which
    # span_settings turns into one), then OTEL_RESOURCE_ATTRIBUTES' service.name, then gpuwarden's default.
    explicit = "service_name" in config.model_fields_set
    if explicit or SERVICE_NAME not in OTELResourceDetector().detect().attributes:
        attributes[SERVICE_NAME] = config.service_name
    if config.pod_name:
        attributes["k8s.pod.name"] = config.pod_name
    if gpu_uuids:
        attributes[GPU_UUIDS_RESOURCE] = list(gpu_uuids)
    exporter = span_exporter if span_exporter is not None else configured_span_exporter(config)
    # A trace this service starts is sampled only when its spans go somewhere: span metrics take a sampled
    # span's trace id as an exemplar, and with no exporter (span_exporter none, --quiet-spans,
    # OTEL_SDK_DISABLED) every exemplar was a link to a trace no backend has. A parent's decision still
    # holds: its trace is in the caller's backend.
    provider = TracerProvider(
        resource=Resource.create(attributes),
        sampler=RecordAllSampler(config.sample_ratio if exporter is not None else 0.0),
        span_limits=span_limits(),
    )
    # Under OTEL_SDK_DISABLED=true the SDK hands out no-op tracers, and the span metrics (every request's
    # count, latency, tokens) would silently vanish; span export is what that variable turns off here.
    provider._disabled = False
    for processor in processors:
        provider.add_span_processor(processor)
    if exporter is not None:
        provider.add_span_processor(
            AccountedBatchSpanProcessor(
                exporter,
                export_counts if export_counts is not None else SpanExportCounts(),
                shutdown_seconds=config.otlp_timeout_seconds,
            )
        )
    return provider


def span_limits() -> SpanLimits:
    """The SDK's limits (its ``OTEL_*_LIMIT`` variables), with span attribute values cut at ``MAX_SPAN_TEXT``
    characters where no variable bounds them: the SDK keeps them whole by default, and a client chooses
    some (a refused request's model, the Host header). Events' attributes (an exception's stack trace)
    keep the SDK's bound."""
    limits = SpanLimits()
    if limits.max_span_attribute_length is not None:  # OTEL_[SPAN_]ATTRIBUTE_VALUE_LENGTH_LIMIT set
        return limits
    return SpanLimits(max_span_attribute_length=MAX_SPAN_TEXT)


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
    for name in OTLP_LOGGERS:
        otlp_logger = logging.getLogger(name)
        if not any(isinstance(f, CredentialFilter) for f in otlp_logger.filters):
            otlp_logger.addFilter(CredentialFilter())
    return AccountedOTLPSpanExporter(endpoint=str(config.otlp_endpoint), timeout=config.otlp_timeout_seconds)


# The OTLP exporter's own warnings quote its request's error, and urllib3's names the URL's path and query
# ("Max retries exceeded with url: /v1/traces?api_key=..."): a collector's token, which the start-up line
# hides, reached the log at every failed export.
OTLP_LOGGERS = (
    "opentelemetry.exporter.otlp.proto.http.trace_exporter",
    "opentelemetry.exporter.otlp.common.http",
)
_WORD = re.compile(r"\S+")


class CredentialFilter(logging.Filter):
    """Rewrites a record's message with each word as ``hidden_password`` shows it (``?api_key=***``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Hide the credentials of the message; the record is always kept."""
        said = record.getMessage()
        hidden = _WORD.sub(lambda word: hidden_password(word[0]), said)
        if hidden != said:
            record.msg, record.args = hidden, None
        return True
