"""Span export: what became of each sampled span (exported, failed, dropped)."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from exporters.span_export import (
    AccountedBatchSpanProcessor,
    SpanExportCounts,
    build_tracer_provider,
)
from exporters.spanmetrics import SpanMetrics
from gpuwarden.config import TracingConfig


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
    assert counts.snapshot() == {"exported": 0, "failed": 3, "dropped": 0}
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
    assert counts.snapshot() == {"exported": 4, "failed": 0, "dropped": 1}
