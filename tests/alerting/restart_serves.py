"""``serve``'s engine and outbox on one store, restarted or not, and the alerts the restart tests post."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from alerting import scenarios as sc
from alerting.db import make_engine
from alerting.engine import IncidentEngine
from alerting.inventory import StaticInventory
from alerting.notifiers.base import Notification, Notifier
from alerting.outbox import Outbox
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert, AlertStatus
from tests.alerting.outbox_only import Quiet
from tests.migrated_store import migrated_sqlite


class Serve:
    """An engine and its outbox on one SQLite store, as ``serve`` wires them; ``restart`` starts them anew."""

    def __init__(self, path: Path, **config: float) -> None:
        path.mkdir()
        self.db = str(path / "incidents.db")
        migrated_sqlite(path / "incidents.db").dispose()  # a copy of a store migrated once per process
        self.clock = FakeClock()
        self.config = AlertingConfig(**config)  # type: ignore[arg-type]
        self.inventory = sc.fleet_inventory()
        self.restart()

    def restart(self, *notifiers: Notifier) -> None:
        """A new engine and outbox, as the next serve starts them: with the inventory it reads then, and
        ``notifiers`` (one ``Quiet`` unless given)."""
        self.engine = IncidentEngine(make_engine(self.db), self.clock, self.config, self.inventory)
        self.outbox = Outbox(make_engine(self.db), list(notifiers) or [Quiet()], self.clock)
        self.engine.subscribe(self.outbox)

    def refresh(self, inventory: StaticInventory) -> None:
        """An inventory refresh (Slurm's, Kubernetes')."""
        self.inventory = inventory
        self.engine.replace_inventory(inventory)

    def incidents(self) -> list[tuple[str, str, str, int]]:
        rows = self.engine.store.list_rows()
        return sorted((r.root_kind, r.title, r.priority, n) for r, n in rows)

    def kinds(self) -> list[list[str]]:
        """The kinds of each incident's timeline events."""
        return [
            [e.kind for e in self.engine.store.get(r.id).timeline] for r, _ in self.engine.store.list_rows()
        ]

    def told(self) -> list[str]:
        return [Notification.model_validate_json(m.payload).change.value for m in self.outbox.messages()]


def _both(tmp_path: Path, steps: Callable[[Serve, bool], object], **config: float) -> tuple[Serve, Serve]:
    live, restarted = Serve(tmp_path / "live", **config), Serve(tmp_path / "restarted", **config)
    for serve, restart in ((live, False), (restarted, True)):
        steps(serve, restart)
    return live, restarted


_DOWN = Alert({"cluster": sc.CLUSTER, "alertname": "NodeDown", "node": "r03-n02"})


def _resolved(alert: Alert) -> Alert:
    """``alert`` posted resolved."""
    return Alert(alert.labels, status=AlertStatus.RESOLVED)


def _lost(node: str, gpu: int) -> Alert:
    labels = {"alertname": "GPULost", "Hostname": node, "gpu": str(gpu), "UUID": sc.gpu_uuid(node, gpu)}
    return Alert({"cluster": sc.CLUSTER, **labels})
