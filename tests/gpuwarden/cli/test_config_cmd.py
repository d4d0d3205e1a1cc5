"""``gpuwarden config show``: the effective configuration, with every secret masked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gpuwarden.cli import app

runner = CliRunner()


@pytest.mark.parametrize(
    ("text", "url", "section", "field", "shown"),
    [
        (
            "api:\n  db: {env: URL}\n",
            "postgresql+psycopg://gw:S3cretPass@db.example:5432/gw",
            "api",
            "db",
            "postgresql+psycopg://gw:***@db.example:5432/gw",
        ),
        (
            "anomaly:\n  prometheus_url: {env: URL}\n",
            "http://reader:S3cretPass@prom.example:9090",
            "anomaly",
            "prometheus_url",
            "http://reader:***@prom.example:9090",
        ),
    ],
    ids=["store-url", "prometheus-url"],
)
def test_config_show_hides_a_urls_password_as_serves_errors_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, url: str, section: str, field: str, shown: str
) -> None:
    """It said "secrets masked" and printed the PostgreSQL password of ``api.db: {env: DB_URL}`` in clear."""
    monkeypatch.setenv("URL", url)
    path = tmp_path / "gw.yaml"
    path.write_text(text)
    result = runner.invoke(app, ["config", "show", str(path)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)[section][field] == shown
    assert "S3cretPass" not in result.output


def test_config_show_keeps_a_sqlite_path_as_written(tmp_path: Path) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text("api:\n  db: /var/lib/gpuwarden/incidents.db\n")
    result = runner.invoke(app, ["config", "show", str(path)])
    assert json.loads(result.output)["api"]["db"] == "/var/lib/gpuwarden/incidents.db"
