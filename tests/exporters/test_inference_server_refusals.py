"""What the toy inference server refuses, in OpenAI's shape and never as a 500: bad requests, compressed or
oversized bodies, wrong types and ranges, what the toy model cannot honour, clients gone mid-body."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from exporters.inference_server import MAX_BODY_BYTES, ServedGpu, build_inference_app, toy_tokens
from gpuwarden.clock import FakeClock
from tests.exporters.asgi_client import AsgiClient
from tests.exporters.inference_harness import CHAT, MODEL, FakeGpu, Harness


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


TOOL_CALL = {"id": "call_1", "type": "function", "function": {"name": "get_gpu", "arguments": "{}"}}


@pytest.mark.parametrize(
    ("route", "body", "param", "says"),
    [
        ("/v1/completions", {"model": MODEL, "prompt": [1, 2, 3]}, "prompt", "token-id prompts"),
        ("/v1/completions", {"model": MODEL, "prompt": [[1, 2]]}, "prompt", "token-id prompts"),
        (
            "/v1/chat/completions",
            {
                **CHAT,
                "messages": [
                    {"role": "user", "content": "which gpu is hot"},
                    {"role": "assistant", "content": None, "tool_calls": [TOOL_CALL]},
                ],
            },
            "messages[1].tool_calls",
            "tool calls are not supported",
        ),
    ],
    ids=["token-ids", "nested-token-ids", "assistant-tool-calls"],
)
def test_token_id_prompts_and_tool_calls_are_refused_saying_what_is_not_supported(
    h: Harness, route: str, body: dict[str, Any], param: str, says: str
) -> None:
    # [1, 2, 3] is one prompt of three token ids, not "3 prompts"; an assistant turn with tool calls and
    # content null was told its content must be a string.
    r = h.client.post(route, json=body)
    assert r.status_code == 400
    error = r.json()["error"]
    assert error["param"] == param
    assert says in error["message"]


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
