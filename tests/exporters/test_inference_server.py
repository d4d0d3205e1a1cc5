"""The toy OpenAI-compatible inference server: API shape, validation, and speed that follows the GPU."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from exporters.inference_server import (
    MAX_BODY_BYTES,
    InferenceServer,
    ServedGpu,
    build_inference_app,
    create_inference_server,
    toy_tokens,
)
from exporters.tracing import build_tracer_provider
from gpuwarden.clock import FakeClock
from gpuwarden.config import TracingConfig
from gpuwarden.sim import build_fleet
from tests.exporters.asgi_client import AsgiClient

MODEL = "gpuwarden-toy-1"
CHAT = {"model": MODEL, "messages": [{"role": "user", "content": "why is my gpu slow"}], "max_tokens": 5}


class FakeGpu:
    """A GPU whose speed the test sets; it may drop to a new speed after ``after_calls`` calls."""

    def __init__(self) -> None:
        self.speed = 1.0
        self.after_calls: tuple[int, float] | None = None
        self.calls = 0

    def gpu_speed_factor(self, node: str, index: int) -> float:
        self.calls += 1
        if self.after_calls and self.calls > self.after_calls[0]:
            self.speed = self.after_calls[1]
        return self.speed


class Harness:
    def __init__(self) -> None:
        self.clock = FakeClock()
        self.gpu = FakeGpu()
        self.slept = 0.0
        app = build_inference_app(
            ServedGpu(self.gpu, "node-01", 0, 0.01), model=MODEL, clock=self.clock, sleep=self.sleep
        )
        self.client = AsgiClient(app)

    async def sleep(self, seconds: float) -> None:
        self.slept += seconds
        self.clock.advance(seconds)


@pytest.fixture
def h() -> Harness:
    return Harness()


def sse_events(text: str) -> list[Any]:
    events = [line.removeprefix("data: ") for line in text.split("\n\n") if line]
    assert events[-1] == "[DONE]"
    return [json.loads(e) for e in events[:-1]]


def test_chat_completion_answers_in_openai_shape_with_usage(h: Harness) -> None:
    r = h.client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == MODEL
    [choice] = body["choices"]
    assert choice["message"]["role"] == "assistant"
    assert choice["message"]["content"] == "".join(toy_tokens("why is my gpu slow", 5))
    assert body["usage"] == {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}


def test_toy_generator_is_deterministic_per_prompt_and_differs_between_prompts() -> None:
    assert toy_tokens("a b c", 12) == toy_tokens("a b c", 12)
    assert toy_tokens("a b c", 12) != toy_tokens("x y z", 12)
    assert len(toy_tokens("a", 7)) == 7


def test_streamed_chat_sends_sse_chunks_with_the_same_text_then_done(h: Harness) -> None:
    r = h.client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    assert r.headers["content-type"].startswith("text/event-stream")
    chunks = sse_events(r.text)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    content = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert (
        content == h.client.post("/v1/chat/completions", json=CHAT).json()["choices"][0]["message"]["content"]
    )
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert {c["object"] for c in chunks} == {"chat.completion.chunk"}


def test_text_completion_streams_and_not(h: Harness) -> None:
    req = {"model": MODEL, "prompt": "hello there", "max_tokens": 3}
    plain = h.client.post("/v1/completions", json=req).json()
    assert plain["object"] == "text_completion"
    streamed = sse_events(h.client.post("/v1/completions", json={**req, "stream": True}).text)
    assert "".join(c["choices"][0]["text"] for c in streamed) == plain["choices"][0]["text"]


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        (b"{not json", 400, None),
        (b"[1, 2]", 400, "body"),
        (json.dumps({"model": MODEL}).encode(), 400, "messages"),
        (json.dumps({"messages": CHAT["messages"]}).encode(), 400, "model"),
        (json.dumps({**CHAT, "messages": []}).encode(), 400, "messages"),
        (
            json.dumps({**CHAT, "messages": [{"role": "robot", "content": "x"}]}).encode(),
            400,
            "messages.0.role",
        ),
        (json.dumps({**CHAT, "messages": [{"role": "user"}]}).encode(), 400, "messages.0.content"),
        (json.dumps({**CHAT, "max_tokens": 0}).encode(), 400, "max_tokens"),
        (json.dumps({**CHAT, "max_tokens": "many"}).encode(), 400, "max_tokens"),
        (json.dumps({**CHAT, "stream": "sometimes"}).encode(), 400, "stream"),
        (json.dumps({**CHAT, "model": "gpt-4"}).encode(), 404, "model"),
        (b" " * (MAX_BODY_BYTES + 1), 413, None),
    ],
    ids=[
        "malformed-json",
        "not-an-object",
        "missing-messages",
        "missing-model",
        "empty-messages",
        "bad-role",
        "missing-content",
        "zero-max-tokens",
        "non-integer-max-tokens",
        "non-boolean-stream",
        "unknown-model",
        "oversized-body",
    ],
)
def test_bad_requests_get_a_4xx_naming_the_field_never_a_500(
    h: Harness, body: bytes, status: int, param: str | None
) -> None:
    r = h.client.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == status
    error = r.json()["error"]
    assert error["param"] == param
    if param is not None:
        assert param in error["message"]


def test_unknown_extra_openai_fields_are_accepted(h: Harness) -> None:
    r = h.client.post("/v1/chat/completions", json={**CHAT, "temperature": 0.2, "user": "u1", "n": 1})
    assert r.status_code == 200


def test_throttled_gpu_makes_every_token_slower_in_proportion(h: Harness) -> None:
    h.client.post("/v1/chat/completions", json=CHAT)
    healthy = h.slept
    h.slept = 0.0
    h.gpu.speed = 0.25
    h.client.post("/v1/chat/completions", json=CHAT)
    assert h.slept == pytest.approx(4 * healthy)
    # 5 tokens at 10 ms, the first one paying a prefill of 5 prompt tokens (5%).
    assert healthy == pytest.approx(0.01 * 1.05 + 4 * 0.01)


def test_lost_gpu_answers_503_and_health_says_so(h: Harness) -> None:
    h.gpu.speed = 0.0
    r = h.client.post("/v1/chat/completions", json=CHAT)
    assert r.status_code == 503
    assert "node-01/0" in r.json()["error"]["message"]
    assert h.client.get("/healthz").status_code == 503


def test_gpu_lost_mid_stream_ends_the_stream_with_an_error_event(h: Harness) -> None:
    h.gpu.after_calls = (2, 0.0)
    r = h.client.post("/v1/chat/completions", json={**CHAT, "stream": True})
    events = [e.removeprefix("data: ") for e in r.text.split("\n\n") if e]
    assert "[DONE]" not in events
    assert json.loads(events[-1])["error"]["code"] == 503
    assert 0 < len(events) - 1 < 5


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
    ttft = attrs["gen_ai.server.time_to_first_token"]
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


def test_gpu_lost_mid_stream_marks_the_request_span_with_the_error_type() -> None:
    exporter = InMemorySpanExporter()
    provider = build_tracer_provider(TracingConfig(), span_exporter=exporter)
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
    assert attrs["http.response.status_code"] == 200  # the status line went out before the GPU was lost
    assert "gen_ai.usage.output_tokens" not in attrs
    assert attrs["gen_ai.server.time_to_first_token"] == pytest.approx(0.01 * 1.05, abs=1e-6)
    provider.shutdown()
