"""What the server side of a TLS handshake does beyond OpenSSL's checks, as Go's crypto/tls and net/http do
for exporter-toolkit: a client certificate is let in only with a SAN in ``client_allowed_sans``, and a plain
HTTP request sent to the TLS port is answered ``400 Bad Request`` instead of a silent close.

Python's ssl has no verify callback and asyncio no hook before the handshake, so both run in the
``SSLObject`` of each connection (``ServerContext.sslobject_class``): its ``do_handshake`` follows OpenSSL's.
Refusing a certificate fails the handshake. A plain request fails OpenSSL's first record (``HTTP_REQUEST``):
Go's answer is written to the connection's outgoing buffer and the handshake reports that it waits for the
peer, so asyncio sends what was written, as it sends each handshake message; the next bytes, or the end of
the connection, or the handshake's deadline end it (the SSLObject has no hold on the connection to close it
at once, as Go does).

The handshake's deadline is the server's header deadline (``handshake_deadline``), as Go's net/http takes
the least of its header, read and write timeouts for it: asyncio's and uvloop's default, 60 s, kept a client
that connected to the TLS port and sent nothing, or a plain HTTP client answered and still connected, six
times as long as the plain port keeps a silent client, each with a descriptor.

A changed ``tls_server_config`` or certificate serves the next connections (``gpuwarden.tls_reload``): the
context the server was given makes each new connection from the newest context (``ServerContext.newest``),
so that the connection takes all of its settings. Handing the connection another context in the
``sni_callback`` (``SSLObject.context = ...``, OpenSSL's ``SSL_set_SSL_CTX``) would swap its certificate
only: its client certificate check, TLS versions, cipher suites and options stay those it was made with.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import ssl
from collections.abc import Callable
from socket import socket
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import uvicorn

logger = logging.getLogger("gpuwarden.webconfig")
PLAIN_HTTP_BODY = b"Client sent an HTTP request to an HTTPS server.\n"  # Go's net/http, word for word
PLAIN_HTTP_ANSWER = (
    b"HTTP/1.0 400 Bad Request\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: %d\r\n"
    b"connection: close\r\n\r\n%s" % (len(PLAIN_HTTP_BODY), PLAIN_HTTP_BODY)
)


def peer_sans(peer: dict[str, Any]) -> set[str]:
    """The DNS names, e-mail addresses, IP addresses and URIs of a certificate (``getpeercert()``), written
    as Go writes them (an IPv6 address compressed, in lower case)."""
    found: set[str] = set()
    for kind, value in peer.get("subjectAltName", ()):
        if kind == "IP Address":
            found.add(_go_ip(value))
        elif kind in ("DNS", "email", "URI"):
            found.add(value)
    return found


def _go_ip(text: str) -> str:
    """An IP address as Go writes it (``2001:db8::1``; OpenSSL writes ``2001:DB8:0:0:0:0:0:1``)."""
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        return text


def _check_sans(context: ssl.SSLContext, peer: dict[str, Any] | None) -> None:
    """Refuse a client certificate (``peer``, verified) with no SAN in the context's ``allowed_sans``."""
    allowed = getattr(context, "allowed_sans", None)
    if allowed is None:
        return
    sans = peer_sans(peer or {})
    if sans.isdisjoint(allowed):
        said = ", ".join(sorted(sans)) or "none"
        logger.warning("client certificate refused: none of its SANs (%s) is in client_allowed_sans", said)
        raise ssl.SSLCertVerificationError(
            f"no SAN of the client certificate ({said}) is in client_allowed_sans"
        )


class ServerObject(ssl.SSLObject):
    """A connection's TLS state, as asyncio (and so uvicorn) drives it: Go's answer to plain HTTP, and the
    check of ``client_allowed_sans``."""

    outgoing: ssl.MemoryBIO | None = None  # what asyncio sends to the peer (``ServerContext.wrap_bio``)
    answered = False

    def do_handshake(self) -> None:
        """OpenSSL's handshake, then the checks it does not do."""
        if self.answered:  # plain HTTP, answered: whatever comes next ends the connection
            raise ssl.SSLError("plain HTTP on the TLS port, answered 400")
        try:
            super().do_handshake()
        except ssl.SSLError as exc:
            if exc.reason != "HTTP_REQUEST" or self.outgoing is None:
                raise
            self.outgoing.write(PLAIN_HTTP_ANSWER)
            self.answered = True
            raise ssl.SSLWantReadError("plain HTTP answered; waiting for the peer to close") from exc
        _check_sans(self.context, self.getpeercert())


class ServerSocket(ssl.SSLSocket):
    """A blocking server socket's TLS (``wrap_socket``): the check of ``client_allowed_sans``."""

    def do_handshake(self, block: bool = False) -> None:
        """OpenSSL's handshake, then the SAN check."""
        super().do_handshake(block)
        _check_sans(self.context, self.getpeercert())


class ServerContext(ssl.SSLContext):
    """The server's TLS context: its connections answer plain HTTP as Go does and, with ``allowed_sans``
    (``client_allowed_sans``), let in only a client certificate with one of them. With ``newest`` (the
    context the web configuration file and its certificate files say now), a new connection is made from
    that one."""

    sslobject_class = ServerObject
    sslsocket_class = ServerSocket
    allowed_sans: frozenset[str] | None = None
    newest: Callable[[], ssl.SSLContext] | None = None

    def _serving(self, server_side: bool) -> ssl.SSLContext:
        """The context a new server-side connection is made from. Never raises: a raise fails the
        connection."""
        if not server_side or self.newest is None:
            return self
        try:
            return self.newest()
        except Exception:  # a connection is not to fail on a file this server could not look at
            logger.exception("cannot read the web configuration file again; serving the TLS settings in use")
            return self

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        """``SSLContext.wrap_bio`` of the newest context; a server side's object keeps ``outgoing`` to answer
        plain HTTP on."""
        serving = self._serving(server_side)
        if serving is not self:
            return serving.wrap_bio(incoming, outgoing, server_side, server_hostname, session)
        wrapped = super().wrap_bio(incoming, outgoing, server_side, server_hostname, session)
        if server_side and isinstance(wrapped, ServerObject):
            wrapped.outgoing = outgoing
        return wrapped

    def wrap_socket(  # noqa: PLR0917 - SSLContext.wrap_socket's own arguments
        self,
        sock: socket,
        server_side: bool = False,
        do_handshake_on_connect: bool = True,
        suppress_ragged_eofs: bool = True,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLSocket:
        """``SSLContext.wrap_socket`` of the newest context."""
        serving = self._serving(server_side)
        if serving is not self:
            return serving.wrap_socket(
                sock, server_side, do_handshake_on_connect, suppress_ragged_eofs, server_hostname, session
            )
        return super().wrap_socket(
            sock, server_side, do_handshake_on_connect, suppress_ragged_eofs, server_hostname, session
        )


def handshake_deadline(server: uvicorn.Server) -> None:
    """Give ``server``'s TLS handshakes its header deadline (its protocol's ``header_timeout``, serve's
    ``api.header_timeout_seconds``) instead of the event loop's 60 s. uvicorn has no setting for it: while
    it starts, the loop's ``create_server`` is given ``ssl_handshake_timeout`` (asyncio's and uvloop's)."""
    seconds = getattr(server.config.http, "header_timeout", None)
    if not server.config.is_ssl or not isinstance(seconds, int | float) or seconds <= 0:
        return
    startup = server.startup

    async def started(sockets: list[socket] | None = None) -> None:
        loop = asyncio.get_running_loop()
        loop.create_server = functools.partial(  # type: ignore[method-assign]
            loop.create_server, ssl_handshake_timeout=float(seconds)
        )
        try:
            await startup(sockets)
        finally:
            del loop.create_server  # the loop's own again

    server.startup = started  # type: ignore[method-assign]
