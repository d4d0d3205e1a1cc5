"""An incident engine over a migrated SQLite store, and the alerts the engine's tests post to it."""

from __future__ import annotations

from alerting import scenarios
from alerting.db import make_engine
from alerting.engine import IncidentEngine
from alerting.inventory import NodeInfo, StaticInventory, WorkloadInfo
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert, IncidentState, WorkloadKind, WorkloadRef


def _engine(
    db: str, clock: FakeClock, inventory: StaticInventory | None = None, **cfg: object
) -> IncidentEngine:
    cfg.setdefault("announce_delay_seconds", 0)
    config = AlertingConfig(**cfg)  # type: ignore[arg-type]
    return IncidentEngine(make_engine(db), clock, config, inventory)


def _ingest_in_batches(engine: IncidentEngine, alerts: list[Alert], size: int = 25) -> None:
    for i in range(0, len(alerts), size):
        engine.ingest(alerts[i : i + size])


def _open(engine: IncidentEngine) -> list[tuple[str, str, str, dict[str, object], int]]:
    return [
        (r.id, r.priority, r.root_kind, r.root_target, n)
        for r, n in engine.store.list_rows()
        if r.state != IncidentState.RESOLVED.value
    ]


def _rack_down(db: str, clock: FakeClock) -> IncidentEngine:
    """An engine whose fleet has no spare GPUs, holding rack r07's outage (training job llm-70b stopped)."""
    engine = _engine(db, clock, scenarios.fleet_inventory(spare_gpus=0))
    engine.ingest(scenarios.rack_failure(7, clock.now()))
    return engine


def _gpu_alert(node: str, gpu: int, name: str = "GPUXid", **extra: str) -> Alert:
    return Alert({"alertname": name, "cluster": "c1", "Hostname": node, "gpu": str(gpu), **extra})


def _service_on_unknown_racks(service: str, prefix: str, nodes: int) -> StaticInventory:
    """Cluster k: nodes of no known rack, a replica of ``service`` on GPU 0 of each of the first four."""
    listed = [NodeInfo(f"{prefix}{i}", "k", "?", 8) for i in range(1, nodes + 1)]
    ref = WorkloadRef(WorkloadKind.INFERENCE_SERVICE, "serving", service, "k")
    units = tuple(frozenset({("k", f"{prefix}{i}", 0)}) for i in range(1, 5))
    return StaticInventory(listed, [WorkloadInfo(ref, units)], {"k": 0})
