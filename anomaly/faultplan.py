"""When and where the GPU-fault evaluation injects: the plan and its draws, each class's on one random stream
per seed, the long outages on their own."""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from anomaly.faultclasses import (
    FAULT_CLASSES,
    LONG_OUTAGE,
    LONG_OUTAGE_CLASSES,
    LONG_OUTAGE_SECONDS,
    WHILE_DOWN_CLASSES,
    FaultClass,
    Injection,
)
from gpuwarden.sim import Fleet


@dataclass(slots=True)
class EvalPlan:
    """When and where to inject, and how long each fault stays."""

    duration_seconds: float
    interval_seconds: float = 30.0
    spacing_seconds: float = 1200.0
    hold_seconds: float = 600.0
    grace_seconds: float = 900.0
    stuck_seconds: float = 3 * 3600.0
    warmup_seconds: float = 3600.0
    seed: int = 0
    classes: tuple[FaultClass, ...] = FAULT_CLASSES
    long_outages: bool = True  # add ``LONG_OUTAGE_CLASSES``, drawn apart from ``classes``

    def all_classes(self) -> tuple[FaultClass, ...]:
        """The classes it scores."""
        return (*self.classes, *LONG_OUTAGE_CLASSES) if self.long_outages else self.classes


def schedule_injections(plan: EvalPlan, fleet: Fleet, start: float) -> list[Injection]:
    """Every injection of the plan in start order: ``classes`` drawn as ever, then the long outages."""
    out = _draw_classes(plan, fleet, start)
    if plan.long_outages:
        out = sorted([*out, *_long_outages(plan, fleet, start, out)], key=lambda inj: inj.started_at)
    return out


def _draw_classes(plan: EvalPlan, fleet: Fleet, start: float) -> list[Injection]:
    rng = random.Random(plan.seed)
    gpus = [(g.node, g.index) for g in fleet.gpu_refs()]
    busy = [(n, i) for n, i in gpus if fleet.workload_on(n, i) is not None]
    out: list[Injection] = []
    order: list[FaultClass] = []
    t = start + plan.warmup_seconds
    end = start + plan.duration_seconds - plan.hold_seconds - plan.grace_seconds
    while t < end:
        if not order:
            order = list(plan.classes)
            rng.shuffle(order)
        fault_class = order.pop()
        candidates = busy if fault_class.needs_workload else gpus
        node, gpu = rng.choice(candidates)
        at = t + rng.uniform(0.0, plan.spacing_seconds / 2)
        out.append(Injection(fault_class, node, None if fault_class.node_level else gpu, at))
        t += plan.spacing_seconds
    return out


def _long_outages(plan: EvalPlan, fleet: Fleet, start: float, others: Sequence[Injection]) -> list[Injection]:
    """As many long outages as any other class gets, on their own random stream, each on a node no other
    fault touches during it (its window and theirs with ``grace``), so no other fault shares its node (one
    on a GPU of a job the node runs can still feel it); two in every three with a thermal runaway or a
    straggler begun on one of its GPUs while it is down."""
    rng = random.Random(f"{plan.seed}/long-outage")
    out: list[Injection] = []
    bag: list[FaultClass | None] = []  # each of the three in every three outages, as the classes are drawn
    step = plan.spacing_seconds * len(plan.classes)
    t = start + plan.warmup_seconds
    end = start + plan.duration_seconds - LONG_OUTAGE_SECONDS[1] - plan.grace_seconds
    while t < end:
        at = t + rng.uniform(0.0, plan.spacing_seconds / 2)
        hold = rng.uniform(*LONG_OUTAGE_SECONDS)
        if not bag:
            bag = [None, *WHILE_DOWN_CLASSES]
            rng.shuffle(bag)
        companion = bag.pop()
        begins = at + rng.uniform(60.0, hold / 2)
        last = at + hold if companion is None else max(at + hold, begins + (companion.hold_seconds or 0.0))
        node = rng.choice(_free_nodes(fleet, [*others, *out], at, last + plan.grace_seconds, plan))
        out.append(Injection(LONG_OUTAGE, node, None, at, hold_seconds=hold))
        gpus = [
            g.index
            for g in fleet.gpu_refs()
            if g.node == node
            and (companion is None or not companion.needs_workload or fleet.workload_on(node, g.index))
        ]
        if companion is not None and gpus:
            out.append(Injection(companion, node, rng.choice(gpus), begins, hidden_until=at + hold))
        t += step
    return out


def _free_nodes(
    fleet: Fleet, injections: Sequence[Injection], since: float, until: float, plan: EvalPlan
) -> list[str]:
    """Nodes no fault touches from ``since`` to ``until`` (each with its repair's grace); all when none."""
    nodes = sorted({g.node for g in fleet.gpu_refs()})
    busy = {
        o.node
        for o in injections
        if o.started_at <= until and since <= o.started_at + o.hold(plan.hold_seconds) + plan.grace_seconds
    }
    return [n for n in nodes if n not in busy] or nodes
