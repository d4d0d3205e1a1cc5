"""The toy OpenAI-compatible inference server: API shape, validation, and speed that follows the GPU."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

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
from tests.exporters.asgi_client import AsgiClient, asgi_call

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
            "messages[0].role",
        ),
        (json.dumps({**CHAT, "messages": [{"role": "user"}]}).encode(), 400, "messages[0].content"),
        # Not "messages.0.content.str": the union member pydantic tried is no field a client sent.
        (
            json.dumps({**CHAT, "messages": [{"role": "user", "content": 5}]}).encode(),
            400,
            "messages[0].content",
        ),
        (
            json.dumps({**CHAT, "stream_options": {"include_usage": "x"}}).encode(),
            400,
            "stream_options.include_usage",
        ),
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
        "content-of-no-type-it-takes",
        "nested-field",
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


def test_a_compressed_body_is_refused_415_in_the_words_serve_uses(h: Harness) -> None:
    headers = {"content-type": "application/json", "content-encoding": "gzip"}
    r = h.client.post("/v1/chat/completions", content=b"\x1f\x8b", headers=headers)
    assert r.status_code == 415
    message = "Content-Encoding gzip is not accepted; send the body uncompressed"
    assert r.json()["error"] == {
        "message": message,
        "type": "invalid_request_error",
        "param": None,
        "code": None,
    }


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
    assert attrs["gpuwarden.server.time_to_first_token"] == pytest.approx(0.01 * 1.05, abs=1e-6)
    provider.shutdown()


@pytest.mark.parametrize(
    "body",
    [
        b"[" * 100_000 + b"]" * 100_000,
        b'{"model": "m", "messages": ' + b"[" * 5000 + b"]" * 5000 + b"}",
        json.dumps({**CHAT, "messages": [{"role": "user", "content": "\ud800"}]}).encode(),
        b'{"model": "m", "messages": [{"role": "user", "content": "\xff"}]}',
    ],
    ids=["deeply-nested", "deeply-nested-field", "lone-surrogate", "invalid-utf8"],
)
def test_bodies_that_broke_the_parser_or_the_tokenizer_are_400s_in_openai_shape(
    h: Harness, body: bytes
) -> None:
    r = h.client.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"


def crash_route() -> Route:
    async def crash(request: Request) -> Response:
        raise RuntimeError("boom")

    return Route("/v1/crash", crash)


@pytest.mark.parametrize(
    ("method", "path", "status", "kind"),
    [
        ("GET", "/v1/nothing-here", 404, "not_found_error"),
        ("GET", "/v1/chat/completions", 405, "method_not_allowed"),
        ("GET", "/v1/crash", 500, "server_error"),
    ],
    ids=["404", "405", "500"],
)
def test_http_errors_answer_in_openai_shape(method: str, path: str, status: int, kind: str) -> None:
    app = build_inference_app(
        ServedGpu(FakeGpu(), "node-01", 0, 0.01), model=MODEL, clock=FakeClock(), extra_routes=[crash_route()]
    )
    r = AsgiClient(app).request(method, path)
    assert r.status_code == status
    assert r.headers["content-type"] == "application/json"
    assert r.json()["error"]["type"] == kind
    if status == 405:
        assert r.headers["allow"] == "POST"


def test_stream_options_include_usage_ends_the_stream_with_a_usage_chunk(h: Harness) -> None:
    body = {**CHAT, "stream": True, "stream_options": {"include_usage": True}}
    chunks = sse_events(h.client.post("/v1/chat/completions", json=body).text)
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {"prompt_tokens": 5, "completion_tokens": 5, "total_tokens": 10}
    assert all("usage" not in c for c in chunks[:-1])
    completion = {"model": MODEL, "prompt": "a b", "max_tokens": 2, "stream": True}
    completion["stream_options"] = {"include_usage": True}
    assert (
        sse_events(h.client.post("/v1/completions", json=completion).text)[-1]["usage"]["total_tokens"] == 4
    )


def test_text_content_parts_are_read_like_a_string_and_other_parts_are_refused(h: Harness) -> None:
    parts = {
        **CHAT,
        "messages": [{"role": "user", "content": [{"type": "text", "text": "why is my gpu slow"}]}],
    }
    r = h.client.post("/v1/chat/completions", json=parts)
    assert r.status_code == 200
    assert r.json()["choices"][0]["message"]["content"] == "".join(toy_tokens("why is my gpu slow", 5))
    image = {"type": "image_url", "image_url": {"url": "http://x/y.png"}}
    r = h.client.post(
        "/v1/chat/completions", json={**CHAT, "messages": [{"role": "user", "content": [image]}]}
    )
    assert r.status_code == 400
    assert r.json()["error"]["param"] == "messages[0].content"
    assert "image_url" in r.json()["error"]["message"]


@pytest.mark.parametrize(
    ("route", "body", "param"),
    [
        ("/v1/chat/completions", {**CHAT, "n": 2}, "n"),
        ("/v1/completions", {"model": MODEL, "prompt": ["a b", "c"]}, "prompt"),
        ("/v1/completions", {"model": MODEL, "prompt": [1, 2, 3]}, "prompt"),
        ("/v1/completions", {"model": MODEL, "prompt": "a", "best_of": 3}, "best_of"),
        ("/v1/completions", {"model": MODEL, "prompt": "a", "echo": True}, "echo"),
        ("/v1/completions", {"model": MODEL, "prompt": "a", "logprobs": 2}, "logprobs"),
        ("/v1/completions", {"model": MODEL, "prompt": "a", "suffix": "b"}, "suffix"),
        ("/v1/chat/completions", {**CHAT, "logprobs": True}, "logprobs"),
    ],
    ids=["n-above-1", "two-prompts", "token-ids", "best-of", "echo", "logprobs", "suffix", "chat-logprobs"],
)
def test_what_the_toy_model_cannot_honour_is_refused_not_ignored(
    h: Harness, route: str, body: dict[str, Any], param: str
) -> None:
    r = h.client.post(route, json=body)
    assert r.status_code == 400
    assert r.json()["error"]["param"] == param


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({**CHAT, "temperature": "NaN"}, "temperature"),
        ({**CHAT, "temperature": 2.5}, "temperature"),
        ({**CHAT, "temperature": True}, "temperature"),
        ({**CHAT, "top_p": -3}, "top_p"),
        ({**CHAT, "max_tokens": True}, "max_tokens"),
        ({**CHAT, "max_tokens": 5.0}, "max_tokens"),
        ({**CHAT, "max_completion_tokens": "5"}, "max_completion_tokens"),
        ({**CHAT, "n": True}, "n"),
        ({**CHAT, "stream": "yes"}, "stream"),
        (
            {**CHAT, "stream": True, "stream_options": {"include_usage": "yes"}},
            "stream_options.include_usage",
        ),
        ({**CHAT, "stream_options": {"include_usage": True}}, "stream_options"),
    ],
    ids=[
        "temperature-string",
        "temperature-above-2",
        "temperature-bool",
        "top-p-negative",
        "max-tokens-bool",
        "max-tokens-decimal",
        "max-completion-tokens-string",
        "n-bool",
        "stream-string",
        "include-usage-string",
        "stream-options-without-stream",
    ],
)
def test_a_value_of_the_wrong_type_or_range_is_refused_naming_its_field(
    h: Harness, body: dict[str, Any], param: str
) -> None:
    # OpenAI refuses these with a 400 naming the field; taking them ("yes" as true, true as 1 token) hid
    # a client's bug behind an answer it did not ask for.
    r = h.client.post("/v1/chat/completions", json=body)
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"
    assert r.json()["error"]["param"] == param


def test_sampling_values_in_range_and_integers_for_decimals_are_accepted(h: Harness) -> None:
    body = {**CHAT, "temperature": 0, "top_p": 1, "stream_options": None, "logprobs": False}
    assert h.client.post("/v1/chat/completions", json=body).status_code == 200
    completion = {"model": MODEL, "prompt": "a", "best_of": 1, "echo": False, "temperature": 1.5}
    assert h.client.post("/v1/completions", json=completion).status_code == 200


def test_a_list_holding_one_prompt_is_served_like_the_prompt(h: Harness) -> None:
    one = h.client.post("/v1/completions", json={"model": MODEL, "prompt": ["a b"], "max_tokens": 3})
    plain = h.client.post("/v1/completions", json={"model": MODEL, "prompt": "a b", "max_tokens": 3})
    assert one.status_code == 200
    assert one.json()["choices"][0]["text"] == plain.json()["choices"][0]["text"]


def test_a_model_is_retrieved_by_id_and_an_unknown_one_is_a_404(h: Harness) -> None:
    assert h.client.get(f"/v1/models/{MODEL}").json()["id"] == MODEL
    r = h.client.get("/v1/models/gpt-4")
    assert r.status_code == 404
    assert r.json()["error"]["type"] == "not_found_error"


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
    assert 'route="/v1/chat/completions"' not in metrics
    assert 'gpuwarden_inference_requests_total{route="unmatched",status_class="4xx"} 2.0' in metrics


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


def _raw_post(app: Any, parts: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """POST /v1/chat/completions over raw ASGI with the body as ``parts`` (``http.request`` chunks, maybe an
    ``http.disconnect``); the messages sent and how many parts the app read."""
    sent: list[dict[str, Any]] = []
    left = list(parts)

    async def receive() -> dict[str, Any]:
        return left.pop(0) if left else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    path = "/v1/chat/completions"
    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"", "root_path": "",
        "headers": [(b"content-type", b"application/json")], "client": ("127.0.0.1", 5), "server": None,
    }  # fmt: skip
    asyncio.run(app(scope, receive, send))
    return sent, len(parts) - len(left)


def test_a_chunked_body_past_the_limit_is_refused_before_it_is_all_read(h: Harness) -> None:
    # Without a Content-Length the whole body was read into memory before its size was checked: a client
    # streaming gigabytes held them all.
    chunk = {"type": "http.request", "body": b" " * 65536, "more_body": True}
    sent, read = _raw_post(h.client.app, [chunk] * 64 + [{"type": "http.request", "body": b""}])
    assert sent[0]["status"] == 413
    assert read <= MAX_BODY_BYTES // 65536 + 1


def test_a_client_gone_mid_body_is_answered_400_not_a_traceback(h: Harness) -> None:
    # A malformed chunked body (uvicorn drops it) or a client that hangs up: ClientDisconnect left the
    # endpoint and uvicorn logged "Exception in ASGI application" with a traceback.
    part = {"type": "http.request", "body": b'{"model": ', "more_body": True}
    sent, _ = _raw_post(h.client.app, [part, {"type": "http.disconnect"}])
    assert sent[0]["status"] == 400
    assert "disconnected" in json.loads(sent[1]["body"])["error"]["message"]
