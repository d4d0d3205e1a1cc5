"""`gpuwarden outbox list` of messages that wait behind an earlier message of their incident."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import SecretStr

from alerting.engine import IncidentEngine
from alerting.outbox import Outbox
from gpuwarden.api import create_app
from gpuwarden.cli import app
from gpuwarden.clock import FakeClock, rfc3339, shown
from gpuwarden.config import ApiConfig
from tests.alerting.notifiers.incidents import lifecycle
from tests.alerting.outbox_destinations import NOW, Destination
from tests.gpuwarden.api_client import TestClient, route_httpx
from tests.gpuwarden.cli.built_runner import BuiltCliRunner
from tests.integration.gpuwarden_server import TOKEN
from tests.migrated_store import migrated_sqlite

runner = BuiltCliRunner()
URL = "http://gpuwarden.test"


def test_list_says_a_message_waits_behind_one_backing_off_not_when_its_own_time_passed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Messages of an incident go in order: the two queued behind an opening that a webhook down refused 5
    # times showed "next attempt 00:04:00", a time past, as a message stuck shows it, while they go once the
    # opening went, at its next attempt, 00:04:32.
    sql = migrated_sqlite(tmp_path / "outbox.db")
    clock = FakeClock(NOW)
    outbox = Outbox(sql, [Destination("webhook:ops", mode="down")], clock)
    outbox(lifecycle()[0])
    for _ in range(4):
        outbox.dispatch_due()
        clock.advance(60)
    outbox.dispatch_due()  # its 5th attempt, at 00:04:00: the next one 32 s later
    for change in lifecycle()[1:3]:
        outbox(change)
    clock.advance(5)
    outbox.dispatch_due()  # the opening is not due yet: nothing is tried
    retried_at = datetime.fromtimestamp(NOW + 4 * 60 + 32, UTC)
    served = create_app(IncidentEngine(sql, clock), ApiConfig(token=SecretStr(TOKEN)), outbox=outbox)
    with TestClient(served, base_url=URL) as client:
        route_httpx(client, URL, monkeypatch)
        monkeypatch.setenv("GPUWARDEN_API_TOKEN", TOKEN)
        listed = runner.invoke(app, ["outbox", "list", "--url", URL, "-o", "json"])
        table = runner.invoke(app, ["outbox", "list", "--url", URL], env={"COLUMNS": "200"})
    assert listed.exit_code == table.exit_code == 0, listed.output
    opening, *behind = json.loads(listed.stdout)["messages"]
    assert opening["waiting_behind"] is None and opening["attempts"] == 5
    assert opening["next_attempt_at"] == rfc3339(retried_at)
    assert [m["waiting_behind"] for m in behind] == [
        {"id": opening["id"], "status": "pending", "next_attempt_at": rfc3339(retried_at)}
    ] * 2
    rows = [line for line in table.stdout.splitlines() if "inc-r07" in line]
    assert len(rows) == 3 and shown(retried_at) in rows[0]
    for row in rows[1:]:
        assert f"after message {opening['id']} (its next attempt {shown(retried_at)})" in row, table.stdout
        assert shown(datetime.fromtimestamp(NOW + 4 * 60, UTC)) not in row  # its own time, long passed
