"""Span export: what became of each sampled span (exported, failed, dropped)."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from exporters.generation import MAX_SPAN_TEXT
from exporters.span_export import (
    MAX_EXPORT_BATCH_SIZE,
    AccountedBatchSpanProcessor,
    SpanExportCounts,
    build_tracer_provider,
    configured_span_exporter,
)
from exporters.span_settings import resolve_tracing
from exporters.spanmetrics import SpanMetrics
from gpuwarden.config import TracingConfig
from tests.integration.servers import free_port


class Failing(SpanExporter):
    """Answers FAILURE to the first batch and raises on the next (an exporter bug)."""

    def __init__(self) -> None:
        self.calls = 0

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.calls += 1
        if self.calls == 1:
            return SpanExportResult.FAILURE
        raise ConnectionResetError("collector went away")


class Stuck(SpanExporter):
    """Holds its first batch until released, so the queue behind it fills up."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.entered.set()
        self.release.wait(timeout=30)
        return SpanExportResult.SUCCESS


def spans(provider: TracerProvider, n: int) -> None:
    tracer = provider.get_tracer("t")
    for _ in range(n):
        tracer.start_span("s").end()


def test_exported_spans_are_counted_and_shown_on_the_span_metrics_registry() -> None:
    metrics = SpanMetrics()
    provider = build_tracer_provider(
        TracingConfig(), span_exporter=InMemorySpanExporter(), export_counts=metrics.export_counts
    )
    spans(provider, 3)
    provider.force_flush()
    name = "gpuwarden_inference_trace_spans_total"
    assert metrics.registry.get_sample_value(name, {"outcome": "exported"}) == 3
    assert metrics.registry.get_sample_value(name, {"outcome": "failed"}) == 0
    assert metrics.registry.get_sample_value(name, {"outcome": "dropped"}) == 0
    provider.shutdown()


def test_a_failed_or_raising_export_counts_its_spans_as_failed_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    counts = SpanExportCounts()
    provider = build_tracer_provider(TracingConfig(), span_exporter=Failing(), export_counts=counts)
    spans(provider, 2)
    provider.force_flush()
    spans(provider, 1)
    provider.force_flush()
    assert counts.snapshot() == {"exported": 0, "failed": 3, "dropped": 0, "rejected": 0}
    assert "span export failed" in caplog.text
    provider.shutdown()


def test_spans_evicted_from_a_full_queue_are_counted_as_dropped() -> None:
    counts = SpanExportCounts()
    stuck = Stuck()
    provider = TracerProvider()
    provider.add_span_processor(AccountedBatchSpanProcessor(stuck, counts, max_queue_size=2))
    spans(provider, 2)  # a full batch: the worker takes it and blocks in export
    assert stuck.entered.wait(timeout=30)
    spans(provider, 3)  # the queue holds two: the third evicts the oldest
    assert counts.snapshot()["dropped"] == 1
    stuck.release.set()
    provider.shutdown()
    assert counts.snapshot() == {"exported": 4, "failed": 0, "dropped": 1, "rejected": 0}


@contextmanager
def black_hole() -> Iterator[int]:
    """A port whose listener completes TCP handshakes (the kernel's backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", free_port()))
        listener.listen(64)
        yield listener.getsockname()[1]


@contextmanager
def refusing() -> Iterator[int]:
    """A port where nothing listens: every connection is refused, and the OTLP exporter retries."""
    yield free_port()


@pytest.mark.parametrize(
    ("collector", "timeout"), [(black_hole, 0.5), (refusing, 2.5)], ids=["black-holed", "refusing"]
)
def test_shutdown_with_an_unreachable_collector_gives_up_after_one_export_timeout_and_counts_the_rest_dropped(
    collector: Callable[[], AbstractContextManager[int]], timeout: float
) -> None:
    counts = SpanExportCounts()
    with collector() as port:
        config = TracingConfig(
            otlp_endpoint=f"http://127.0.0.1:{port}/v1/traces", otlp_timeout_seconds=timeout
        )
        provider = build_tracer_provider(config, export_counts=counts)
        spans(provider, 4 * MAX_EXPORT_BATCH_SIZE)  # a full queue: four batches, each retried until timeout
        provider.shutdown()
    outcome = counts.snapshot()
    assert outcome["exported"] == 0
    assert sum(outcome.values()) == 4 * MAX_EXPORT_BATCH_SIZE
    # The SDK alone tried every batch for a whole timeout each (and for up to 30 s in all); now the
    # batches left when the shutdown's one timeout ran out are dropped, not tried.
    assert outcome["dropped"] >= MAX_EXPORT_BATCH_SIZE, outcome
    provider.shutdown()  # again, as the provider's atexit hook does: nothing counted twice
    assert counts.snapshot() == outcome


@pytest.mark.parametrize(
    ("config", "environ", "service"),
    [
        (TracingConfig(), {}, "gpuwarden-inference"),
        (
            TracingConfig(),
            {"OTEL_RESOURCE_ATTRIBUTES": "service.name=ra-svc,deployment.environment=prod"},
            "ra-svc",
        ),
        (
            TracingConfig(service_name="from-config"),
            {"OTEL_RESOURCE_ATTRIBUTES": "service.name=ra-svc,deployment.environment=prod"},
            "from-config",
        ),
        (
            TracingConfig(),
            {"OTEL_RESOURCE_ATTRIBUTES": "service.name=ra-svc", "OTEL_SERVICE_NAME": "from-service-name"},
            "from-service-name",
        ),
    ],
    ids=["default", "resource-attributes", "config-wins", "otel-service-name-wins"],
)
def test_service_name_follows_opentelemetry_order_with_gpuwardens_name_last(
    config: TracingConfig, environ: dict[str, str], service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OTEL_SERVICE_NAME", raising=False)
    monkeypatch.delenv("OTEL_RESOURCE_ATTRIBUTES", raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)  # the SDK's resource detector reads them itself
    settings = resolve_tracing(config, environ)
    provider = build_tracer_provider(settings.config, span_exporter=InMemorySpanExporter())
    assert provider.resource.attributes["service.name"] == service
    if "deployment.environment" in environ.get("OTEL_RESOURCE_ATTRIBUTES", ""):
        assert provider.resource.attributes["deployment.environment"] == "prod"
    provider.shutdown()


@pytest.mark.parametrize(
    ("variable", "kept"),
    [
        (None, MAX_SPAN_TEXT),
        ("OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", 10),
        ("OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", 10),
    ],
    ids=["gpuwarden-bound", "otel-variable", "otel-span-variable"],
)
def test_span_attribute_values_are_bounded_unless_an_otel_variable_bounds_them(
    monkeypatch: pytest.MonkeyPatch, variable: str | None, kept: int
) -> None:
    if variable is not None:
        monkeypatch.setenv(variable, str(kept))
    exporter = InMemorySpanExporter()
    provider = build_tracer_provider(TracingConfig(), span_exporter=exporter)
    provider.get_tracer(__name__).start_span("GET", attributes={"server.address": "h" * 100_000}).end()
    provider.force_flush()
    [span] = exporter.get_finished_spans()
    assert dict(span.attributes or {})["server.address"] == "h" * kept
    provider.shutdown()


def test_a_failed_otlp_export_logs_no_token_of_the_collectors_url(caplog: pytest.LogCaptureFixture) -> None:
    """urllib3's error names the URL's path and query, and the OTLP exporter logged it at every retry:
    ``Max retries exceeded with url: /v1/traces?api_key=S3cret``, where the start-up line says ``***``."""
    url = f"http://127.0.0.1:{free_port()}/v1/traces?api_key=S3cret&tenant=gpu"  # nothing listens there
    exporter = configured_span_exporter(TracingConfig(otlp_endpoint=url, otlp_timeout_seconds=1.5))
    assert exporter is not None
    span = TracerProvider().get_tracer("t").start_span("x")
    span.end()
    with caplog.at_level(logging.WARNING):
        assert exporter.export([span]) is SpanExportResult.FAILURE  # type: ignore[list-item]
    exporter.shutdown()
    assert "Connection refused" in caplog.text and "api_key=***&tenant=gpu" in caplog.text
    assert "S3cret" not in caplog.text
