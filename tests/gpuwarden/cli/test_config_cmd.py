"""``gpuwarden config show``: the effective configuration, with every secret masked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gpuwarden.cli import app

runner = CliRunner()


def test_config_show_hides_the_store_urls_password_as_serves_errors_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It said "secrets masked" and printed the PostgreSQL password of ``api.db: {env: DB_URL}`` in clear."""
    monkeypatch.setenv("DB_URL", "postgresql+psycopg://gw:S3cretDbPass@db.example:5432/gw")
    path = tmp_path / "gw.yaml"
    path.write_text("api:\n  db: {env: DB_URL}\n")
    result = runner.invoke(app, ["config", "show", str(path)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["api"]["db"] == "postgresql+psycopg://gw:***@db.example:5432/gw"
    assert "S3cretDbPass" not in result.output


def test_config_show_hides_a_password_in_any_url_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROM_URL", "http://reader:PromPass@prom.example:9090")
    path = tmp_path / "gw.yaml"
    path.write_text("anomaly:\n  prometheus_url: {env: PROM_URL}\n")
    result = runner.invoke(app, ["config", "show", str(path)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["anomaly"]["prometheus_url"] == "http://reader:***@prom.example:9090"
    assert "PromPass" not in result.output


def test_config_show_keeps_a_sqlite_path_as_written(tmp_path: Path) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text("api:\n  db: /var/lib/gpuwarden/incidents.db\n")
    result = runner.invoke(app, ["config", "show", str(path)])
    assert json.loads(result.output)["api"]["db"] == "/var/lib/gpuwarden/incidents.db"
