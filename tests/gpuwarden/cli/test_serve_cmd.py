from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from pydantic import SecretStr
from starlette.routing import Route
from typer.testing import CliRunner

from alerting import scenarios
from alerting.inventory import inventory_data
from gpuwarden.cli import app
from gpuwarden.cli.serve_cmd import build_service
from gpuwarden.config import GpuwardenConfig

runner = CliRunner()


def test_serve_refuses_to_start_without_a_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GPUWARDEN_API_TOKEN", raising=False)
    result = runner.invoke(app, ["serve", "--db", str(tmp_path / "x.db")])
    assert result.exit_code == 1
    assert "GPUWARDEN_API_TOKEN" in result.output


def test_slack_token_and_signing_secret_wire_the_outbox_and_the_button_endpoint(tmp_path: Path) -> None:
    cfg = GpuwardenConfig()
    cfg.slack.bot_token = SecretStr("xoxb-test")
    cfg.slack.signing_secret = SecretStr("signing")
    cfg.slack.base_url = "http://127.0.0.1:9/api/"
    engine, background, routes, _ = build_service(cfg, str(tmp_path / "s.db"))
    assert len(background) == 2  # engine tick and outbox dispatcher
    assert any(isinstance(r, Route) and r.path == "/slack/interactions" for r in routes)
    assert len(engine._listeners) == 1
    assert [type(c).__name__ for c in engine.extra_metrics] == ["OutboxCollector"]  # served on /metrics


def test_without_slack_only_the_tick_runs(tmp_path: Path) -> None:
    engine, background, routes, _ = build_service(GpuwardenConfig(), str(tmp_path / "s.db"))
    assert (len(background), routes, engine._listeners) == (1, [], [])


def test_inventory_file_from_config_reaches_the_engine(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(inventory_data(scenarios.fleet_inventory())))
    cfg = GpuwardenConfig()
    cfg.alerting.inventory_file = str(path)
    engine, _, _, _ = build_service(cfg, str(tmp_path / "s.db"))
    assert engine.inventory is not None and engine.inventory.node("r07-n01") is not None


def test_serve_refuses_a_config_whose_matcher_does_not_parse_naming_the_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    config = tmp_path / "gw.yaml"
    config.write_text(
        "alerting:\n  inhibit_rules:\n    - source_matchers: ['node=~\"(\"']\n      target_matchers: [a=b]\n"
    )
    result = runner.invoke(app, ["serve", "--db", str(tmp_path / "x.db"), "--config", str(config)])
    assert result.exit_code == 1
    assert "alerting.inhibit_rules[0].source_matchers[0]" in " ".join(result.output.split())


@pytest.mark.parametrize(
    ("db", "expected"),
    [
        ("postgresql+psycopg://u:pw-secret@127.0.0.1:1/x", "u:***@127.0.0.1:1/x: cannot open the store"),
        ("mysql://host/x", "not a database gpuwarden can use"),
        ("{tmp}/missing/dir/x.db", "does its directory exist?"),
    ],
    ids=["postgres-down", "unknown-database", "sqlite-no-directory"],
)
def test_serve_refuses_a_store_it_cannot_open_naming_it_without_its_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, db: str, expected: str
) -> None:
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    result = runner.invoke(app, ["serve", "--db", db.format(tmp=tmp_path)])
    output = " ".join(result.output.split())
    assert result.exit_code == 1
    assert "api.db" in output and expected in output and "pw-secret" not in output


def test_serve_names_the_journal_dir_when_it_cannot_use_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    (tmp_path / "afile").write_text("not a directory")
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"alerting": {"journal_dir": str(tmp_path / "afile" / "journal")}}))
    result = runner.invoke(app, ["serve", "--db", str(tmp_path / "x.db"), "--config", str(config)])
    output = " ".join(result.output.split())
    assert result.exit_code == 1
    assert "alerting.journal_dir" in output and "api.db" not in output


@pytest.mark.parametrize(
    ("alerting", "expected"),
    [
        ({"inventory_file": "{tmp}/missing.yaml"}, "alerting.inventory_file"),
        ({"inventory_file": "{tmp}"}, "alerting.inventory_file"),
        (
            {"kubernetes_inventory": {"cluster": "k", "kubeconfig": "{tmp}/kubeconfig"}},
            "inventory.kubeconfig:",
        ),
    ],
    ids=["missing-inventory", "inventory-is-a-directory", "kubeconfig-not-yaml"],
)
def test_a_wrong_inventory_setting_stops_serve_before_it_makes_any_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, alerting: dict[str, object], expected: str
) -> None:
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    (tmp_path / "kubeconfig").write_text("apiVersion: v1\nclusters: [\n")  # a YAML syntax error
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"alerting": alerting}).replace("{tmp}", str(tmp_path)))
    store = tmp_path / "store"
    store.mkdir()
    result = runner.invoke(app, ["serve", "--db", str(store / "x.db"), "--config", str(config)])
    output = " ".join(result.output.split())
    assert result.exit_code == 1 and expected in output and "Traceback" not in output, output
    assert list(store.iterdir()) == []  # no store, lock or journal


@pytest.mark.parametrize("port", ["83537", "-5", "0"])
def test_serve_refuses_a_port_out_of_range_before_making_any_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, port: str
) -> None:
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    result = runner.invoke(app, ["serve", "--db", str(tmp_path / "x.db"), "--port", port])
    assert result.exit_code == 2 and "--port" in result.output  # a usage error, as click gives them
    assert list(tmp_path.iterdir()) == []
