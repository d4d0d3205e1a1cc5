"""The night the reminding tests replay: a node down from 23:00, serve on a migrated store, what it told."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.exc import OperationalError

from alerting import scenarios as sc
from alerting.matchers import parse_matcher
from alerting.notifiers.base import Notification
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert
from tests.alerting.test_restart_equivalence import Serve
from tests.migrated_store import migrated_sqlite

# A node fell off the fleet at 23:00 and stays down: its alert fires without a break all night.
_DOWN = Alert({"cluster": sc.CLUSTER, "alertname": "NodeDown", "node": "r05-n03"})
_NIGHT = 9 * 3600
_TICK = 1200  # serve ticks every 5 s; one each 20 minutes keeps the test cheap and the reminders on the hour


class _Serve(Serve):
    """``Serve`` on a copy of a migrated store (``migrated_sqlite``), not one migrated anew."""

    def __init__(self, path: Path, remind_after_seconds: float = 14400) -> None:
        path.mkdir()
        self.db = str(path / "incidents.db")
        migrated_sqlite(Path(self.db)).dispose()
        self.clock = FakeClock()
        self.config = AlertingConfig(remind_after_seconds=remind_after_seconds)
        self.inventory = sc.fleet_inventory()
        self.restart()


def _told(serve: Serve) -> list[Notification]:
    """Every change serve handed its outbox, in order."""
    return [Notification.model_validate_json(m.payload) for m in serve.outbox.messages()]


def _reminders(serve: Serve) -> list[Notification]:
    return [n for n in _told(serve) if n.event_kind == "reminder"]


def _advance_to(serve: Serve, start: datetime, second: float) -> None:
    """Move serve's clock to ``second`` seconds after ``start``."""
    serve.clock.advance(second - (serve.clock.now() - start).total_seconds())


def _failing_store(incident_ids: Any) -> None:
    """``_store_announced`` as the store answers when it fails just after the outbox took an opening."""
    if incident_ids:
        raise OperationalError("UPDATE", None, Exception("store down"))


def _past_due_muted(tmp_path: Path, **config: object) -> tuple[_Serve, str, str]:
    """The node's incident, announced at 23:00:10; its alert silenced (its own labels, 12 h) at 23:01; then
    ticked at 03:01, past its reminder time but muted: the incident and the silence's ids."""
    serve = _Serve(tmp_path / "serve")
    if config:
        serve.config = AlertingConfig(**config)  # type: ignore[arg-type]
        serve.restart()
    serve.engine.ingest([_DOWN])
    [incident_id] = serve.engine.open_incident_ids()
    serve.clock.advance(serve.config.announce_delay_seconds)
    serve.engine.tick()
    serve.clock.advance(60)
    now = serve.clock.now()
    matchers = [parse_matcher('alertname="NodeDown"'), parse_matcher('node="r05-n03"')]
    silence_id = serve.engine.add_silence(matchers, now, now + timedelta(hours=12), "alice")
    serve.clock.advance(4 * 3600)
    serve.engine.tick()
    assert _reminders(serve) == []
    return serve, incident_id, silence_id
