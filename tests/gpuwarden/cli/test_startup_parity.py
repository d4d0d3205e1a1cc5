"""``config validate`` says what ``serve``, ``anomaly run``, ``exporter`` and ``inference-server`` say at
their start from the configuration (and variables) alone, in the same words, at the same file, line and
field: a warning as a warning (exit 0), a refusal as an error (exit 1). Users run it in CI before they
deploy."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import typer
from click.testing import CliRunner

from gpuwarden.cli import app

COMMAND = typer.main.get_command(app)  # built once: Typer builds it again at each invoke (most of its time)

SERVE = ("serve", "--config", "{path}")
ANOMALY = ("anomaly", "run", "--config", "{path}", "--ticks", "1")
EXPORTER = ("exporter", "--config", "{path}")
DB = "api:\n  db: {tmp}/s.db\n"
# anomaly run's settings: a Prometheus nobody answers at (nothing is read if a row fails to stop it)
SCORED = "anomaly:\n  prometheus_url: http://127.0.0.1:1\n  detectors: [adaptive]\n"
QUERY = "  queries:\n    - {name: temp, expr: DCGM_FI_DEV_GPU_TEMP}\n"
# What stops each command once its warnings are said, in the variables alone: no token for serve; for
# anomaly run, an alert_url without one. config validate is run with the token: the warning alone, exit 0.
FORWARDS = "  alert_url: http://127.0.0.1:1\n"
ENDED = (datetime.now(UTC) - timedelta(days=1)).replace(microsecond=0).isoformat()


@dataclass(frozen=True)
class Row:
    """A file, the command that starts with it, and the setting or variable its start-up line names."""

    command: tuple[str, ...]
    text: str
    names: str
    token: str | None = None  # GPUWARDEN_API_TOKEN for both runs; a warning's start runs without one
    warning: bool = False
    env: dict[str, str] = field(default_factory=dict)


ROWS = {
    # serve's warnings
    "maintenance-window-ended": Row(
        SERVE,
        DB + "alerting:\n  maintenance_windows:\n    - matchers: [rack=r07]\n"
        f"      starts_at: 2020-01-01T00:00:00Z\n      ends_at: {ENDED}\n",
        "alerting.maintenance_windows[0].ends_at",
        warning=True,
    ),
    "webhook-bearer-over-http": Row(
        SERVE,
        DB + "webhooks:\n  - name: oncall\n    url: http://192.0.2.1/hook\n"
        "    bearer_token: {env: HOOK_TOKEN}\n",
        "webhooks[0].url",
        warning=True,
        env={"HOOK_TOKEN": "h"},
    ),
    "webhook-token-in-url-query": Row(  # passed in silence; config show masks it
        SERVE,
        DB + "webhooks:\n  - name: oncall\n    url: https://192.0.2.1/hook?api_key=k3y\n",
        "webhooks[0].url",
        warning=True,
    ),
    "sim-inventory-default-fleet": Row(
        SERVE, DB + "alerting:\n  sim_inventory: true\n", "alerting.sim_inventory", warning=True
    ),
    "slack-channel-a-name": Row(
        SERVE,
        DB + "slack:\n  bot_token: {env: SLACK_BOT_TOKEN}\n  channel: '#gpu-alerts'\n",
        "slack.channel",
        warning=True,
        env={"SLACK_BOT_TOKEN": "xoxb-1"},
    ),
    "slack-without-bot-token": Row(  # serve ran with Slack off, and said nothing of it
        SERVE, DB + "slack:\n  channel: C0123456789\n", "slack: no bot_token", warning=True
    ),
    "postgresql-store-without-journal-dir": Row(
        SERVE,
        "api:\n  db: postgresql+psycopg://gw@127.0.0.1:1/gw\n",
        "alerting.journal_dir",
        warning=True,
    ),
    # serve's refusals
    "serve-no-token": Row(SERVE, DB, "api.token"),
    # httpx loads SSL_CERT_FILE as it builds a client (a webhook's): a missing file was a traceback
    "serve-ssl-cert-file-missing": Row(
        SERVE,
        DB + "webhooks:\n  - name: oncall\n    url: http://127.0.0.1:1/hook\n",
        "SSL_CERT_FILE",
        token="t",
        env={"SSL_CERT_FILE": "/nonexistent/gpuwarden-ca.pem"},
    ),
    "serve-ssl-cert-file-missing-slack-charts": Row(  # the charts' Prometheus client loads it
        SERVE,
        DB + "slack:\n  bot_token: {env: SLACK_BOT_TOKEN}\n  channel: C0123456789\n"
        "  chart_prometheus_url: http://127.0.0.1:1\n",
        "SSL_CERT_FILE",
        token="t",
        env={"SSL_CERT_FILE": "/nonexistent/gpuwarden-ca.pem", "SLACK_BOT_TOKEN": "xoxb-1"},
    ),
    "serve-token-with-a-space": Row(SERVE, DB, "GPUWARDEN_API_TOKEN", token=" t"),
    # a database serve cannot open: validate said ok; serve refused it (SQLite: after making its lock file)
    "serve-store-not-supported": Row(
        SERVE, "api:\n  db: postgres://gw@127.0.0.1:1/gw\n", "api.db", token="t"
    ),
    "serve-store-driver-missing": Row(
        SERVE, "api:\n  db: sqlite+aiosqlite:///{tmp}/s.db\n", "api.db", token="t"
    ),
    "serve-listen-address-not-here": Row(
        SERVE, DB + "  listen_address: 203.0.113.7\n", "api.listen_address", token="t"
    ),
    # anomaly run's warnings
    "detector-without-its-queries": Row(
        ANOMALY, SCORED.replace("adaptive", "thermal") + FORWARDS + QUERY, "detector 'thermal'", warning=True
    ),
    "query-step-longer-than-the-tick": Row(
        ANOMALY, SCORED + "  infer_every_seconds: 10\n" + FORWARDS + QUERY, "step_seconds", warning=True
    ),
    # anomaly run's refusals
    "anomaly-no-queries": Row(ANOMALY, SCORED, "anomaly.queries", token="t"),
    "anomaly-in-process": Row(
        ANOMALY, SCORED + "  source: in-process\n" + QUERY, "anomaly.source", token="t"
    ),
    "alert-url-without-token": Row(ANOMALY, SCORED + FORWARDS + QUERY, "anomaly.alert_url"),
    "anomaly-ssl-cert-file-missing": Row(  # its Prometheus client loads it: a traceback
        ANOMALY, SCORED + QUERY, "SSL_CERT_FILE", token="t", env={"SSL_CERT_FILE": "/nonexistent/ca.pem"}
    ),
    "alert-url-token-with-a-space": Row(
        ANOMALY, SCORED + FORWARDS + QUERY, "GPUWARDEN_API_TOKEN", token=" t"
    ),
    "anomaly-listen-address-not-here": Row(
        ANOMALY[:-2], SCORED + "  listen_address: 203.0.113.7\n" + QUERY, "anomaly.listen_address", token="t"
    ),
    # the exporter's refusals
    "exporter-fleet-not-serve-s": Row(
        EXPORTER, "exporter:\n  simulate: 1x2\nsim:\n  gpus_per_node: 4\n", "sim.gpus_per_node"
    ),
    # inference-server's refusal: an OTEL_* variable it cannot honour
    "otel-protocol-not-http": Row(
        ("inference-server", "--config", "{path}", "--host", "203.0.113.7"),  # never serves
        "tracing:\n  service_name: toy\n",
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        env={
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "grpc",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:1/v1/traces",
        },
    ),
    "exporter-listen-address-not-here": Row(
        EXPORTER, "exporter:\n  listen_address: 203.0.113.7\n", "exporter.listen_address"
    ),
}


def said(output: str) -> list[str]:
    """The start-up's warning and error lines, as config validate prints them: ``warning: ...`` and ``error:
    ...`` (serve writes them as JSON lines unless told)."""
    lines = []
    for line in output.splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record["level"] in ("warning", "error"):
                lines.append(f"{record['level']}: {' '.join(record['msg'].split())}")
        elif line.startswith(("warning: ", "error: ")):
            lines.append(" ".join(line.split()))
    return lines


@pytest.mark.parametrize("row", ROWS.values(), ids=ROWS.keys())
def test_config_validate_says_what_the_command_says_at_its_start(
    row: Row, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # serve's journal of a server's store is under the working directory
    for name, value in row.env.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "gpuwarden.yaml"
    path.write_text(row.text.replace("{tmp}", str(tmp_path)))
    monkeypatch.delenv("GPUWARDEN_API_TOKEN", raising=False)
    if row.token is not None:
        monkeypatch.setenv("GPUWARDEN_API_TOKEN", row.token)
    started = CliRunner().invoke(COMMAND, [arg.format(path=path) for arg in row.command])
    assert started.exit_code == 78, started.output  # refused, or stopped once its warnings are said
    level = "warning" if row.warning else "error"
    lines = [line for line in said(started.output) if line.startswith(level) and row.names in line]
    assert lines, started.output  # the start-up says it: this row checks something
    if row.warning:
        monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    validated = CliRunner().invoke(COMMAND, ["config", "validate", str(path)])
    output = " ".join(validated.output.split())
    assert validated.exit_code == (0 if row.warning else 1), output
    for line in lines:
        assert line in output, f"{line!r} not in {output!r}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpuwarden.yaml"]  # neither made a file
