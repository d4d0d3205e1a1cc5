"""The night the reminding tests replay: a node down from 23:00, serve on a migrated store, what it told;
its restarts that the PostgreSQL test replays too."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, select, update
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

import alerting.db
from alerting import scenarios as sc
from alerting.engine import IncidentEngine
from alerting.matchers import parse_matcher
from alerting.notifiers.base import Notification
from alerting.outbox import Outbox
from alerting.store_models import IncidentRow
from alerting.subscriptions import IncidentChange
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert
from tests.alerting.outbox_only import Quiet
from tests.alerting.restart_serves import Serve
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


def _announced(sql: Engine, delay: float) -> tuple[FakeClock, AlertingConfig]:
    """A serve on ``sql`` whose node incident opens at 23:00 and is announced ``delay`` seconds later (stored:
    announced_at); its clock and configuration, for the restarts that follow."""
    clock, config = FakeClock(), AlertingConfig(announce_delay_seconds=delay)
    engine = IncidentEngine(sql, clock, config, sc.fleet_inventory())
    engine.subscribe(Outbox(sql, [Quiet()], clock))
    engine.ingest([_DOWN])
    clock.advance(delay)
    engine.tick()
    return clock, config


def a_restart_offers_the_outbox_no_opening_the_store_says_was_announced(db: str, delay: float) -> None:
    """The node's incident opens at 23:00 and is announced ``delay`` seconds later (stored: announced_at).
    serve restarts an hour later: its first tick announced it again, the outbox dropping the duplicate by its
    key, for every open incident (10,000 read and offered at start); the store says it was announced, so
    nothing is. With no delay it is announced in the instant it opened (a clock that did not move, or was set
    back): stored as its opening's time, it read as stored before 0019, offered again at every start."""
    sql = alerting.db.make_engine(db)
    try:
        clock, config = _announced(sql, delay)
        start = clock.now() - timedelta(seconds=delay)
        clock.advance(3600)
        engine = IncidentEngine(sql, clock, config, sc.fleet_inventory())  # the restart
        outbox = Outbox(sql, [Quiet()], clock)
        heard: list[IncidentChange] = []
        engine.subscribe(outbox)
        engine.subscribe(heard.append)
        clock.advance(5)
        engine.tick()
        assert heard == []
        assert outbox.stats.duplicates == 0
        told = [Notification.model_validate_json(m.payload).change.value for m in outbox.messages()]
        assert told == ["opened"]
        with Session(sql) as session:
            (announced,) = session.scalars(select(IncidentRow.announced_at))
        assert announced is not None and announced - start == timedelta(seconds=delay or 1e-6)
    finally:
        sql.dispose()


def an_incident_of_before_0019_is_stored_as_announced_at_the_end_of_its_delay(db: str, delay: float) -> None:
    """The first start after the upgrade stores an incident of before 0019 (``announced_at`` its opening's
    time) as announced at the end of its delay, a microsecond after its opening with none; shared with the
    PostgreSQL test."""
    sql = alerting.db.make_engine(db)
    try:
        clock, config = _announced(sql, delay)
        start = clock.now() - timedelta(seconds=delay)
        with sql.begin() as connection:  # as 0019 stores an incident of before it
            connection.execute(update(IncidentRow).values(announced_at=IncidentRow.opened_at))
        for _ in range(2):
            clock.advance(3600)
            engine = IncidentEngine(sql, clock, config, sc.fleet_inventory())  # a restart
            outbox = Outbox(sql, [Quiet()], clock)
            engine.subscribe(outbox)
            engine.tick()
            with Session(sql) as session:
                (announced,) = session.scalars(select(IncidentRow.announced_at))
            assert announced - start == timedelta(seconds=delay or 1e-6)
        assert outbox.stats.duplicates == 0  # the second start offered it nothing
    finally:
        sql.dispose()
