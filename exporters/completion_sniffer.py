"""What an OpenAI-compatible request and response say about a generation, read as they cross the wire.

Used by the tracing middleware for handlers that do not report to their ``GenerationSpan`` themselves
(third-party apps, vLLM-like servers): the request body gives the model and sampling parameters, the
response gives the output. A streamed (SSE) response is parsed event by event, across body chunks:
comments (``: ping``), role-only deltas, finish and usage chunks carry no output token; each choice with
content (or reasoning, or a tool call) in its delta counts once, and the first one sets time to first
token. A ``usage`` object, when the response has one, is preferred to the count.

Cost: one ``orjson.loads`` per event (about 0.5 us for a typical chunk) and a clock read per content delta.
Bodies are read only up to ``MAX_BODY_BYTES``; past it the response is left unread, not half-counted.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

MAX_BODY_BYTES = 1_048_576
_INT64_MAX = 2**63 - 1
_DONE = b"[DONE]"
_OPERATIONS = (
    ("/chat/completions", "chat"),
    ("/completions", "text_completion"),
    ("/embeddings", "embeddings"),
)


def operation_for_path(path: str) -> str | None:
    """The GenAI operation an OpenAI-compatible path serves, or None for another path."""
    for suffix, operation in _OPERATIONS:
        if path.endswith(suffix):
            return operation
    return None


@dataclass(slots=True)
class RequestFacts:
    """What the request body asked for (None: not sent, or not of the expected type)."""

    model: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None


def read_request(body: bytes) -> RequestFacts | None:
    """The model and sampling parameters of an OpenAI-compatible JSON request body; None if it is not one."""
    if not body or len(body) > MAX_BODY_BYTES or not body.lstrip().startswith(b"{"):
        return None
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict):
        return None
    model = data.get("model")
    max_tokens = data.get("max_completion_tokens", data.get("max_tokens"))
    return RequestFacts(
        model=model if isinstance(model, str) and model else None,
        max_tokens=max_tokens if isinstance(max_tokens, int) and _is_int(max_tokens) else None,
        temperature=_number(data.get("temperature")),
        top_p=_number(data.get("top_p")),
    )


class ResponseSniffer:
    """Reads one response body as it is sent: Server-Sent Events (``stream=True``) or one JSON document."""

    __slots__ = (
        "_buffer",
        "_document",
        "_now",
        "_reasons",
        "_size",
        "count",
        "error_type",
        "first",
        "last",
        "model",
        "response_id",
        "usage",
    )

    def __init__(self, *, stream: bool, now: Callable[[], float]) -> None:
        self._now = now
        self._buffer = b""
        self._document: list[bytes] | None = None if stream else []
        self._size = 0
        self._reasons: dict[int, str] = {}
        self.count = 0  # content deltas seen
        self.first = 0.0  # clock at the first and last content delta
        self.last = 0.0
        self.usage: dict[str, Any] | None = None
        self.response_id: str | None = None
        self.model: str | None = None
        self.error_type: str | None = None  # an in-band error event of a stream

    def feed(self, body: bytes) -> None:
        """Read one body chunk."""
        document = self._document
        if document is not None:
            self._size += len(body)
            if self._size <= MAX_BODY_BYTES:
                document.append(body)
            return
        if (
            not self._buffer
            and body.endswith(b"\n\n")
            and body.find(b"\n\n") == len(body) - 2
            and b"\r" not in body
        ):
            self._event(body[:-2])  # the usual chunk: exactly one whole event
            return
        buf = self._buffer + body if self._buffer else body
        held = b""
        if b"\r" in buf:  # CRLF or CR line ends (sse-starlette sends CRLF); a CR at the end may pair later
            if buf.endswith(b"\r"):
                buf, held = buf[:-1], b"\r"
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        start = 0
        find = buf.find
        end = find(b"\n\n")
        while end >= 0:
            self._event(buf[start:end])
            start = end + 2
            end = find(b"\n\n", start)
        rest = buf[start:] + held
        self._buffer = rest if len(rest) <= MAX_BODY_BYTES else b""

    def close(self) -> None:
        """Read a JSON document once its last chunk is in (an SSE event cut off at the end is ignored)."""
        document = self._document
        if document is None or not document or self._size > MAX_BODY_BYTES:
            return
        try:
            data = orjson.loads(b"".join(document))
        except orjson.JSONDecodeError:
            return
        if isinstance(data, dict):
            self._read(data, streamed=False)

    @property
    def finish_reasons(self) -> list[str]:
        """The finish reason of each choice that had one, in the order the choices finished."""
        return list(self._reasons.values())

    def output_tokens(self) -> int | None:
        """``usage.completion_tokens`` when sent, else the content deltas counted (None: neither)."""
        usage = self.usage
        if usage is not None:
            value = usage.get("completion_tokens", usage.get("output_tokens"))
            if isinstance(value, int) and _is_int(value):
                return value
        return self.count or None

    def input_tokens(self) -> int | None:
        """``usage.prompt_tokens`` when sent."""
        usage = self.usage
        if usage is None:
            return None
        value = usage.get("prompt_tokens", usage.get("input_tokens"))
        return value if isinstance(value, int) and _is_int(value) else None

    def _event(self, raw: bytes) -> None:
        if raw.startswith(b"data:") and b"\n" not in raw:  # the usual event: one data line
            data = raw[5:]
        else:  # several lines: data lines joined; comments, event:, id:, retry: carry no payload
            parts = [line[5:] for line in raw.split(b"\n") if line.startswith(b"data:")]
            if not parts:
                return
            data = b"\n".join(p[1:] if p.startswith(b" ") else p for p in parts)
        if data.startswith(b" "):
            data = data[1:]
        if data.startswith(_DONE):
            return
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if isinstance(obj, dict):
            self._read(obj, streamed=True)

    def _read(self, obj: dict[str, Any], *, streamed: bool) -> None:
        choices = obj.get("choices")
        if choices and type(choices) is list:
            for choice in choices:
                if type(choice) is not dict:
                    continue
                reason = choice.get("finish_reason")
                if reason and type(reason) is str:
                    index = choice.get("index", 0)
                    self._reasons[index if type(index) is int else 0] = reason
                if not streamed:
                    continue
                delta = choice.get("delta")
                if type(delta) is dict:
                    produced = (
                        delta.get("content")
                        or delta.get("reasoning_content")
                        or delta.get("reasoning")
                        or delta.get("tool_calls")
                    )
                else:
                    produced = choice.get("text")
                if produced:
                    now = self._now()
                    if not self.count:
                        self.first = now
                    self.last = now
                    self.count += 1
        if "usage" in obj:
            usage = obj["usage"]
            if usage and type(usage) is dict:
                self.usage = usage
        if self.response_id is None:
            ident = obj.get("id")
            self.response_id = ident if type(ident) is str and ident else None
        if self.model is None:
            model = obj.get("model")
            self.model = model if type(model) is str and model else None
        if streamed and "error" in obj:
            error = obj["error"]
            if type(error) is dict:
                kind = error.get("type") or error.get("code")
                self.error_type = str(kind) if kind else "error"


def _is_int(value: object) -> bool:
    """A count a span attribute can hold: OTLP's integers are int64, and a larger one (a client's
    ``max_tokens``) failed the span's encoding with an error and traceback logged for every such request."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _INT64_MAX


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None
