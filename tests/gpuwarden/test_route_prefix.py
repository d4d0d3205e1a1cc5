"""``api.route_prefix``: serve behind a proxy forwarding ``/gpuwarden/...`` without stripping the prefix."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr, ValidationError
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from gpuwarden.api import create_app
from gpuwarden.config import ApiConfig
from gpuwarden.standby_api import StandbyState, standby_app
from tests.gpuwarden.api_client import AUTH, NODE_DOWN, TOKEN, TestClient, fleet_engine

WEBHOOK = {"version": "4", "status": "firing", "receiver": "gw", "groupLabels": {}, "alerts": []}


async def _slack(request: Request) -> Response:  # stands in for the Slack interactions route (extra_routes)
    return PlainTextResponse("pressed")


def _client(tmp_path: Path, prefix: str, **api: object) -> TestClient:
    config = ApiConfig(token=SecretStr(TOKEN), route_prefix=prefix, **api)  # type: ignore[arg-type]
    slack = Route("/slack/interactions", _slack, methods=["POST"])
    app = create_app(fleet_engine(tmp_path), config, extra_routes=[slack])
    return TestClient(app, raise_server_exceptions=False)


def test_every_route_is_served_under_the_prefix(tmp_path: Path) -> None:
    # Without a prefix, a proxy forwarding /gpuwarden/... unstripped got 404 on every path.
    with _client(tmp_path, "/gpuwarden") as client:
        assert client.post("/gpuwarden/api/v2/alerts", json=[NODE_DOWN], headers=AUTH).status_code == 200
        assert client.post("/gpuwarden/api/v1/webhook/alertmanager", json=WEBHOOK, headers=AUTH).json() == {
            "status": "ok",
            "accepted": 0,
        }
        assert [a["labels"]["node"] for a in client.get("/gpuwarden/api/v2/alerts").json()] == ["r02-n03"]
        (incident,) = client.get("/gpuwarden/api/v1/incidents").json()
        shown = client.get(f"/gpuwarden/api/v1/incidents/{incident['id']}")
        assert shown.json()["id"] == incident["id"]
        acked = client.post(
            f"/gpuwarden/api/v1/incidents/{incident['id']}/ack", json={"by": "alice"}, headers=AUTH
        )
        assert acked.status_code == 200, acked.text
        assert client.post("/gpuwarden/slack/interactions").text == "pressed"
        assert client.get("/gpuwarden/api/v2/status").status_code == 200
        for probe in ("/-/healthy", "/-/ready", "/healthz"):
            assert client.get(f"/gpuwarden{probe}").status_code == 200, probe
        metrics = client.get("/gpuwarden/metrics").text
    assert 'gpuwarden_api_requests_total{code="200",route="/api/v2/alerts"}' in metrics  # the route's name
    assert 'route="/gpuwarden' not in metrics


@pytest.mark.parametrize(
    "path",
    ["/api/v1/incidents", "/-/healthy", "/-/ready", "/healthz", "/metrics", "/gpuwardenx/healthz"],
    ids=["api", "healthy", "ready", "healthz", "metrics", "longer-name"],
)
def test_a_path_outside_the_prefix_is_not_found_naming_it(tmp_path: Path, path: str) -> None:
    # The probes too, as Alertmanager answers them only under its --web.route-prefix.
    with _client(tmp_path, "/gpuwarden") as client:
        answer = client.get(path)
    assert answer.status_code == 404
    assert answer.json() == {
        "error": f"path: no route for GET {path}: serve's routes are under /gpuwarden (api.route_prefix)",
        "field": "path",
    }


def test_alertmanager_paths_outside_the_prefix_answer_in_alertmanagers_shape(tmp_path: Path) -> None:
    with _client(tmp_path, "/gpuwarden") as client:
        answer = client.get("/api/v2/alerts")
    assert answer.status_code == 404
    assert answer.json()["code"] == 404  # go-openapi's {"code", "message"}, as amtool reads it
    assert answer.json()["message"].endswith("serve's routes are under /gpuwarden (api.route_prefix)")


@pytest.mark.parametrize(
    ("asked", "location"),
    [
        ("/gpuwarden/-/healthy/", "../healthy"),
        ("/gpuwarden/api/v1/incidents/?limit=5", "../incidents?limit=5"),
        ("/gw/a/api/v1/incidents", None),
    ],
    ids=["probe", "incidents", "no-redirect-past-the-prefix"],
)
def test_trailing_slash_redirects_stay_under_the_prefix(
    tmp_path: Path, asked: str, location: str | None
) -> None:
    with _client(tmp_path, "/gpuwarden") as client:
        answer = client.get(asked, follow_redirects=False)
        if location is None:
            assert answer.status_code == 404
            return
        assert answer.status_code == 307
        assert answer.headers["location"] == location
        followed = client.get(asked)  # resolved against the URL asked: under the prefix
    assert followed.status_code == 200
    assert str(followed.url).startswith("http://testserver/gpuwarden/")


def test_alertmanager_paths_with_a_trailing_slash_are_answered_under_the_prefix(tmp_path: Path) -> None:
    with _client(tmp_path, "/gpuwarden/") as client:  # the trailing slash of the setting is dropped
        assert client.get("/gpuwarden/api/v2/alerts/", follow_redirects=False).json() == []


def test_probes_under_the_prefix_answer_any_host_when_allowed_hosts_is_set(tmp_path: Path) -> None:
    with _client(tmp_path, "/gpuwarden", allowed_hosts=["oncall.example.com"]) as client:
        probe = client.get("/gpuwarden/-/ready", headers={"Host": "10.1.2.3:8080"})
        api = client.get("/gpuwarden/api/v1/incidents", headers={"Host": "evil.example"})
    assert probe.status_code == 200  # Kubernetes probes send the pod's address
    assert api.status_code == 400


def test_standby_answers_its_probes_under_the_prefix() -> None:
    client = TestClient(standby_app(StandbyState(), "/gpuwarden"))
    assert client.get("/gpuwarden/-/healthy").status_code == 200
    assert client.get("/gpuwarden/-/ready").status_code == 503
    assert client.get("/gpuwarden/api/v1/incidents").status_code == 503
    assert client.get("/-/healthy").status_code == 404


@pytest.mark.parametrize(
    ("given", "taken"),
    [("/gpuwarden", "/gpuwarden"), ("/gpuwarden/", "/gpuwarden"), ("/", ""), ("", ""), ("/a/b", "/a/b")],
    ids=["plain", "trailing-slash", "root", "empty", "two-segments"],
)
def test_route_prefix_is_taken_without_its_trailing_slash(given: str, taken: str) -> None:
    assert ApiConfig(route_prefix=given).route_prefix == taken


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ("gpuwarden", "must start with / (/gpuwarden)"),
        ("/gpuwarden?x=1", "without a query or fragment"),
        ("/gpuwarden#top", "without a query or fragment"),
        ("https://proxy/gpuwarden", "without scheme or host"),
        ("/gpu warden", "no blanks or %-escapes"),
        ("/gpu%20warden", "no blanks or %-escapes"),
        ("/a//b", "an empty, . or .. segment"),
        ("/a/../b", "an empty, . or .. segment"),
    ],
    ids=["no-slash", "query", "fragment", "url", "blank", "escape", "empty-segment", "dot-dot"],
)
def test_route_prefix_that_is_no_plain_path_is_refused_naming_the_field(given: str, said: str) -> None:
    with pytest.raises(ValidationError) as refused:
        ApiConfig(route_prefix=given)
    (error,) = refused.value.errors()
    assert error["loc"] == ("route_prefix",)
    assert said in error["msg"]
