"""What the ``gpuwarden incidents`` tests share: a runner, an incident's detail, and servers that answer
the CLI in process or with a fixed body."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from click.testing import Result
from pydantic import SecretStr
from rich.console import Console

from alerting import scenarios
from alerting.engine import IncidentEngine
from gpuwarden.api import create_app
from gpuwarden.cli import app, incidents_cmd
from gpuwarden.clock import FakeClock
from gpuwarden.config import ApiConfig
from tests.gpuwarden.api_client import TestClient, route_httpx
from tests.gpuwarden.cli.built_runner import BuiltCliRunner
from tests.http_stub import FixedAnswer
from tests.integration.gpuwarden_server import TOKEN
from tests.migrated_store import migrated_sqlite

runner = BuiltCliRunner()


DETAIL = {
    "id": "inc-0123456789ab",
    "title": "[bold]gpu node-01/5 at 00000000:AB:00.0[/bold] lost",
    "priority": "P1",
    "state": "triggered",
    "root_cause": {"kind": "gpu_lost", "target": {"type": "gpu", "node": "node-01", "index": 5}},
    "alert_count": 1,
    "opened_at": "2026-01-01T00:00:00Z",
    "impact": {"summary": "1 node, 1 GPU"},
    "alerts": [],
    "timeline": [
        {
            "at": "2026-01-01T00:00:00Z",
            "kind": "note",
            "message": "note by alice: PSU 2 was loose, swapped it with the spare from the cage; PSU swap "
            "scheduled for the next maintenance window of rack r01",
        }
    ],
}


@contextmanager
def _in_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[TestClient, IncidentEngine]]:
    """serve's app over the scenario fleet, which the CLI reaches at ``URL`` (no port opened); the CLI's
    tables as wide as they need."""
    sql = migrated_sqlite(tmp_path / "cli.db")
    engine = IncidentEngine(sql, FakeClock(), inventory=scenarios.fleet_inventory())
    with TestClient(create_app(engine, ApiConfig(token=SecretStr(TOKEN))), base_url=URL) as client:
        route_httpx(client, URL, monkeypatch)
        monkeypatch.setattr(incidents_cmd, "console", Console(width=400))
        yield client, engine


URL = "http://gpuwarden.test"


def stdout_for(argv: list[str], body: object) -> str:
    """What ``argv`` prints (exit 0) against a server that answers ``body`` (JSON, or a text as it is)."""
    raw = body if isinstance(body, str) else json.dumps(body)
    stub = FixedAnswer(200, raw.encode())
    try:
        result = runner.invoke(app, [*argv, "--url", stub.url])
    finally:
        stub.close()
    assert result.exit_code == 0, result.output
    return result.stdout


def _invoke_against(body: object, argv: list[str]) -> tuple[Result, list[str]]:
    """``argv`` against a server answering ``body`` to everything: the result and the paths it asked."""
    stub = FixedAnswer(200, json.dumps(body).encode())
    try:
        result = runner.invoke(app, [*argv, "--url", stub.url])
    finally:
        stub.close()
    return result, stub.paths
