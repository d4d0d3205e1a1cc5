"""How a simulated GPU's state moves from one fixed step to the next.

The model is deliberately small but keeps the couplings operators rely on: utilisation follows the
workload, power follows utilisation and clocks, temperature follows power through a first-order lag,
throttling lowers clocks (and so power and speed), counters only grow. All randomness comes from the
caller's ``random.Random`` so the fleet stays deterministic.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import NamedTuple

from gpuwarden.sim.topology import MIB, GpuState, SimGpu

# nvmlClocksEventReason* bits (pynvml constants).
REASON_GPU_IDLE = 0x1
REASON_SW_POWER_CAP = 0x4
REASON_HW_SLOWDOWN = 0x8
REASON_SW_THERMAL = 0x20
REASON_HW_THERMAL = 0x40
REASON_HW_POWER_BRAKE = 0x80

AMBIENT_C = 28.0
THERMAL_RESISTANCE_C_PER_W = 0.065  # 700 W settles near 73 C, like an air-cooled HGX H100
THERMAL_TAU_S = 20.0
MEMORY_TAU_S = 5.0
SW_THERMAL_C = 87.0
HW_THERMAL_C = 92.0
RESERVED_FB_BYTES = 512 * MIB  # what the driver keeps even on an idle GPU
MAX_RUNAWAY_HEAT = 3.0  # a failed cooler at most quadruples the thermal resistance
# The per-GPU lines clamp with conditional expressions, not min()/max(): in Python 3.11 each min/max call
# parses keyword arguments, and 13 of them per GPU per step were a large share of a step's instructions.
# ``min(cap, x)`` is ``x if x < cap else cap`` and ``max(floor, x)`` is ``x if x > floor else floor``: the
# same operand for every input, NaN included.


class _Shape(NamedTuple):
    """How a kind of work loads a GPU (read by name once per step: no unpacking into lists)."""

    intensity: float  # power
    sm_share: float  # SM-active share of utilisation
    tensor_share: float
    dram_share: float
    pcie_rx: float  # GB/s
    pcie_tx: float
    nvlink_gbs: float  # per direction


_SHAPES: dict[str, _Shape] = {
    "train": _Shape(0.93, 0.85, 0.60, 0.45, 1.5, 0.2, 180.0),
    "infer": _Shape(0.72, 0.60, 0.35, 0.62, 0.3, 0.1, 15.0),
    "hung": _Shape(0.22, 0.02, 0.0, 0.01, 0.0, 0.0, 0.0),
    "idle": _Shape(0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0),
}


@dataclass(slots=True)
class GpuEffects:
    """What the active faults do to one GPU, recomputed whenever a fault starts or ends."""

    hung: bool = False
    straggler: float = 1.0  # clock factor
    runaway_rate: float = 0.0  # growth of the thermal resistance per second
    runaway_heat: float = 0.0
    hw_thermal: float = 0.0  # clock factor while forced HW thermal slowdown; 0 = off
    power_brake: float = 0.0  # clock factor while the power brake holds; 0 = off
    links_down: set[int] = field(default_factory=set)
    crc_rates: dict[int, float] = field(default_factory=dict)  # link -> CRC flit errors per second
    sbe_rate: float = 0.0  # correctable ECC errors per second
    leak_rate: float = 0.0  # bytes per second

    def capability(self) -> float:
        """Speed of this GPU relative to a healthy one, from faults alone (0 when hung)."""
        if self.hung:
            return 0.0
        factor = self.straggler
        if self.hw_thermal:
            factor *= self.hw_thermal
        if self.power_brake:
            factor *= self.power_brake
        if self.links_down:
            factor *= 0.5  # collectives fall back to PCIe
        return factor


def _counts(rng: random.Random, rate: float, dt: float) -> int:
    """Whole events in ``dt`` for a Poisson-ish ``rate``; deterministic given the RNG."""
    mean = rate * dt
    if mean <= 0.0:
        return 0
    whole = int(mean)
    return whole + (1 if rng.random() < mean - whole else 0)


class Demand(NamedTuple):
    """What the workload wants from a GPU during one step (a tuple: one is made per GPU per step)."""

    activity: float = 0.0  # wanted utilisation, 0..1
    shape: str = "idle"  # train, infer or idle
    mem_target: int = 0  # bytes the workload holds


def _throttle(temp_c: float, fx: GpuEffects) -> tuple[float, int]:
    """Clock factor and reason bits from faults and temperature (before the power cap)."""
    clock_factor = fx.straggler
    reasons = 0
    if fx.hw_thermal:
        clock_factor *= fx.hw_thermal
        reasons |= REASON_HW_THERMAL | REASON_HW_SLOWDOWN
    if fx.power_brake:
        clock_factor *= fx.power_brake
        reasons |= REASON_HW_POWER_BRAKE | REASON_HW_SLOWDOWN
    if temp_c >= HW_THERMAL_C:
        clock_factor *= 0.5
        reasons |= REASON_HW_THERMAL | REASON_HW_SLOWDOWN
    elif temp_c >= SW_THERMAL_C:
        clock_factor *= 0.8
        reasons |= REASON_SW_THERMAL
    return clock_factor, reasons


def step_gpu(gpu: SimGpu, fx: GpuEffects, demand: Demand, dt: float, rng: random.Random) -> float:
    """Advance one GPU by ``dt`` seconds; return its effective speed (0..1, 0 when hung)."""
    s = gpu.state
    spec = gpu.model
    shape, activity = ("hung", 1.0) if fx.hung else (demand.shape, demand.activity)
    form = _SHAPES[shape]
    intensity = form.intensity
    clock_factor, reasons = _throttle(s.temp_c, fx)

    # Slower clocks make the same work take longer: utilisation rises until it saturates.
    util = activity / clock_factor if clock_factor > 0 else 1.0
    if shape != "hung" and util > 0:
        util += rng.gauss(0.0, 0.015)
    util = (util if util < 1.0 else 1.0) if util > 0.0 else 0.0  # min(1.0, max(0.0, util))

    idle_mw = spec.idle_power_mw
    limit_mw = spec.power_limit_mw
    demand_mw = idle_mw + (limit_mw - idle_mw) * util * intensity * clock_factor**1.5
    if demand_mw > limit_mw:
        # The SW power cap trades clocks for power.
        clock_factor *= (limit_mw / demand_mw) ** (1 / 1.5)
        demand_mw = float(limit_mw)
        reasons |= REASON_SW_POWER_CAP
    power = demand_mw + (rng.gauss(0.0, 4_000.0) if util > 0 else rng.gauss(0.0, 500.0))
    limit_f, floor_mw = float(limit_mw), idle_mw * 0.8
    power = power if power < limit_f else limit_f
    power = power if power > floor_mw else floor_mw

    busy = util > 0.01
    if not busy:
        reasons |= REASON_GPU_IDLE
    clock_share = clock_factor if clock_factor < 1.0 else 1.0
    s.sm_clock = spec.sm_clock_max * clock_share if busy else float(spec.sm_clock_idle)
    s.mem_clock = float(spec.mem_clock_max)
    s.clock_reasons = reasons
    step_ns = int(dt * 1e9)
    if reasons & (REASON_SW_POWER_CAP | REASON_HW_POWER_BRAKE):
        s.violation_power_ns += step_ns
    if reasons & (REASON_SW_THERMAL | REASON_HW_THERMAL):
        s.violation_thermal_ns += step_ns
    if not busy:
        s.violation_low_util_ns += step_ns
    s.util_gpu = util * 100.0
    s.power_mw = power
    s.energy_mj += power * dt
    _heat(s, fx, dt)
    _activity(s, form, util, dt)
    _memory(gpu, fx, demand.mem_target, dt)
    _interconnect(gpu, fx, form, util, dt=dt, rng=rng)
    if fx.hung:
        return 0.0
    return clock_share * (0.5 if fx.links_down else 1.0)


def _heat(s: GpuState, fx: GpuEffects, dt: float) -> None:
    """Temperature follows power through a first-order lag; a runaway raises the thermal resistance."""
    if fx.runaway_rate:
        fx.runaway_heat = min(MAX_RUNAWAY_HEAT, fx.runaway_heat + fx.runaway_rate * dt)
    resistance = THERMAL_RESISTANCE_C_PER_W * (1.0 + fx.runaway_heat)
    target_c = AMBIENT_C + resistance * s.power_mw / 1000.0
    lag = dt / THERMAL_TAU_S
    lag = lag if lag < 1.0 else 1.0
    s.temp_c += (target_c - s.temp_c) * lag
    s.mem_temp_c += (target_c + 6.0 + 10.0 * s.dram_active - s.mem_temp_c) * lag


def _activity(s: GpuState, form: _Shape, util: float, dt: float) -> None:
    """Profiling ratios and their integrals."""
    sm, tensor, dram = util * form.sm_share, util * form.tensor_share, util * form.dram_share
    s.gr_active = util
    s.sm_active = sm
    s.tensor_active = tensor
    s.dram_active = dram
    s.gr_active_s += util * dt
    s.sm_active_s += sm * dt
    s.tensor_active_s += tensor * dt
    s.dram_active_s += dram * dt
    util_mem = dram * 100.0 * 0.8
    s.util_mem = util_mem if util_mem < 100.0 else 100.0


def _memory(gpu: SimGpu, fx: GpuEffects, mem_target: int, dt: float) -> None:
    """Framebuffer: the workload's footprint (loaded over a few seconds) plus any leak."""
    s = gpu.state
    s.leak_bytes += fx.leak_rate * dt
    want = RESERVED_FB_BYTES + mem_target + s.leak_bytes
    lag = dt / MEMORY_TAU_S
    used = s.fb_used + int((want - s.fb_used) * (lag if lag < 1.0 else 1.0))
    # One store: a reader on another thread never sees the value before it is clamped to the memory.
    total = gpu.model.memory_total
    used = used if used < total else total
    s.fb_used = used if used > RESERVED_FB_BYTES else RESERVED_FB_BYTES


def _interconnect(
    gpu: SimGpu, fx: GpuEffects, form: _Shape, util: float, *, dt: float, rng: random.Random
) -> None:
    """PCIe and NVLink traffic, link errors and memory errors."""
    s = gpu.state
    # ``random() * 200`` is ``uniform(0, 200)`` to the bit (0 + 200 * r), without its Python-level call.
    rx_kbs = form.pcie_rx * 1e6 * util + rng.random() * 200
    tx_kbs = form.pcie_tx * 1e6 * util + rng.random() * 100
    rx_kbs, tx_kbs = (rx_kbs if rx_kbs > 0.0 else 0.0), (tx_kbs if tx_kbs > 0.0 else 0.0)
    s.pcie_rx_kbs, s.pcie_tx_kbs = rx_kbs, tx_kbs
    s.pcie_rx_bytes += rx_kbs * 1000.0 * dt
    s.pcie_tx_bytes += tx_kbs * 1000.0 * dt
    s.pcie_replay += _counts(rng, 2e-5, dt)
    links = gpu.nvlink_up
    # list.count compares by identity first; sum() of bools leaves its int fast path at every item.
    share = links.count(True) / len(links) if links else 0.0
    kib = form.nvlink_gbs * 1e9 / 1024.0 * util * share * dt
    s.nvlink_tx_kib += kib
    s.nvlink_rx_kib += kib * 0.98
    for link, rate in fx.crc_rates.items():
        errors = gpu.nvlink_errors[link]
        flits = _counts(rng, rate, dt)
        errors[2] += flits  # CRC_FLIT
        errors[3] += flits // 8  # CRC_DATA
        errors[0] += flits // 4  # DL_REPLAY
    sbe = _counts(rng, fx.sbe_rate or 1e-6, dt)
    if sbe:
        s.ecc_sbe_vol += sbe
        s.ecc_sbe_agg += sbe
        s.remap_corr += _counts(rng, 0.01 * sbe, 1.0)


def inference_activity(base: float, now: float, phase: float, rng: random.Random) -> float:
    """Wanted utilisation of an inference replica: a daily-ish wave plus noise."""
    wave = 1.0 + 0.3 * math.sin(2 * math.pi * now / 3600.0 + phase)
    wanted = base * wave + rng.gauss(0.0, 0.03)
    wanted = wanted if wanted < 1.0 else 1.0
    return wanted if wanted > 0.02 else 0.02
