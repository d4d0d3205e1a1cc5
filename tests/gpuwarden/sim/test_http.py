from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.types import Message

from gpuwarden.sim import Fleet, fault_routes
from tests.exporters.asgi_client import AsgiClient


def _client(fleet: Fleet) -> AsgiClient:
    return AsgiClient(Starlette(routes=fault_routes(fleet)))


def test_post_injects_a_fault_and_answers_201_with_its_id(fleet: Fleet) -> None:
    client = _client(fleet)
    response = client.post("/sim/faults", json={"kind": "xid", "node": "node-01", "gpu": 3, "xid": 79})
    assert response.status_code == 201
    body = response.json()
    assert body["kind"] == "xid"
    assert [r.id for r in fleet.active_faults()] == [body["id"]]
    assert fleet.gpu("node-01", 3).lost


def test_bad_payload_is_a_400_naming_the_field(fleet: Fleet) -> None:
    client = _client(fleet)
    unknown_kind = client.post("/sim/faults", json={"kind": "nope", "node": "node-01"})
    unknown_node = client.post("/sim/faults", json={"kind": "hung", "node": "node-77", "gpu": 0})
    not_json = client.post("/sim/faults", content=b"{kind: xid", headers={"content-type": "application/json"})
    empty = client.post("/sim/faults", content=b"")
    assert unknown_kind.status_code == 400
    assert unknown_kind.json()["field"] == "kind" and "valid kinds" in unknown_kind.json()["error"]
    assert unknown_node.status_code == 400
    assert unknown_node.json()["field"] == "node" and "node-01" in unknown_node.json()["error"]
    assert not_json.status_code == 400 and "JSON" in not_json.json()["error"]
    assert empty.status_code == 400
    assert fleet.fault_log == []


def test_body_over_64_kib_is_refused_with_413(fleet: Fleet) -> None:
    big = json.dumps({"kind": "hung", "node": "node-01", "gpu": 0, "pad": "x" * 70_000}).encode()
    client = _client(fleet)
    declared = client.post("/sim/faults", content=big, headers={"content-type": "application/json"})

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(0, len(big), 8192):
            yield big[i : i + 8192]

    streamed = client.post("/sim/faults", content=chunks())
    assert declared.status_code == 413
    assert streamed.status_code == 413
    # Worded as serve and the toy inference server word it (this one said "request body larger than").
    assert declared.json() == {"error": "body larger than 65536 bytes", "field": ""}
    assert fleet.fault_log == []


def test_a_compressed_body_is_refused_415_naming_the_header_as_serve_does(fleet: Fleet) -> None:
    client = _client(fleet)
    response = client.post("/sim/faults", content=b"\x1f\x8b", headers={"content-encoding": "gzip"})
    assert response.status_code == 415
    assert response.json() == {
        "error": "Content-Encoding gzip is not accepted; send the body uncompressed",
        "field": "Content-Encoding",
    }
    assert fleet.fault_log == []


def test_get_lists_active_faults_and_the_log(fleet: Fleet) -> None:
    client = _client(fleet)
    client.post("/sim/faults", json={"kind": "xid", "node": "node-01", "gpu": 0, "xid": 13})
    hung = client.post("/sim/faults", json={"kind": "hung", "node": "node-02", "gpu": 1}).json()["id"]
    listing = client.get("/sim/faults").json()
    assert [f["id"] for f in listing["active"]] == [hung]
    assert [f["kind"] for f in listing["log"]] == ["xid", "hung"]
    assert listing["log"][0]["ended_at"] is not None and listing["log"][1]["ended_at"] is None


def test_delete_clears_a_fault_and_404s_an_unknown_one(fleet: Fleet) -> None:
    client = _client(fleet)
    hung = client.post("/sim/faults", json={"kind": "hung", "node": "node-02", "gpu": 1}).json()["id"]
    cleared = client.delete(f"/sim/faults/{hung}")
    unknown = client.delete("/sim/faults/f-9999")
    assert cleared.status_code == 200
    assert fleet.active_faults() == []
    assert unknown.status_code == 404


def test_a_client_gone_before_its_body_arrived_is_answered_400_without_a_traceback(fleet: Fleet) -> None:
    # A malformed chunked body (uvicorn drops the connection) or a client that hangs up mid-body: starlette's
    # ClientDisconnect left the endpoint and uvicorn logged "Exception in ASGI application" with a traceback.
    sent: list[Message] = []
    parts: list[Message] = [
        {"type": "http.request", "body": b'{"kind": "xid", ', "more_body": True},
        {"type": "http.disconnect"},
    ]

    async def receive() -> Message:
        return parts.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
        "scheme": "http", "path": "/sim/faults", "raw_path": b"/sim/faults", "query_string": b"",
        "root_path": "", "headers": [(b"content-type", b"application/json")],
        "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 9400),
    }  # fmt: skip
    asyncio.run(Starlette(routes=fault_routes(fleet))(scope, receive, send))
    assert sent[0]["status"] == 400
    assert json.loads(sent[1]["body"])["error"] == "client disconnected before the body was read"
    assert fleet.active_faults() == []


def test_a_fault_not_declared_as_json_is_refused_415_as_a_web_page_could_send_it(fleet: Fleet) -> None:
    """A page in the browser of someone on the simulator's machine could POST a fault with ``fetch(...,
    {mode: "no-cors"})`` as ``text/plain`` (no preflight, from 127.0.0.1: the loopback guard let it in); only
    ``application/json``, which a page cannot send to another origin without a preflight, injects one."""
    fault = json.dumps({"kind": "hung", "node": "node-01", "gpu": 0}).encode()
    client = _client(fleet)
    plain = client.post("/sim/faults", content=fault, headers={"content-type": "text/plain;charset=UTF-8"})
    form = client.post(
        "/sim/faults", content=fault, headers={"content-type": "application/x-www-form-urlencoded"}
    )
    garbled = client.post("/sim/faults", content=fault, headers={"content-type": "garbage;;"})
    assert (plain.status_code, form.status_code, garbled.status_code) == (415, 415, 400)
    assert plain.json()["field"] == "Content-Type" and "application/json" in plain.json()["error"]
    assert fleet.fault_log == []
