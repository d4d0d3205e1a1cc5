from __future__ import annotations

import pytest

from gpuwarden.clock import FakeClock
from gpuwarden.config import SimConfig
from gpuwarden.errors import InputError
from gpuwarden.model import GpuRef
from gpuwarden.sim import Fleet, build_fleet, fleet_from_config, parse_simulate_spec


@pytest.mark.parametrize(
    ("spec", "expected"),
    [("2x8", (2, 8)), ("1X1", (1, 1)), ("16x4", (16, 4))],
    ids=["plain", "upper-x", "two-digits"],
)
def test_simulate_spec_parses_nodes_and_gpus(spec: str, expected: tuple[int, int]) -> None:
    assert parse_simulate_spec(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "NODESxGPUS"),
        ("2*8", "NODESxGPUS"),
        ("0x8", "nodes must be 1..2048"),
        ("5000x8", "nodes must be 1..2048"),
        ("2x17", "1..16"),
        ("2x0", "1..16"),
        ("\u0662x\u0668", "NODESxGPUS"),
        ("\uff12x\uff18", "NODESxGPUS"),
        ("2x8\u00a0", "NODESxGPUS"),
        ("9" * 5000 + "x8", "nodes must be 1..2048, got a number of 5000 digits"),
    ],
    ids=[
        "empty",
        "wrong-separator",
        "no-nodes",
        "too-many-nodes",
        "too-many-gpus",
        "no-gpus",
        "arabic-indic-digits",
        "fullwidth-digits",
        "no-break-space",
        "past-int-digits",
    ],
)
def test_bad_simulate_spec_is_an_input_error_with_the_reason(spec: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        parse_simulate_spec(spec)
    assert info.value.field == "simulate"


def test_nodes_are_spread_over_clusters_and_racks_with_stable_names() -> None:
    fleet = build_fleet(8, 2, clusters=2, racks_per_cluster=2, clock=FakeClock())
    names = [(n.name, n.cluster, n.rack) for n in fleet.nodes]
    assert names[0] == ("node-01", "c01", "r01")
    assert names[-1] == ("node-08", "c02", "r04")
    assert {n.rack for n in fleet.nodes} == {"r01", "r02", "r03", "r04"}
    assert sum(n.cluster == "c01" for n in fleet.nodes) == 4


def test_gpu_identity_looks_like_nvml_and_is_unique(fleet: Fleet) -> None:
    gpus = [g for n in fleet.nodes for g in n.gpus]
    assert len({g.uuid for g in gpus}) == 16
    assert len({g.serial for g in gpus}) == 16
    gpu = fleet.gpu("node-01", 0)
    assert gpu.uuid.startswith("GPU-") and len(gpu.uuid) == 40
    assert gpu.pci_bus_id == "00000000:18:00.0"
    assert gpu.name == "NVIDIA H100 80GB HBM3"


def test_same_seed_gives_same_identities_and_other_seed_differs() -> None:
    a = build_fleet(seed=3, clock=FakeClock())
    b = build_fleet(seed=3, clock=FakeClock())
    c = build_fleet(seed=4, clock=FakeClock())
    assert [g.uuid for g in a.gpu_refs()] == [g.uuid for g in b.gpu_refs()]
    assert [g.uuid for g in a.gpu_refs()] != [g.uuid for g in c.gpu_refs()]


def test_gpu_refs_cover_every_gpu_in_order(fleet: Fleet) -> None:
    refs = fleet.gpu_refs()
    assert refs[0] == GpuRef("node-01", 0, fleet.gpu("node-01", 0).uuid)
    assert [(r.node, r.index) for r in refs][-1] == ("node-02", 7)
    assert len(refs) == 16


def test_unknown_node_and_gpu_name_valid_choices(fleet: Fleet) -> None:
    with pytest.raises(InputError, match="node-01, node-02") as info:
        fleet.node("node-99")
    assert info.value.field == "node"
    with pytest.raises(InputError, match=r"0\.\.7"):
        fleet.gpu("node-01", 8)


def test_fleet_from_config_multiplies_clusters_racks_and_nodes() -> None:
    cfg = SimConfig(seed=5, clusters=2, racks_per_cluster=2, nodes_per_rack=3, gpus_per_node=4)
    fleet = fleet_from_config(cfg, FakeClock())
    assert len(fleet.nodes) == 12
    assert all(len(n.gpus) == 4 for n in fleet.nodes)
    assert fleet.seed == 5


def test_workloads_are_placed_on_gpus() -> None:
    fleet = build_fleet(2, 8, clock=FakeClock())
    jobs = fleet.training_jobs()
    services = fleet.inference_services()
    assert len(jobs) == 1 and len(jobs[0].ranks) == 8
    assert {r.node for r in jobs[0].ranks.values()} == {"node-01", "node-02"}
    assert {s.name for s in services} == {"llm-chat", "llm-embed"}
    used = {(r.node, r.index) for r in jobs[0].ranks.values()}
    for svc in services:
        assert used.isdisjoint((g.node, g.index) for g in svc.gpus)
    assert fleet.workload_on("node-01", 7) is None


def test_fleet_from_config_turns_mig_on_where_asked() -> None:
    fleet = fleet_from_config(SimConfig(nodes_per_rack=2), FakeClock(), mig_gpus=["node-02:7"])
    assert [m.profile for m in fleet.gpu("node-02", 7).mig] == ["3g.40gb", "2g.20gb", "1g.10gb"]
    assert fleet.gpu("node-01", 7).mig == []
    with pytest.raises(InputError, match="NODE:INDEX"):
        fleet_from_config(SimConfig(), FakeClock(), mig_gpus=["node-02"])


@pytest.mark.parametrize(
    ("spec", "fix"),
    [(" 16 x 4 ", "16x4"), ("2x8\n", "2x8"), ("2\tx8", "2x8"), (" 2x8", "2x8")],
    ids=["spaces", "newline", "tab", "leading-space"],
)
def test_a_simulate_spec_with_blanks_is_refused_saying_what_to_write(spec: str, fix: str) -> None:
    """Blanks were taken (``--simulate ' 2x8'``, a YAML block's newline) where every number option of the
    command line refuses them (``--port ' 5'``)."""
    with pytest.raises(InputError) as info:
        parse_simulate_spec(spec)
    assert info.value.field == "simulate"
    assert info.value.message == f"expected NODESxGPUS such as 2x8, got {spec!r}: no blanks; write {fix}"
