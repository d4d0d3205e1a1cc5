"""The toy inference server traced: request spans with the GPU's UUID and finish reasons, its own metrics,
an answer stopped when its client has gone, faults injected over HTTP and who may inject them, and the
SDK turned off."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from exporters import inference_server
from exporters.generation import MAX_SPAN_TEXT
from exporters.inference_server import (
    InferenceServer,
    ServedGpu,
    build_inference_app,
    create_inference_server,
)
from exporters.spanmetrics import SpanMetrics
from exporters.tracing import build_tracer_provider
from gpuwarden.clock import FakeClock
from gpuwarden.config import TracingConfig
from gpuwarden.sim import build_fleet
from tests.exporters.asgi_client import AsgiClient, asgi_call
from tests.exporters.inference_harness import CHAT, MODEL, FakeGpu


@pytest.fixture
def traced() -> Iterator[tuple[InferenceServer, InMemorySpanExporter, FakeClock]]:
    clock = FakeClock()
    fleet = build_fleet(1, 1, seed=1, clock=clock)
    exporter = InMemorySpanExporter()

    async def sleep(seconds: float) -> None:
        clock.advance(seconds)

    server = create_inference_server(
        TracingConfig(token_seconds=0.01),
        fleet,
        node="node-01",
        gpu=0,
        clock=clock,
        sleep=sleep,
        span_exporter=exporter,
    )
    yield server, exporter, clock
    server.shutdown()


def test_server_traces_requests_with_the_gpu_uuid_and_serves_its_own_metrics(
    traced: tuple[InferenceServer, InMemorySpanExporter, FakeClock],
) -> None:
    server, exporter, _ = traced
    client = AsgiClient(server.app)
    client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert server.tracer_provider is not None
    server.tracer_provider.force_flush()
    [span] = exporter.get_finished_spans()
    attrs = dict(span.attributes or {})
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.usage.output_tokens"] == 5
    ttft = attrs["gpuwarden.server.time_to_first_token"]
    assert isinstance(ttft, float) and ttft > 0
    uuids = span.resource.attributes["gpuwarden.gpu.uuids"]
    assert isinstance(uuids, tuple) and uuids[0].startswith("GPU-")
    metrics = client.get("/metrics").text
    assert (
        'gpuwarden_inference_requests_total{route="/v1/chat/completions",status_class="2xx"} 1.0' in metrics
    )


def test_thermal_fault_injected_over_http_slows_the_servers_tokens(
    traced: tuple[InferenceServer, InMemorySpanExporter, FakeClock],
) -> None:
    server, _, clock = traced
    client = AsgiClient(server.app)
    before = server.gpu.token_delay()
    r = client.post(
        "/sim/faults",
        json={"kind": "hw_thermal_slowdown", "node": "node-01", "gpu": 0, "params": {"factor": 0.3}},
    )
    assert r.status_code == 201, r.text
    clock.advance(5.0)
    assert server.gpu.token_delay() > 2 * before


def test_tracing_disabled_serves_the_same_api_without_metrics() -> None:
    fleet = build_fleet(1, 1, seed=1, clock=FakeClock())
    server = create_inference_server(TracingConfig(enabled=False), fleet, node="node-01", gpu=0)
    client = AsgiClient(server.app)
    assert server.tracer_provider is None
    assert client.get("/v1/models").json()["data"][0]["id"] == MODEL
    assert client.get("/metrics").status_code == 404


def test_gpu_lost_mid_stream_is_an_error_span_and_metric_with_the_tokens_sent() -> None:
    # The 200 went out before the GPU was lost and the stream ended with an error event: the span stayed
    # UNSET without its tokens, and /metrics counted a success.
    exporter = InMemorySpanExporter()
    metrics = SpanMetrics()
    provider = build_tracer_provider(TracingConfig(), span_exporter=exporter, processors=[metrics])
    gpu = FakeGpu()
    gpu.after_calls = (2, 0.0)
    clock = FakeClock()

    async def sleep(seconds: float) -> None:
        clock.advance(seconds)

    app = build_inference_app(
        ServedGpu(gpu, "node-01", 0, 0.01), model=MODEL, tracer_provider=provider, clock=clock, sleep=sleep
    )
    AsgiClient(app).post("/v1/chat/completions", json={**CHAT, "stream": True})
    provider.force_flush()
    [span] = exporter.get_finished_spans()
    attrs = dict(span.attributes or {})
    assert attrs["error.type"] == "gpu_unavailable"
    assert span.status.status_code is StatusCode.ERROR
    assert attrs["http.response.status_code"] == 200  # the status line went out before the GPU was lost
    assert attrs["gen_ai.usage.output_tokens"] == 2
    assert attrs["gpuwarden.server.time_to_first_token"] == pytest.approx(0.01 * 1.05, abs=1e-6)
    route = {"route": "/v1/chat/completions"}
    registry = metrics.registry
    assert (
        registry.get_sample_value("gpuwarden_inference_errors_total", {**route, "status_class": "2xx"}) == 1
    )
    assert registry.get_sample_value("gpuwarden_inference_output_tokens_total", route) == 2
    assert registry.get_sample_value("gpuwarden_inference_cancelled_requests_total", route) == 0
    provider.shutdown()


def test_a_plain_answer_stops_generating_when_the_client_has_gone(
    traced: tuple[InferenceServer, InMemorySpanExporter, FakeClock],
) -> None:
    server, exporter, clock = traced
    started = clock.time()
    body = json.dumps({**CHAT, "max_tokens": 2000}).encode()
    asyncio.run(asgi_call(server.app, body, leave_when=lambda: clock.time() - started > 0.5))
    assert clock.time() - started < 1.0  # not the 20 s that 2000 tokens at 10 ms take
    assert server.tracer_provider is not None
    server.tracer_provider.force_flush()
    [span] = exporter.get_finished_spans()
    attrs = dict(span.attributes or {})
    assert attrs["error.type"] == "cancelled"
    assert attrs["http.response.status_code"] == 499
    assert 0 < attrs["gen_ai.usage.output_tokens"] < 100  # type: ignore[operator]
    assert server.span_metrics is not None
    registry = server.span_metrics.registry
    assert (
        registry.get_sample_value(
            "gpuwarden_inference_cancelled_requests_total", {"route": "/v1/chat/completions"}
        )
        == 1
    )


def test_a_plain_answer_whose_client_left_during_a_long_prefill_ends_then(
    traced: tuple[InferenceServer, InMemorySpanExporter, FakeClock],
) -> None:
    # A 500,000-word prompt's prefill is 25 s at 5 ms a token, slept in one go: 200 such requests, each
    # closed by its client right after sending, held 600 MB (their bodies) "in flight" for those 25 s.
    server, exporter, clock = traced
    started = clock.time()
    body = json.dumps({**CHAT, "messages": [{"role": "user", "content": "a " * 200_000}]}).encode()
    asyncio.run(asgi_call(server.app, body, leave_when=lambda: clock.time() - started > 0.5))
    assert clock.time() - started < 1.0  # not the prefill's 20 s at 10 ms a token
    assert server.tracer_provider is not None
    server.tracer_provider.force_flush()
    [span] = exporter.get_finished_spans()
    attrs = dict(span.attributes or {})
    assert (attrs["error.type"], attrs["http.response.status_code"]) == ("cancelled", 499)
    assert "gen_ai.usage.output_tokens" not in attrs


def test_the_request_span_carries_provider_finish_reasons_response_id_and_sampling(
    traced: tuple[InferenceServer, InMemorySpanExporter, FakeClock],
) -> None:
    server, exporter, _ = traced
    answer = AsgiClient(server.app).post(
        "/v1/chat/completions", json={**CHAT, "temperature": 0.3, "top_p": 0.9}
    )
    assert server.tracer_provider is not None
    server.tracer_provider.force_flush()
    [span] = exporter.get_finished_spans()
    attrs = dict(span.attributes or {})
    assert attrs["gen_ai.provider.name"] == "gpuwarden"
    assert attrs["gen_ai.response.finish_reasons"] == ("length",)
    assert attrs["gen_ai.response.id"] == answer.json()["id"]
    assert (attrs["gen_ai.request.temperature"], attrs["gen_ai.request.top_p"]) == (0.3, 0.9)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_a_prompt_is_tokenized_once_per_request(
    traced: tuple[InferenceServer, InMemorySpanExporter, FakeClock],
    monkeypatch: pytest.MonkeyPatch,
    stream: bool,
) -> None:
    # A 1 MB prompt was split into words three times (the span's input tokens, the prefill, the usage): the
    # server's CPU went to counting one prompt's words again.
    counted: list[int] = []

    def count(prompt: str) -> int:
        counted.append(len(prompt))
        return len(prompt.split())

    monkeypatch.setattr(inference_server, "count_input_tokens", count)
    prompt = "why is my gpu slow " * 50_000  # 1 MB
    body = {**CHAT, "messages": [{"role": "user", "content": prompt}], "max_tokens": 2}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    server, exporter, _ = traced
    answer = AsgiClient(server.app).post("/v1/chat/completions", json=body)
    assert answer.status_code == 200
    usage = json.loads(answer.text.split("\n\n")[-3].removeprefix("data: ")) if stream else answer.json()
    assert usage["usage"]["prompt_tokens"] == 250_000
    assert server.tracer_provider is not None
    server.tracer_provider.force_flush()
    [span] = exporter.get_finished_spans()
    assert dict(span.attributes or {})["gen_ai.usage.input_tokens"] == 250_000
    assert len(counted) == 1


FAULT = {"kind": "hw_thermal_slowdown", "node": "node-01", "gpu": 0, "params": {"factor": 0.3}}


def test_faults_are_injected_from_this_machine_only_unless_remote_injection_is_allowed() -> None:
    fleet = build_fleet(1, 1, seed=1, clock=FakeClock())
    server = create_inference_server(TracingConfig(span_exporter="none"), fleet, node="node-01", gpu=0)
    remote = AsgiClient(server.app, client=("10.1.2.3", 40000))
    r = remote.post("/sim/faults", json=FAULT)
    assert r.status_code == 403
    assert "--allow-remote-faults" in r.json()["error"]["message"]
    assert remote.get("/sim/faults").status_code == 200  # reading the fault log changes nothing
    assert fleet.active_faults() == []
    assert (
        AsgiClient(server.app, client=("::ffff:127.0.0.1", 40000)).post("/sim/faults", json=FAULT).status_code
        == 201
    )
    server.shutdown()
    allowed = create_inference_server(
        TracingConfig(span_exporter="none"), fleet, node="node-01", gpu=0, allow_remote_faults=True
    )
    assert (
        AsgiClient(allowed.app, client=("10.1.2.3", 40000)).post("/sim/faults", json=FAULT).status_code == 201
    )
    allowed.shutdown()


def test_fault_injection_and_wrong_methods_stay_out_of_the_request_metrics(
    traced: tuple[InferenceServer, InMemorySpanExporter, FakeClock],
) -> None:
    server, _, _ = traced
    client = AsgiClient(server.app)
    assert client.post("/sim/faults", json=FAULT).status_code == 201
    assert client.request("OPTIONS", "/v1/chat/completions").status_code == 405
    assert client.request("HEAD", "/v1/chat/completions").status_code == 405
    metrics = client.get("/metrics").text
    assert "/sim/faults" not in metrics
    assert (
        'gpuwarden_inference_requests_total{route="/v1/chat/completions",status_class="4xx"} 0.0' in metrics
    )
    assert 'gpuwarden_inference_request_duration_seconds_count{route="/v1/chat/completions"} 0.0' in metrics
    assert 'gpuwarden_inference_requests_total{route="unmatched",status_class="4xx"} 2.0' in metrics


def test_the_generation_routes_show_their_request_and_error_counters_at_0_before_any_request(
    traced: tuple[InferenceServer, InMemorySpanExporter, FakeClock],
) -> None:
    # A counter that appears holding its first errors hides them from rate() and increase(), which need a
    # sample before: a burst of 503s within one scrape interval after a start (the GPU lost) was never
    # seen by an error-rate rule, and an error-ratio query had no series until the first error
    # (anomaly run: "matched no series"). Both routes' counters exist from the start, at 0.
    server, _, _ = traced
    metrics = AsgiClient(server.app).get("/metrics").text
    for route in ("/v1/chat/completions", "/v1/completions"):
        for klass in ("4xx", "5xx"):
            assert (
                f'gpuwarden_inference_errors_total{{route="{route}",status_class="{klass}"}} 0.0' in metrics
            )
        for klass in ("2xx", "4xx", "5xx"):
            assert (
                f'gpuwarden_inference_requests_total{{route="{route}",status_class="{klass}"}} 0.0' in metrics
            )
        assert f'gpuwarden_inference_cancelled_requests_total{{route="{route}"}} 0.0' in metrics


def test_a_client_chosen_model_name_or_host_is_cut_short_in_the_queued_span(
    traced: tuple[InferenceServer, InMemorySpanExporter, FakeClock],
) -> None:
    # An unknown model of 1 MB (the body limit) or a Host header of 900 KB was kept whole in the span's name
    # and attributes: 300 such requests held 880 MB in the export queue while the collector was slow, and
    # its 2,048 spans would hold 6 GB.
    server, exporter, _ = traced
    client = AsgiClient(server.app)
    assert client.post("/v1/chat/completions", json={**CHAT, "model": "m" * 100_000}).status_code == 404
    assert client.get("/v1/models", headers={"host": "h" * 100_000 + ":8000"}).status_code == 200
    assert server.tracer_provider is not None
    server.tracer_provider.force_flush()
    chat, models = exporter.get_finished_spans()
    for span in (chat, models):
        assert len(span.name) <= MAX_SPAN_TEXT
        texts = [v for v in (span.attributes or {}).values() if isinstance(v, str)]
        assert texts and max(map(len, texts)) <= MAX_SPAN_TEXT
    assert chat.name.startswith("chat mmm")
    assert dict(chat.attributes or {})["gen_ai.request.model"] == "m" * MAX_SPAN_TEXT
    assert dict(models.attributes or {})["server.address"] == "h" * MAX_SPAN_TEXT


def test_requests_are_counted_when_otel_sdk_disabled_turns_the_sdk_off(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")  # the SDK's TracerProvider reads it itself
    clock = FakeClock()

    async def sleep(seconds: float) -> None:
        clock.advance(seconds)

    server = create_inference_server(
        TracingConfig(span_exporter="none"),
        build_fleet(1, 1, seed=1, clock=clock),
        node="node-01",
        gpu=0,
        clock=clock,
        sleep=sleep,
    )
    client = AsgiClient(server.app)
    for _ in range(2):
        assert client.post("/v1/chat/completions", json=CHAT).status_code == 200
    metrics = client.get("/metrics").text
    server.shutdown()
    assert (
        'gpuwarden_inference_requests_total{route="/v1/chat/completions",status_class="2xx"} 2.0' in metrics
    )
    assert 'gpuwarden_inference_output_tokens_total{route="/v1/chat/completions"} 10.0' in metrics
