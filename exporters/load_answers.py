"""How loadgen reads what a request got back: a streamed answer's SSE events (an in-band error, its closing
``data: [DONE]``), whether a plain 2xx answer is an OpenAI completion, and what an error answer says."""

from __future__ import annotations

import json
from dataclasses import dataclass

from gpuwarden.printable import SAID_CHARS, clipped

NOT_A_COMPLETION = "not_a_completion"  # a plain 2xx answer that is no OpenAI completion
# What a server without the route answers: not found, method not allowed, not implemented (http.server).
NO_ROUTE_STATUSES = frozenset({404, 405, 501})
_FOREIGN_BODY_CHARS = 4000  # enough for an HTML page's title


@dataclass(frozen=True, slots=True)
class ForeignAnswer:
    """An answer saying the route is missing, not in OpenAI's error shape: what answered at the URL is no
    OpenAI-compatible inference server (gpuwarden serve, an exporter, Prometheus, a web server), or one
    without that route. An inference server's own 404 (an unknown model) is an OpenAI error, not this."""

    status: int
    server: str | None  # its Server header
    body: str  # what a JSON answer says, else the body's start (an HTML page's title is in it)


def foreign_answer(status: int, server: str | None, body: bytes) -> ForeignAnswer | None:
    """The answer as a ``ForeignAnswer`` when its status says there is no such route and its body is no
    OpenAI error (``{"error": {...}}``); else None."""
    if status not in NO_ROUTE_STATUSES:
        return None
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        return None
    if isinstance(payload, dict):  # serve's {"error": "path: no route ..."}, FastAPI's {"detail": ...}
        return ForeignAnswer(status, server, said(body) or "")
    return ForeignAnswer(status, server, body[:_FOREIGN_BODY_CHARS].decode("utf-8", "replace"))


class StreamEvents:
    """Reads a streamed answer's SSE events for an in-band error (``data: {"error": ...}``): the server
    sent its 200 before the generation failed, and says so in the stream, as OpenAI's API does. An answer
    that ends with neither an error nor ``data: [DONE]`` (a proxy or a server that closed it cleanly
    mid-answer) was cut short: ``stream_incomplete``."""

    __slots__ = ("_data", "_rest", "done", "error", "said")

    def __init__(self) -> None:
        self._rest = b""
        self._data: list[bytes] = []
        self.error: str | None = None  # the failure's kind: stream_error, or stream_error:CODE
        self.done = False  # the closing ``data: [DONE]`` came
        self.said: str | None = None  # the error event's message

    def failure(self) -> str | None:
        """How the stream, ended, failed; None when it ended as a whole answer does."""
        if self.error is None and not self.done:
            return "stream_incomplete"
        return self.error

    def feed(self, chunk: bytes) -> None:
        """Take the next bytes of the body; an event is read once its blank line has come."""
        *lines, self._rest = (self._rest + chunk).split(b"\n")
        for raw in lines:
            line = raw.removesuffix(b"\r")
            if line.startswith(b"data:"):
                self._data.append(line[5:].removeprefix(b" "))
            elif not line and self._data:
                self._event(b"\n".join(self._data))
                self._data = []

    def _event(self, data: bytes) -> None:
        if data == b"[DONE]":
            self.done = True
            return
        if self.error is not None or b'"error"' not in data:  # no JSON parse for each token's chunk
            return
        try:
            payload = json.loads(data)
        except ValueError:
            return
        if isinstance(payload, dict) and payload.get("error") is not None:
            error = payload["error"]
            code = error.get("code") if isinstance(error, dict) else None
            self.error = "stream_error" if code is None or code == "" else f"stream_error:{code}"
            self.said = said(data)


def said(body: bytes) -> str | None:
    """What an error answer or event says, in one line of at most ``SAID_CHARS`` characters, its control
    characters escaped (a server's text reaches the terminal): OpenAI's ``error.message``, vLLM's
    ``message`` or FastAPI's ``detail``, else the body's first line; None for an empty body."""
    text = body.decode("utf-8", "replace").strip()
    try:
        payload = json.loads(body)
    except ValueError:
        payload = None
    if isinstance(payload, dict):
        error = payload.get("error")
        for found in (error.get("message") if isinstance(error, dict) else error, *map(payload.get, _SAID)):
            if isinstance(found, str) and found.strip():
                text = found.strip()
                break
    return clipped(text.split("\n", 1)[0].strip() if payload is None else text, SAID_CHARS) or None


_SAID = ("message", "detail")  # where vLLM and FastAPI put what an error answer says


def answer_failure(body: bytes) -> str | None:
    """How a plain 2xx answer failed: ``not_a_completion`` when it is no OpenAI completion (not JSON, no
    ``choices`` list: another service on the port, a proxy's page, a body cut short); None when it is one."""
    try:
        payload = json.loads(body)
    except ValueError:  # UnicodeDecodeError included
        return NOT_A_COMPLETION
    if isinstance(payload, dict) and isinstance(payload.get("choices"), list):
        return None
    return NOT_A_COMPLETION
