from __future__ import annotations

import asyncio
import gzip
import json
from typing import Any

import pytest
from starlette.requests import Request

from alerting.engine import IncidentEngine
from gpuwarden.httpbody import BodyEncoded, BodyTimeout, read_limited
from tests.gpuwarden.api_client import AUTH, NODE_DOWN, TestClient, api_client
from tests.gpuwarden.api_error import error_field, error_text


def _request(headers: dict[str, str], messages: list[dict[str, Any]]) -> Request:
    """A request whose body arrives as ``messages``, then never anything more (a stalled client)."""

    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        await asyncio.Event().wait()  # the client sends nothing more and keeps the connection open
        raise AssertionError("unreachable")

    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "POST", "path": "/", "headers": raw}, receive)


def test_a_body_that_stops_arriving_before_its_declared_length_times_out() -> None:
    request = _request(
        {"content-length": "1000000"}, [{"type": "http.request", "body": b"[", "more_body": True}]
    )
    with pytest.raises(BodyTimeout):
        asyncio.run(read_limited(request, 4 << 20, timeout=0.05))


def test_a_body_that_arrives_whole_is_read_within_the_deadline() -> None:
    request = _request({}, [{"type": "http.request", "body": b"[]", "more_body": False}])
    assert asyncio.run(read_limited(request, 1024, timeout=60)) == b"[]"


@pytest.mark.parametrize("encoding", ["gzip", "deflate", "br"])
def test_a_compressed_body_is_refused_naming_its_encoding(encoding: str) -> None:
    request = _request({"content-encoding": encoding}, [])
    with pytest.raises(BodyEncoded, match=encoding):
        asyncio.run(read_limited(request, 1024))


def test_a_gzip_post_is_answered_415_naming_content_encoding_not_400_about_utf8(client: TestClient) -> None:
    body = gzip.compress(b'[{"labels": {"alertname": "NodeDown", "node": "n1"}}]')
    headers = {**AUTH, "Content-Type": "application/json", "Content-Encoding": "gzip"}
    response = client.post("/api/v2/alerts", content=body, headers=headers)
    assert response.status_code == 415
    assert "Content-Encoding" in response.text and "gzip" in response.text
    assert client.get("/api/v2/alerts", headers=AUTH).json() == []  # nothing stored


@pytest.mark.parametrize(
    ("path", "body"),
    [("/api/v2/alerts", [NODE_DOWN]), ("/api/v2/silences", {}), ("/api/v1/incidents/inc-x/notes", {})],
    ids=["alerts", "silences", "incident-action"],
)
def test_a_body_declared_as_another_type_than_json_is_refused_415_naming_content_type(
    client: TestClient, path: str, body: object
) -> None:
    # It was parsed as JSON whatever it said it was; Alertmanager 0.25 answers 415 "unsupported media type".
    for media_type in ("text/plain", "application/x-www-form-urlencoded", "text/json"):
        headers = {**AUTH, "Content-Type": media_type}
        response = client.post(path, content=json.dumps(body).encode(), headers=headers)
        assert response.status_code == 415, (media_type, response.text)
        assert error_field(response) == "Content-Type" and media_type in error_text(response)
    assert client.get("/api/v2/alerts", headers=AUTH).json() == []  # nothing stored


# Measured against Alertmanager 0.25's POST /api/v2/alerts: 400 "parsing Content-Type header ... failed"
# for each of these (Go's mime.ParseMediaType refuses them), where gpuwarden answered 415 or took the body.
MALFORMED = [
    "garbage;;",
    "application/json;;",
    "application/json; charset",
    "application/json; =x",
    "application/json/x",
    "application/json, text/plain",
    "/json",
    "application/",
    ";",
    "application/json; a=b; a=c",
    'application/json; a="unterminated',
]


@pytest.mark.parametrize("media_type", MALFORMED)
def test_a_content_type_that_does_not_parse_is_answered_400_naming_it(
    client: TestClient, media_type: str
) -> None:
    headers = {**AUTH, "Content-Type": media_type}
    response = client.post("/api/v2/alerts", content=json.dumps([NODE_DOWN]).encode(), headers=headers)
    assert response.status_code == 400, response.text
    assert error_field(response) == "Content-Type" and "does not parse" in error_text(response)
    assert client.get("/api/v2/alerts", headers=AUTH).json() == []  # nothing stored


@pytest.mark.parametrize(
    "headers",
    [
        {"Content-Type": "application/json; charset=utf-8"},
        {"Content-Type": 'application/json;charset="utf-8"'},
        {"Content-Type": "application/json ; a=b;"},  # Go lets one trailing ";" pass
        {"Content-Type": "Application/JSON"},
    ],
    ids=["charset", "quoted", "trailing-semicolon", "any-case"],
)
def test_json_is_taken_with_parameters_in_any_case(client: TestClient, headers: dict[str, str]) -> None:
    body = json.dumps([NODE_DOWN]).encode()
    response = client.post("/api/v2/alerts", content=body, headers={**AUTH, **headers})
    assert response.status_code == 200, response.text
    assert len(client.get("/api/v2/alerts", headers=AUTH).json()) == 1


@pytest.mark.parametrize(
    ("path", "body"),
    [("/api/v2/alerts", [NODE_DOWN]), ("/api/v2/silences", {}), ("/api/v1/incidents/inc-x/notes", {})],
    ids=["alerts", "silences", "incident-action"],
)
@pytest.mark.parametrize("declared", [None, "", " "], ids=["no-header", "empty", "blank"])
def test_a_body_declaring_no_type_is_refused_415_as_alertmanager_does(
    client: TestClient, path: str, body: object, declared: str | None
) -> None:
    # It was read as JSON; Alertmanager 0.25 reads no Content-Type as application/octet-stream and answers
    # 415 (measured: am_diff's post-no-content-type). ``requests.post(url, data=bytes)`` declares none.
    headers = {**AUTH, **({} if declared is None else {"Content-Type": declared})}
    response = client.post(path, content=json.dumps(body).encode(), headers=headers)
    assert response.status_code == 415, response.text
    assert error_field(response) == "Content-Type" and "none declared" in error_text(response)
    assert client.get("/api/v2/alerts", headers=AUTH).json() == []  # nothing stored


def test_a_post_without_a_body_is_read_as_an_empty_object_whatever_type_it_declares(
    client: TestClient,
) -> None:
    client.post("/api/v2/alerts", json=[NODE_DOWN], headers=AUTH)
    (item,) = client.get("/api/v1/incidents").json()
    headers = {**AUTH, "Content-Type": "text/plain"}
    acked = client.post(f"/api/v1/incidents/{item['id']}/ack", content=b"", headers=headers)
    # not 415 naming Content-Type: read as {}, which lacks the ack's by
    assert (acked.status_code, error_field(acked)) == (400, "by")


def test_a_client_that_disconnects_mid_body_is_no_internal_error(engine: IncidentEngine) -> None:
    with api_client(engine) as client:
        app = client.app
        messages: list[dict[str, Any]] = [
            {"type": "http.request", "body": b'[{"labels"', "more_body": True},
            {"type": "http.disconnect"},
        ]
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return messages.pop(0)

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        headers = [(b"authorization", AUTH["Authorization"].encode()), (b"content-length", b"500")]
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/api/v2/alerts",
            "raw_path": b"/api/v2/alerts",
            "query_string": b"",
            "headers": headers,
            "http_version": "1.1",
            "scheme": "http",
            "server": ("127.0.0.1", 80),
            "client": ("127.0.0.1", 5000),
            "root_path": "",
        }
        client.portal.call(app, scope, receive, send)  # type: ignore[union-attr, arg-type]
        metrics = client.get("/metrics").text
    assert "gpuwarden_api_internal_errors_total 0.0" in metrics
    assert [m["status"] for m in sent if m["type"] == "http.response.start"] != [503]
    assert engine.store.alert_count() == 0
