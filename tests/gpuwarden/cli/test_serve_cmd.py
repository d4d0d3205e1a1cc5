"""`gpuwarden serve` wired and running: Slack, webhooks and the outbox, the inventory, its ticks, inventory
failures and relists, and stopping on SIGTERM."""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from types import SimpleNamespace

import httpx
import pytest
import yaml
from pydantic import SecretStr
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from starlette.routing import Route
from typer.testing import CliRunner

from alerting import scenarios
from alerting.db import make_engine
from alerting.engine import IncidentEngine
from alerting.health import ServiceHealth
from alerting.inventory import StaticInventory
from alerting.inventory_file import inventory_data
from alerting.migrate import upgrade
from alerting.outbox import Outbox
from alerting.subscriptions import ChangeKind, IncidentChange
from gpuwarden.api import create_app
from gpuwarden.cli import app
from gpuwarden.cli.inventories import Inventories
from gpuwarden.cli.preflight import check_serve
from gpuwarden.cli.serve_cmd import _started, _tick_loop, build_service
from gpuwarden.clock import FakeClock, SystemClock
from gpuwarden.config import AlertingConfig, ApiConfig, GpuwardenConfig
from gpuwarden.errors import SourceError
from gpuwarden.graceful import StopRequest
from gpuwarden.model import Alert
from tests.alerting.notifiers.incidents import lifecycle
from tests.gpuwarden.api_client import AUTH, TOKEN, TestClient
from tests.gpuwarden.cli.stopping import run_then_sigterm
from tests.integration.servers import READY_SECONDS, free_port, ipv6_loopback, running, sigterm_once

runner = CliRunner()


def test_serve_refuses_to_start_without_a_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GPUWARDEN_API_TOKEN", raising=False)
    result = runner.invoke(app, ["serve", "--db", str(tmp_path / "x.db")])
    assert result.exit_code == 78
    assert "GPUWARDEN_API_TOKEN" in result.output


def test_slack_token_and_signing_secret_wire_the_outbox_and_the_button_endpoint(tmp_path: Path) -> None:
    cfg = GpuwardenConfig()
    cfg.slack.bot_token = SecretStr("xoxb-test")
    cfg.slack.signing_secret = SecretStr("signing")
    cfg.slack.base_url = "http://127.0.0.1:9/api/"
    engine, background, routes, _ = build_service(cfg, str(tmp_path / "s.db"))
    assert len(background) == 3  # engine tick, outbox dispatcher and the stop of the Slack presses
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
        dropped = c.post(
            "/api/v1/outbox/discard", headers=AUTH, json={"notifier": "webhook:gone", "by": "alice"}
        )
        assert dropped.status_code == 200 and dropped.json()["total"] == 5
        assert c.post("/api/v1/outbox/retry", headers=AUTH).json() == {"requeued": 0, "overtaken": 0}


def test_inventory_file_from_config_reaches_the_engine(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_text(yaml.safe_dump(inventory_data(scenarios.fleet_inventory())))
    cfg = GpuwardenConfig()
    cfg.alerting.inventory_file = str(path)
    engine, _, _, _ = build_service(cfg, str(tmp_path / "s.db"))
    assert engine.inventory is not None and engine.inventory.node("r07-n01") is not None


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


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_serve_writes_an_ipv6_address_in_brackets_where_it_listens_and_where_it_cannot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # "serving on ::1:8080" and "cannot listen on ::1:8080" read as no address and port at all.
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "ipv6-test-token-123")
    with socket.socket(socket.AF_INET6) as taken:
        taken.bind(("::1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        refused = runner.invoke(
            app, ["serve", "--host", "::1", "--port", str(busy), "--db", str(tmp_path / "a.db")]
        )
    assert refused.exit_code == 75
    assert f"--port {busy}: cannot listen on [::1]:{busy}: Address already in use" in " ".join(
        refused.output.split()
    )
    port = free_port()
    argv = [sys.executable, "-c", "from gpuwarden.cli import main; main()", "serve", "--host", "::1"]
    argv += ["--port", str(port), "--db", str(tmp_path / "serve.db")]
    with running(argv, f"http://[::1]:{port}/-/ready", tmp_path / "serve.log"):
        pass
    assert f"serving on [::1]:{port}" in (tmp_path / "serve.log").read_text()


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


def test_serve_says_in_one_line_that_it_creates_the_store_and_nothing_of_it_at_the_next_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # alembic logged 24 lines at a first start (4 of its dialect, 1 per migration) and 4 at every later one.
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "migrate-log-test-token-123")
    argv = [sys.executable, "-c", "from gpuwarden.cli import main; main()", "serve"]
    argv += ["--db", str(tmp_path / "serve.db")]
    said = []
    for start in ("first", "second"):
        port = free_port()
        log = tmp_path / f"{start}.log"
        with running([*argv, "--port", str(port)], f"http://127.0.0.1:{port}/-/ready", log):
            pass
        said.append([json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")])
    own = ("gpuwarden.serve", "gpuwarden.forced_stop")  # serve's, and the stop signal's (running() stops it)
    first, second = ([line["msg"] for line in lines if line["logger"] not in own] for lines in said)
    head = "0026_kept_inventory"
    assert first[0] == f"store schema: new store, creating it at {head} (26 migrations)"
    assert first[1].startswith(f"store schema: now at {head} (")
    assert len(first) == 2 and second == []


def test_sigterm_while_the_store_does_not_answer_at_start_stops_serve_with_exit_0(tmp_path: Path) -> None:
    """A pod stopped while serve's PostgreSQL store does not answer yet (a database starting beside it, a
    network partition): serve waited out its connect timeout, then failed as a crash would, exit 1 and
    `error: ... cannot open the store`, for a stop that was asked for. It stops as at any other point of its
    start: exit 0, said in a line, nothing served."""
    silent = socket.create_server(("127.0.0.1", 0))  # a database that takes the connection and never answers
    cfg = tmp_path / "gpuwarden.yaml"
    cfg.write_text(
        f"store:\n  connect_timeout_seconds: 3\nalerting:\n  journal_dir: {tmp_path / 'journal'}\n"
    )
    db = f"postgresql+psycopg://gpuwarden@127.0.0.1:{silent.getsockname()[1]}/gpuwarden"
    argv = [sys.executable, "-c", "from gpuwarden.cli import main; main()", "serve", "--config", str(cfg)]
    env = {**os.environ, "GPUWARDEN_API_TOKEN": "stop-at-start-token-123"}
    log = tmp_path / "log"
    with silent, ExitStack() as held:

        def connecting(_: subprocess.Popen[bytes]) -> None:
            silent.settimeout(READY_SECONDS)
            held.enter_context(silent.accept()[0])  # serve is connecting to its store; held until it exits

        code = sigterm_once(
            [*argv, "--db", db, "--port", str(free_port()), "--log-format", "text"], log, connecting, env=env
        )
    text = log.read_text()
    assert code == 0, text
    assert "serve: stopped before serving: a stop signal came while it started" in text, text
    assert "error:" not in text and "Traceback" not in text, text


def test_a_plain_start_stopped_before_serving_says_so_not_that_a_handover_was_stopped(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A SIGTERM while a plain (non-standby) serve starts: it said 'a stop signal came during the handover',
    although no standby waited and nothing was handed over."""
    stop = StopRequest()
    stop._handle(signal.SIGTERM, None)  # the signal, as it comes while the service is built
    cfg = GpuwardenConfig.model_validate({"alerting": {"journal_dir": str(tmp_path / "journal")}})
    where = ("127.0.0.1", free_port(), "--host", "--port")
    with caplog.at_level(logging.INFO, logger="gpuwarden.serve"):
        started = _started(
            cfg, str(tmp_path / "s.db"), "--db", standby=False, where=where, stop=stop, no_token=None
        )
    assert started is None
    said = [r.getMessage() for r in caplog.records if "stopped before serving" in r.getMessage()]
    assert said == ["serve: stopped before serving: a stop signal came while it started; lock released"]
