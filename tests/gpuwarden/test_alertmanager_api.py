from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from alerting.engine import IncidentEngine
from gpuwarden import alertmanager_api, api, incident_api
from tests.gpuwarden.api_client import AUTH, NODE_DOWN, TestClient, api_client

SILENCE = {
    "matchers": [{"name": "alertname", "value": "Team1.*", "isRegex": True}],
    "startsAt": "2026-01-01T00:00:00Z",
    "endsAt": "2026-01-01T02:00:00Z",
    "createdBy": "ops",
    "comment": "planned",
}


def _on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@pytest.mark.parametrize(
    "route",
    [
        "/api/v2/alerts",
        "/api/v2/alerts/groups",
        "/api/v2/silences",
        "/api/v1/incidents",
        "/api/v1/incidents/{id}",
        "/api/v1/incidents/{id}/ack",
    ],
)
def test_read_routes_match_and_render_in_the_thread_pool_not_on_the_event_loop(
    engine: IncidentEngine, monkeypatch: pytest.MonkeyPatch, route: str
) -> None:
    """While one of them works through thousands of alerts and silences (or waits for the engine's lock
    behind a long write), the event loop must stay free to answer /healthz and Prometheus' POSTs."""
    seen: list[tuple[str, bool]] = []

    def watched(name: str, call: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            seen.append((name, _on_event_loop()))
            return call(*args, **kwargs)

        return wrapper

    monkeypatch.setattr(engine, "mute_state", watched("mute_state", engine.mute_state))
    monkeypatch.setattr(engine, "silenced_until", watched("silenced_until", engine.silenced_until))
    gettable = alertmanager_api.gettable_silence
    monkeypatch.setattr(alertmanager_api, "gettable_silence", watched("gettable_silence", gettable))
    monkeypatch.setattr(api, "incident_summary", watched("incident_summary", api.incident_summary))
    detail = incident_api.incident_detail
    monkeypatch.setattr(incident_api, "incident_detail", watched("incident_detail", detail))
    with api_client(engine) as client:
        assert client.post("/api/v2/alerts", json=[NODE_DOWN], headers=AUTH).status_code == 200
        assert client.post("/api/v2/silences", json=SILENCE, headers=AUTH).status_code == 200
        (incident,) = client.get("/api/v1/incidents", headers=AUTH).json()
        seen.clear()
        path = route.replace("{id}", incident["id"])
        if path.endswith("/ack"):
            response = client.post(path, json={"by": "ops"}, headers=AUTH)
        else:
            response = client.get(path, headers=AUTH)
    assert response.status_code == 200, response.text
    assert seen, "the route did none of the work it was expected to"
    assert [name for name, on_loop in seen if on_loop] == []


def test_alertmanager_paths_with_a_trailing_slash_are_answered_as_without_not_redirected(
    client: TestClient,
) -> None:
    """Alertmanager 0.25 answers ``/api/v2/alerts/`` as ``/api/v2/alerts`` (measured, am_diff
    ``post-trailing-slash``). A 307 to an absolute ``http://`` URL built from the Host header instead left
    ``curl -d`` (no ``-L``) and a sender not following redirects with nothing stored, and behind a TLS proxy
    sent a following client, token and all, to plain http."""
    alert = {"labels": {"alertname": "Slash", "node": "r02-n03"}, "startsAt": "2026-01-01T00:00:00Z"}
    posted = client.post("/api/v2/alerts/", json=[alert], headers=AUTH, follow_redirects=False)
    assert posted.status_code == 200
    listed = client.get("/api/v2/alerts/", params={"filter": 'alertname="Slash"'}, headers=AUTH)
    assert listed.status_code == 200
    assert [a["labels"]["alertname"] for a in listed.json()] == ["Slash"]
    silence = client.post("/api/v2/silences/", json=SILENCE, headers=AUTH, follow_redirects=False)
    assert silence.status_code == 200
    silence_id = silence.json()["silenceID"]
    for path in (
        "/api/v2/silences/",
        f"/api/v2/silence/{silence_id}/",
        "/api/v2/status/",
        "/api/v2/receivers/",
    ):
        answer = client.get(path, headers=AUTH, follow_redirects=False)
        assert answer.status_code == 200, path
    expired = client.delete(f"/api/v2/silence/{silence_id}/", headers=AUTH, follow_redirects=False)
    assert expired.status_code == 200
    assert client.get(f"/api/v2/silence/{silence_id}", headers=AUTH).json()["status"]["state"] == "expired"


@pytest.mark.parametrize(
    ("path", "location", "lands_on"),
    [
        ("/-/healthy/", "../healthy", "/-/healthy"),
        ("/-/ready/?verbose=1", "../ready?verbose=1", "/-/ready"),
        ("/api/v1/incidents/", "../incidents", "/api/v1/incidents"),
    ],
    ids=["healthy", "ready-with-query", "incidents"],
)
def test_a_trailing_slash_elsewhere_is_redirected_to_a_relative_location_kept_behind_a_tls_proxy(
    client: TestClient, path: str, location: str, lands_on: str
) -> None:
    """Behind a proxy that terminates TLS, ``serve`` is asked over plain http: an absolute ``http://``
    Location built from the Host header (Starlette's) sent the client, token and all, off https. A relative
    one resolves against the URL the client asked for (Alertmanager answers ``Location: /-/healthy``,
    measured)."""
    redirected = client.get(f"http://serve.internal{path}", headers=AUTH, follow_redirects=False)
    assert (redirected.status_code, redirected.headers["location"]) == (307, location)
    asked = httpx.URL(f"https://gpuwarden.example{path}")  # what the client behind the proxy asked
    assert asked.join(redirected.headers["location"]).path == lands_on
    assert asked.join(redirected.headers["location"]).scheme == "https"
    assert client.get(path, headers=AUTH, follow_redirects=True).status_code != 404


def test_a_path_with_no_route_either_way_is_a_404_not_a_redirect(client: TestClient) -> None:
    for path in ("/-/nope/", "/-/healthy//"):
        assert client.get(path, follow_redirects=False).status_code == 404, path


def test_the_root_path_is_a_404_not_a_failed_request(client: TestClient) -> None:
    """``GET /`` (a load balancer's default health check, a browser) has no route either way: looking for a
    trailing-slash redirect raised IndexError there, answered 503 and logged a traceback each time."""
    for method in ("GET", "HEAD", "POST"):
        answered = client.request(method, "/", follow_redirects=False)
        assert answered.status_code == 404, (method, answered.text)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v2/silences//"),
        ("POST", "/api/v2/silences//"),
        ("GET", "/api/v2/silences///"),
        ("GET", "/api/v2//silences"),
        ("GET", "/api/v2/alerts//"),
    ],
    ids=["get-silences-double", "post-silences-double", "silences-triple", "inner-double", "alerts-double"],
)
def test_a_path_with_a_double_slash_is_a_404_object_as_every_unknown_api_v2_path(
    client: TestClient, method: str, path: str
) -> None:
    """``GET /api/v2/silences//`` answered a bare JSON string, the shape of ``POST /api/v2/silences``' own
    404 (an update of an unknown silence), where every other unknown path under /api/v2 answers go-openapi's
    ``{"code", "message"}``: a client reading ``message`` failed on that one. (Alertmanager 0.25 redirects a
    double slash to the cleaned path, 301, measured; gpuwarden guesses no path for it, as for
    ``/-/healthy//``.)"""
    answered = client.request(method, path, headers=AUTH, json=SILENCE, follow_redirects=False)
    assert answered.status_code == 404, answered.text
    body = answered.json()
    assert isinstance(body, dict) and body["code"] == 404 and path in body["message"]
