"""The CLI against a serve with ``api.route_prefix``, behind a proxy forwarding ``/gpuwarden/...`` unstripped:
``--url`` with the prefix works, one without it is told the URL to give."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import SecretStr

from alerting.engine import IncidentEngine
from gpuwarden.api import create_app
from gpuwarden.cli import app
from gpuwarden.clock import FakeClock
from gpuwarden.config import ApiConfig
from tests.gpuwarden.api_client import AUTH, NODE_DOWN, TOKEN, TestClient, route_httpx
from tests.gpuwarden.cli.built_runner import BuiltCliRunner
from tests.migrated_store import migrated_sqlite

runner = BuiltCliRunner()
PROXY = "http://proxy.test"


def _client(tmp_path: Path) -> TestClient:
    config = ApiConfig(token=SecretStr(TOKEN), route_prefix="/gpuwarden")
    return TestClient(create_app(IncidentEngine(migrated_sqlite(tmp_path / "cli.db"), FakeClock()), config))


@pytest.mark.parametrize(
    "url", [f"{PROXY}/gpuwarden", f"{PROXY}/gpuwarden/"], ids=["plain", "trailing-slash"]
)
def test_incidents_list_and_ack_with_a_url_holding_the_route_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", TOKEN)
    with _client(tmp_path) as client:
        route_httpx(client, PROXY, monkeypatch)  # the proxy forwards the path as it came
        assert client.post("/gpuwarden/api/v2/alerts", json=[NODE_DOWN], headers=AUTH).status_code == 200
        listed = runner.invoke(app, ["incidents", "list", "-o", "json", "--url", url])
        assert listed.exit_code == 0, listed.stderr
        (incident,) = json.loads(listed.stdout)
        acked = runner.invoke(app, ["incidents", "ack", incident["id"], "--by", "alice", "--url", url])
        assert acked.exit_code == 0, acked.stderr
        assert client.get(f"/gpuwarden/api/v1/incidents/{incident['id']}").json()["state"] == "acknowledged"


@pytest.mark.parametrize("given", [PROXY, f"{PROXY}/other"], ids=["no-path", "other-path"])
def test_a_url_without_the_route_prefix_is_told_the_url_to_give(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str
) -> None:
    with _client(tmp_path) as client:
        route_httpx(client, PROXY, monkeypatch)
        result = runner.invoke(app, ["incidents", "list", "--url", given])
    said = " ".join(result.stderr.split())
    assert result.exit_code == 1, said
    assert "serve's routes are under /gpuwarden (api.route_prefix)" in said, said
    assert said.endswith(f"--url {given} is not serve's base URL: give {PROXY}/gpuwarden"), said


def test_a_proxy_stripping_the_route_prefix_serve_expects_is_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It was told to give the very URL it gave.
    with _client(tmp_path) as client:
        route_httpx(client, f"{PROXY}/gpuwarden", monkeypatch)  # /gpuwarden/x reaches serve as /x
        result = runner.invoke(app, ["incidents", "list", "--url", f"{PROXY}/gpuwarden/"])
    said = " ".join(result.stderr.split())
    assert result.exit_code == 1, said
    assert said.endswith(
        f"--url {PROXY}/gpuwarden/ holds it, so a proxy in front of serve strips it: make the proxy forward"
        " the path as it came, or unset serve's api.route_prefix"
    ), said


@pytest.mark.parametrize(
    ("given", "said"),
    [
        ("gpuwarden", "must start with / (/gpuwarden)"),
        ("/gw?x=1", "write the path alone, without a query or fragment (/gpuwarden)"),
    ],
    ids=["no-slash", "query"],
)
def test_serve_refuses_a_route_prefix_option_that_is_no_path(tmp_path: Path, given: str, said: str) -> None:
    result = runner.invoke(
        app, ["serve", "--log-format", "text", "--route-prefix", given, "--db", str(tmp_path / "x.db")]
    )
    assert result.exit_code == 2
    assert " ".join(result.stderr.split()) == f"error: --route-prefix {given!r}: {said}"
    assert not (tmp_path / "x.db").exists()
