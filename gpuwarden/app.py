"""Composition root: wires the stages into one pipeline over the simulated fleet.

simulated fleet -> NVML collectors (exporter) -> anomaly service -> incident engine -> outbox -> Slack
(a local recording stand-in). Everything runs on one fake clock, so a demo lives hours in seconds and the
same run gives the same story every time.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from alerting.db import make_engine
from alerting.engine import IncidentEngine
from alerting.migrate import upgrade
from alerting.notifiers.recorder import SlackRecorder
from alerting.notifiers.slack import SlackNotifier
from alerting.outbox import Outbox
from anomaly.service import AnomalyService
from anomaly.sources import CollectorSource
from exporters.simulated import SimCollectors, sim_collectors
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig, SlackConfig
from gpuwarden.config_anomaly import AnomalyConfig
from gpuwarden.inventory_api import inventory_from_fleet
from gpuwarden.model import Alert, AlertStatus, Incident
from gpuwarden.sim import Fleet, build_fleet


@dataclass
class TickReport:
    """What one pipeline tick produced."""

    raised: list[Alert] = field(default_factory=list)
    resolved: list[Alert] = field(default_factory=list)
    opened: list[str] = field(default_factory=list)
    delivered: int = 0


@dataclass
class SimulatedPipeline:
    """Every stage over one simulated fleet, advanced tick by tick on a fake clock."""

    clock: FakeClock
    fleet: Fleet
    nvml: SimCollectors
    anomaly: AnomalyService
    engine: IncidentEngine
    outbox: Outbox
    slack: SlackRecorder
    interval: float
    alerts_raised: int = 0
    alerts_resolved: int = 0

    def tick(self) -> TickReport:
        """Advance one collection interval and push everything one stage further."""
        self.clock.advance(self.interval)
        self.nvml.pump_xids()
        result = self.anomaly.infer()
        report = TickReport(raised=list(result.raised), resolved=list(result.resolved))
        changed = result.changes()
        if changed:
            report.opened = self.engine.ingest(changed).opened
        self.engine.tick()
        report.delivered = self.outbox.dispatch_due()
        self.alerts_raised += len(result.raised)
        self.alerts_resolved += len(result.resolved)
        return report

    def run(self, seconds: float, on_tick: Callable[[TickReport], None] | None = None) -> None:
        """Tick for ``seconds`` of simulated time."""
        for _ in range(round(seconds / self.interval)):
            report = self.tick()
            if on_tick is not None:
                on_tick(report)

    def incidents(self) -> list[Incident]:
        """Every incident, newest first."""
        return [self.engine.store.get(row.id) for row, _count in self.engine.store.list_rows()]

    def close(self) -> None:
        """Stop the Slack stand-in."""
        self.slack.stop()


def build_simulated_pipeline(
    db_path: Path,
    *,
    nodes: int = 8,
    gpus_per_node: int = 8,
    racks: int = 2,
    seed: int = 7,
    interval: float = 10.0,
) -> SimulatedPipeline:
    """Build the whole pipeline on a fresh simulated fleet and a SQLite store at ``db_path``."""
    clock = FakeClock()
    fleet = build_fleet(nodes, gpus_per_node, seed=seed, clock=clock, racks_per_cluster=racks)
    nodes_nvml = sim_collectors(fleet, clock)
    anomaly = AnomalyService(
        AnomalyConfig(infer_every_seconds=interval), [CollectorSource(nodes_nvml.collectors, clock)], clock
    )
    sql = make_engine(str(db_path))
    upgrade(sql)
    engine = IncidentEngine(sql, clock, AlertingConfig(), inventory_from_fleet(fleet))
    slack = SlackRecorder().start()
    slack_cfg = SlackConfig.model_validate(
        {"bot_token": slack.token, "base_url": slack.base_url, "channel": "#gpu-incidents"}
    )
    outbox = Outbox(sql, [SlackNotifier.from_config(slack_cfg, clock=clock)], clock)
    engine.subscribe(outbox)
    return SimulatedPipeline(clock, fleet, nodes_nvml, anomaly, engine, outbox, slack, interval)


def firing(alerts: list[Alert]) -> list[Alert]:
    """Only the firing ones."""
    return [a for a in alerts if a.status == AlertStatus.FIRING]
