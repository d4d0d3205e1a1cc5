from __future__ import annotations

from typing import Any

import pytest

from gpuwarden.clock import FakeClock
from gpuwarden.errors import InputError
from gpuwarden.sim import FAULT_KINDS, FaultSpec, Fleet, build_fleet, parse_fault
from gpuwarden.sim.faults import GPU_KINDS, reaches
from gpuwarden.sim.workloads import InferenceService, TrainingJob


def test_a_valid_xid_payload_becomes_a_fault_spec() -> None:
    spec = parse_fault({"kind": "xid", "node": "node-01", "gpu": 3, "xid": 79})
    assert spec == FaultSpec(kind="xid", node="node-01", gpu=3, xid=79)


def test_nvlink_kinds_default_to_link_zero_and_params_become_floats() -> None:
    spec = parse_fault({"kind": "nvlink_crc_burst", "node": "node-01", "gpu": 0, "params": {"rate": 5}})
    assert spec.link == 0
    assert spec.params == {"rate": 5.0}


def test_every_documented_kind_is_accepted() -> None:
    for kind in FAULT_KINDS:
        payload: dict[str, Any] = {"kind": kind, "node": "node-01"}
        if kind not in ("node_down", "reboot_node", "drain_node", "undrain_node", "power_brake"):
            payload["gpu"] = 0
        if kind == "xid":
            payload["xid"] = 31
        assert parse_fault(payload).kind == kind


@pytest.mark.parametrize(
    ("payload", "field", "message"),
    [
        ([1, 2], "", "JSON object"),
        ({"node": "node-01"}, "kind", "required; one of: xid"),
        ({"kind": "meltdown", "node": "node-01"}, "kind", "valid kinds: xid, ecc_sbe_storm"),
        ({"kind": "hung", "gpu": 0}, "node", "required"),
        ({"kind": "hung", "node": 5, "gpu": 0}, "node", "node name"),
        ({"kind": "hung", "node": "node-01"}, "gpu", "required for kind hung"),
        ({"kind": "hung", "node": "node-01", "gpu": "3"}, "gpu", "integer"),
        ({"kind": "hung", "node": "node-01", "gpu": True}, "gpu", "integer"),
        ({"kind": "hung", "node": "node-01", "gpu": -1}, "gpu", "between 0"),
        ({"kind": "node_down", "node": "node-01", "gpu": 1}, "gpu", "whole node; remove gpu"),
        ({"kind": "xid", "node": "node-01", "gpu": 0}, "xid", "required for kind xid"),
        ({"kind": "hung", "node": "node-01", "gpu": 0, "xid": 79}, "xid", "only valid for kind xid"),
        ({"kind": "hung", "node": "node-01", "gpu": 0, "link": 1}, "link", "only valid for nvlink"),
        ({"kind": "hung", "node": "node-01", "gpu": 0, "speed": 1}, "speed", "valid fields: kind, node"),
        ({"kind": "hung", "node": "node-01", "gpu": 0, "params": {"rate": 1}}, "params", "valid: duration"),
        ({"kind": "hung", "node": "node-01", "gpu": 0, "params": [1]}, "params", "object"),
        (
            {"kind": "hung", "node": "node-01", "gpu": 0, "params": {"duration": "x"}},
            "params.duration",
            "number",
        ),
        (
            {"kind": "hung", "node": "node-01", "gpu": 0, "params": {"duration": "5 min"}},
            "params.duration",
            "write the seconds as a number: 300",
        ),
        (
            # "between 0 and 1e+12" named a bound that 0 breaks too
            {"kind": "hung", "node": "node-01", "gpu": 0, "params": {"duration": -5}},
            "params.duration",
            "more than 0 seconds and at most 1e\\+12, got -5; leave it out for a fault that lasts until",
        ),
        (
            {"kind": "memory_leak", "node": "node-01", "gpu": 0, "params": {"rate": 1e300}},
            "params.rate",
            "between 0 and 1e\\+12",
        ),
        (  # 0 was read as "no duration": the fault never ended
            {"kind": "hung", "node": "node-01", "gpu": 0, "params": {"duration": 0}},
            "params.duration",
            "more than 0 seconds and at most 1e\\+12, got 0; leave it out for a fault that lasts until it is",
        ),
        (  # an integer JSON holds and a float does not: math.isfinite raised OverflowError
            {"kind": "memory_leak", "node": "node-01", "gpu": 0, "params": {"rate": 10**400}},
            "params.rate",
            "between 0 and 1e\\+12",
        ),
        (
            {"kind": "xid", "node": "node-01", "gpu": 0, "xid": 13, "params": {"count": 0}},
            "params.count",
            "a whole number from 1 to 10000",
        ),
        # In bounds but meaningless: a factor of 0 changed nothing while the fault was listed active, one
        # over 1 sped the GPU up, an action of 1e12 was exported wrapped, a count of 2.5 was 2 XIDs.
        (
            {"kind": "hw_thermal_slowdown", "node": "node-01", "gpu": 0, "params": {"factor": 0}},
            "params.factor",
            "more than 0 and less than 1",
        ),
        (
            {"kind": "power_brake", "node": "node-01", "params": {"factor": 5}},
            "params.factor",
            "more than 0 and less than 1",
        ),
        (
            {"kind": "xid", "node": "node-01", "gpu": 0, "xid": 154, "params": {"action": 1e12}},
            "params.action",
            "a whole number from 0 to 7 \\(NVML's recovery action",
        ),
        (
            {"kind": "xid", "node": "node-01", "gpu": 0, "xid": 154, "params": {"action": 2.7}},
            "params.action",
            "whole number",
        ),
        (
            {"kind": "xid", "node": "node-01", "gpu": 0, "xid": 13, "params": {"count": 2.5}},
            "params.count",
            "whole number",
        ),
        (
            {"kind": "xid", "node": "node-01", "gpu": 0, "xid": 63, "params": {"pending": 2}},
            "params.pending",
            "from 0 to 1",
        ),
        (
            {"kind": "thermal_runaway", "node": "node-01", "gpu": 0, "params": {"rate": 0}},
            "params.rate",
            "more than 0",
        ),
        (
            {"kind": "reset_gpu", "node": "node-01", "gpu": 0, "params": {"duration": 1}},
            "params",
            "valid: none",
        ),
    ],
    ids=[
        "not-an-object",
        "missing-kind",
        "unknown-kind",
        "missing-node",
        "node-not-a-string",
        "missing-gpu",
        "gpu-as-string",
        "gpu-as-bool",
        "negative-gpu",
        "gpu-on-node-kind",
        "missing-xid",
        "xid-on-other-kind",
        "link-on-other-kind",
        "unknown-field",
        "unknown-param",
        "params-not-object",
        "param-not-number",
        "duration-in-words",
        "negative-param",
        "huge-param",
        "zero-duration",
        "huge-integer-param",
        "zero-burst",
        "factor-0",
        "factor-over-1",
        "action-past-nvmls-enum",
        "action-fraction",
        "count-fraction",
        "pending-2",
        "rate-0",
        "params-on-action",
    ],
)
def test_bad_payload_names_the_field_and_the_fix(payload: Any, field: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        parse_fault(payload)
    assert info.value.field == field


def test_with_a_fleet_an_unknown_target_lists_valid_choices() -> None:
    fleet = build_fleet(3, 4, clock=FakeClock())
    with pytest.raises(InputError, match="node-01, node-02, node-03") as info:
        parse_fault({"kind": "hung", "node": "node-9", "gpu": 0}, fleet)
    assert info.value.field == "node"
    with pytest.raises(InputError, match=r"0\.\.3") as info:
        parse_fault({"kind": "hung", "node": "node-02", "gpu": 4}, fleet)
    assert info.value.field == "gpu"
    with pytest.raises(InputError, match=r"NVLinks 0\.\.17") as info:
        parse_fault({"kind": "nvlink_down", "node": "node-02", "gpu": 0, "link": 20}, fleet)
    assert info.value.field == "link"
    assert parse_fault({"kind": "hung", "node": "node-03", "gpu": 3}, fleet).gpu == 3


def _served_gpu(fleet: Fleet) -> tuple[str, int]:
    """A GPU running an inference replica: a fault there can reach no other GPU through a job."""
    return next(
        (g.node, g.index)
        for g in fleet.gpu_refs()
        if isinstance(fleet.workload_on(g.node, g.index), InferenceService)
    )


def _changed(faulted: Fleet, twin: Fleet) -> set[tuple[str, int]]:
    """GPUs whose state, health or links differ between two fleets of one seed."""
    return {
        (a.node, a.index)
        for n_a, n_b in zip(faulted.nodes, twin.nodes, strict=True)
        for a, b in zip(n_a.gpus, n_b.gpus, strict=True)
        if (a.state, a.lost, a.nvlink_up, a.nvlink_errors, a.pids)
        != (b.state, b.lost, b.nvlink_up, b.nvlink_errors, b.pids)
    }


FAULTS_BY_REACH = [
    *[{"kind": kind} for kind in GPU_KINDS if kind not in ("xid", "reset_gpu")],
    *[{"kind": "xid", "xid": xid} for xid in (48, 79, 94)],
    {"kind": "power_brake"},  # on one GPU
    {"kind": "power_brake", "node_wide": True},
    {"kind": "node_down", "node_wide": True},
]


@pytest.mark.parametrize(
    "fault",
    FAULTS_BY_REACH,
    ids=[f"{f['kind']}{f.get('xid', '')}{'-node' * ('node_wide' in f)}" for f in FAULTS_BY_REACH],
)
def test_a_fault_changes_no_gpu_it_does_not_reach_but_ranks_of_their_jobs(fault: dict[str, Any]) -> None:
    """The fault eval takes an alert as a fault's only on a GPU the fault ``reaches`` (or on a rank of a job
    one of those runs): the fleet must change no other GPU (a thermal runaway heats no neighbour, a downed
    NVLink shows on no peer), or the eval would count an alert the fault caused as false."""
    clocks = FakeClock(), FakeClock()
    faulted, twin = (build_fleet(2, 8, seed=3, clock=c) for c in clocks)
    node, gpu = _served_gpu(faulted)
    payload = {k: v for k, v in fault.items() if k != "node_wide"} | {"node": node}
    if "node_wide" not in fault:
        payload["gpu"] = gpu
    spec = parse_fault(payload)
    faulted.inject(spec)
    for c, f in zip(clocks, (faulted, twin), strict=True):
        c.advance(300.0)
        f.advance()
    reached = {(g.node, g.index) for g in faulted.gpu_refs() if reaches(spec, g.node, g.index)}
    ranks = {
        (g.node, g.index)
        for g in faulted.gpu_refs()
        if isinstance(work := faulted.workload_on(g.node, g.index), TrainingJob)
        and any(faulted.workload_on(*r) is work for r in reached)
    }
    changed = _changed(faulted, twin)
    assert (node, gpu) in changed
    assert changed - ranks <= reached
    whole_node = {(g.node, g.index) for g in faulted.gpu_refs() if g.node == node}
    assert reached == (whole_node if spec.gpu is None else {(node, gpu)})
