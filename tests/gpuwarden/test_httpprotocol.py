"""The header deadline on uvicorn's protocols: silent and slowloris connections are closed, others served."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import io
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from gpuwarden.httpprotocol import MAX_HEAD_BYTES, header_deadline_protocol
from tests.integration.servers import free_port, uvicorn_in_thread

DEADLINE = 1.0
GIVE_UP = 30.0  # a connection still open this long after its deadline was never going to be closed


async def echo(request: Request) -> Response:
    return PlainTextResponse(f"{request.method} {len(await request.body())}")


REFUSED = threading.Event()  # set by ``RefusalSeen`` when the server logs a 431


class RefusalSeen(logging.Handler):
    """Sets ``REFUSED`` when the server logs that it refused a request with a 431."""

    def emit(self, record: logging.LogRecord) -> None:
        if "(431)" in record.getMessage():
            REFUSED.set()


async def events(request: Request) -> Response:
    """An answer of unknown length, as the inference server streams one (Server-Sent Events)."""

    async def body() -> AsyncIterator[bytes]:
        for event in (b"data: one\n\n", b"data: [DONE]\n\n"):
            yield event

    return StreamingResponse(body(), media_type="text/event-stream")


async def after_a_refusal(request: Request) -> Response:
    """Answers once the server has refused a request behind this one (``RefusalSeen``)."""
    await asyncio.to_thread(REFUSED.wait, GIVE_UP)
    return PlainTextResponse("answered")


@pytest.fixture(scope="module", params=["httptools", "h11"])
def server(request: pytest.FixtureRequest) -> Iterator[int]:
    """serve's protocol for ``http`` with a 1 s header deadline, on a free port, in a thread.

    One server per parser for the module: it keeps nothing between connections, and each test opens and
    closes its own (starting and stopping uvicorn cost about 0.2 s a test)."""
    port = free_port()
    config = uvicorn.Config(
        Starlette(
            routes=[
                Route("/", echo, methods=["GET", "POST"]),
                Route("/held", after_a_refusal),
                Route("/events", events, methods=["GET", "POST"]),
            ]
        ),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
        http=header_deadline_protocol(DEADLINE, request.param),
        timeout_keep_alive=60,  # longer than the deadline: what closes the connections below is the deadline
    )
    with uvicorn_in_thread(uvicorn.Server(config)):
        yield port


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.settimeout(GIVE_UP)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a timeout fails the test)."""
    received = b""
    while chunk := sock.recv(4096):
        received += chunk
    return received


def test_a_connection_that_sends_nothing_is_closed_without_an_answer(server: int) -> None:
    with connect(server) as silent:
        assert read_until_closed(silent) == b""


def test_trickled_headers_get_a_408_and_the_connection_is_closed(server: int) -> None:
    with connect(server) as slow:
        slow.sendall(b"POST / HTTP/1.1\r\nHost: x\r\n")
        slow.settimeout(0.2)
        received = b""
        for _ in range(int(GIVE_UP / 0.2)):  # a header line now and then, as slowloris does, until closed
            try:
                slow.sendall(b"X-a: b\r\n")
                chunk = slow.recv(4096)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            received += chunk
            if not chunk:
                break
    assert received.startswith(b"HTTP/1.1 408 "), received
    assert b"connection: close" in received


def test_a_normal_client_is_served_while_slow_ones_wait_and_after_they_are_closed(server: int) -> None:
    url = f"http://127.0.0.1:{server}/"
    with connect(server) as silent, connect(server) as slow:
        slow.sendall(b"GET / HTTP/1.1\r\n")
        assert httpx.post(url, content=b"abc", timeout=GIVE_UP).text == "POST 3"
        assert (read_until_closed(silent), read_until_closed(slow)[:12]) == (b"", b"HTTP/1.1 408")
    assert httpx.get(url, timeout=GIVE_UP).text == "GET 0"


GET = b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


@pytest.mark.parametrize(
    ("first", "answered_first", "then"),
    [
        # The deadline is on each request's headers, not on the connection: a client that reuses its
        # connection after a pause longer than the deadline (but within keep-alive) is served.
        pytest.param(GET, True, GET, id="keep-alive-request-after-a-pause"),
        # The headers are complete: the deadline no longer runs while the app waits for a slow body.
        pytest.param(
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nx", False, b"y", id="slow-body"
        ),
    ],
)
def test_a_pause_longer_than_the_deadline_after_whole_headers_does_not_close_the_connection(
    server: int, first: bytes, answered_first: bool, then: bytes
) -> None:
    with connect(server) as sock:
        sock.sendall(first)
        if answered_first:
            assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
        time.sleep(DEADLINE * 2)
        sock.sendall(then)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")


def test_the_second_request_on_a_connection_has_a_deadline_too(server: int) -> None:
    with connect(server) as sock:
        sock.sendall(GET)
        assert sock.recv(4096).startswith(b"HTTP/1.1 200 ")
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and never the end of the headers
        assert read_until_closed(sock).startswith(b"HTTP/1.1 408 ")


def answer(sock: socket.socket | OneReader) -> tuple[int, str, bytes]:
    """The status, ``Allow`` header and body of one whole answer; the connection stays open."""
    response = http.client.HTTPResponse(sock)  # type: ignore[arg-type]  # a OneReader: makefile is all it uses
    response.begin()
    return response.status, response.getheader("allow", ""), response.read()


@pytest.mark.parametrize(
    ("request_line", "status"),
    [
        pytest.param(b"FOO / HTTP/1.1", 405, id="unknown-method-known-path"),
        pytest.param(b"get / HTTP/1.1", 405, id="lower-case-method"),  # methods are case-sensitive
        pytest.param(b"FOO /nowhere HTTP/1.1", 404, id="unknown-method-unknown-path"),
    ],
)
def test_a_method_the_parser_does_not_know_reaches_the_app_and_the_connection_serves_on(
    server: int, request_line: bytes, status: int
) -> None:
    # httptools (uvicorn's "auto") refused every method it does not know with a 400 "Invalid HTTP request
    # received." and closed the connection; Prometheus and Alertmanager answer 405 naming the methods (Allow).
    with connect(server) as sock:
        sock.sendall(request_line[:2])  # the method may arrive in parts
        time.sleep(0.05)
        sock.sendall(request_line[2:] + b"\r\nHost: x\r\n\r\n")
        answered, allow, _ = answer(sock)
        assert (answered, "GET" in allow) == (status, status == 405), allow
        sock.sendall(GET)
        assert answer(sock) == (200, "", b"GET 0")


@pytest.mark.parametrize("server", ["httptools"], indirect=True)  # h11 refuses it: "no request line received"
@pytest.mark.parametrize(
    "before",
    [
        # RFC 9112 2.2: a server ignores an empty line before a request line; GET was served after one.
        pytest.param(b"", id="in-the-same-packet"),
        # Some clients end a POST body with a CRLF the body does not count: it came in a packet of its own.
        pytest.param(b"\r\n", id="in-a-packet-of-its-own"),
    ],
)
def test_an_empty_line_before_a_method_the_parser_does_not_know_is_ignored(
    server: int, before: bytes
) -> None:
    # The method was looked for in "\r\nFOO" (no token): the request had the parser's 400 and the
    # connection was closed; after a CRLF alone, no later request's method was looked at.
    with connect(server) as sock:
        sock.sendall(GET)
        assert answer(sock) == (200, "", b"GET 0")
        if before:
            sock.sendall(before)
            time.sleep(0.05)
        sock.sendall(b"\r\nFOO / HTTP/1.1\r\nHost: x\r\n\r\n")
        answered, allow, _ = answer(sock)
        assert (answered, "GET" in allow) == (405, True), allow
        sock.sendall(b"\r\n" + GET)
        assert answer(sock) == (200, "", b"GET 0")


def test_a_body_sent_after_a_request_right_behind_another_is_not_taken_for_a_method(server: int) -> None:
    # The second request began in the first one's packet: its body, "abc def g", starts with a token and a
    # space, as a request line with an unknown method does; it is the body and it is read whole.
    with connect(server) as sock:
        sock.sendall(GET + b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 9\r\n\r\n")
        first = answer(sock)
        time.sleep(0.05)  # the body in a packet of its own
        sock.sendall(b"abc def g")
        second = answer(sock)
    assert (first, second) == ((200, "", b"GET 0"), (200, "", b"POST 9"))


def test_the_parsers_400_for_a_request_it_cannot_read_is_logged_with_the_clients_address(
    server: int, caplog: pytest.LogCaptureFixture
) -> None:
    # uvicorn logs "Invalid HTTP request received." and nothing else: which client sent it was not said.
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.addHandler(caplog.handler)
    try:
        with connect(server) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost x\r\n\r\n")  # a header line with no colon
            assert read_until_closed(sock).startswith(b"HTTP/1.1 400")
            host, port = sock.getsockname()
            client = f"{host}:{port}"
    finally:
        uvicorn_log.removeHandler(caplog.handler)
    said = {r.getMessage() for r in caplog.records if r.name == "uvicorn.error"}  # caplog's root handler too
    assert said == {f"Invalid HTTP request received. client={client}"}


def test_a_method_the_parser_does_not_know_right_behind_another_request_in_its_packet_is_answered_405(
    server: int,
) -> None:
    # Only a packet's first request had its method looked at: httptools refused the second, and its 400
    # went out before the first request's answer, which never came.
    with connect(server) as sock:
        sock.sendall(GET + b"FOO / HTTP/1.1\r\nHost: x\r\n\r\n" + b"get / HTTP/1.1\r\nHost: x\r\n\r\n" + GET)
        answers = OneReader(sock)
        assert answer(answers) == (200, "", b"GET 0")
        assert [(status, "GET" in allow) for status, allow, _ in (answer(answers), answer(answers))] == [
            (405, True)
        ] * 2
        assert answer(answers) == (200, "", b"GET 0")


def post(length: int) -> bytes:
    """The head of a POST whose body has ``length`` bytes."""
    return b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % length


GOT = (200, "", b"GET 0")


@pytest.mark.parametrize(
    ("packets", "first"),
    [
        # Only a request whose header block ended in the packet it began in had the request behind it
        # looked at: with its headers cut across packets (a segment's end), not.
        pytest.param([GET[:16], GET[16:]], [GOT], id="after-the-request-line"),
        pytest.param([GET[:20], GET[20:]], [GOT], id="inside-a-header"),
        pytest.param([GET[:25], GET[25:]], [GOT], id="between-the-two-line-ends"),
        pytest.param([GET[:26], GET[26:]], [GOT], id="inside-the-last-line-end"),
        pytest.param([GET[:18], GET[18:24], GET[24:26], GET[26:]], [GOT], id="in-four-packets"),
        pytest.param(
            [post(1) + b"x" + GET[:20], GET[20:]], [(200, "", b"POST 1"), GOT], id="cut-behind-a-body"
        ),
        # Where a body ended was the parser's alone to find: what followed it was parsed as it came.
        pytest.param([post(9) + b"abc def g"], [(200, "", b"POST 9")], id="body-in-one-packet"),
        pytest.param([post(9), b"abc def g"], [(200, "", b"POST 9")], id="body-in-a-packet-of-its-own"),
        pytest.param([post(9) + b"abc", b" def g"], [(200, "", b"POST 9")], id="body-in-two-packets"),
        pytest.param([post(4) + b"\r\n", b"\r\n"], [(200, "", b"POST 4")], id="body-like-a-header-block-end"),
    ],
)
def test_a_method_the_parser_does_not_know_behind_a_request_in_parts_or_with_a_body_is_answered_405(
    server: int, packets: list[bytes], first: list[tuple[int, str, bytes]]
) -> None:
    # The unknown method behind had the parser's 400, sent instead of the first request's answer.
    with connect(server) as sock:
        for packet in packets[:-1]:
            sock.sendall(packet)
            time.sleep(0.05)
        sock.sendall(packets[-1] + b"FOO / HTTP/1.1\r\nHost: x\r\n\r\n" + GET)
        answers = OneReader(sock)
        assert [answer(answers) for _ in first] == first
        assert [(status, "GET" in allow) for status, allow, _ in (answer(answers), answer(answers))] == [
            (405, True),
            (200, False),
        ]


class KeptReader(io.BufferedReader):
    def close(self) -> None:
        """Left open: ``http.client`` closes its reader after each answer."""


class OneReader:
    """A connection whose answers are all read from one buffered reader: answers that arrived together are
    not lost in the read-ahead of a reader each (``http.client`` makes one per answer)."""

    def __init__(self, sock: socket.socket) -> None:
        self._file = KeptReader(socket.SocketIO(sock, "rb"))

    def makefile(self, mode: str) -> io.BufferedReader:
        return self._file


def test_an_ipv6_clients_address_is_logged_in_brackets(caplog: pytest.LogCaptureFixture) -> None:
    # The client of a server listening on ::1 was logged as "client=::1:40312": where the address ends and
    # the port begins was left to the reader. Written as in a URL: "client=[::1]:40312".
    port = free_port()
    config = uvicorn.Config(
        Starlette(routes=[Route("/", echo)]),
        host="::1",
        port=port,
        log_level="warning",
        lifespan="off",
        http=header_deadline_protocol(DEADLINE, "httptools"),
    )
    uvicorn_log = logging.getLogger("uvicorn.error")
    uvicorn_log.addHandler(caplog.handler)
    try:
        with uvicorn_in_thread(uvicorn.Server(config)), socket.create_connection(("::1", port)) as sock:
            sock.settimeout(GIVE_UP)
            sock.sendall(b"GET / HTTP/1.1\r\nHost x\r\n\r\n")
            assert read_until_closed(sock).startswith(b"HTTP/1.1 400")
            client_port = sock.getsockname()[1]
    finally:
        uvicorn_log.removeHandler(caplog.handler)
    said = {r.getMessage() for r in caplog.records if r.name == "uvicorn.error"}
    assert said == {f"Invalid HTTP request received. client=[::1]:{client_port}"}


@pytest.mark.parametrize("server", ["httptools"], indirect=True)  # h11 stops at 16 KiB itself, with a 400
@pytest.mark.parametrize("split", [False, True], ids=["one-header", "many-headers"])
def test_headers_past_the_limit_are_refused_at_once_and_the_connection_closed(
    server: int, split: bool
) -> None:
    """httptools kept a header's value whole until it ended, with no bound: a client sending 50 MB of one
    header within the deadline held 50 MB of serve's memory (four of them, 190 MB). Past 1 MiB it is now
    answered 431, and what still comes is dropped."""
    line = b"X-a: " + b"a" * 1000 + b"\r\n"
    head = b"GET / HTTP/1.1\r\nHost: x\r\n" + (line * 4096 if split else b"X-a: " + b"a" * (4 << 20))
    with connect(server) as big:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # closed before all was read
            big.sendall(head)  # no end of the header block: only the limit ends this request
        received = read_until_closed(big)
    status = received.split(b"\r\n", 1)[0]
    assert status == b"HTTP/1.1 431 Request Header Fields Too Large", received
    assert b"connection: close" in received
    with httpx.Client() as client:  # the server serves on
        assert client.get(f"http://127.0.0.1:{server}/").text == "GET 0"


@pytest.mark.parametrize("server", ["httptools"], indirect=True)
def test_a_request_pipelined_before_headers_past_the_limit_is_answered_before_the_431(server: int) -> None:
    """The 431 went out at once, ahead of the answer to a request sent before on the same connection (the
    client read it as that request's answer, which never came: the connection was closed). The requests
    before are answered first, in order, as HTTP/1.1 requires."""
    refusals = RefusalSeen()
    protocol_log = logging.getLogger("gpuwarden.httpprotocol")
    protocol_log.addHandler(refusals)
    level = protocol_log.level
    protocol_log.setLevel(logging.INFO)
    REFUSED.clear()
    try:
        with connect(server) as sock:
            big = b"GET / HTTP/1.1\r\nHost: x\r\nX-a: " + b"a" * (2 << 20)
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                sock.sendall(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n" + big)
            received = read_until_closed(sock)
    finally:
        protocol_log.removeHandler(refusals)
        protocol_log.setLevel(level)
    first, _, second = received.partition(b"answered")
    assert first.startswith(b"HTTP/1.1 200 OK\r\n"), received
    assert second.startswith(b"HTTP/1.1 431 Request Header Fields Too Large\r\n"), received


@pytest.mark.parametrize("server", ["httptools"], indirect=True)
@pytest.mark.parametrize("split", [False, True], ids=["one-field", "many-fields"])
def test_trailer_fields_past_the_limit_after_a_chunked_body_are_refused(server: int, split: bool) -> None:
    """Trailer fields after a chunked body's last chunk are parsed as headers are (httptools keeps a value
    whole until it ends), but were given to the parser uncounted: a 64 MiB trailer field was held whole
    (serve's RSS 44 to 106 MB). Past 1 MiB they are refused as headers are; the request's app is told
    the client is gone."""
    line = b"X-a: " + b"a" * 1000 + b"\r\n"
    trailer = line * 4096 if split else b"X-a: " + b"a" * (4 << 20)
    request = b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n" + trailer
    with connect(server) as big:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            big.sendall(request)  # no end of the trailer: only the limit ends this request
        received = read_until_closed(big)
    assert received.split(b"\r\n", 1)[0] == b"HTTP/1.1 431 Request Header Fields Too Large", received
    with httpx.Client() as client:  # the server serves on
        assert client.get(f"http://127.0.0.1:{server}/").text == "GET 0"


@pytest.mark.parametrize("server", ["httptools"], indirect=True)
@pytest.mark.parametrize(("over", "status"), [(0, b"200 OK"), (1, b"431 Request Header Fields Too Large")])
def test_the_limit_is_on_the_whole_header_block_in_small_packets(
    server: int, over: int, status: bytes
) -> None:
    """Exactly ``MAX_HEAD_BYTES`` (request line, headers and the empty line ending them) is served; one byte
    more is refused, whatever packets it came in."""
    start, end = b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-a: ", b"\r\n\r\n"
    head = start + b"a" * (MAX_HEAD_BYTES + over - len(start) - len(end)) + end
    with connect(server) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            for at in range(0, len(head), 1000):
                sock.sendall(head[at : at + 1000])
        received = read_until_closed(sock)
    assert received.split(b"\r\n", 1)[0] == b"HTTP/1.1 " + status, received[:200]


@pytest.mark.parametrize("request_line", [b"GET /events HTTP/1.0", b"POST /events HTTP/1.0"])
def test_an_answer_of_unknown_length_to_an_http_1_0_client_ends_with_the_connection_not_in_chunks(
    server: int, request_line: bytes
) -> None:
    # httptools' protocol framed a stream in chunks for an HTTP/1.0 client too, which has no chunked coding
    # (RFC 9112 6.1): it read the chunk sizes as data ("e\r\ndata: one\n\n\r\n...0\r\n\r\n").
    sock = connect(server)
    sock.sendall(request_line + b"\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
    head, _, body = read_until_closed(sock).partition(b"\r\n\r\n")
    sock.close()
    assert head.startswith(b"HTTP/1.1 200 "), head
    assert b"transfer-encoding" not in head.lower()
    assert body == b"data: one\n\ndata: [DONE]\n\n"


def test_an_http_1_1_client_still_gets_an_answer_of_unknown_length_in_chunks_on_a_kept_connection(
    server: int,
) -> None:
    with httpx.Client(base_url=f"http://127.0.0.1:{server}") as client:
        first = client.get("/events")
        assert first.headers["transfer-encoding"] == "chunked"
        assert first.text == "data: one\n\ndata: [DONE]\n\n"
        assert client.get("/events").text == first.text
