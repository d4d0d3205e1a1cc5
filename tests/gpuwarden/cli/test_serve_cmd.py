from __future__ import annotations

import json
import logging
import os
import socket
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
import yaml
from alembic.script import ScriptDirectory
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from starlette.routing import Route
from typer.testing import CliRunner

from alerting import scenarios
from alerting.db import make_engine
from alerting.engine import IncidentEngine
from alerting.health import ServiceHealth
from alerting.instance_lock import FileLock, store_lock
from alerting.inventory import StaticInventory
from alerting.inventory_file import inventory_data
from alerting.journal import KIND_POSTABLE, AcceptJournal, applied_offset
from alerting.migrate import alembic_config, upgrade
from alerting.outbox import Outbox
from alerting.subscriptions import ChangeKind, IncidentChange
from gpuwarden.api import create_app
from gpuwarden.cli import app
from gpuwarden.cli.inventories import Inventories
from gpuwarden.cli.machine_checks import check_store, check_store_directory
from gpuwarden.cli.preflight import check_serve
from gpuwarden.cli.serve_cmd import _tick_loop, build_service, take_locks
from gpuwarden.cli.serve_journal import build_applier, journal_dir
from gpuwarden.clock import FakeClock, SystemClock
from gpuwarden.config import AlertingConfig, ApiConfig, GpuwardenConfig
from gpuwarden.errors import ConfigError, SourceError
from gpuwarden.model import Alert
from tests.alerting.notifiers.incidents import lifecycle
from tests.gpuwarden.api_client import AUTH, TOKEN, TestClient
from tests.gpuwarden.cli.stopping import run_then_sigterm
from tests.integration.servers import free_port

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


def test_webhooks_alone_wire_the_outbox_as_the_engines_listener(tmp_path: Path) -> None:
    cfg = GpuwardenConfig.model_validate(
        {
            "webhooks": [
                {"name": "ops", "url": "http://127.0.0.1:9/a"},
                {"name": "tickets", "url": "http://x/"},
            ]
        }
    )
    engine, background, _, outbox = build_service(cfg, str(tmp_path / "s.db"))
    assert outbox is not None and outbox.notifier_names == ["webhook:ops", "webhook:tickets"]
    assert engine._listeners == [outbox]  # so each committed change is kept until the outbox has it
    assert len(background) == 2  # engine tick and outbox dispatcher
    assert [type(c).__name__ for c in engine.extra_metrics] == ["OutboxCollector"]


def test_webhooks_go_beside_slack_in_one_outbox(tmp_path: Path) -> None:
    cfg = GpuwardenConfig.model_validate({"webhooks": [{"name": "ops", "url": "http://127.0.0.1:9/a"}]})
    cfg.slack.bot_token = SecretStr("xoxb-test")
    cfg.slack.base_url = "http://127.0.0.1:9/api/"
    engine, _, _, outbox = build_service(cfg, str(tmp_path / "s.db"))
    assert outbox is not None and outbox.notifier_names == ["slack", "webhook:ops"]
    assert engine._listeners == [outbox]


@pytest.mark.parametrize(
    "webhooks",
    [
        pytest.param([{"name": "ops", "url": "http://127.0.0.1:9/a"}], id="another-webhook"),
        pytest.param([], id="none"),
    ],
)
def test_messages_waiting_for_a_webhook_removed_from_the_config_leave_the_backlog_at_start(
    tmp_path: Path, webhooks: list[dict[str, str]]
) -> None:
    db = str(tmp_path / "s.db")
    before = GpuwardenConfig.model_validate({"webhooks": [{"name": "gone", "url": "http://127.0.0.1:9/a"}]})
    _, _, _, outbox = build_service(before, db)  # its receiver never answered: the lifecycle waits
    assert outbox is not None
    for c in lifecycle():
        outbox(c)
    assert outbox.counts_by_notifier() == {("webhook:gone", "pending"): 5}

    build_service(GpuwardenConfig.model_validate({"webhooks": webhooks}), db)  # the next start, without it
    left = Outbox(make_engine(db), [], SystemClock())
    assert left.counts_by_notifier() == {("webhook:gone", "orphaned"): 5}


def test_messages_of_the_only_notifier_removed_can_still_be_listed_and_discarded_through_the_api(
    tmp_path: Path,
) -> None:
    db = str(tmp_path / "s.db")
    before = GpuwardenConfig.model_validate({"webhooks": [{"name": "gone", "url": "http://127.0.0.1:9/a"}]})
    _, _, _, outbox = build_service(before, db)
    assert outbox is not None
    for c in lifecycle():
        outbox(c)

    engine, background, _, left = build_service(GpuwardenConfig(), db)  # the next start: no notifier at all
    assert (len(background), engine._listeners) == (1, [])  # nothing is dispatched: no notifier would send
    assert left is not None  # yet the API reads what is stored, as README's "outbox discard" says
    with TestClient(create_app(engine, ApiConfig(token=SecretStr(TOKEN)), outbox=left)) as c:
        listed = c.get("/api/v1/outbox", params={"status": "orphaned"})
        assert listed.status_code == 200 and listed.json()["counts"] == {"orphaned": 5}
        dropped = c.post("/api/v1/outbox/discard", headers=AUTH, json={"notifier": "webhook:gone"})
        assert dropped.status_code == 200 and dropped.json()["total"] == 5
        assert c.post("/api/v1/outbox/retry", headers=AUTH).json() == {"requeued": 0, "overtaken": 0}


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


def test_serve_logs_a_maintenance_window_that_already_ended_and_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    config = tmp_path / "gw.yaml"
    config.write_text(
        "alerting:\n  inventory_file: missing.yaml\n  maintenance_windows:\n    - matchers: [rack=r07]\n"
        "      starts_at: 2020-01-01T00:00:00Z\n      ends_at: 2020-01-01T02:00:00Z\n"
    )
    result = runner.invoke(app, ["serve", "--db", str(tmp_path / "x.db"), "--config", str(config)])
    output = " ".join(result.output.split())
    # It went on past the window to the next check, the inventory file, which stops it here.
    assert result.exit_code == 1 and "alerting.inventory_file" in output, output
    logged = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert [(r["level"], r["msg"].split(", so")[0]) for r in logged if r["level"] != "info"] == [
        (
            "warning",
            f"{config}:6: alerting.maintenance_windows[0].ends_at: the window ended at 2020-01-01T02:00:00Z",
        )
    ]


@pytest.mark.parametrize(
    ("db", "expected"),
    [
        (
            "postgresql+psycopg://u:pw-secret@127.0.0.1:1/x",
            "--db 'postgresql+psycopg://u:***@127.0.0.1:1/x': cannot open the store",
        ),
        ("mysql://host/x", "--db 'mysql://host/x': not a database gpuwarden can use"),
        (
            "{tmp}/missing/dir/x.db",
            "--db '{tmp}/missing/dir/x.db': cannot open the store: [Errno 2] No such file or directory",
        ),
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
    assert "--db: " not in output and "pw-secret" not in output  # the store said once, as every option is
    assert f"error: {expected.format(tmp=tmp_path)}" in output, output


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


def _damaged_journal(directory: Path) -> Path:
    """A journal of three unapplied records whose second is damaged; its segment file."""
    journal = AcceptJournal(directory, lambda _jid: 0)
    first = journal.append(KIND_POSTABLE, b'[{"labels": {"alertname": "A"}}]', 1)
    for _ in range(2):
        journal.append(KIND_POSTABLE, b'[{"labels": {"alertname": "B"}}]', 1)
    journal.close()
    (segment,) = directory.glob("*.seg")
    data = bytearray(segment.read_bytes())
    data[first + 20] ^= 0xFF
    segment.write_bytes(bytes(data))
    return segment


@pytest.mark.parametrize("configured", [False, True], ids=["derived-dir", "alerting.journal_dir"])
def test_a_damaged_journal_names_its_file_and_the_setting_only_when_the_config_sets_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, configured: bool
) -> None:
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    monkeypatch.chdir(tmp_path)
    directory = tmp_path / ("journal" if configured else "x.db.journal")
    segment = _damaged_journal(directory)
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"alerting": {"journal_dir": str(directory)} if configured else {}}))
    result = runner.invoke(app, ["serve", "--db", "x.db", "--config", str(config)])
    output = " ".join(result.output.split())
    assert result.exit_code == 1 and "Traceback" not in output, output
    assert f"journal{segment}:" in "".join(output.split()) and "readable records follow them" in output
    assert f"move{directory}aside" in "".join(output.split())
    assert ("alerting.journal_dir" in output) == configured
    assert (str(config) in output) == configured


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


def test_serve_refuses_a_database_a_newer_version_migrated_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    db = tmp_path / "x.db"
    sql = make_engine(str(db))
    upgrade(sql)
    with sql.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '0099_future'"))
    sql.dispose()
    result = runner.invoke(app, ["serve", "--db", str(db)])
    output = " ".join(result.output.split())
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), output
    assert output.count("error:") == 1 and "Traceback" not in output, output
    assert (
        f"error: --db '{db}': cannot open the store: the database was migrated by a newer gpuwarden" in output
    )
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert f"'0099_future' is unknown to this version, which knows up to '{head}'" in output
    assert "newer gpuwarden" in output and "restore a backup" in output


def test_the_journal_directory_is_logged_as_an_absolute_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    db = "store.db"
    engine, _, _, _ = build_service(GpuwardenConfig(), db)
    with caplog.at_level(logging.INFO, logger="gpuwarden.serve"):
        build_applier(GpuwardenConfig(), db, engine).journal.close()
    logged = [r.getMessage() for r in caplog.records if r.name == "gpuwarden.serve"]
    assert logged == [f"journal: {tmp_path / 'store.db.journal'}"]


def test_a_sqlite_store_reached_through_a_symlink_has_the_journal_of_the_file_it_points_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``--db alias.db`` (a link to incidents.db) got alias.db.journal: each name its own journal."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "alias.db").symlink_to(tmp_path / "data" / "incidents.db")
    expected = tmp_path / "data" / "incidents.db.journal"
    for db in ("alias.db", str(tmp_path / "alias.db"), "sqlite:///alias.db", "data/incidents.db"):
        assert journal_dir(GpuwardenConfig(), db) == expected, db


@pytest.mark.parametrize("url", ["sqlite+pysqlite:///{}", "sqlite:///{}?timeout=5"], ids=["driver", "query"])
def test_a_sqlite_url_with_a_driver_or_a_query_keeps_its_journal_beside_the_store_lock(
    tmp_path: Path, url: str
) -> None:
    """serve read only a bare ``sqlite:///path`` as a file: with a driver the journal was gpuwarden-journal
    under the working directory (config validate, which reads it as a file, did not warn of that); with a
    query it was named after the query (``s.db?timeout=5.journal``). The store lock is beside the file."""
    db = url.format(tmp_path / "s.db")
    lock = store_lock(db, "me")
    assert isinstance(lock, FileLock)
    assert journal_dir(GpuwardenConfig(), db) == lock.path.with_suffix(".journal")


def test_a_percent_encoded_sqlite_url_keeps_its_journal_beside_the_store_lock(tmp_path: Path) -> None:
    """SQLAlchemy decodes the URL's path (``my%20dir`` is the directory ``my dir``), and so the store and its
    lock are there; serve read it undecoded: the journal went beside ``my%20dir/s.db`` (a directory it made),
    and ``config validate`` and serve refused the URL, saying that directory did not exist."""
    (tmp_path / "my dir").mkdir()
    db = f"sqlite:///{tmp_path}/my%20dir/s.db"
    lock = store_lock(db, "me")
    assert isinstance(lock, FileLock) and lock.path == tmp_path / "my dir" / "s.db.lock"
    assert journal_dir(GpuwardenConfig(), db) == lock.path.with_suffix(".journal")
    check_store_directory(db, "api.db")  # no ConfigError: the directory exists


@pytest.mark.parametrize(
    "url",
    ["sqlite:///file:s.db?uri=true", "sqlite:///file:s.db?mode=rwc&uri=1&timeout=5"],
    ids=["uri", "more"],
)
def test_a_sqlite_file_uri_is_refused_as_its_lock_would_not_guard_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, url: str
) -> None:
    """With ``uri=true`` SQLite opens ``s.db``, but serve took the store lock and kept the journal as for a
    file ``file:s.db``: a second serve given ``s.db`` took its own lock and ran active on the same store."""
    monkeypatch.chdir(tmp_path)
    lock = store_lock(url, "me")
    assert isinstance(lock, FileLock) and lock.path != tmp_path / "s.db.lock"  # why it is refused
    with pytest.raises(ConfigError) as refused:
        check_store(url, "--db")
    assert refused.value.field == "--db"
    assert "uri=true" in str(refused.value) and "give the file's path (sqlite:///s.db)" in str(refused.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("url", "before"),
    [
        ("sqlite+pysqlite:///{}", "gpuwarden-journal"),
        ("sqlite:///{}?timeout=5", "s.db?timeout=5.journal"),
    ],
    ids=["driver", "query"],
)
def test_alerts_an_earlier_release_journaled_elsewhere_for_the_store_are_named_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, url: str, before: str
) -> None:
    """Releases before 0ce92c9 kept these URLs' journal under the working directory (a driver) or named after
    the query: alerts acknowledged there and not applied when that serve stopped were silently left behind
    (a new journal beside the store), only the changelog said so; serve names them, and how to apply them."""
    monkeypatch.chdir(tmp_path)
    db = url.format(tmp_path / "s.db")
    engine, _, _, _ = build_service(GpuwardenConfig(), db)
    sql = engine.store.engine
    old = AcceptJournal(tmp_path / before, lambda journal_id: applied_offset(sql, journal_id))
    held = old.append(KIND_POSTABLE, b'[{"labels": {"alertname": "A"}}]', 1)
    old.close()
    with caplog.at_level(logging.INFO, logger="gpuwarden.serve"):
        build_applier(GpuwardenConfig(), db, engine).journal.close()
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert said == [
        f"journal: {tmp_path / before} holds {held} bytes acknowledged but not applied, kept there for this"
        " store by a release before 0ce92c9; start serve once with alerting.journal_dir set to"
        f" {tmp_path / before} to apply them, then remove that directory"
    ]


@pytest.mark.parametrize("damage", ["unreadable", "not text"])
def test_an_earlier_releases_journal_that_cannot_be_read_is_named_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    """An earlier release's journal for this store that serve cannot read (kept by another user, 0700; an id
    that is not text) may hold alerts acknowledged and not applied: it was taken for no journal, said nothing
    and left them behind, or (not text) stopped serve's start with a traceback, for a directory serve does
    not use."""
    monkeypatch.chdir(tmp_path)
    db = f"sqlite+pysqlite:///{tmp_path / 's.db'}"
    engine, _, _, _ = build_service(GpuwardenConfig(), db)
    sql = engine.store.engine
    before = tmp_path / "gpuwarden-journal"
    old = AcceptJournal(before, lambda journal_id: applied_offset(sql, journal_id))
    old.append(KIND_POSTABLE, b'[{"labels": {"alertname": "A"}}]', 1)
    old.close()
    if damage == "not text":
        (before / "journal-id").write_bytes(b"\xff\xfe\x00journal")
    else:
        read_text = Path.read_text

        def refused(path: Path, *args: Any, **kwargs: Any) -> str:
            if path == before / "journal-id":
                raise PermissionError(13, "Permission denied", str(path))
            return read_text(path, *args, **kwargs)

        monkeypatch.setattr(Path, "read_text", refused)
    with caplog.at_level(logging.INFO, logger="gpuwarden.serve"):
        build_applier(GpuwardenConfig(), db, engine).journal.close()
    [said] = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert said.startswith(f"journal: cannot read {before}, where releases before 0ce92c9 kept this store's")
    assert f"alerting.journal_dir set to {before}" in said


def test_a_working_directory_journal_of_another_store_is_not_named_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """``./gpuwarden-journal`` is also where a PostgreSQL store's journal is by default: one this store never
    applied from is not its own, and applying it here would store another store's alerts."""
    monkeypatch.chdir(tmp_path)
    other = AcceptJournal(tmp_path / "gpuwarden-journal", lambda _jid: 0)
    other.append(KIND_POSTABLE, b'[{"labels": {"alertname": "A"}}]', 1)
    other.close()
    db = f"sqlite+pysqlite:///{tmp_path / 's.db'}"
    engine, _, _, _ = build_service(GpuwardenConfig(), db)
    with caplog.at_level(logging.INFO, logger="gpuwarden.serve"):
        build_applier(GpuwardenConfig(), db, engine).journal.close()
    assert [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING] == []


def test_a_journal_left_beside_a_symlink_to_the_store_is_named_at_start(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Alerts an earlier version acknowledged through the link wait there: serve says how to apply them."""
    (tmp_path / "alias.db").symlink_to(tmp_path / "incidents.db")
    (tmp_path / "alias.db.journal").mkdir()
    engine, _, _, _ = build_service(GpuwardenConfig(), str(tmp_path / "alias.db"))
    with caplog.at_level(logging.INFO, logger="gpuwarden.serve"):
        build_applier(GpuwardenConfig(), str(tmp_path / "alias.db"), engine).journal.close()
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert said == [
        f"journal: {tmp_path / 'alias.db.journal'} is beside the link {tmp_path / 'alias.db'}; a store's"
        " journal is now beside the file it points to. If serve was stopped with alerts acknowledged but not"
        f" applied, start it once with alerting.journal_dir set to {tmp_path / 'alias.db.journal'} to apply"
        " them, then remove that directory"
    ]


def test_serve_through_a_symlink_is_refused_while_a_server_holds_the_store(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    (tmp_path / "alias.db").symlink_to(tmp_path / "incidents.db")
    held = take_locks(GpuwardenConfig(), str(tmp_path / "incidents.db"), standby=False)
    with socket.socket() as taken:  # had the locks let it through, it stops at the port, not serving on
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = runner.invoke(app, ["serve", "--db", str(tmp_path / "alias.db"), "--port", port])
    held.release()
    output = " ".join(result.output.split())
    assert result.exit_code == 1 and "is in use by another gpuwarden serve" in output, output


def test_a_postgres_store_without_journal_dir_journals_under_the_working_directory_warned_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    db = "postgresql+psycopg://gw@db/gw"
    engine, _, _, _ = build_service(GpuwardenConfig(), str(tmp_path / "s.db"))  # the store behind the URL
    with caplog.at_level(logging.INFO, logger="gpuwarden.serve"):
        applier = build_applier(GpuwardenConfig(), db, engine)
        applier.journal.close()
    assert applier.status()["quarantine_dir"] == str(tmp_path / "gpuwarden-journal" / "quarantine")
    (record,) = [r for r in caplog.records if r.name == "gpuwarden.serve"]
    assert record.getMessage() == f"journal: {tmp_path / 'gpuwarden-journal'}"
    # The warning is serve's start-up check (said before any file is made, as config validate says it).
    _, warnings = check_serve(GpuwardenConfig(), db, "api.db", "127.0.0.1", "api.listen_address")
    (warning,) = [w for w in warnings if w.field == "alerting.journal_dir"]
    assert "gpuwarden-journal under serve's working directory" in warning.message
    assert "set alerting.journal_dir" in warning.message


class _TickingEngine:
    """Fails the ticks it is given exceptions for, and notes whether serve thought the store was up."""

    def __init__(self, health: ServiceHealth, fail: list[Exception]) -> None:
        self.health = health
        self.fail = fail
        self.store_up_at_tick: list[bool] = []
        self.clock = FakeClock()
        self.counters = {"listener_errors": 0}

    def tick(self) -> None:
        self.store_up_at_tick.append(self.health.store_up)
        if self.fail:
            raise self.fail.pop(0)


def test_ticks_wait_for_the_replay_tell_whether_the_store_is_up_and_count_those_that_completed() -> None:
    health = ServiceHealth()
    engine = _TickingEngine(health, [OperationalError("SELECT", {}, Exception("connection refused"))])
    stop = threading.Event()
    loop = threading.Thread(target=_tick_loop(engine, 0.01, health), args=(stop,))  # type: ignore[arg-type]
    loop.start()
    try:
        time.sleep(0.1)
        assert engine.store_up_at_tick == []  # a tick before the backlog is applied would resolve its alerts
        health.replayed.set()
        deadline = time.monotonic() + 5
        while len(engine.store_up_at_tick) < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        loop.join()
    # Up at start; down after the tick the outage failed; up again after the next one went through.
    assert engine.store_up_at_tick[:2] == [True, False] and health.store_up is True
    # The failed tick is not counted: a client waiting for a tick to have applied what time decides.
    assert health.tick_status() == {
        "ticks": len(engine.store_up_at_tick) - 1,
        "last_tick_at": "2026-01-01T00:00:00Z",
    }


class _Ticks(threading.Event):
    """A stop event that lets the tick loop run ``count`` ticks, at once, then stops it."""

    def __init__(self, count: int) -> None:
        super().__init__()
        self.count = count

    def wait(self, timeout: float | None = None) -> bool:
        self.count -= 1
        return self.count < 0


def test_a_tick_that_could_not_tell_the_outbox_the_announcement_it_decided_is_not_counted(
    tmp_path: Path,
) -> None:
    """The tick after an incident's announce delay announces it; the outbox failing then (the store dropped
    under its enqueue), the tick logged it and went on, and was counted: a client waiting for N + 2 to see
    the announcement read before it. It comes at the next tick, which is counted."""
    sql = make_engine(str(tmp_path / "gw.db"))
    upgrade(sql)
    clock = FakeClock()
    engine = IncidentEngine(
        sql, clock, AlertingConfig(announce_delay_seconds=10), scenarios.fleet_inventory()
    )
    told: list[ChangeKind] = []

    def outbox(change: IncidentChange) -> None:
        if not told:
            told.append(change.kind)
            raise OperationalError("INSERT", {}, Exception("connection refused"))
        told.append(change.kind)

    engine.subscribe(outbox)
    engine.ingest([Alert({"alertname": "NodeDown", "cluster": scenarios.CLUSTER, "node": "r02-n03"})])
    clock.advance(30)
    health = ServiceHealth()
    health.replayed.set()
    _tick_loop(engine, 0.01, health)(_Ticks(2))  # type: ignore[arg-type]
    assert told == [ChangeKind.OPENED, ChangeKind.OPENED]  # announced at the second tick
    assert health.tick_status()["ticks"] == 1


@pytest.mark.parametrize(("channel", "warned"), [("#gpu-incidents", True), ("C0123ABCD", False)])
def test_a_slack_channel_given_by_name_is_warned_of_at_start(
    tmp_path: Path, channel: str, warned: bool
) -> None:
    cfg = GpuwardenConfig()
    cfg.slack.bot_token = SecretStr("xoxb-test")
    cfg.slack.channel = channel
    # serve's start-up check, before any file (config validate says the same: test_startup_parity)
    _, warnings = check_serve(cfg, str(tmp_path / "s.db"), "api.db", "127.0.0.1", "api.listen_address")
    assert any(w.field == "slack.channel" and "posted twice" in w.message for w in warnings) is warned


def test_a_failing_inventory_source_logs_one_traceback_then_a_line_per_failure_until_it_reads(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Flaky:
        down = True

        def read(self) -> StaticInventory:
            if self.down:
                raise SourceError("slurmctld not responding", source="slurm")
            return StaticInventory()

    engine = SimpleNamespace(counters={"inventory_refresh_failures": 0})
    source = Flaky()
    inventories = Inventories([], [(source, "slurm")], SystemClock())
    caplog.set_level(logging.INFO, logger="gpuwarden.serve")
    for _ in range(4):
        inventories.read(engine)  # type: ignore[arg-type]
    source.down = False
    inventories.read(engine)  # type: ignore[arg-type]
    source.down = True
    inventories.read(engine)  # type: ignore[arg-type]
    said = [(r.levelname, r.exc_info is not None, r.getMessage()) for r in caplog.records]
    assert [(level, traced) for level, traced, _ in said] == [
        ("ERROR", True),
        ("WARNING", False),
        ("WARNING", False),
        ("WARNING", False),
        ("INFO", False),
        ("ERROR", True),  # failing again after it recovered: a traceback again
    ]
    assert said[3][2].endswith("slurmctld not responding (4 failures in a row)")
    assert engine.counters["inventory_refresh_failures"] == 5


@pytest.mark.parametrize("token", ["", "  ", "tok\n"], ids=["empty", "blank", "newline"])
def test_serve_refuses_a_write_token_no_request_could_match_or_every_one_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, token: str
) -> None:
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", token)
    result = runner.invoke(app, ["serve", "--db", str(tmp_path / "x.db")])
    assert result.exit_code == 1 and "GPUWARDEN_API_TOKEN" in result.output
    assert list(tmp_path.iterdir()) == []


def test_serve_refuses_a_write_token_no_client_can_send_as_the_cli_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Clients send header values as ASCII: with this token serve started and answered every write 401."""
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "tökén")
    result = runner.invoke(app, ["serve", "--db", str(tmp_path / "x.db")])
    assert result.exit_code == 1
    said = " ".join(result.output.split())
    assert "GPUWARDEN_API_TOKEN: holds characters an HTTP header cannot carry" in said and "tökén" not in said
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("args", "config", "expected"),
    [
        (["--db", "{store}"], "", "--db '{store}': is a directory"),
        (["--db", "sqlite://"], "", "--db 'sqlite://': is an in-memory database"),
        (["--db", ":memory:"], "", "--db ':memory:': is an in-memory database"),
        ([], "api:\n  db: 'sqlite:///:memory:'\n", "c.yaml:2: api.db: 'sqlite:///:memory:' is an in-memory"),
        (
            ["--db", "sqlite:///file:{store}/x.db?uri=true"],
            "",
            "--db 'sqlite:///file:{store}/x.db?uri=true': opens its file as a SQLite URI",
        ),
        (  # psql's way to say a server: it was taken for a SQLite file's name, made in the working directory
            ["--db", "host=db.example user=gw password=S3cret dbname=gw"],
            "",
            "--db 'host=db.example user=gw password=*** dbname=gw': is a libpq connection string, not a"
            " file; give it as a URL: postgresql+psycopg://gw@db.example/gw",
        ),
        (
            [],
            "api:\n  db: \"dbname=gw password='S3 cret'\"\n",
            "c.yaml:2: api.db: 'dbname=gw password=***' is a libpq connection string, not a file;",
        ),
        (  # an @ of the password left unescaped: psycopg said "failed to resolve host 'S3cret@127.0.0.1'"
            ["--db", "postgresql+psycopg://gw:S3@S3cret@127.0.0.1:9/gw"],
            "",
            "--db 'postgresql+psycopg://gw:***@127.0.0.1:9/gw': has an @ in its password that is not"
            " percent-encoded, so what follows that @ would be taken for the host; write each @ of the"
            " password as %40",
        ),
        (
            [],
            "api:\n  db: postgresql+psycopg://gw:S3@S3x@db.invalid/gw\n",
            "c.yaml:2: api.db: 'postgresql+psycopg://gw:***@db.invalid/gw' has an @ in its password",
        ),
        (
            ["--db", "{db}"],
            "api:\n  listen_address: not an address\n",
            "c.yaml:2: api.listen_address: cannot",
        ),
        (["--host", "a b", "--db", "{db}"], "", "--host 'a b': cannot listen on it:"),
        (  # TEST-NET-1 (RFC 5737): no machine has it
            ["--host", "192.0.2.1", "--db", "{db}"],
            "",
            "--host '192.0.2.1': cannot listen on it: not an address of this machine",
        ),
        (
            ["--db", "{db}"],
            "alerting:\n  journal_dir: /proc/gpuwarden\n",
            "c.yaml:2: alerting.journal_dir: /proc/gpuwarden:",
        ),
        (
            ["--db", "{db}"],
            "alerting:\n  kubernetes_inventory:\n    cluster: k\n    kubeconfig: {store}/../k.yaml\n",
            "is not a kubeconfig: its YAML is str",
        ),
    ],
    ids=[
        "db-a-directory",
        "db-in-memory-url",
        "db-in-memory",
        "db-in-memory-setting",
        "db-a-sqlite-uri",
        "db-a-libpq-string",
        "db-a-libpq-string-setting",
        "db-password-with-an-at",
        "db-password-with-an-at-setting",
        "address",
        "host",
        "host-of-another-machine",
        "journal-in-proc",
        "kubeconfig-a-string",
    ],
)
def test_serve_refuses_a_setting_it_cannot_use_before_it_makes_any_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], config: str, expected: str
) -> None:
    if "/proc" in config and not Path("/proc/self").exists():
        pytest.skip("no /proc")
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "store"
    store.mkdir()
    (tmp_path / "k.yaml").write_text("just a string\n")  # YAML, but not a kubeconfig's mapping
    (tmp_path / "c.yaml").write_text(config.replace("{store}", str(store)))
    argv = [a.replace("{store}", str(store)).replace("{db}", str(store / "x.db")) for a in args]
    result = runner.invoke(app, ["serve", "--config", "c.yaml", *argv])
    output = " ".join(result.output.split())
    assert result.exit_code == 1 and "Traceback" not in output, output
    assert expected.replace("{store}", str(store)) in output and "S3" not in output
    assert list(store.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == [
        "c.yaml",
        "k.yaml",
        "store",
    ]


def test_serve_on_a_taken_port_leaves_an_older_store_unmigrated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """serve migrated the store, then failed to bind: the release being rolled back to refused the store."""
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    db = tmp_path / "x.db"
    older = make_engine(str(db))
    upgrade(older, "0004_incident_last_opened")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["serve", "--db", str(db), "--port", str(port)])
    assert result.exit_code == 1 and f"--port {port}: cannot listen" in " ".join(result.output.split())
    with older.connect() as conn:
        assert (
            conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
            == "0004_incident_last_opened"
        )
    older.dispose()


@pytest.mark.parametrize("flag", [True, False], ids=["option", "setting"])
def test_serve_names_the_port_when_another_process_listens_on_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flag: bool
) -> None:
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        (tmp_path / "c.yaml").write_text(f"api:\n  port: {port}\n")
        args = ["--port", str(port)] if flag else ["--config", str(tmp_path / "c.yaml")]
        result = runner.invoke(app, ["serve", "--db", str(tmp_path / "x.db"), *args])
    output = " ".join(result.output.split())
    named = f"--port {port}" if flag else f"{tmp_path / 'c.yaml'}:2: api.port"
    assert (
        result.exit_code == 1
        and f"{named}: cannot listen on 127.0.0.1:{port}: Address already in use" in output
    )


def test_sigterm_stops_serve_gracefully_with_exit_0_not_killed_by_the_signal(tmp_path: Path) -> None:
    # Kubernetes sends SIGTERM on every pod stop: the shutdown must reach serve's own clean-up (store and
    # journal locks) instead of uvicorn re-raising the signal and the default action killing the process.
    port = free_port()
    argv = [sys.executable, "-c", "from gpuwarden.cli import main; main()", "serve", "--port", str(port)]
    argv += ["--db", str(tmp_path / "serve.db")]
    env = {**os.environ, "GPUWARDEN_API_TOKEN": "sigterm-test-token-123"}
    url = f"http://127.0.0.1:{port}"
    alert = {"labels": {"alertname": "NodeDown", "cluster": "c1", "rack": "r01", "node": "r01-n01"}}

    def post_one_alert() -> None:
        auth = {"Authorization": "Bearer sigterm-test-token-123"}
        assert httpx.post(f"{url}/api/v2/alerts", json=[alert], headers=auth, timeout=10).status_code == 200
        while not httpx.get(f"{url}/api/v2/alerts", timeout=10).json():  # applied from the journal
            time.sleep(0.05)

    status = run_then_sigterm(
        argv, f"{url}/-/ready", tmp_path / "serve.log", env=env, meanwhile=post_one_alert
    )
    assert status == 0, (tmp_path / "serve.log").read_text()
    # A stopped server's store is its .db file alone (what `cp` of it takes): the WAL was checkpointed into
    # it at the stop. Before, the whole store stayed in serve.db-wal and serve.db held no table.
    copy = tmp_path / "copy.db"
    copy.write_bytes((tmp_path / "serve.db").read_bytes())
    with make_engine(str(copy)).connect() as conn:
        labels = conn.execute(text("SELECT labels FROM alerts")).scalars().all()
    assert [json.loads(x)["node"] for x in labels] == ["r01-n01"]


def test_a_journal_directory_that_comes_from_db_is_blamed_on_db_not_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``serve --db /proc/x/y.db`` said ``<environment>: alerting.journal_dir``: no variable set it, and
    the journal's place was derived from ``--db`` (beside the SQLite file)."""
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t0ken")
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["serve", "--db", "/proc/x/y.db", "--port", str(free_port())])
    said = " ".join(result.output.split())
    assert result.exit_code == 1, said
    assert (
        "error: --db '/proc/x/y.db': /proc/x/y.db.journal: cannot use it: cannot make anything in /proc"
        in said
    )
    assert "<environment>" not in said and "alerting.journal_dir" not in said


@pytest.mark.parametrize("given", ["--db", "api.db"])
def test_a_journal_directory_unusable_when_locked_names_where_the_store_came_from(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str
) -> None:
    """The directory was fine when checked, then was not (a standby waits hours): the lock-time error
    blames the option or setting that named the store, beside which the journal goes, as the check does."""
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    monkeypatch.setattr("gpuwarden.cli.preflight.check_journal_dir", lambda *_args: None)
    (tmp_path / "x.db.journal").write_text("not a directory")
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"api": {"db": str(tmp_path / "x.db")}} if given == "api.db" else {}))
    options = ["--db", str(tmp_path / "x.db")] if given == "--db" else []
    result = runner.invoke(app, ["serve", *options, "--config", str(config)])
    output = " ".join(result.output.split())
    assert result.exit_code == 1 and "Traceback" not in output, output
    named = f"--db '{tmp_path / 'x.db'}'" if given == "--db" else "api.db"
    assert f"{named}: " in output and "cannot use it" in output and "alerting.journal_dir" not in output
    assert (str(config) in output) == (given == "api.db")
    assert not (tmp_path / "x.db").exists()


def test_a_relist_during_serves_first_inventory_read_is_counted_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A continue token that expired (410 Gone) while serve first listed the cluster, before the engine
    existed, was logged but never counted in ``gpuwarden_inventory_relists_total``."""

    class Relisting:
        relists = 0
        expires = True  # the first page's token expires: listed again from the first page

        def read(self) -> StaticInventory:
            self.relists += self.expires
            self.expires = False
            return StaticInventory()

    source = Relisting()
    inventories = Inventories([], [(source, "kubernetes")], SystemClock())
    monkeypatch.setattr("gpuwarden.cli.serve_cmd.prepare_inventories", lambda _cfg: inventories)
    engine, _background, _routes, _outbox = build_service(GpuwardenConfig(), str(tmp_path / "s.db"))
    assert engine.counters["inventory_relists"] == 1
    inventories.read(engine)  # the next refresh lists once, without relisting
    assert engine.counters["inventory_relists"] == 1
    source.expires = True
    inventories.read(engine)  # and one that relists again is counted
    assert engine.counters["inventory_relists"] == 2


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("incidents.db", "{tmp}/incidents.db (--db)"),
        ("postgresql+psycopg://gw:secret@db:5432/gw", "postgresql+psycopg://gw:***@db:5432/gw (--db)"),
        (
            "postgresql+psycopg://gw@db/gw?password=secret",
            "postgresql+psycopg://gw@db/gw?password=*** (--db)",
        ),
        (None, "{tmp}/gpuwarden.db (api.db)"),
    ],
    ids=[
        "sqlite-relative",
        "postgres-password-hidden",
        "postgres-password-in-the-query-hidden",
        "default-in-the-working-directory",
    ],
)
def test_serve_says_at_start_which_store_it_opens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: str | None, shown: str
) -> None:
    """Without --db serve made gpuwarden.db in whatever directory it started in and said nothing of it (only
    of the journal beside it): an operator found incidents missing after starting it from another one."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    with socket.socket() as taken:  # it stops at the port: the store line comes before anything is opened
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        result = runner.invoke(app, ["serve", "--port", port, *(["--db", given] if given else [])])
    assert result.exit_code == 1, result.output
    messages = [json.loads(line)["msg"] for line in result.stderr.splitlines() if line.startswith("{")]
    assert f"store: {shown.format(tmp=tmp_path)}" in messages, result.stderr


@pytest.mark.parametrize(
    ("db", "warned"),
    [
        ("postgresql+psycopg://u:pw-secret@127.0.0.1:1/x", True),
        ("postgresql+psycopg://u@127.0.0.1:1/x?password=pw-secret", True),
        ("postgresql+psycopg://u@127.0.0.1:1/x", False),
    ],
    ids=["before-the-host", "in-the-query", "none"],
)
def test_serve_warns_that_a_password_given_with_db_is_in_the_process_list(
    monkeypatch: pytest.MonkeyPatch, db: str, warned: bool
) -> None:
    """Any user of the machine reads a process's arguments (``ps``, ``/proc/<pid>/cmdline``): a password
    in ``--db`` is theirs for as long as serve runs, though serve hides it in every line it writes."""
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    result = runner.invoke(app, ["serve", "--db", db])
    output = " ".join(result.output.split())
    said = "--db holds a password, which every user of this machine can read in the process list"
    assert (said in output) is warned and ("GPUWARDEN_API__DB" in output) is warned, output
    assert "pw-secret" not in output
