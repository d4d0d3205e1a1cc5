"""An engine and its outbox wired as serve wires them, the kinds queued, and an outbox store that fails."""

from __future__ import annotations

from sqlalchemy.exc import OperationalError

from alerting import scenarios
from alerting.db import make_engine
from alerting.engine import IncidentEngine
from alerting.notifiers.base import Notification
from alerting.outbox import Outbox
from alerting.subscriptions import ChangeKind, IncidentChange
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from tests.alerting.outbox_only import Quiet


def _serve(db: str, clock: FakeClock) -> tuple[IncidentEngine, Outbox]:
    """An engine and its outbox on the store, as ``serve`` wires them."""
    config = AlertingConfig(announce_delay_seconds=0, quiet_period_seconds=60)
    engine = IncidentEngine(make_engine(db), clock, config, scenarios.fleet_inventory())
    outbox = Outbox(make_engine(db), [Quiet()], clock)
    engine.subscribe(outbox)
    return engine, outbox


def _kinds(outbox: Outbox) -> list[ChangeKind]:
    return [Notification.model_validate_json(m.payload).change for m in outbox.messages()]


def _down(change: IncidentChange) -> int:
    raise OperationalError("INSERT INTO notification_outbox", {}, Exception("server closed the connection"))
