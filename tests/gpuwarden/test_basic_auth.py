"""Basic auth of the web configuration file: refused without the right password, a right one checked by
bcrypt once and then remembered, a wrong one never."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import bcrypt
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from gpuwarden.basic_auth import WebConfigMiddleware
from gpuwarden.webconfig import Access

HASH = bcrypt.hashpw(b"s3cret", bcrypt.gensalt(4)).decode()
HTPASSWD_HASH = "$2y$" + bcrypt.hashpw(b"other", bcrypt.gensalt(4)).decode()[4:]  # as htpasswd -B writes it


async def _metrics(request: Any) -> PlainTextResponse:
    return PlainTextResponse("up 1\n")


@pytest.fixture
def client() -> Iterator[TestClient]:
    app = Starlette(routes=[Route("/metrics", _metrics)])
    users = {"prom": HASH, "ops": HTPASSWD_HASH}
    with TestClient(WebConfigMiddleware(app, users, {"X-Frame-Options": "deny"})) as c:
        yield c


@pytest.fixture
def bcrypt_calls(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    calls: list[bytes] = []
    real = bcrypt.hashpw

    def counted(password: bytes, salt: bytes) -> bytes:
        calls.append(password)
        return real(password, salt)

    monkeypatch.setattr(bcrypt, "hashpw", counted)
    return calls


@pytest.mark.parametrize(
    "auth",
    [
        pytest.param(None, id="no-credentials"),
        pytest.param(("prom", "wrong"), id="wrong-password"),
        pytest.param(("nobody", "s3cret"), id="unknown-user"),
        pytest.param(("prom", "s3cret" + "x" * 80), id="longer-than-72-bytes"),
    ],
)
def test_a_request_without_the_right_password_is_refused_401(
    client: TestClient, auth: tuple[str, str] | None
) -> None:
    reply = client.get("/metrics", auth=auth)
    assert reply.status_code == 401
    assert reply.headers["www-authenticate"].startswith("Basic")
    assert reply.headers["x-frame-options"] == "deny"
    assert "up 1" not in reply.text


def test_a_bearer_token_is_no_basic_credential(client: TestClient) -> None:
    assert client.get("/metrics", headers={"Authorization": "Bearer s3cret"}).status_code == 401


def test_the_right_password_is_served_with_the_files_headers(client: TestClient) -> None:
    reply = client.get("/metrics", auth=("prom", "s3cret"))
    assert reply.status_code == 200
    assert reply.text == "up 1\n"
    assert reply.headers["x-frame-options"] == "deny"


def test_a_hash_htpasswd_wrote_is_checked(client: TestClient) -> None:
    assert client.get("/metrics", auth=("ops", "other")).status_code == 200
    assert client.get("/metrics", auth=("ops", "s3cret")).status_code == 401


def test_a_right_password_is_checked_by_bcrypt_once(client: TestClient, bcrypt_calls: list[bytes]) -> None:
    for _ in range(3):
        assert client.get("/metrics", auth=("prom", "s3cret")).status_code == 200
    assert len(bcrypt_calls) == 1


def test_a_wrong_password_is_checked_each_time(client: TestClient, bcrypt_calls: list[bytes]) -> None:
    for _ in range(3):
        assert client.get("/metrics", auth=("prom", "wrong")).status_code == 401
    assert len(bcrypt_calls) == 3
    assert client.get("/metrics", auth=("prom", "s3cret")).status_code == 200  # not shadowed by the misses


def test_users_and_headers_are_taken_as_the_file_says_now_and_a_changed_users_password_is_forgotten(
    bcrypt_calls: list[bytes],
) -> None:
    app = Starlette(routes=[Route("/metrics", _metrics)])
    now = [Access({"prom": HASH, "ops": HTPASSWD_HASH}, {"X-Frame-Options": "deny"})]
    with TestClient(WebConfigMiddleware(app, {}, {}, access=lambda: now[0])) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", auth=("prom", "s3cret")).status_code == 200
        assert client.get("/metrics", auth=("ops", "other")).status_code == 200
        rotated = bcrypt.hashpw(b"rotated", bcrypt.gensalt(4)).decode()
        now[0] = Access({"prom": rotated, "ops": HTPASSWD_HASH}, {"X-Frame-Options": "sameorigin"})
        bcrypt_calls.clear()
        refused = client.get("/metrics", auth=("prom", "s3cret"))
        assert refused.status_code == 401
        assert refused.headers["x-frame-options"] == "sameorigin"
        assert client.get("/metrics", auth=("prom", "rotated")).status_code == 200
        assert client.get("/metrics", auth=("ops", "other")).status_code == 200
        assert bcrypt_calls == [b"s3cret", b"rotated"]  # ops' password, unchanged, is still remembered
        now[0] = Access({}, {})
        opened = client.get("/metrics")  # no users left: no basic auth, as exporter-toolkit reads it
        assert opened.status_code == 200
        assert "x-frame-options" not in opened.headers


async def _greet(socket: WebSocket) -> None:
    await socket.accept()
    await socket.send_text("up 1")
    await socket.close()


def test_a_websocket_gets_nothing_past_basic_auth() -> None:
    app = Starlette(routes=[WebSocketRoute("/ws", _greet)])
    with TestClient(app) as open_client, open_client.websocket_connect("/ws") as socket:
        assert socket.receive_text() == "up 1"  # the route answers without the middleware
    with (
        TestClient(WebConfigMiddleware(app, {"prom": HASH}, {})) as client,
        pytest.raises(WebSocketDisconnect),
        client.websocket_connect("/ws") as socket,
    ):
        socket.receive_text()
