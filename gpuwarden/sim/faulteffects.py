"""What a fault does to one simulated GPU: the counters an XID moves, the effects the active faults have on
its steps, and what a GPU reset clears.

``Fleet`` keeps which faults are active, when they end and who hears their events; these functions only read
a fault's spec and change one GPU's state, so the table of fault kinds and their effects reads in one place.
"""

from __future__ import annotations

from collections.abc import Iterable

from gpuwarden.sim.dynamics import GpuEffects
from gpuwarden.sim.faults import FaultRecord, FaultSpec, reaches
from gpuwarden.sim.topology import MIB, SimGpu

RECOVERY_GPU_RESET = 1
RECOVERY_NODE_REBOOT = 2

# Kinds a GPU reset does not repair: the cooling fault and the node's power brake are outside the GPU.
RESET_KEEPS = frozenset({"thermal_runaway", "power_brake", "node_down"})
RMA_XID = 64  # row-remap failure: only a replacement (clear_fault) fixes it


def is_rma(rec: FaultRecord) -> bool:
    """Whether the fault is a row-remap failure, which neither a reset nor a reboot repairs."""
    return rec.spec.kind == "xid" and rec.spec.xid == RMA_XID


def record_xid(gpu: SimGpu, spec: FaultSpec) -> int:
    """Move the counters and the recovery action an XID moves on ``gpu``; return the XID."""
    s = gpu.state
    xid = spec.xid or 0
    s.last_xid = xid
    if xid in (48, 94, 95):
        s.ecc_dbe_vol += 1
        s.ecc_dbe_agg += 1
        s.remap_unc += 1
        if spec.param("pending", 1.0):
            s.remap_pending = 1
        if xid != 94:
            s.recovery_action = RECOVERY_GPU_RESET
    elif xid == 63:
        s.remap_corr += 1
        s.remap_pending = 1
    elif xid == RMA_XID:
        s.remap_failure = 1
    elif xid == 79:
        s.recovery_action = RECOVERY_NODE_REBOOT
    elif xid == 92:
        s.ecc_sbe_vol += 100
        s.ecc_sbe_agg += 100
    elif xid == 74 and gpu.nvlink_errors:
        gpu.nvlink_errors[0][1] += 1
    elif xid == 154:
        s.recovery_action = int(spec.param("action", RECOVERY_GPU_RESET))
    return xid


def clear_on_reset(gpu: SimGpu) -> None:
    """Clear what a GPU reset clears on ``gpu``: volatile ECC counts, a pending remap, the recovery action,
    a leak, the energy counter and the NVLink error counters."""
    s = gpu.state
    s.ecc_sbe_vol = s.ecc_dbe_vol = 0
    s.remap_pending = 0
    s.recovery_action = 0
    s.leak_bytes = 0.0
    s.energy_mj = 0.0  # NVML's energy counter restarts after a reset
    for counters in gpu.nvlink_errors:
        counters[:] = [0] * len(counters)


def gpu_effects(
    active: Iterable[FaultRecord], node: str, index: int, old: GpuEffects
) -> tuple[GpuEffects, bool]:
    """The effects the ``active`` faults have on GPU ``index`` of ``node`` (``old``: its effects until now,
    whose runaway heat carries over), and whether the GPU is lost."""
    fx = GpuEffects()
    lost = False
    for rec in active:
        spec = rec.spec
        if not reaches(spec, node, index):
            continue
        kind = spec.kind
        if kind == "gpu_lost" or (kind == "xid" and spec.xid == 79):
            lost = True
        elif kind == "hung":
            fx.hung = True
        elif kind == "straggler":
            fx.straggler = min(fx.straggler, spec.param("factor", 0.6))
        elif kind == "thermal_runaway":
            fx.runaway_rate = spec.param("rate", 0.01)
            fx.runaway_heat = old.runaway_heat
        elif kind == "hw_thermal_slowdown":
            fx.hw_thermal = spec.param("factor", 0.5)
        elif kind == "power_brake":
            fx.power_brake = spec.param("factor", 0.35)
        elif kind == "nvlink_down" and spec.link is not None:
            fx.links_down.add(spec.link)
        elif kind == "nvlink_crc_burst" and spec.link is not None:
            fx.crc_rates[spec.link] = spec.param("rate", 500.0)
        elif kind == "ecc_sbe_storm":
            fx.sbe_rate = spec.param("rate", 20.0)
        elif kind == "memory_leak":
            fx.leak_rate = spec.param("rate", 64.0) * MIB
    return fx, lost
