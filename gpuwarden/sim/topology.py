"""Topology of the simulated fleet: GPU models, nodes, GPUs and their live state."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field

from gpuwarden.errors import InputError
from gpuwarden.model import GpuRef, NodeRef

MIB = 1024 * 1024
GIB = 1024 * MIB


@dataclass(frozen=True, slots=True)
class GpuModelSpec:
    """Static facts of one GPU product, as NVML reports them."""

    name: str
    architecture: int  # NVML_DEVICE_ARCH_*
    memory_total: int  # bytes
    power_limit_mw: int
    idle_power_mw: int
    sm_clock_max: int  # MHz
    sm_clock_idle: int
    mem_clock_max: int
    nvlinks: int
    pci_device_id: int
    pci_subsystem_id: int
    gpm: bool
    retired_pages: bool  # pre-Ampere page retirement; Ampere and later use row remapping


# NVML_DEVICE_ARCH_VOLTA = 5, AMPERE = 7, HOPPER = 9 (pynvml constants).
GPU_MODELS: dict[str, GpuModelSpec] = {
    spec.name: spec
    for spec in (
        GpuModelSpec(
            "NVIDIA H100 80GB HBM3", 9, 85_520_809_984, 700_000, 70_000, 1980, 345, 2619, 18,
            0x233010DE, 0x16C110DE, gpm=True, retired_pages=False,
        ),
        GpuModelSpec(
            "NVIDIA H200", 9, 150_754_820_096, 700_000, 75_000, 1980, 345, 3201, 18,
            0x233510DE, 0x18B010DE, gpm=True, retired_pages=False,
        ),
        GpuModelSpec(
            "NVIDIA A100-SXM4-80GB", 7, 85_899_345_920, 400_000, 55_000, 1410, 210, 1593, 12,
            0x20B210DE, 0x147F10DE, gpm=False, retired_pages=False,
        ),
        GpuModelSpec(
            "Tesla V100-SXM2-32GB", 5, 34_359_738_368, 300_000, 40_000, 1530, 135, 877, 6,
            0x1DB510DE, 0x124910DE, gpm=False, retired_pages=True,
        ),
    )
}  # fmt: skip

# MIG layout used for a GPU with MIG enabled: (profile, GPU instance id, memory share).
MIG_LAYOUT: tuple[tuple[str, int, float], ...] = (
    ("3g.40gb", 1, 0.5),
    ("2g.20gb", 5, 0.25),
    ("1g.10gb", 13, 0.125),
)
MAX_MIG_DEVICES = 7


def model_spec(name: str) -> GpuModelSpec:
    """The spec of a known GPU model; an unknown name gets H100 figures under its own name."""
    spec = GPU_MODELS.get(name)
    if spec is not None:
        return spec
    base = GPU_MODELS["NVIDIA H100 80GB HBM3"]
    return GpuModelSpec(
        name,
        base.architecture,
        base.memory_total,
        base.power_limit_mw,
        base.idle_power_mw,
        base.sm_clock_max,
        base.sm_clock_idle,
        base.mem_clock_max,
        base.nvlinks,
        base.pci_device_id,
        base.pci_subsystem_id,
        base.gpm,
        base.retired_pages,
    )


@dataclass(slots=True)
class MigDevice:
    """One MIG instance carved out of a GPU."""

    profile: str
    gpu_instance_id: int
    compute_instance_id: int
    memory_total: int
    uuid: str


@dataclass(slots=True)
class GpuState:
    """The live, changing state of one GPU; advanced by the dynamics step."""

    util_gpu: float = 0.0  # percent
    util_mem: float = 0.0  # percent
    fb_used: int = 0  # bytes
    power_mw: float = 0.0
    temp_c: float = 30.0
    mem_temp_c: float = 34.0
    sm_clock: float = 0.0  # MHz
    mem_clock: float = 0.0
    energy_mj: float = 0.0
    pcie_tx_kbs: float = 0.0  # KB/s (1000 B)
    pcie_rx_kbs: float = 0.0
    pcie_tx_bytes: float = 0.0  # cumulative, for GPM's PCIe rates
    pcie_rx_bytes: float = 0.0
    pcie_replay: int = 0
    pcie_correctable: int = 0
    nvlink_tx_kib: float = 0.0  # cumulative KiB, all links
    nvlink_rx_kib: float = 0.0
    ecc_sbe_vol: int = 0
    ecc_sbe_agg: int = 0
    ecc_dbe_vol: int = 0
    ecc_dbe_agg: int = 0
    remap_corr: int = 0
    remap_unc: int = 0
    remap_pending: int = 0
    remap_failure: int = 0
    clock_reasons: int = 0  # nvmlClocksEventReason* bits
    violation_power_ns: int = 0
    violation_thermal_ns: int = 0
    violation_low_util_ns: int = 0  # held at low clocks because the GPU is idle
    recovery_action: int = 0  # NVML_GPU_RECOVERY_ACTION_*
    gr_active: float = 0.0  # GPM ratios 0..1
    sm_active: float = 0.0
    tensor_active: float = 0.0
    dram_active: float = 0.0
    # Integrals of the GPM ratios (ratio-seconds), so two samples give an average like real GPM.
    gr_active_s: float = 0.0
    sm_active_s: float = 0.0
    tensor_active_s: float = 0.0
    dram_active_s: float = 0.0
    leak_bytes: float = 0.0
    last_xid: int = 0


@dataclass(slots=True)
class SimGpu:
    """One simulated GPU: identity plus live state and health flags."""

    node: str
    index: int
    uuid: str
    serial: str
    pci_bus_id: str
    model: GpuModelSpec
    minor_number: int
    state: GpuState = field(default_factory=GpuState)
    lost: bool = False
    nvlink_up: list[bool] = field(default_factory=list)
    # [link][counter] with counter = NVML_NVLINK_ERROR_DL_REPLAY, RECOVERY, CRC_FLIT, CRC_DATA, ECC_DATA.
    nvlink_errors: list[list[int]] = field(default_factory=list)
    mig: list[MigDevice] = field(default_factory=list)
    pids: list[int] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The product name, as ``nvmlDeviceGetName`` returns it."""
        return self.model.name

    @property
    def model_name(self) -> str:
        """Same as ``name``: the product name."""
        return self.model.name

    @property
    def ref(self) -> GpuRef:
        """This GPU as a core-model reference."""
        return GpuRef(self.node, self.index, self.uuid)


@dataclass(slots=True)
class SimNode:
    """One host with GPUs."""

    name: str
    cluster: str
    rack: str
    gpus: list[SimGpu]
    up: bool = True
    cordoned: bool = False
    drained: bool = False

    @property
    def ref(self) -> NodeRef:
        """This node as a core-model reference."""
        return NodeRef(self.name, self.cluster, self.rack)


# PCI bus numbers of the eight GPU slots of an HGX H100 board.
_HGX_BUSES = (0x18, 0x2A, 0x3A, 0x5D, 0x9A, 0xAB, 0xBA, 0xDB)


def pci_bus_id(index: int) -> str:
    """NVML's 13-character-domain bus id for a GPU slot, e.g. ``00000000:18:00.0``."""
    bus = _HGX_BUSES[index] if index < len(_HGX_BUSES) else 0xE0 + index
    return f"00000000:{bus:02X}:00.0"


def build_nodes(
    nodes: int,
    gpus_per_node: int,
    *,
    seed: int,
    racks_per_cluster: int,
    clusters: int,
    gpu_model: str,
    mig_gpus: frozenset[tuple[str, int]] = frozenset(),
) -> list[SimNode]:
    """Make ``nodes`` nodes spread evenly over ``clusters`` x ``racks_per_cluster`` racks."""
    if nodes < 1 or gpus_per_node < 1 or racks_per_cluster < 1 or clusters < 1:
        raise InputError("nodes, gpus_per_node, racks_per_cluster and clusters must all be >= 1")
    spec = model_spec(gpu_model)
    rng = random.Random(f"gpuwarden-sim-ids-{seed}")
    racks = clusters * racks_per_cluster
    result: list[SimNode] = []
    for n in range(nodes):
        rack_slot = n * racks // nodes
        cluster_i = rack_slot // racks_per_cluster
        name = f"node-{n + 1:02d}"
        gpus = []
        for i in range(gpus_per_node):
            gpu_uuid = "GPU-" + str(uuid.UUID(int=rng.getrandbits(128), version=4))
            serial = f"{rng.randrange(10**12, 10**13)}"
            gpu = SimGpu(
                node=name,
                index=i,
                uuid=gpu_uuid,
                serial=serial,
                pci_bus_id=pci_bus_id(i),
                model=spec,
                minor_number=i,
                nvlink_up=[True] * spec.nvlinks,
                nvlink_errors=[[0] * 5 for _ in range(spec.nvlinks)],
            )
            if (name, i) in mig_gpus:
                gpu.mig = [
                    MigDevice(
                        profile,
                        gi,
                        0,
                        int(spec.memory_total * share),
                        "MIG-" + str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    )
                    for profile, gi, share in MIG_LAYOUT
                ]
            gpus.append(gpu)
        result.append(SimNode(name, f"c{cluster_i + 1:02d}", f"r{rack_slot + 1:02d}", gpus))
    return result
