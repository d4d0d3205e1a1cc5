"""Reading OpenAI-compatible requests and responses off the wire: SSE events, usage, request fields."""

from __future__ import annotations

import json
from typing import Any

import pytest

from exporters.completion_sniffer import ResponseSniffer, operation_for_path, read_request


class Ticker:
    """A clock that moves one second per read, so each content delta gets its own time."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        self.t += 1.0
        return self.t


def sse(obj: dict[str, Any]) -> bytes:
    return f"data: {json.dumps(obj)}\n\n".encode()


def delta(content: str | None = None, **extra: Any) -> dict[str, Any]:
    d: dict[str, Any] = {} if content is None else {"content": content}
    return {"id": "chatcmpl-7", "model": "llama-3-8b", "choices": [{"index": 0, "delta": {**d, **extra}}]}


def sniff(chunks: list[bytes]) -> ResponseSniffer:
    s = ResponseSniffer(stream=True, now=Ticker())
    for c in chunks:
        s.feed(c)
    s.close()
    return s


def test_only_content_deltas_count_as_tokens_not_pings_roles_finish_or_usage_chunks() -> None:
    s = sniff(
        [
            b": ping\n\n",
            sse(delta("", role="assistant")),
            sse(delta("a")),
            sse(delta("b")),
            sse({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}),
            sse({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 2}}),
            b"data: [DONE]\n\n",
        ]
    )
    assert s.count == 2
    assert s.first == 1.0  # the clock is read at content deltas only: the ping and role chunk did not
    assert s.finish_reasons == ["stop"]
    assert (s.input_tokens(), s.output_tokens()) == (7, 2)
    assert (s.response_id, s.model) == ("chatcmpl-7", "llama-3-8b")


def test_events_split_across_chunks_and_several_events_in_one_chunk_are_each_read_once() -> None:
    stream = sse(delta("a")) + sse(delta("b")) + sse(delta("c")) + b"data: [DONE]\n\n"
    for cut in range(1, len(stream)):  # every place a chunk boundary can fall
        s = sniff([stream[:cut], stream[cut:]])
        assert s.count == 3, cut
    assert sniff([bytes([b]) for b in stream]).count == 3  # one byte per chunk


def test_crlf_line_ends_and_multi_line_data_are_understood() -> None:
    crlf = sse(delta("a")).replace(b"\n", b"\r\n") + b": keep-alive\r\n\r\n"
    multi = b'event: message\ndata: {"choices": [{"index": 0,\ndata: "delta": {"content": "b"}}]}\n\n'
    s = sniff([crlf[:-1], crlf[-1:] + multi])  # a CR and its LF in different chunks
    assert s.count == 2


def test_completions_streams_count_text_and_reasoning_or_tool_call_deltas_count_too() -> None:
    s = sniff(
        [
            sse({"choices": [{"index": 0, "text": "x"}]}),
            sse({"choices": [{"index": 0, "text": ""}]}),
            sse({"choices": [{"index": 0, "delta": {"reasoning_content": "hmm"}}]}),
            sse({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0}]}}]}),
        ]
    )
    assert s.count == 3


def test_without_usage_the_count_is_the_output_and_an_in_band_error_is_kept() -> None:
    s = sniff([sse(delta("a")), sse({"error": {"type": "service_unavailable", "code": 503}})])
    assert s.output_tokens() == 1
    assert s.input_tokens() is None
    assert s.error_type == "service_unavailable"


def test_a_json_answer_is_read_whole_for_its_usage_and_finish_reasons() -> None:
    body = json.dumps(
        {
            "id": "cmpl-1",
            "model": "m",
            "choices": [{"index": 0, "finish_reason": "length"}, {"index": 1, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 3, "completion_tokens": 9},
        }
    ).encode()
    s = ResponseSniffer(stream=False, now=Ticker())
    s.feed(body[:10])
    s.feed(body[10:])
    s.close()
    assert (s.input_tokens(), s.output_tokens(), s.count) == (3, 9, 0)
    assert s.finish_reasons == ["length", "stop"]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"model": "m", "max_tokens": 5, "temperature": 0.2, "top_p": 1}', ("m", 5, 0.2, 1.0)),
        (b'{"model": "m", "max_completion_tokens": 9, "max_tokens": 5}', ("m", 9, None, None)),
        (b'{"model": 3, "max_tokens": true, "temperature": "hot"}', (None, None, None, None)),
    ],
    ids=["all-fields", "max-completion-tokens-wins", "wrong-types-ignored"],
)
def test_request_fields_are_read_when_of_the_right_type(body: bytes, expected: tuple[object, ...]) -> None:
    facts = read_request(body)
    assert facts is not None
    assert (facts.model, facts.max_tokens, facts.temperature, facts.top_p) == expected


@pytest.mark.parametrize("body", [b"", b"[1]", b"{bad", b"x" * 10], ids=["empty", "list", "broken", "text"])
def test_a_body_that_is_not_a_json_object_gives_no_request_facts(body: bytes) -> None:
    assert read_request(body) is None


def test_operation_is_known_from_openai_paths_only() -> None:
    assert operation_for_path("/v1/chat/completions") == "chat"
    assert operation_for_path("/openai/v1/completions") == "text_completion"
    assert operation_for_path("/v1/embeddings") == "embeddings"
    assert operation_for_path("/v1/models") is None
