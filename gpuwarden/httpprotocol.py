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
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

logger = logging.getLogger(__name__)

_MESSAGE = b"the request line and headers did not arrive in time"
TIMEOUT_RESPONSE = (
    b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(_MESSAGE), _MESSAGE)
)


class HeaderDeadline(asyncio.Protocol):
    """Mixed in before one of uvicorn's HTTP protocol classes: the header deadline on its connections."""

    header_timeout: float = 10.0
    # What uvicorn's protocol classes set (their cycle types differ, hence Any).
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport
    cycle: Any
    client: tuple[str, int] | None
    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        """uvicorn's, then start the deadline for the first request."""
        super().connection_made(transport)
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
                "closed a connection whose request headers did not arrive within %g s (408)",
                self.header_timeout,
                extra={"client": self.client[0] if self.client else ""},
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

    def on_message_begin(self) -> None:
        """A request's first byte was parsed; then uvicorn's."""
        self._message_begun = True
        super().on_message_begin()

    def on_headers_complete(self) -> None:
        """The deadline ends; then uvicorn's."""
        self._message_begun = False
        self._stop_header_deadline()
        super().on_headers_complete()

    def request_begun(self) -> bool:
        """The parser began a request whose headers are not complete."""
        return self._message_begun


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
