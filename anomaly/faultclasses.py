"""What the GPU-fault evaluation injects: the fault classes, their deadlines and holds, and each injection.

``anomaly.faulteval`` runs them on the simulated fleet; ``anomaly.faultplan`` draws when and where.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gpuwarden.sim import parse_fault
from gpuwarden.sim.faults import FaultSpec


@dataclass(frozen=True, slots=True)
class FaultClass:
    """A kind of fault to inject; ``payload`` is ``parse_fault`` input without node and GPU."""

    name: str
    hard: bool
    payload: Mapping[str, Any]
    needs_workload: bool = False  # a slower idle GPU shows nothing: inject only where work runs
    node_level: bool = False  # aimed at a whole node; detected by an alert naming the node without a GPU
    deadline_seconds: float | None = None  # None: one interval for hard faults, 5 minutes for soft ones
    hold_seconds: float | None = (
        None  # how long it stays before the repair; None: the plan's ``hold_seconds``
    )

    def deadline(self, interval: float) -> float:
        """Seconds after the start within which a detection counts."""
        if self.deadline_seconds is not None:
            return self.deadline_seconds
        return interval if self.hard else SOFT_DEADLINE_SECONDS


FAULT_CLASSES: tuple[FaultClass, ...] = (
    FaultClass("xid_79_fell_off_bus", True, {"kind": "xid", "xid": 79}),
    FaultClass("xid_48_double_bit_ecc", True, {"kind": "xid", "xid": 48}),
    FaultClass("gpu_lost", True, {"kind": "gpu_lost"}),
    FaultClass("dbe_contained_xid_94", True, {"kind": "xid", "xid": 94}),
    FaultClass("hw_thermal_slowdown", False, {"kind": "hw_thermal_slowdown"}),
    FaultClass("power_brake", False, {"kind": "power_brake"}),
    # A failed cooler stays failed until someone repairs it: an hour, long enough for a detector whose band
    # learns the heat to let its alert go (the thermal detector's did after ~40 minutes at 30 s ticks).
    FaultClass("thermal_runaway", False, {"kind": "thermal_runaway"}, hold_seconds=3600.0),
    FaultClass("straggler", False, {"kind": "straggler"}, needs_workload=True),
    FaultClass("ecc_sbe_storm", False, {"kind": "ecc_sbe_storm"}),
    FaultClass("nvlink_crc_burst", False, {"kind": "nvlink_crc_burst", "link": 0}),
    FaultClass("nvlink_down", False, {"kind": "nvlink_down", "link": 0}),
    FaultClass("memory_leak", False, {"kind": "memory_leak"}),
    FaultClass("hung", False, {"kind": "hung"}),
    # The collector of a down node stops producing samples; the presence detector's bound (90 s by default)
    # plus up to two collection intervals.
    FaultClass("node_down", False, {"kind": "node_down"}, node_level=True, deadline_seconds=150.0),
)
SOFT_DEADLINE_SECONDS = 300.0
# A node down longer than ``anomaly.forget_after_seconds`` (900 s): the service forgets its series and takes
# them up again when it is back. Drawn from their own random stream (``anomaly.faultplan``), so the classes
# above keep their seeds' draws. A GPU fault begun while the node is down is held past its return and timed
# from it (``Injection.hidden_until``): only then can anything see it.
LONG_OUTAGE = FaultClass(
    "node_down_long", False, {"kind": "node_down"}, node_level=True, deadline_seconds=150.0
)
LONG_OUTAGE_SECONDS = (1200.0, 1800.0)
WHILE_DOWN_CLASSES: tuple[FaultClass, ...] = (
    FaultClass("thermal_runaway_while_down", False, {"kind": "thermal_runaway"}, hold_seconds=3600.0),
    FaultClass(
        "straggler_while_down", False, {"kind": "straggler"}, needs_workload=True, hold_seconds=2400.0
    ),
)
LONG_OUTAGE_CLASSES: tuple[FaultClass, ...] = (LONG_OUTAGE, *WHILE_DOWN_CLASSES)


@dataclass(slots=True)
class Injection:
    """One injected fault and what the detector made of it."""

    fault_class: FaultClass
    node: str
    gpu: int | None
    started_at: float
    fault_id: str = ""
    repaired_at: float | None = None
    detected_at: float | None = None
    detected_by: str = ""
    resolved_early_by: list[str] = field(default_factory=list)  # ``alertname:model`` resolved while active
    quiet: bool = False  # its target had no alert firing left while it was still active
    stuck: bool | None = None  # an alert still firing ``stuck_seconds`` after the repair; None: not checked
    # Seconds from its repair to the first tick its target had no alert firing that was raised for it
    # (``faulteval._check_clear``); None: not yet, or never told (``clear_interrupted``).
    clear_after: float | None = None
    clear_interrupted: bool = False  # a later fault on its target began before it was clear: not timed
    open_at_start: tuple[str, ...] = ()  # ``detector:query`` of the alerts firing on its target at its start
    hold_seconds: float | None = None  # drawn for this one (a long outage); None: its class's or the plan's
    hidden_until: float | None = None  # begun on a node that was down: timed from its return
    stalled_until: float | None = None  # its job stalled by another fault at the last tick: timed from after

    def spec(self) -> FaultSpec:
        """The fault as the fleet is given it."""
        payload = {**self.fault_class.payload, "node": self.node}
        if self.gpu is not None:
            payload["gpu"] = self.gpu
        return parse_fault(payload)

    def seen_from(self) -> float:
        """When it could first be seen: its start; its node's return for one begun while it was down; for a
        slowdown begun while its training job was stalled, the last tick it was
        (``faulteval._note_stalled``)."""
        return max(self.started_at, self.hidden_until or 0.0, self.stalled_until or 0.0)

    def shows_at(self, at: float) -> bool:
        """Whether an alert on its target at ``at`` can be about it: not while another fault stalls its job
        (``stalled_until``): every rank idles then, and an alert there is that fault's, sympathetic."""
        return self.stalled_until is None or at > self.stalled_until

    def latency(self) -> float | None:
        """Seconds from when it could first be seen to its detection."""
        return None if self.detected_at is None else max(0.0, self.detected_at - self.seen_from())

    def due_for_repair(self, now: float, default: float) -> bool:
        """Whether its hold has passed by ``now``: its hold (``default``: the plan's) from its start, and for
        a slowdown begun while its training job was stalled, at least that much (the plan's at most) from
        the last tick it was (``stalled_until``), when it is timed from. Held from its start, a straggler
        begun 557 s before the end of another node's outage that stalled its job was repaired some 40 s
        after the job ran again (seed 1200): no detector had the 5 minutes it is scored against. A class's
        longer hold still counts from its start: a straggler begun while its node was down (2400 s, to
        outlast the outage) held 2400 s from a hang that stalled its job at its node's return stayed 18-33
        minutes past its class's hold, past the window the plan keeps its node free (fix/reveval)."""
        held = self.hold(default)
        if now - self.started_at < held:
            return False
        return self.stalled_until is None or now - self.stalled_until >= min(held, default)

    def hold(self, default: float) -> float:
        """Seconds it stays before the repair, from its start (``due_for_repair``)."""
        held = self.hold_seconds if self.hold_seconds is not None else self.fault_class.hold_seconds
        return default if held is None else held
