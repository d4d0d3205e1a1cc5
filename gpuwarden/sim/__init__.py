"""Simulated GPU fleet: topology, workloads, fault injection and a pynvml-compatible API.

Typical use::

    fleet = build_fleet(2, 8, seed=0, clock=FakeClock())      # node-01..02, 8 H100s each
    nvml = SimNvml(fleet, "node-01")                           # the pynvml module, for one node
    nvml.nvmlInit()
    handle = nvml.nvmlDeviceGetHandleByIndex(3)
    nvml.nvmlDeviceGetPowerUsage(handle)                       # mW, like pynvml
    fault_id = fleet.inject(parse_fault({"kind": "xid", "node": "node-01", "gpu": 3, "xid": 79}))
    nvml.nvmlDeviceGetPowerUsage(handle)                       # raises pynvml.NVMLError_GpuIsLost
    fleet.reset_gpu("node-01", 3)                              # repaired; fleet.fault_log keeps the truth

State advances lazily in fixed 1 s steps up to ``clock.time()`` whenever something reads, so the same
seed and the same clock times give the same values. ``fleet.fault_log`` records every fault with
``id, kind, target, started_at, ended_at`` (ground truth for evaluations). Recovery: ``reset_gpu``
repairs GPU faults except a cooling failure (``thermal_runaway``) and a row-remap failure (XID 64);
``reboot_node`` repairs everything on the node except XID 64; ``clear_fault`` ends any fault (e.g. a
replaced part). A down node makes every SimNvml call on it raise ``NVMLError_Unknown`` (the real
exporter would be gone). Tests can make any call fail (``SimNvml.fail``) or hang (``SimNvml.hang``).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gpuwarden.config_rules import parse_simulate_spec
    from gpuwarden.sim.faults import FAULT_KINDS, FaultRecord, FaultSpec, parse_fault
    from gpuwarden.sim.fleet import Fleet, build_fleet, fleet_from_config
    from gpuwarden.sim.http import fault_routes
    from gpuwarden.sim.nvml import SimNvml
    from gpuwarden.sim.topology import SimGpu, SimNode
    from gpuwarden.sim.workloads import InferenceService, TrainingJob

# Each name is imported from its module on first use (PEP 562): every ``gpuwarden`` command imports this
# package (the demo's scenario, ``sim inject``'s help), but only the exporter, ``sim show`` and the demo run
# the fleet, whose modules (and pynvml, pydantic) cost a command start-up several hundred milliseconds.
_HOMES = {
    "parse_simulate_spec": "gpuwarden.config_rules",
    **dict.fromkeys(("FAULT_KINDS", "FaultRecord", "FaultSpec", "parse_fault"), "gpuwarden.sim.faults"),
    **dict.fromkeys(("Fleet", "build_fleet", "fleet_from_config"), "gpuwarden.sim.fleet"),
    "fault_routes": "gpuwarden.sim.http",
    "SimNvml": "gpuwarden.sim.nvml",
    **dict.fromkeys(("SimGpu", "SimNode"), "gpuwarden.sim.topology"),
    **dict.fromkeys(("InferenceService", "TrainingJob"), "gpuwarden.sim.workloads"),
}


def __getattr__(name: str) -> Any:
    """A public name, imported from its module the first time it is asked for."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


__all__ = [
    "FAULT_KINDS",
    "FaultRecord",
    "FaultSpec",
    "Fleet",
    "InferenceService",
    "SimGpu",
    "SimNode",
    "SimNvml",
    "TrainingJob",
    "build_fleet",
    "fault_routes",
    "fleet_from_config",
    "parse_fault",
    "parse_simulate_spec",
]
