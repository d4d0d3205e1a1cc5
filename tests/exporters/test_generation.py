"""A request's times on its span: taken on the monotonic clock from the wall-clock start, so a step of the
wall clock during the request (an NTP correction, a VM restored) moves none of them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from exporters.spanmetrics import SpanMetrics
from exporters.tracing import TracingMiddleware, build_tracer_provider
from gpuwarden.config import TracingConfig
from tests.exporters.asgi_client import asgi_call

CHAT = {"model": "llama-3-8b", "messages": [{"role": "user", "content": "hi"}], "stream": True}
LATENCY = "gpuwarden_inference_request_duration_seconds"
ROUTE = {"route": "/v1/chat/completions"}


class SteppedClock:
    """Wall time that can be stepped (as NTP does) over a monotonic time that only moves forward."""

    def __init__(self) -> None:
        self.elapsed = 0.0
        self.step = 0.0

    def time(self) -> float:
        return 1_767_225_600.0 + self.elapsed + self.step

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), UTC)

    def monotonic(self) -> float:
        return 1000.0 + self.elapsed

    def sleep(self, seconds: float) -> None:
        self.elapsed += seconds


@pytest.mark.parametrize("step", [-60.0, 3600.0], ids=["set-back-a-minute", "set-forward-an-hour"])
def test_a_wall_clock_step_mid_stream_moves_neither_the_spans_end_nor_its_latency(step: float) -> None:
    # A 6 s stream whose wall clock was set back a minute at its first token ended 54 s before it began:
    # -54.5 s in the lowest latency bucket and the histogram's sum taken down (rate() reads a counter reset),
    # time per output token negative. Set forward an hour, it was an hour-long request on every panel.
    clock = SteppedClock()
    exporter = InMemorySpanExporter()
    metrics = SpanMetrics()
    provider = build_tracer_provider(TracingConfig(), span_exporter=exporter, processors=[metrics])

    async def chat(request: Request) -> Response:
        async def events() -> AsyncIterator[bytes]:
            clock.sleep(0.5)
            clock.step = step
            for i in range(11):
                event = {"choices": [{"index": 0, "delta": {"content": str(i)}}]}
                yield f"data: {json.dumps(event)}\n\n".encode()
                clock.sleep(0.5)
            yield b"data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    app = TracingMiddleware(
        Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])]),
        tracer_provider=provider,
        clock=clock,
    )
    asyncio.run(asgi_call(app, json.dumps(CHAT).encode()))
    provider.force_flush()
    [span] = exporter.get_finished_spans()
    provider.shutdown()
    assert span.start_time is not None and span.end_time is not None
    assert (span.end_time - span.start_time) / 1e9 == pytest.approx(6.0)
    attrs = dict(span.attributes or {})
    assert attrs["gpuwarden.server.time_to_first_token"] == pytest.approx(0.5)
    assert attrs["gpuwarden.server.time_per_output_token"] == pytest.approx(0.5)
    assert metrics.registry.get_sample_value(f"{LATENCY}_sum", ROUTE) == pytest.approx(6.0)
    assert metrics.registry.get_sample_value(f"{LATENCY}_bucket", {**ROUTE, "le": "5.0"}) == 0.0
