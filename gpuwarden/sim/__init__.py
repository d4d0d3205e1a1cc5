"""Simulated GPU fleet: topology, workloads, fault injection and a pynvml-compatible API."""

from gpuwarden.sim.faults import FAULT_KINDS, FaultRecord, FaultSpec, parse_fault
from gpuwarden.sim.fleet import Fleet, build_fleet, fleet_from_config
from gpuwarden.sim.http import fault_routes
from gpuwarden.sim.nvml import SimNvml
from gpuwarden.sim.topology import SimGpu, SimNode, parse_simulate_spec
from gpuwarden.sim.workloads import InferenceService, TrainingJob

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
