"""A deadline on a request's line and headers, which uvicorn does not have.

uvicorn (0.54) starts no timer on a new connection before its first request and has no header timeout: a
client that connects and sends nothing, or trickles a header line every few seconds (slowloris), keeps its
connection, and a file descriptor, as long as it likes. 1,100 of them used up serve's 1,024 descriptors,
and POSTs and /healthz went unanswered. The protocol classes here close a connection whose request line and
headers are not complete within the deadline: with a 408 if the client sent part of a request, without an
answer if it sent nothing. The deadline runs from the moment the connection opens and, on a keep-alive
connection, from the first byte of each later request (until that byte, uvicorn's keep-alive timeout
applies). It stops once the headers are complete: the body has its own deadline in the app
(``gpuwarden.httpbody``), and the app may take as long as it needs to answer.

httptools (uvicorn's "auto") also refuses every method llhttp does not know (``FOO``, ``get``) with a 400
"Invalid HTTP request received." and closes the connection, where h11, Go's net/http and so Prometheus and
Alertmanager take any token as a method and answer 405 with ``Allow`` on a path that has routes. Such a
request is parsed here under a stand-in method and given to the app under its own, as h11 gives it: the app
answers 405 naming its methods, or 404 for a path it does not have.

httptools' cycle also framed an answer of unknown length (a stream) in chunks for an HTTP/1.0 client, which
has no chunked coding; here such an answer ends where the connection closes, as h11 sends it.

uvicorn's own lines about a connection (that 400, an app that crashed) do not say whose it is: each
connection's protocol logs through a ``ClientLogger``, which ends them with ``client=HOST:PORT``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import h11
import httptools
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gpuwarden.headers import HEADER_TIMEOUT_SECONDS
from gpuwarden.urls import host_port

logger = logging.getLogger(__name__)


def _closing_answer(status: bytes, message: bytes) -> bytes:
    """A plain-text answer after which the connection is closed."""
    return (
        b"HTTP/1.1 %s\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (status, len(message), message)
    )


TIMEOUT_RESPONSE = _closing_answer(
    b"408 Request Timeout", b"the request line and headers did not arrive in time"
)
MAX_HEAD_BYTES = 1 << 20
"""The most bytes of a request line and headers httptools is given (Go's ``DefaultMaxHeaderBytes``, which
Alertmanager and Prometheus serve with; h11 stops at 16 KiB itself). llhttp sets no bound and httptools keeps
a header's value whole until it ends: one client sending a header of 50 MB within the deadline held 50 MB."""
TOO_LARGE_RESPONSE = _closing_answer(
    b"431 Request Header Fields Too Large", b"request line and headers larger than %d bytes" % MAX_HEAD_BYTES
)


_TOKEN = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"  # RFC 9110 tchar
_LONGEST_METHOD = 64  # a longer "method" is no method: left to the parser's 400
_STAND_IN = b"POST"  # known to llhttp, and nothing in how it parses a request depends on it
_EMPTY_LINES = re.compile(rb"[\r\n]*")
_HEAD_END = b"\r\n\r\n"  # a header block's end: no header line holds an empty line
_LONGEST_LENGTH = 20  # digits of the largest Content-Length llhttp takes (2**64 - 1)


def _method_may_go_on(head: bytes) -> bool:
    """Whether ``head``, with no space yet, may still be the start of a method (a token)."""
    return len(head) < _LONGEST_METHOD and not head.translate(None, _TOKEN)  # nothing left: all tchar


@functools.lru_cache(maxsize=256)
def _unknown_to_llhttp(method: bytes) -> bool:
    """Whether ``method``, a token, is one httptools refuses (it knows a fixed list, in upper case, and
    refuses RTSP's ``FLUSH`` in HTTP otherwise): the rest of the line it reads here is valid."""
    try:
        httptools.HttpRequestParser(object()).feed_data(method + b" / HTTP/1.1\r\n")
    except httptools.HttpParserError:
        return True
    return False


class ClientLogger(logging.LoggerAdapter[logging.Logger]):
    """uvicorn's logger on one connection: its own lines (the parser's 400 "Invalid HTTP request received.",
    an app that crashed) end with ``client=HOST:PORT``, as serve's own lines name their context."""

    @property
    def level(self) -> int:
        """The logger's level: uvicorn's protocols compare it with their TRACE level."""
        return self.logger.level

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        """The line with the client; a ``%`` in its address (an IPv6 zone) escaped where the line is
        formatted with ``args``."""
        if self.isEnabledFor(level):
            client = str(self.extra["client"]) if self.extra else ""
            client = client.replace("%", "%%") if args else client
            self.logger.log(level, f"{str(msg).rstrip()} client={client}", *args, **kwargs)


class HeaderDeadline(asyncio.Protocol):
    """Mixed in before one of uvicorn's HTTP protocol classes: the header deadline on its connections."""

    header_timeout: float = HEADER_TIMEOUT_SECONDS
    # What uvicorn's protocol classes set (their cycle types differ, hence Any).
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    cycle: Any
    client: tuple[str, int] | None
    logger: Any  # uvicorn's, then a ``ClientLogger`` around it
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """uvicorn's, then its log lines name the client, and the deadline for the first request starts."""
        super().connection_made(transport)
        if self.client:
            self.logger = ClientLogger(self.logger, {"client": self._client_address()})
        self._start_header_deadline()

    def data_received(self, data: bytes) -> None:
        """The first byte of a request after a response starts its deadline; then uvicorn's."""
        if self._header_timer is None and (self.cycle is None or self.cycle.response_complete):
            self._start_header_deadline()
        super().data_received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        """No deadline for a connection that is gone; then uvicorn's."""
        self._stop_header_deadline()
        super().connection_lost(exc)

    def request_begun(self) -> bool:
        """Whether part of a request whose headers are not complete was received."""
        raise NotImplementedError

    def _client_address(self) -> str:
        return host_port(*self.client) if self.client else ""

    def _start_header_deadline(self) -> None:
        if not self.transport.is_closing():
            self._header_timer = self.loop.call_later(self.header_timeout, self._header_deadline_passed)

    def _stop_header_deadline(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_deadline_passed(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self.request_begun():
            why = f"request headers did not arrive within {self.header_timeout:g} s (408)"
            self._close_with(TIMEOUT_RESPONSE, why)
        self.transport.close()

    def _close_with(self, answer: bytes, why: str, *, linger: bool = False) -> None:
        """Log why, send ``answer`` and close the connection (``_answer_and_close``)."""
        self._log_closed(why)
        self._answer_and_close(answer, linger=linger)

    def _log_closed(self, why: str) -> None:
        logger.info("closed a connection whose %s client=%s", why, self._client_address())

    def _answer_and_close(self, answer: bytes, *, linger: bool = False) -> None:
        """Send ``answer`` and close the connection; ``linger``: once the client stops sending, or within the
        header deadline (closed with bytes unread, a socket sends a reset, which can destroy the answer on
        its way: the caller drops what still comes)."""
        self.transport.write(answer)
        if not linger:
            self.transport.close()
            return
        self.transport.write_eof()  # the answer, then the end of what this side sends
        self.loop.call_later(self.header_timeout, self.transport.close)


class H11DeadlineProtocol(HeaderDeadline, H11Protocol):
    """uvicorn's h11 protocol with the header deadline."""

    def handle_events(self) -> None:
        """uvicorn's; the deadline ends once h11 has read a whole request line and headers."""
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:
            self._stop_header_deadline()

    def request_begun(self) -> bool:
        """Bytes of the next request wait in h11's buffer for the rest of its headers."""
        return bool(self.conn.trailing_data[0])


def _content_length(headers: list[tuple[bytes, bytes]]) -> int:
    """The length of the body the ``headers`` (uvicorn's: names in lower case) announce; 0 for none or for one
    whose length is not given (chunked: llhttp lets Transfer-Encoding win over a Content-Length)."""
    lengths = [value for name, value in headers if name == b"content-length"]
    if any(name == b"transfer-encoding" for name, _ in headers) or len(lengths) != 1:
        return 0
    return int(lengths[0]) if lengths[0].isdigit() and len(lengths[0]) <= _LONGEST_LENGTH else 0


class HttpToolsDeadlineProtocol(HeaderDeadline, HttpToolsProtocol):
    """uvicorn's httptools protocol (the one its "auto" picks: httptools is a dependency) with the
    header deadline."""

    _message_begun = False
    _at_request_start = True  # the next bytes begin a request: its method is looked at
    _head = b""  # the start of a request held until its method is whole (it may arrive in parts)
    _method: str | None = None  # the method a stand-in took the place of, for the request parsed now
    _in_head = False  # a request's header block is being received: where it ends is looked for
    _tail = b""  # the last bytes of that block so far: its end may come in two packets ("\r\n" "\r\n")
    _head_size = 0  # bytes of that block so far (``MAX_HEAD_BYTES``)
    _refused = False  # refused with a 431: what still comes is dropped until the connection closes
    _refusal_waits = False  # that 431 waits for the answers to the requests before the refused one
    _framing = 0  # bytes of a body of unknown length given to the parser since its last data (its trailer)
    _body_given = 0  # bytes of body the parser found in what it was given last
    _message_done = False  # the parser ended a request in what it was given last
    _body_left = 0  # bytes of a Content-Length body still to come (0: none, or a chunked body's unknown)

    def data_received(self, data: bytes) -> None:
        """A request whose method llhttp does not know is parsed under a stand-in (``_STAND_IN``); then the
        header deadline's and uvicorn's (with nothing, while the start of a method is held). Data is given
        to the parser up to the end of each request's header block and of its ``Content-Length`` body, so
        that the method of each request right behind another is looked at too, whichever packets they came
        in (a chunked body's end is the parser's to find: what follows one is parsed as it came, up to the
        end of the header block of the request it begins). Offsets, not copies of what is left: a packet of
        many small requests costs its length, not its length times their number."""
        if self._refused:
            return
        data, self._head = self._head + data, b""
        start = 0
        while True:
            stand_in, first = b"", start
            if self._at_request_start:
                begun = self._request_begins(data, start)
                if begun is None:
                    return
                stand_in, first, start = begun
            end = self._head_end(data, start) if self._in_head else self._body_end(data, start)
            if self._in_head and self._head_too_large((len(data) if end < 0 else end) - start):
                return
            if end < 0 or end == len(data):
                break
            super().data_received(stand_in + data[first:end])  # a request may end here
            start = end
            if self.transport.is_closing():
                return
        self._give_rest(stand_in + data[first:])  # no copy where nothing is cut: b"" + data[0:] is data

    def _give_rest(self, data: bytes) -> None:
        """Give the parser ``data``, the rest of a packet; inside a body of unknown length (chunked), what of
        it is no body data counts towards ``MAX_HEAD_BYTES`` while no body data comes: a chunk's size line,
        or the trailer fields after the last chunk, which the parser holds as it holds headers."""
        in_body = not (self._in_head or self._at_request_start)
        self._body_given, self._message_done = 0, False
        super().data_received(data)
        if not in_body or self._message_done or self._refused:
            return
        self._framing += len(data) - self._body_given
        if self._framing > MAX_HEAD_BYTES:
            self._refuse(f"trailer fields after a chunked body passed {MAX_HEAD_BYTES} bytes (431)")

    def _request_begins(self, data: bytes, start: int) -> tuple[bytes, int, int] | None:
        """At a request's start in ``data``: what stands in for its method (b"": nothing), where what the
        parser is given begins, and where the request does; None when the start of its method is held."""
        # llhttp skips empty lines before a request line (RFC 9112 2.2): so does the look for its method.
        start = _EMPTY_LINES.match(data, start).end()  # type: ignore[union-attr]  # "*" always matches
        space = data.find(b" ", start, start + _LONGEST_METHOD)
        if space < 0 and len(data) - start < _LONGEST_METHOD and _method_may_go_on(data[start:]):
            self._head = data[start:]
            super().data_received(b"")  # starts the deadline, stops keep-alive's timer
            return None
        self._at_request_start, self._in_head, self._tail, self._head_size = False, True, b"", 0
        method = data[start:space] if space > start else b""
        if method and _method_may_go_on(method) and _unknown_to_llhttp(method):
            self._method = method.decode("ascii")
            return _STAND_IN, space, start
        return b"", start, start

    def _head_too_large(self, size: int) -> bool:
        """Count ``size`` more bytes of the header block; past ``MAX_HEAD_BYTES``, answer 431 and close."""
        self._head_size += size
        if self._head_size <= MAX_HEAD_BYTES:
            return False
        self._refuse(f"request line and headers passed {MAX_HEAD_BYTES} bytes (431)")
        return True

    def _refuse(self, why: str) -> None:
        """Refuse the request being received with a 431 and close the connection; what still comes is
        dropped. The requests before it on the connection are answered first, in order (HTTP/1.1 answers
        pipelined requests in the order they came); the refused request's own app, if it runs, is told
        the client is gone."""
        self._stop_header_deadline()
        self._refused = True
        self._log_closed(why)
        if self.cycle is not None and not self._in_head:  # refused in its body: its headers were complete
            self.cycle.disconnected = True
            self.cycle.message_event.set()
            if self.cycle.response_started and not self.cycle.response_complete:
                self.transport.close()  # no 431 in the middle of its answer
                return
        self._refusal_waits = True
        self._answer_refusal()

    def _answer_refusal(self) -> None:
        """The 431, once no request before the refused one waits for its answer."""
        cycle = self.cycle
        if self.pipeline or not (cycle is None or cycle.response_complete or cycle.disconnected):
            return
        self._refusal_waits = False
        self._unset_keepalive_if_required()
        self._answer_and_close(TOO_LARGE_RESPONSE, linger=True)

    def on_response_complete(self) -> None:
        """uvicorn's (the next pipelined request's app starts); then a 431 that waited for it is sent."""
        super().on_response_complete()
        if self._refusal_waits and not self.transport.is_closing():
            self._answer_refusal()

    def _head_end(self, data: bytes, start: int) -> int:
        """Where in ``data`` (from ``start``) the header block being received ends; -1: not in ``data``."""
        if self._tail:  # its end may have begun in the last packet
            found = (self._tail + data[start : start + 3]).find(_HEAD_END)
            if found >= 0:
                return start + found + len(_HEAD_END) - len(self._tail)
        found = data.find(_HEAD_END, start)
        if found < 0:
            self._tail = (self._tail + data[max(start, len(data) - 3) :])[-3:]
            return -1
        return found + len(_HEAD_END)

    def _body_end(self, data: bytes, start: int) -> int:
        """Where in ``data`` (from ``start``, in the body being received) a ``Content-Length`` body ends; -1:
        not in ``data``, or a body of unknown length (the parser's ``on_body`` counts what it reads)."""
        end = start + self._body_left
        return end if self._body_left and end <= len(data) else -1

    def on_message_begin(self) -> None:
        """A request's first byte was parsed (one sent right behind a body too: its bytes are the parser's,
        never looked at as a method, but the end of its header block is looked for in the next packets);
        then uvicorn's."""
        self._message_begun = True
        self._at_request_start = False
        if not self._in_head:
            self._in_head, self._tail, self._head_size = True, b"", 0
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        """The deadline ends; then uvicorn's, and the request's own method in its scope (the app has not run
        yet: uvicorn only scheduled it)."""
        self._message_begun = self._in_head = False
        self._tail = b""
        self._body_left = _content_length(self.headers)
        self._stop_header_deadline()
        super().on_headers_complete()
        if self._method is not None:
            self.scope["method"], self._method = self._method, None
        cycle = self.cycle
        if cycle is not None and cycle.scope is self.scope and self.scope["http_version"] == "1.0":
            _close_delimited(cycle)

    def on_body(self, body: bytes) -> None:
        """Counted off the body still to come; then uvicorn's."""
        self._body_left = max(self._body_left - len(body), 0)
        self._body_given += len(body)
        self._framing = 0
        super().on_body(body)

    def on_message_complete(self) -> None:
        """What follows begins the next request; then uvicorn's."""
        self._at_request_start, self._body_left, self._framing, self._message_done = True, 0, 0, True
        super().on_message_complete()

    def request_begun(self) -> bool:
        """The parser began a request whose headers are not complete, or the start of its method is held."""
        return self._message_begun or bool(self._head)


def _close_delimited(cycle: Any) -> None:
    """An answer of unknown length (a stream) to an HTTP/1.0 request ends where the connection closes, as
    h11 sends it: uvicorn's httptools cycle framed it in chunks, a coding HTTP/1.0 has not (RFC 9112 6.1),
    and the client read the chunk sizes as data. uvicorn closes an HTTP/1.0 connection after its answer;
    here its cycle is told that no chunk is wanted, and each body message's length as the length to send."""
    send = cycle.send
    unframed = False

    async def send_to_http10(message: Any) -> None:
        nonlocal unframed
        if message["type"] == "http.response.start":
            names = {bytes(name).lower() for name, _ in message.get("headers", ())}
            unframed = (
                not names & {b"content-length", b"transfer-encoding"}
                and cycle.scope["method"] != "HEAD"
                and message["status"] not in {204, 304}
            )
            if unframed:
                cycle.chunked_encoding = False
        elif unframed and message["type"] == "http.response.body":
            cycle.expected_content_length = len(message.get("body", b""))
        await send(message)

    cycle.send = send_to_http10


BASES: Mapping[str, type[HeaderDeadline]] = MappingProxyType(
    {
        "auto": HttpToolsDeadlineProtocol,  # what uvicorn's "auto" is: httptools is installed with gpuwarden
        "httptools": HttpToolsDeadlineProtocol,
        "h11": H11DeadlineProtocol,
    }
)


def header_deadline_protocol(seconds: float, http: str = "auto") -> type[HeaderDeadline]:
    """The protocol class to give ``uvicorn.Config(http=...)``: uvicorn's for ``http`` ("auto", "httptools"
    or "h11"), with a deadline of ``seconds`` on each request's line and headers."""
    base = BASES[http]
    return type(base.__name__, (base,), {"header_timeout": seconds})
