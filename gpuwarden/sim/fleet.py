"""The simulated fleet: topology, workloads, lazily advanced dynamics, fault injection and recovery.

One lock guards everything, so an HTTP thread can inject while a collector thread reads and an event
thread waits. State advances in fixed steps up to ``clock.time()`` whenever somebody reads, so the same
seed and the same sequence of clock times give the same values. What each fault does to a GPU (an XID's
counters, the effects of the active faults, what a reset clears) is in ``gpuwarden.sim.faulteffects``.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from gpuwarden.clock import Clock, SystemClock
from gpuwarden.errors import InputError
from gpuwarden.labelnumbers import label_number
from gpuwarden.model import GpuRef
from gpuwarden.sim.dynamics import Demand, GpuEffects, inference_activity, step_gpu
from gpuwarden.sim.events import EventQueue, GpuEvent
from gpuwarden.sim.faulteffects import RESET_KEEPS, RMA_XID, clear_on_reset, gpu_effects, is_rma, record_xid
from gpuwarden.sim.faults import ACTION_KINDS, ALREADY_ENDED, PERSISTENT_XIDS, FaultRecord, FaultSpec
from gpuwarden.sim.topology import SimGpu, SimNode, build_nodes
from gpuwarden.sim.workloads import InferenceService, TrainingJob, place_workloads

if TYPE_CHECKING:  # only an annotation: `gpuwarden --help` starts without the configuration model
    from gpuwarden.config import SimConfig

STEP_SECONDS = 1.0
MAX_CATCHUP_STEPS = 900  # beyond this, steps get coarser instead of more numerous
WARMUP_STEPS = 30
WARMUP_DT = 5.0

EVENT_XID = 0x8  # nvmlEventTypeXidCriticalError
EVENT_DBE = 0x2  # nvmlEventTypeDoubleBitEccError
_UNREADABLE = GpuEffects()  # what acts on a GPU that runs nothing: no fault, no work
_IDLE = Demand()  # frozen: one for every GPU without work, rather than one per GPU per step
# ``Demand(...)`` runs the NamedTuple's generated Python ``__new__``; ``tuple.__new__`` given all three fields
# builds the same tuple in C, for less than half the cost (once per busy GPU per step).
_new_tuple = tuple.__new__

Key = tuple[str, int]
# One GPU as a step reads it: the GPU, its key, RNG, inference phase, process id and placed workload.
_Slot = tuple[SimGpu, Key, random.Random, float, int, "InferenceService | TrainingJob | None"]


class Fleet:
    """A deterministic simulated fleet of nodes with GPUs, workloads and injectable faults."""

    def __init__(self, nodes: list[SimNode], clock: Clock, *, seed: int = 0, warm_up: bool = True) -> None:
        """``warm_up=False`` leaves out the steps that heat the GPUs as a running fleet's are: for a caller
        that reads topology and placement only (``sim show``, ``alerting.sim_inventory``), which the
        warm-up does not change (30 steps of every GPU: 15 s for 2,048 nodes)."""
        self.clock = clock
        self.seed = seed
        self._lock = threading.RLock()
        self._nodes = nodes
        self._by_name = {n.name: n for n in nodes}
        self._gpus: dict[Key, SimGpu] = {(g.node, g.index): g for n in nodes for g in n.gpus}
        self._effects: dict[Key, GpuEffects] = {k: GpuEffects() for k in self._gpus}
        self._speed: dict[Key, float] = dict.fromkeys(self._gpus, 1.0)
        self._rng: dict[Key, random.Random] = {
            k: random.Random(f"gpuwarden-sim-{seed}-{k[0]}-{k[1]}") for k in self._gpus
        }
        self._phase: dict[Key, float] = {k: self._rng[k].uniform(0.0, 6.283) for k in self._gpus}
        self._pid: dict[Key, int] = {
            (g.node, g.index): 4000 + 100 * n_i + g.index for n_i, n in enumerate(nodes) for g in n.gpus
        }
        start = clock.time()
        self.stepped_to = start  # the clock time the state stands at; read it, never set it
        self._stepping = False
        placement = place_workloads(nodes, start)
        self._services = placement.services
        self._jobs = placement.jobs
        for job in self._jobs:
            job._sync = self.advance
        self._workload_of = placement.by_gpu
        # What a step reads per GPU that never changes (placement ignores drains), looked up once here.
        self._plan: list[tuple[SimNode, list[_Slot]]] = [(n, [self._slot(g) for g in n.gpus]) for n in nodes]
        self._active: dict[str, FaultRecord] = {}
        self.fault_log: list[FaultRecord] = []
        self._subs: dict[Key, list[tuple[EventQueue, int]]] = {k: [] for k in self._gpus}
        self._next_id = 1
        for _ in range(WARMUP_STEPS if warm_up else 0):  # the fleet was running before we looked at it
            self._step(start, WARMUP_DT, jobs=False)

    # --- topology --------------------------------------------------------------------------------

    @property
    def nodes(self) -> list[SimNode]:
        """All nodes in name order."""
        return list(self._nodes)

    def node(self, name: str) -> SimNode:
        """A node by name; ``InputError`` listing a few valid names when unknown."""
        node = self._by_name.get(name)
        if node is None:
            names = ", ".join(n.name for n in self._nodes[:5])
            more = " ..." if len(self._nodes) > 5 else ""
            raise InputError(f"unknown node {name!r}; valid nodes: {names}{more}", field="node")
        return node

    def gpu(self, node: str, index: int) -> SimGpu:
        """A GPU by node name and index; ``InputError`` when it does not exist."""
        n = self.node(node)
        if not 0 <= index < len(n.gpus):
            raise InputError(f"{node} has no GPU {index}; valid indices: 0..{len(n.gpus) - 1}", field="gpu")
        return n.gpus[index]

    def gpu_refs(self) -> list[GpuRef]:
        """Every GPU as a core-model reference, in node then index order."""
        return [g.ref for n in self._nodes for g in n.gpus]

    def inference_services(self) -> list[InferenceService]:
        """The inference services (state advanced to now)."""
        with self._lock:
            self._advance()
            return list(self._services)

    def training_jobs(self) -> list[TrainingJob]:
        """The training jobs (state advanced to now)."""
        with self._lock:
            self._advance()
            return list(self._jobs)

    def workload_on(self, node: str, index: int) -> InferenceService | TrainingJob | None:
        """The workload placed on a GPU, if any (placement ignores drains)."""
        return self._workload_of.get((node, index))

    def gpu_speed_factor(self, node: str, index: int) -> float:
        """1.0 healthy; < 1 throttled or straggling; 0.0 lost, hung, node down or drained.

        A hang started or ended since the last step shows at once: the step's speed would say it only at the
        next step, a simulated second later (100 s of an inference server run at ``--sim-speedup 0.01``,
        answering 503 all that time after ``sim clear`` or a reset, and 200 after the hang began)."""
        with self._lock:
            self._advance()
            self.gpu(node, index)
            speed = self._speed_of(node, index)
            effects = self._effects[(node, index)]
            if effects.hung:
                return 0.0
            if speed == 0.0 and self._node_serves(node, index):  # hung at the last step, not any more
                return min(1.0, effects.capability())
            return speed

    def _node_serves(self, node: str, index: int) -> bool:
        """Whether the GPU's node is up and undrained and the GPU on its bus: what a hang does not cover."""
        n = self._by_name[node]
        return n.up and not n.drained and not self._gpus[(node, index)].lost

    @property
    def state_lock(self) -> AbstractContextManager[Any]:
        """Hold it to read values together with ``stepped_to``: no step is half done while it is held."""
        return self._lock

    # --- dynamics --------------------------------------------------------------------------------

    def advance(self) -> None:
        """Bring the state up to ``clock.time()``; nearly free when no step is due (a hot caller can test
        ``clock.time() - stepped_to < STEP_SECONDS`` itself and skip even this call)."""
        if self.clock.time() - self.stepped_to < STEP_SECONDS:
            return
        with self._lock:
            self._advance()

    def _advance(self) -> None:
        gap = self.clock.time() - self.stepped_to
        if gap < STEP_SECONDS or self._stepping:
            return
        steps = int(gap // STEP_SECONDS)
        dt = STEP_SECONDS
        if steps > MAX_CATCHUP_STEPS:
            dt = steps * STEP_SECONDS / MAX_CATCHUP_STEPS
            steps = MAX_CATCHUP_STEPS
        self._stepping = True
        try:
            for _ in range(steps):
                # The stamp moves only once the state has reached it: a reader that finds no step due reads
                # without the lock, so it must never see a time ahead of the values.
                now = self.stepped_to + dt
                self._step(now, dt)
                self.stepped_to = now
        finally:
            self._stepping = False

    def _slot(self, gpu: SimGpu) -> _Slot:
        key = (gpu.node, gpu.index)
        return gpu, key, self._rng[key], self._phase[key], self._pid[key], self._workload_of.get(key)

    def _speed_of(self, node: str, index: int) -> float:
        n = self._by_name[node]
        if not n.up or n.drained or self._gpus[(node, index)].lost:
            return 0.0
        return self._speed[(node, index)]

    def _step(self, now: float, dt: float, *, jobs: bool = True) -> None:
        if self._active:
            for rec in [r for r in self._active.values() if r.planned_end is not None]:
                if rec.planned_end is not None and rec.planned_end <= now:
                    self._end(rec, "duration", rec.planned_end)
        stalled = {id(job): any(v <= 0.0 for v in job._speed.values()) for job in self._jobs}
        slowest = {
            id(job): min((self._speed_of(r.node, r.index) for r in job.ranks.values()), default=1.0)
            for job in self._jobs
        }
        speed, effects = self._speed, self._effects
        for node, slots in self._plan:
            if not node.up:
                for gpu, *_ in slots:
                    gpu.pids = []
                    self._cool(gpu, dt)
                continue
            drained = node.drained
            for gpu, key, rng, phase, pid, placed in slots:
                if gpu.lost:
                    self._cool(gpu, dt)
                    continue
                work = None if drained else placed
                demand = _IDLE
                if isinstance(work, TrainingJob):
                    own = speed[key]
                    busy = not stalled[id(work)] and own > 0
                    # Faster ranks wait for the slowest one at every collective.
                    activity = 0.95 * slowest[id(work)] / own if busy else 0.0
                    activity = activity if activity < 0.95 else 0.95  # min(0.95, ...): see dynamics
                    demand = _new_tuple(Demand, (activity, "train", work.memory_bytes))
                elif isinstance(work, InferenceService):
                    activity = inference_activity(work.base_util, now, phase, rng)
                    demand = _new_tuple(Demand, (activity, "infer", work.memory_bytes))
                speed[key] = step_gpu(gpu, effects[key], demand, dt, rng)
                gpu.pids = [pid] if (demand.mem_target or gpu.state.leak_bytes) else []
        if jobs:
            for job in self._jobs:
                job.update(now, dt, self._speed_of)

    def _cool(self, gpu: SimGpu, dt: float) -> None:
        """A GPU nobody can read (off the bus, node down) runs nothing: it cools as an idle one does, so it
        comes back at an idle GPU's temperature, not at the one it had when it was lost."""
        step_gpu(gpu, _UNREADABLE, _IDLE, dt, self._rng[(gpu.node, gpu.index)])

    # --- faults ----------------------------------------------------------------------------------

    def inject(self, spec: FaultSpec) -> str:
        """Start a fault (or run a recovery action given as a kind); return its id."""
        with self._lock:
            self._advance()
            node, gpu = self.check_target(spec)
            if spec.kind == "reset_gpu" and not node.up:
                raise InputError(f"{node.name} is down; reboot it before resetting a GPU", field="node")
            now = self.clock.time()
            duration = spec.params.get("duration")
            rec = FaultRecord(
                id=f"f-{self._next_id:04d}",
                spec=spec,
                started_at=now,
                planned_end=now + duration if duration else None,
            )
            self._next_id += 1
            self.fault_log.append(rec)
            if spec.kind in ACTION_KINDS:
                rec.ended_at, rec.end_reason = now, "action"
                self._run_action(spec)
                return rec.id
            self._active[rec.id] = rec
            if spec.kind == "xid" and gpu is not None:
                self._xid_effects(gpu, spec)
                if spec.xid not in PERSISTENT_XIDS:
                    self._end(rec, "event", now)
            elif spec.kind == "nvlink_down" and gpu is not None and spec.link is not None:
                gpu.nvlink_errors[spec.link][1] += 1  # DL_RECOVERY: the link tried and failed
            self._refresh(node)
            return rec.id

    def check_target(self, spec: FaultSpec) -> tuple[SimNode, SimGpu | None]:
        """The node and GPU a spec aims at; ``InputError`` naming valid choices when they do not exist."""
        node = self.node(spec.node)
        gpu = self.gpu(spec.node, spec.gpu) if spec.gpu is not None else None
        if gpu is not None and spec.link is not None and spec.link >= len(gpu.nvlink_up):
            raise InputError(
                f"{gpu.name} has NVLinks 0..{len(gpu.nvlink_up) - 1}, not {spec.link}", field="link"
            )
        return node, gpu

    def active_faults(self) -> list[FaultRecord]:
        """Faults that have not ended yet."""
        with self._lock:
            self._advance()
            return list(self._active.values())

    def clear_fault(self, fault_id: str) -> None:
        """End an active fault as if its cause went away (e.g. a replaced part)."""
        with self._lock:
            self._advance()
            rec = self._active.get(fault_id)
            if rec is None:
                known = any(r.id == fault_id for r in self.fault_log)
                why = ALREADY_ENDED if known else "unknown fault id"
                raise InputError(f"{why}: {fault_id!r}", field="id")
            if rec.spec.kind == "xid" and rec.spec.xid == RMA_XID and rec.spec.gpu is not None:
                self._gpus[(rec.spec.node, rec.spec.gpu)].state.remap_failure = 0
            self._end(rec, "cleared", self.clock.time())

    def reset_gpu(self, node: str, index: int) -> str:
        """Reset one GPU (nvidia-smi -r): repairs lost, hung, XID and ECC-pending states on it."""
        return self.inject(FaultSpec("reset_gpu", node, gpu=index))

    def reboot_node(self, node: str) -> str:
        """Reboot a node: brings it up and resets all its GPUs; a row-remap failure stays."""
        return self.inject(FaultSpec("reboot_node", node))

    def drain_node(self, node: str) -> str:
        """Cordon and drain a node: its workloads leave, its GPUs go idle."""
        return self.inject(FaultSpec("drain_node", node))

    def undrain_node(self, node: str) -> str:
        """Uncordon a drained node so workloads return."""
        return self.inject(FaultSpec("undrain_node", node))

    def _run_action(self, spec: FaultSpec) -> None:
        node = self._by_name[spec.node]
        now = self.clock.time()
        if spec.kind == "reset_gpu" and spec.gpu is not None:
            self._reset(node.gpus[spec.gpu], now)
        elif spec.kind == "reboot_node":
            for rec in list(self._active.values()):
                if rec.spec.node == node.name and not is_rma(rec):
                    self._end(rec, "reboot_node", now, refresh=False)
            node.up = True
            for gpu in node.gpus:
                self._reset(gpu, now)
        elif spec.kind == "drain_node":
            node.cordoned = node.drained = True
        elif spec.kind == "undrain_node":
            node.cordoned = node.drained = False
        self._refresh(node)

    def _reset(self, gpu: SimGpu, now: float) -> None:
        for rec in list(self._active.values()):
            if (
                rec.spec.node == gpu.node
                and rec.spec.gpu == gpu.index
                and rec.spec.kind not in RESET_KEEPS
                and not is_rma(rec)
            ):
                self._end(rec, "reset_gpu", now, refresh=False)
        clear_on_reset(gpu)
        self._refresh(self._by_name[gpu.node])

    def _end(self, rec: FaultRecord, reason: str, at: float, *, refresh: bool = True) -> None:
        rec.ended_at = at
        rec.end_reason = reason
        self._active.pop(rec.id, None)
        if rec.spec.kind == "memory_leak" and rec.spec.gpu is not None:
            self._gpus[(rec.spec.node, rec.spec.gpu)].state.leak_bytes = 0.0
        if refresh:
            self._refresh(self._by_name[rec.spec.node])

    def _xid_effects(self, gpu: SimGpu, spec: FaultSpec) -> None:
        xid = record_xid(gpu, spec)
        count = int(spec.param("count", 1))
        dbe = xid in (48, 94, 95)
        for queue, mask in self._subs[(gpu.node, gpu.index)]:
            for _ in range(count):
                if mask & EVENT_XID:
                    queue.put(GpuEvent(gpu.node, gpu.index, EVENT_XID, xid))
                if dbe and mask & EVENT_DBE:
                    queue.put(GpuEvent(gpu.node, gpu.index, EVENT_DBE, 0))

    def _refresh(self, node: SimNode) -> None:
        """Recompute the effects of the active faults on one node's GPUs."""
        node.up = not any(
            r.spec.kind == "node_down" and r.spec.node == node.name for r in self._active.values()
        )
        for gpu in node.gpus:
            key = (gpu.node, gpu.index)
            fx, lost = gpu_effects(self._active.values(), node.name, gpu.index, self._effects[key])
            gpu.lost = lost
            gpu.nvlink_up = [i not in fx.links_down for i in range(len(gpu.nvlink_up))]
            self._effects[key] = fx

    # --- events ----------------------------------------------------------------------------------

    def subscribe(self, node: str, index: int, queue: EventQueue, mask: int) -> None:
        """Deliver this GPU's events whose type is in ``mask`` to ``queue`` from now on."""
        with self._lock:
            self.gpu(node, index)
            self._subs[(node, index)].append((queue, mask))

    def unsubscribe(self, queue: EventQueue, gpu: tuple[str, int] | None = None) -> None:
        """Stop delivering to ``queue`` (only the events of ``gpu``, a (node, index), when given)."""
        with self._lock:
            for key, subs in self._subs.items():
                if gpu is None or key == gpu:
                    self._subs[key] = [(q, m) for q, m in subs if q is not queue]

    # --- views -----------------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """Topology, workloads and active faults as JSON-ready data."""
        with self._lock:
            self._advance()
            return {
                "nodes": [
                    {
                        "name": n.name,
                        "cluster": n.cluster,
                        "rack": n.rack,
                        "up": n.up,
                        "cordoned": n.cordoned,
                        "drained": n.drained,
                        "gpus": [
                            {
                                "index": g.index,
                                "uuid": g.uuid,
                                "serial": g.serial,
                                "pci_bus_id": g.pci_bus_id,
                                "model": g.name,
                                "mig": [m.profile for m in g.mig],
                                "workload": _workload_name(self._workload_of.get((g.node, g.index))),
                            }
                            for g in n.gpus
                        ],
                    }
                    for n in self._nodes
                ],
                "inference_services": [s.describe() for s in self._services],
                "training_jobs": [j.describe() for j in self._jobs],
                "active_faults": [r.to_dict() for r in self._active.values()],
            }


def _workload_name(work: InferenceService | TrainingJob | None) -> str | None:
    return None if work is None else str(work.ref)


def build_fleet(
    nodes: int = 2,
    gpus_per_node: int = 8,
    *,
    seed: int = 0,
    clock: Clock | None = None,
    racks_per_cluster: int = 1,
    clusters: int = 1,
    gpu_model: str = "NVIDIA H100 80GB HBM3",
    mig_gpus: Iterable[tuple[str, int]] = (),
    warm_up: bool = True,
) -> Fleet:
    """Build a deterministic fleet: ``nodes`` in total, spread over ``clusters`` x ``racks_per_cluster``
    (``warm_up``: see ``Fleet``)."""
    built = build_nodes(
        nodes,
        gpus_per_node,
        seed=seed,
        racks_per_cluster=racks_per_cluster,
        clusters=clusters,
        gpu_model=gpu_model,
        mig_gpus=frozenset(mig_gpus),
    )
    return Fleet(built, clock if clock is not None else SystemClock(), seed=seed, warm_up=warm_up)


def parse_mig_gpu(text: str) -> tuple[str, int]:
    """Parse ``node-01:7`` into ``("node-01", 7)``."""
    node, sep, index = text.rpartition(":")
    number = label_number(index)
    if not sep or not node or number is None:
        raise InputError(f"expected NODE:INDEX such as node-01:7, got {text!r}", field="mig_gpus")
    return node, number


def fleet_from_config(
    cfg: SimConfig, clock: Clock | None = None, *, mig_gpus: Iterable[str] = (), warm_up: bool = True
) -> Fleet:
    """Build the fleet a ``SimConfig`` describes; ``mig_gpus`` lists ``NODE:INDEX`` GPUs with MIG on
    (``warm_up``: see ``Fleet``)."""
    mig = [parse_mig_gpu(item) for item in mig_gpus]
    return build_fleet(
        cfg.nodes,
        cfg.gpus_per_node,
        seed=cfg.seed,
        clock=clock,
        racks_per_cluster=cfg.racks_per_cluster,
        clusters=cfg.clusters,
        gpu_model=cfg.gpu_model,
        mig_gpus=mig,
        warm_up=warm_up,
    )
