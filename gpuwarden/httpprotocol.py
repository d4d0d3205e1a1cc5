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

uvicorn's own lines about a connection (that 400, an app that crashed) do not say whose it is: each
connection's protocol logs through a ``ClientLogger``, which ends them with ``client=HOST:PORT``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import h11
import httptools
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from gpuwarden.headers import HEADER_TIMEOUT_SECONDS

logger = logging.getLogger(__name__)

_MESSAGE = b"the request line and headers did not arrive in time"
TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_MESSAGE), _MESSAGE)
)


_TOKEN = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"  # RFC 9110 tchar
_LONGEST_METHOD = 64  # a longer "method" is no method: left to the parser's 400
_STAND_IN = b"POST"  # known to llhttp, and nothing in how it parses a request depends on it


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
        return f"{self.client[0]}:{self.client[1]}" if self.client else ""

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
            logger.info(
                "closed a connection whose request headers did not arrive within %g s (408) client=%s",
                self.header_timeout,
                self._client_address(),
            )
            self.transport.write(TIMEOUT_RESPONSE)
        self.transport.close()


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


class HttpToolsDeadlineProtocol(HeaderDeadline, HttpToolsProtocol):
    """uvicorn's httptools protocol (the one its "auto" picks: httptools is a dependency) with the
    header deadline."""

    _message_begun = False
    _at_request_start = True  # the next bytes begin a request: its method is looked at
    _head = b""  # the start of a request held until its method is whole (it may arrive in parts)
    _method: str | None = None  # the method a stand-in took the place of, for the request parsed now

    def data_received(self, data: bytes) -> None:
        """A request whose method llhttp does not know is parsed under a stand-in (``_STAND_IN``); then the
        header deadline's and uvicorn's (with nothing, while the start of a method is held). Requests sent
        right behind one another in one packet are parsed one header block at a time, so that the method
        of each one after a request without a body is looked at too (a body's end is the parser's to find:
        what follows one is parsed as it came)."""
        while self._at_request_start:
            # llhttp skips empty lines before a request line (RFC 9112 2.2): so does the look for its method.
            data, self._head = (self._head + data).lstrip(b"\r\n"), b""
            space = data.find(b" ", 0, _LONGEST_METHOD)
            if space < 0 and _method_may_go_on(data):
                self._head = data
                super().data_received(b"")  # starts the deadline, stops keep-alive's timer
                return
            self._at_request_start = False
            method = data[:space] if space > 0 else b""
            if method and _method_may_go_on(method) and _unknown_to_llhttp(method):
                self._method = method.decode("ascii")
                data = _STAND_IN + data[space:]
            end = data.find(b"\r\n\r\n") + 4  # its header block's end: no header line holds an empty line
            if end < 4 or end == len(data):
                break
            super().data_received(data[:end])  # a request without a body ends here: the next one begins
            data = data[end:]
            if self.transport.is_closing():
                return
        super().data_received(data)

    def on_message_begin(self) -> None:
        """A request's first byte was parsed (one sent right behind another too: its bytes are the parser's,
        never looked at as a method); then uvicorn's."""
        self._message_begun = True
        self._at_request_start = False
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        """The deadline ends; then uvicorn's, and the request's own method in its scope (the app has not run
        yet: uvicorn only scheduled it)."""
        self._message_begun = False
        self._stop_header_deadline()
        super().on_headers_complete()
        if self._method is not None:
            self.scope["method"], self._method = self._method, None

    def on_message_complete(self) -> None:
        """What follows begins the next request; then uvicorn's."""
        self._at_request_start = True
        super().on_message_complete()

    def request_begun(self) -> bool:
        """The parser began a request whose headers are not complete, or the start of its method is held."""
        return self._message_begun or bool(self._head)


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
