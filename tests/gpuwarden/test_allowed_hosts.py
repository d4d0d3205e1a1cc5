"""``api.allowed_hosts``: a request naming another ``Host`` (a DNS-rebinding page) is refused."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr, ValidationError

from gpuwarden.allowed_hosts import AllowedHosts, allowed_host_entry, request_host
from gpuwarden.api import create_app
from gpuwarden.config import ApiConfig
from tests.gpuwarden.api_client import TOKEN, TestClient, fleet_engine


def _client(tmp_path: Path, hosts: list[str]) -> TestClient:
    config = ApiConfig(token=SecretStr(TOKEN), allowed_hosts=hosts)
    return TestClient(create_app(fleet_engine(tmp_path), config), raise_server_exceptions=False)


def test_rebinding_page_cannot_read_incidents_when_allowed_hosts_set(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with _client(tmp_path, ["localhost", "oncall.example.com"]) as client:
        refused = client.get("/api/v1/incidents", headers={"Host": "evil.example:8080"})
        alertmanager = client.get("/api/v2/alerts", headers={"Host": "evil.example:8080"})
    assert refused.status_code == 400
    assert refused.json() == {
        "error": "Host: 'evil.example:8080' is not in api.allowed_hosts; reach serve by a name listed there"
        " (or add this one)",
        "field": "Host",
    }
    assert alertmanager.status_code == 400  # Alertmanager's shape: a JSON string, amtool decodes it
    assert alertmanager.json().startswith("Host: 'evil.example:8080' is not in api.allowed_hosts")
    refusals = [r.getMessage() for r in caplog.records if "api.allowed_hosts" in r.getMessage()]
    assert refusals == [  # once per name, with the client (behind a proxy, its X-Forwarded-For)
        "request refused: its Host is not in api.allowed_hosts host='evil.example:8080'"
        " path=/api/v1/incidents client=testclient"
    ]


@pytest.mark.parametrize(
    "host",
    ["localhost:8080", "OnCall.Example.COM", "oncall.example.com.:443", "127.0.0.1:8080", "[::1]:8080"],
    ids=["port", "case", "trailing-dot", "ipv4", "ipv6"],
)
def test_listed_host_is_answered_with_any_port(tmp_path: Path, host: str) -> None:
    hosts = ["localhost", "oncall.example.com", "127.0.0.1", "[::1]"]
    with _client(tmp_path, hosts) as client:
        assert client.get("/api/v1/incidents", headers={"Host": host}).status_code == 200


def test_every_host_answered_without_allowed_hosts(tmp_path: Path) -> None:
    with _client(tmp_path, []) as client:
        assert client.get("/api/v1/incidents", headers={"Host": "evil.example"}).status_code == 200


@pytest.mark.parametrize("path", ["/-/healthy", "/-/ready", "/healthz"])
def test_probes_answered_whatever_host(tmp_path: Path, path: str) -> None:
    with _client(tmp_path, ["oncall.example.com"]) as client:
        assert client.get(path, headers={"Host": "10.1.2.3:8080"}).status_code == 200


def test_request_without_host_is_answered() -> None:
    """HTTP/1.0 sends no Host, and no browser omits it: nothing to rebind."""
    said: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        said.append(scope)

    async def nothing() -> dict[str, Any]:
        return {}

    async def ignore(message: Any) -> None:
        return None

    scope = {"type": "http", "path": "/api/v1/incidents", "headers": [], "method": "GET"}
    asyncio.run(AllowedHosts(app, ["oncall.example.com"])(scope, nothing, ignore))
    assert said == [scope]


@pytest.mark.parametrize(
    "entry",
    ["oncall.example.com:8443", "https://oncall.example.com", "", " localhost"],
    ids=["port", "scheme", "empty", "blank"],
)
def test_allowed_hosts_entry_that_is_not_a_name_refused(entry: str) -> None:
    with pytest.raises(ValidationError, match="allowed_hosts"):
        ApiConfig(allowed_hosts=[entry])


def test_allowed_hosts_entries_compared_as_written_in_host() -> None:
    assert ApiConfig(allowed_hosts=["OnCall.Example.com", "[::1]", "::1"]).allowed_hosts == [
        "oncall.example.com",
        "::1",
        "::1",
    ]
    assert allowed_host_entry("0:0::1") == request_host("[::1]:80") == "::1"
