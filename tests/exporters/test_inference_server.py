"""The toy OpenAI-compatible inference server: API shape, streaming, completions and models, and speed that
follows the GPU."""

from __future__ import annotations

import json
from typing import Any

import pytest

from exporters.inference_server import toy_tokens
from tests.exporters.inference_harness import CHAT, MODEL, Harness


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
    assert r.headers["x-accel-buffering"] == "no"  # nginx would hold the tokens back (proxy_buffering)
    assert r.headers["cache-control"] == "no-cache"
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


def test_sampling_values_in_range_and_integers_for_decimals_are_accepted(h: Harness) -> None:
    body = {**CHAT, "temperature": 0, "top_p": 1, "stream_options": None, "logprobs": False}
    assert h.client.post("/v1/chat/completions", json=body).status_code == 200
    completion = {"model": MODEL, "prompt": "a", "best_of": 1, "echo": False, "temperature": 1.5}
    assert h.client.post("/v1/completions", json=completion).status_code == 200


def test_null_n_and_stream_are_taken_as_not_given(h: Harness) -> None:
    # OpenAI's API and vLLM take null as the default (one choice, not streamed); they were refused 400.
    r = h.client.post("/v1/chat/completions", json={**CHAT, "n": None, "stream": None})
    assert r.status_code == 200, r.text
    assert r.json()["object"] == "chat.completion"
    completion = {"model": MODEL, "prompt": "a b", "max_tokens": 2, "n": None, "stream": None}
    r = h.client.post("/v1/completions", json=completion)
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["completion_tokens"] == 2


def test_a_list_holding_one_prompt_is_served_like_the_prompt(h: Harness) -> None:
    one = h.client.post("/v1/completions", json={"model": MODEL, "prompt": ["a b"], "max_tokens": 3})
    plain = h.client.post("/v1/completions", json={"model": MODEL, "prompt": "a b", "max_tokens": 3})
    assert one.status_code == 200
    assert one.json()["choices"][0]["text"] == plain.json()["choices"][0]["text"]


def test_a_model_is_retrieved_by_id_and_an_unknown_one_is_a_404(h: Harness) -> None:
    assert h.client.get(f"/v1/models/{MODEL}").json()["id"] == MODEL
    r = h.client.get("/v1/models/gpt-4")
    assert r.status_code == 404
    assert r.json()["error"] == {
        "message": f"model 'gpt-4' is not served here; use {MODEL!r}",
        "type": "invalid_request_error",  # as OpenAI answers an unknown model
        "param": None,
        "code": "model_not_found",
    }


def test_a_completion_asking_for_another_model_is_refused_as_openai_refuses_it(h: Harness) -> None:
    # OpenAI answers an unknown model 404 with type invalid_request_error and code model_not_found, which
    # clients read to tell a wrong model from a wrong URL; this server said type not_found_error, code null.
    body = {"model": "gpt-4", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    r = h.client.post("/v1/chat/completions", json=body)
    assert r.status_code == 404
    error = r.json()["error"]
    assert (error["type"], error["param"], error["code"]) == (
        "invalid_request_error",
        "model",
        "model_not_found",
    )


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}),
        ("/v1/completions", {"prompt": "hi", "max_tokens": 2}),
    ],
    ids=["chat", "completion"],
)
def test_both_endpoints_refuse_another_model_and_serve_their_own(
    h: Harness, path: str, body: dict[str, Any]
) -> None:
    refused = h.client.post(path, json={**body, "model": "gpt-4"})
    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == "model_not_found"
    served = h.client.post(path, json={**body, "model": MODEL})
    assert served.status_code == 200, served.text


def test_a_trailing_slash_is_redirected_relative_so_a_proxy_s_prefix_and_https_are_kept(h: Harness) -> None:
    # Starlette's Location was absolute, from Host: behind a proxy serving it under /llm, /llm/healthz/ was
    # sent to http://proxy/healthz, outside the prefix, and to plain http behind a TLS proxy.
    reply = h.client.get("/healthz/", headers={"Host": "proxy.example"})
    assert (reply.status_code, reply.headers["location"]) == (307, "../healthz")
    missing = h.client.get("/nothing/")
    assert missing.status_code == 404
    assert missing.json()["error"]["type"] == "not_found_error"
