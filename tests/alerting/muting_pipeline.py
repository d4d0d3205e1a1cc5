"""The alert pipeline as serve runs it (mutes, inhibitions, then grouping), for muting and grouping tests."""

from __future__ import annotations

from sqlalchemy import Engine

from alerting.engine import IncidentEngine
from alerting.inventory import NodeInfo, StaticInventory, WorkloadInfo
from alerting.notifiers.recorder import RecordedMessage, SlackRecorder
from alerting.notifiers.slack import SlackNotifier, make_client
from alerting.notifiers.webhook import WebhookNotifier
from alerting.outbox import Outbox
from alerting.subscriptions import IncidentChange
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert, AlertStatus, WorkloadKind, WorkloadRef


class Pipeline:
    """serve's wiring: engine → outbox → Slack and a webhook, on one store and a fake clock."""

    def __init__(self, sql: Engine, recorder: SlackRecorder, announce_delay: float = 0) -> None:
        self.clock = FakeClock()
        self.announce_delay = announce_delay
        self.sql, self.recorder = sql, recorder
        self.changes: list[IncidentChange] = []
        client = make_client(recorder.token, base_url=recorder.base_url, rate_limit_retries=0)
        self.slack = SlackNotifier(client, "#gpu-incidents")
        self.hook = WebhookNotifier(f"{recorder.root_url}/hooks/ops", name="webhook:ops")
        self.outbox = Outbox(sql, [self.slack, self.hook], self.clock)
        self.engine = self.restart()

    def restart(self) -> IncidentEngine:
        """A new engine over the same store (a restart of serve)."""
        config = AlertingConfig(announce_delay_seconds=self.announce_delay)
        self.engine = IncidentEngine(self.sql, self.clock, config, _inventory())
        self.engine.subscribe(self.outbox)
        self.engine.subscribe(self.changes.append)
        return self.engine

    def ingest(self, labels: dict[str, str], status: AlertStatus = AlertStatus.FIRING) -> None:
        self.clock.advance(60)
        self.engine.ingest([Alert(labels, status=status)])
        self.outbox.dispatch_due()

    def tick(self, seconds: float) -> None:
        self.clock.advance(seconds)
        self.engine.tick()
        self.outbox.dispatch_due()

    def incident_id(self) -> str:
        return self.changes[0].incident.id

    def parent(self) -> RecordedMessage:
        [parent] = self.recorder.channel_messages()
        return parent

    def replies(self) -> list[str]:
        return [r.event for r in self.recorder.replies(self.parent().ts)]

    def hook_events(self) -> list[str]:
        return [body["event"]["kind"] for body in self.recorder.hook_posts("ops")]


def _inventory() -> StaticInventory:
    """A service with four replicas on n05 and four on n06: one lost GPU is P2, n05 down is P1."""
    chat = WorkloadRef(WorkloadKind.INFERENCE_SERVICE, "prod", "chat")
    units = tuple(frozenset({("c1", node, gpu)}) for node in ("n05", "n06") for gpu in range(4))
    nodes = [NodeInfo(name, "c1", "r1", 8) for name in ("n05", "n06")]
    return StaticInventory(nodes, [WorkloadInfo(chat, units)], {"c1": 0})
