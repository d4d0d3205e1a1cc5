"""What the API tests share: the test client, the token, a silence, an engine on a fresh store, its client."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr
from starlette.exceptions import StarletteDeprecationWarning

from alerting import scenarios
from alerting.engine import IncidentEngine
from gpuwarden.api import create_app
from gpuwarden.clock import FakeClock
from gpuwarden.config import ApiConfig
from tests.migrated_store import migrated_sqlite

with warnings.catch_warnings():
    # Starlette's TestClient asks for httpx2, which the project does not ship; with httpx it still works.
    warnings.simplefilter("ignore", StarletteDeprecationWarning)
    from starlette.testclient import TestClient

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
NODE_DOWN = {
    "labels": {"alertname": "NodeDown", "cluster": "c1", "node": "r02-n03"},
    "startsAt": "2026-01-01T00:00:00Z",
}


def fleet_engine(tmp_path: Path) -> IncidentEngine:
    """An engine on a fresh SQLite store with the scenario fleet's inventory."""
    return IncidentEngine(
        migrated_sqlite(tmp_path / "api.db"), FakeClock(), inventory=scenarios.fleet_inventory()
    )


@contextmanager
def api_client(engine: IncidentEngine, **app: Any) -> Iterator[TestClient]:
    """A test client of serve's app over ``engine`` (4 KiB bodies at most)."""
    created = create_app(engine, ApiConfig(token=SecretStr(TOKEN), max_body_bytes=4096), **app)
    with TestClient(created, raise_server_exceptions=False) as c:
        yield c


def route_httpx(client: TestClient, url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Answer the CLI's ``httpx.request`` calls to ``url`` from ``client``, in process (no port opened)."""

    def request(method: str, target: str, **kwargs: object) -> httpx.Response:
        kwargs.pop("timeout", None)  # TestClient takes no timeout: the app answers in process
        kwargs.pop("verify", None)  # nor TLS settings: nothing is sent over a connection
        return client.request(method, target.removeprefix(url), **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(httpx, "request", request)


SILENCE = {
    "matchers": [{"name": "node", "value": "r02-n03", "isRegex": False}],
    "startsAt": "2026-01-01T00:00:00Z",  # now, as the fake clock has it: a past one would be moved to now
    "endsAt": "2026-01-02T00:00:00Z",
    "createdBy": "bob",
}
