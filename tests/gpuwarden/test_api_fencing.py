"""A server that lost its store lock acknowledges, applies and sends nothing (no split brain)."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from pydantic import SecretStr
from sqlalchemy import func, select

from alerting import scenarios
from alerting.applier import JournalApplier
from alerting.db import make_engine
from alerting.engine import IncidentEngine
from alerting.fencing import HELD, LockFence, LockState, LockStatus, NotActive
from alerting.journal import KIND_POSTABLE, AcceptJournal, applied_offset
from alerting.migrate import upgrade
from alerting.notifiers.recorder import SlackRecorder
from alerting.notifiers.slack import SlackNotifier, make_client
from alerting.outbox import PENDING, SENDING, Outbox
from alerting.store_models import IncidentRow
from gpuwarden.api import create_app
from gpuwarden.clock import FakeClock
from gpuwarden.config import ApiConfig
from tests.alerting.notifiers.incidents import lifecycle
from tests.gpuwarden.api_client import AUTH, TOKEN, TestClient

FIRING = {"labels": {"alertname": "NodeDown", "cluster": "c1", "node": "r02-n03"}}
WEBHOOK = {"version": "4", "status": "firing", "receiver": "gw", "groupLabels": {}, "alerts": [FIRING]}
LOST = LockStatus(LockState.LOST, "store gw is in use by another gpuwarden serve (pid 7 on host-b)")


class PausedLock:
    """A store lock and a monotonic clock: the test pauses the process and hands the lock to another."""

    def __init__(self) -> None:
        self.now = 0.0
        self.says = HELD

    def fence(self) -> LockFence:
        return LockFence(lambda: self.says, monotonic=lambda: self.now)

    def taken_during_a_pause(self, seconds: float = 10.0) -> None:
        self.says = LOST
        self.now += seconds


@pytest.fixture
def applier(tmp_path: Path) -> JournalApplier:
    sql = make_engine(str(tmp_path / "api.db"))
    upgrade(sql)
    engine = IncidentEngine(sql, FakeClock(), inventory=scenarios.fleet_inventory())
    return JournalApplier(AcceptJournal(tmp_path / "journal", lambda jid: applied_offset(sql, jid)), engine)


def _incidents(applier: JournalApplier) -> int:
    with applier.engine.store.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(IncidentRow)).scalar_one())


def test_a_resumed_server_that_lost_its_lock_answers_503_and_journals_nothing(
    applier: JournalApplier,
) -> None:
    lock = PausedLock()
    applier.fence = fence = lock.fence()
    app = create_app(applier.engine, ApiConfig(token=SecretStr(TOKEN)), applier=applier, fence=fence)
    with TestClient(app, raise_server_exceptions=False) as client:
        assert client.post("/api/v2/alerts", json=[FIRING], headers=AUTH).status_code == 200
        end = applier.journal.end
        lock.taken_during_a_pause()
        for path, body in (("/api/v2/alerts", [FIRING]), ("/api/v1/webhook/alertmanager", WEBHOOK)):
            refused = client.post(path, json=body, headers=AUTH)
            assert refused.status_code == 503, refused.text
            assert "lost the store lock" in refused.text and "pid 7 on host-b" in refused.text
        assert applier.journal.end == end
        ready = client.get("/-/ready")
        assert ready.status_code == 503 and "lost the store lock" in ready.text


def test_an_applier_that_lost_the_lock_applies_nothing(applier: JournalApplier) -> None:
    lock = PausedLock()
    applier.fence = lock.fence()
    applier.journal.append(KIND_POSTABLE, orjson.dumps([FIRING]), 1)
    lock.taken_during_a_pause()
    with pytest.raises(NotActive):
        applier.apply_available()
    assert applier.applied < applier.journal.end
    assert _incidents(applier) == 0


def test_an_outbox_that_lost_the_lock_sends_nothing() -> None:
    sql = make_engine("sqlite://")
    upgrade(sql)
    lock = PausedLock()
    with SlackRecorder() as recorder:
        notifier = SlackNotifier(make_client(recorder.token, base_url=recorder.base_url), "#gpu")
        outbox = Outbox(sql, [notifier], FakeClock())
        outbox.fence = lock.fence()
        for change in lifecycle():
            outbox(change)
        lock.taken_during_a_pause()
        assert outbox.dispatch_due() == 0
        assert recorder.channel_messages() == []
        assert {m.status for m in outbox.messages()} <= {PENDING, SENDING}


def test_an_outbox_that_lost_the_lock_marks_no_message_sending_and_the_active_one_sends_it_as_new() -> None:
    # The resumed server checks its lock before it marks a message in flight: one it marked and never sent
    # read as sent once to the server that took over, which looked for it in the channel's history
    # (conversations.history) before posting, and `outbox list` showed it sending, one attempt made.
    sql = make_engine("sqlite://")
    upgrade(sql)
    lock = PausedLock()
    with SlackRecorder() as recorder:
        client = make_client(recorder.token, base_url=recorder.base_url)
        outbox = Outbox(sql, [SlackNotifier(client, "#gpu")], FakeClock())
        outbox.fence = lock.fence()
        outbox(lifecycle()[0])
        lock.taken_during_a_pause()
        assert outbox.dispatch_due() == 0
        assert [(m.status, m.attempts) for m in outbox.messages()] == [(PENDING, 0)]
        active = Outbox(sql, [SlackNotifier(client, "#gpu")], FakeClock())
        assert active.dispatch_due() == 1
        assert {c.method for c in recorder.calls} == {"chat.postMessage"}  # no look for an earlier post
