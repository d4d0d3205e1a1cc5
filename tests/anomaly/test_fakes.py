"""The tests' ``FakePrometheus`` answers a range as Prometheus does: the tests (and the restart fuzz's
Prometheus stand-in) read through it what a real server would give them."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.anomaly.fakes import TOO_MANY_POINTS, FakePrometheus


@pytest.fixture
def fake() -> Iterator[FakePrometheus]:
    prometheus = FakePrometheus()
    prometheus.answers["x"] = lambda t: [({"__name__": "x"}, t)]
    yield prometheus
    prometheus.close()


def _range(fake: FakePrometheus, start: str, end: str, step: str) -> httpx.Response:
    params = {"query": "x", "start": start, "end": end, "step": step}
    return httpx.get(f"{fake.url}/api/v1/query_range", params=params, timeout=10)


def _stamps(response: httpx.Response) -> list[Any]:
    return [t for t, _ in response.json()["data"]["result"][0]["values"]]


@pytest.mark.parametrize(
    ("start", "end", "step", "stamps"),
    [
        ("0", "100", "60", [0, 60]),  # 120 is past the end: Prometheus stops at the last step before it
        ("0", "120", "60", [0, 60, 120]),  # an end on the grid is evaluated
        ("10", "40", "20", [10, 30]),  # the grid runs from start, not from the epoch
        ("0.1", "0.35", "0.1", [0.1, 0.2, 0.3]),  # whole milliseconds: no float drift past the end
    ],
    ids=["end-off-grid", "end-on-grid", "grid-from-start", "sub-second"],
)
def test_a_range_is_answered_at_its_steps_up_to_its_end_and_never_past_it(fake, start, end, step, stamps):
    response = _range(fake, start, end, step)
    assert response.status_code == 200
    assert _stamps(response) == pytest.approx(stamps)


def test_a_range_of_more_than_11000_steps_is_refused_as_bad_data(fake):
    assert _range(fake, "0", "11000", "1").status_code == 200  # 11,001 points: Prometheus answers
    refused = _range(fake, "0", "11001", "1")
    assert refused.status_code == 400
    assert refused.json() == {"status": "error", "errorType": "bad_data", "error": TOO_MANY_POINTS}


def test_a_refused_port_refuses_connections_until_served_again_on_the_same_url(fake):
    fake.refuse()
    with pytest.raises(httpx.ConnectError):
        _range(fake, "0", "60", "60")
    fake.serve_again()
    assert _stamps(_range(fake, "0", "60", "60")) == [0, 60]


@pytest.mark.parametrize("reuse_address", [False, True], ids=["plain", "so-reuseaddr"])
def test_a_refused_port_cannot_be_taken_by_another_socket_until_served_again(
    fake: FakePrometheus, reuse_address: bool
) -> None:
    """``refuse`` closed the listening socket and ``serve_again`` bound the port anew: meanwhile any other
    process (a server binding with SO_REUSEADDR, as Python's HTTP servers do) could take it, and the fake
    then failed to listen, or the test read another server's answers at its ``url``."""
    port = int(fake.url.rsplit(":", 1)[1])
    fake.refuse()
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as other:
        if reuse_address:
            other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        with pytest.raises(OSError, match="in use"):
            other.bind(("127.0.0.1", port))
    fake.serve_again()
    assert _stamps(_range(fake, "0", "60", "60")) == [0, 60]


def test_a_refusal_whose_port_cannot_be_held_closes_its_placeholder_and_keeps_serving(
    fake: FakePrometheus, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``refuse`` bound its placeholder before keeping it: a bind that failed left the socket open, found
    only by the garbage collector (a ResourceWarning, under warnings as errors, blamed on a later test)."""
    made: list[socket.socket] = []

    def taken() -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        made.append(sock)
        sock.bind(("127.0.0.1", 0))  # bound already: the fake's bind of it fails
        return sock

    monkeypatch.setattr("tests.anomaly.fakes._reuse_port_socket", taken)
    with pytest.raises(OSError):
        fake.refuse()
    (placeholder,) = made
    assert placeholder.fileno() == -1  # closed
    assert not fake.refusing
    assert _stamps(_range(fake, "0", "60", "60")) == [0, 60]
