"""The inventory over the API: ``GET /api/v1/inventory``, and the simulated fleet as an inventory.

``GET /api/v1/inventory`` answers the inventory correlation uses now, in the inventory file's format, with
where it came from and when each refreshed source was last read; routes and their auth are wired in
``gpuwarden.api``.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from alerting.engine import IncidentEngine
from alerting.inventory import NodeInfo, StaticInventory, WorkloadInfo
from alerting.inventory_file import inventory_data
from alerting.inventory_view import inventory_states
from alerting.store import NotFound
from gpuwarden.alertmanager_api import iso
from gpuwarden.model import GpuRef

if TYPE_CHECKING:  # types only: `serve` answers this API without loading the simulator
    from gpuwarden.sim.fleet import Fleet
    from gpuwarden.sim.workloads import InferenceService


class InventoryApi:
    """``GET /api/v1/inventory`` over the engine's current inventory."""

    def __init__(self, engine: IncidentEngine) -> None:
        self.engine = engine

    async def show_inventory(self, request: Request) -> Response:
        """The inventory correlation uses now, as an inventory file (``alerting.inventory_file`` reads it
        back), with where it came from, when it was read and when a refresh last failed."""
        inventory, read_at = self.engine.inventory_state
        source = self.engine.inventory_source
        if inventory is None:
            message = (
                f"the {source} inventory has not been read yet (see serve's log and"
                " gpuwarden_inventory_refresh_failures_total)"
                if source
                else "serve runs without an inventory: configure alerting.inventory_file, sim_inventory,"
                " slurm_inventory or kubernetes_inventory"
            )
            raise NotFound(message, field="inventory")
        if not isinstance(inventory, StaticInventory):
            raise NotFound(f"the {source or 'configured'} inventory cannot be listed", field="inventory")
        data = await run_in_threadpool(inventory_data, inventory)
        parts = [
            {
                "name": name,
                "read_at": iso(times.get("read_at")),
                "failed_at": iso(times.get("failed_at")),
                "stale": _stale(times.get("read_at"), times.get("failed_at")),
            }
            for name, times in list(self.engine.inventory_sources.items())
        ]
        about = {
            "source": source,
            "read_at": iso(read_at),
            "refresh_failures": self.engine.counters.get("inventory_refresh_failures", 0),
            "refreshed_sources": parts,
            "stale": any(p["stale"] for p in parts),
            # What the source said of each (the file format carries it too; older CLIs read it here): to
            # check the view against scontrol or kubectl, and why spare is what it is.
            **inventory_states(inventory),
        }
        return JSONResponse({"about": about, **data})


def _stale(read_at: datetime | None, failed_at: datetime | None) -> bool:
    """A refreshed source never read, or failed since its last read: its part is missing or old."""
    return read_at is None or (failed_at is not None and failed_at > read_at)


def inventory_from_fleet(fleet: Fleet) -> StaticInventory:
    """Adapt the simulated fleet to the engine's ``Inventory``: nodes, replicas, ranks and spare GPUs."""
    from exporters.simulated import sim_job_id  # noqa: PLC0415 - the simulator, for a simulated fleet only
    from gpuwarden.sim.workloads import TrainingJob  # noqa: PLC0415

    nodes = [
        NodeInfo(n.name, n.cluster, n.rack, len(n.gpus), tuple(g.uuid for g in n.gpus)) for n in fleet.nodes
    ]
    cluster_of = {n.name: n.cluster for n in fleet.nodes}
    placed: list[tuple[InferenceService | TrainingJob, list[GpuRef]]]
    placed = [(s, s.gpus) for s in fleet.inference_services()]
    placed += [(j, [g for _, g in sorted(j.ranks.items())]) for j in fleet.training_jobs()]
    workloads = [  # the simulator places each workload in one cluster, as Kubernetes and Slurm do
        WorkloadInfo(
            replace(w.ref, cluster=w.cluster),
            tuple(frozenset({(cluster_of[g.node], g.node, g.index)}) for g in gpus),
            # The Slurm job id the simulated exporter labels a training job's GPUs with (slurm_job): one
            # job, not a second "training job 8171" beside "training job pretrain-01" in the impact.
            aliases=(str(sim_job_id(w)),) if isinstance(w, TrainingJob) else (),
        )
        for w, gpus in placed
    ]
    used = {gpu for w in workloads for gpu in w.gpus}
    spare: dict[str, int] = {}
    for n in fleet.nodes:
        free = (
            sum(1 for g in n.gpus if (n.cluster, n.name, g.index) not in used and not g.lost) if n.up else 0
        )
        spare[n.cluster] = spare.get(n.cluster, 0) + free
    return StaticInventory(nodes, workloads, spare)
