"""Checks that ``serve``'s simulated inventory (``alerting.sim_inventory``) and the simulated exporter
(``exporter --simulate``, ``exporter.simulate``) stand for one fleet, read from the same file: serve would
otherwise assess alerts from nodes and GPUs it does not know. ``config validate`` (``preflight``), ``serve``
and ``exporter`` call the same functions, so each says the same line."""

from __future__ import annotations

from typing import TYPE_CHECKING

from gpuwarden.errors import ConfigError

if TYPE_CHECKING:
    from gpuwarden.config import GpuwardenConfig, SimConfig


_SHAPE = ("clusters", "racks_per_cluster", "nodes_per_rack", "gpus_per_node")
SIM_FLEET_READS = (*(f"sim.{name}" for name in _SHAPE), "exporter.simulate", "alerting.sim_inventory")
"""What the simulated-inventory checks read: one of them at fault holds its default, not the file's value."""


def _sim_size_written(full: GpuwardenConfig) -> list[str]:
    """The fleet-size settings the ``sim:`` section sets (in the file or a variable)."""
    if "sim" not in full.model_fields_set:
        return []
    return [name for name in _SHAPE if name in full.sim.model_fields_set]


def simulated_fleet(full: GpuwardenConfig) -> SimConfig:
    """The simulated fleet ``serve``'s ``alerting.sim_inventory`` stands for: the ``sim:`` section's when it
    sets the fleet's size, else the ``exporter.simulate`` of the same file (one cluster, one rack, as the
    exporter builds it), so that both read one setting; else the section's default (two nodes of 8 GPUs).
    The seed and GPU model are the section's either way, as the exporter takes them."""
    if _sim_size_written(full) or full.exporter.simulate is None:
        return full.sim
    from gpuwarden.sim import parse_simulate_spec  # noqa: PLC0415

    nodes, gpus = parse_simulate_spec(full.exporter.simulate)
    shape = {"clusters": 1, "racks_per_cluster": 1, "nodes_per_rack": nodes, "gpus_per_node": gpus}
    return full.sim.model_copy(update=shape)


def check_sim_section(full: GpuwardenConfig, spec: str, flag: str) -> None:
    """``ConfigError`` when ``spec`` serves another fleet than the one serve's ``alerting.sim_inventory``
    takes from the same configuration (``simulated_fleet``): serve would assess alerts from nodes and GPUs
    it does not know. Checked when the ``sim:`` section sets the fleet's size, or ``sim_inventory`` is on;
    a section that sets only ``seed`` (or ``gpu_model``) is the documented use."""
    from gpuwarden.sim import parse_simulate_spec  # noqa: PLC0415

    given = _sim_size_written(full)
    if not given and not full.alerting.sim_inventory:
        return
    sim = simulated_fleet(full)
    nodes, gpus = parse_simulate_spec(spec)
    sim_nodes = sim.nodes
    if (nodes, gpus) == (sim_nodes, sim.gpus_per_node):
        return
    if not given:  # the fleet of exporter.simulate, or the section's default
        written = full.exporter.simulate
        assumed = f"exporter.simulate {written} of this file" if written else "the default simulated fleet"
        raise ConfigError(
            f"alerting.sim_inventory is on, and serve assumes {assumed}, {sim_nodes} nodes of"
            f" {sim.gpus_per_node} GPUs, but {flag} {spec} serves {nodes} nodes of {gpus} GPUs; write"
            f" exporter.simulate: {spec} in this file (serve and the exporter both read it) and start the"
            " exporter with it and no --simulate",
            field="exporter.simulate" if written else "alerting.sim_inventory",
            reads=SIM_FLEET_READS,
        )
    field = (
        "sim.gpus_per_node" if gpus != sim.gpus_per_node and "gpus_per_node" in given else f"sim.{given[0]}"
    )
    split = "clusters: 1, racks_per_cluster: 1, " if {"clusters", "racks_per_cluster"} & set(given) else ""
    raise ConfigError(
        f"{sim_nodes} nodes of {sim.gpus_per_node} GPUs (clusters {sim.clusters} x racks_per_cluster"
        f" {sim.racks_per_cluster} x nodes_per_rack {sim.nodes_per_rack}), the fleet serve's"
        f" alerting.sim_inventory assumes, but {flag} {spec} serves {nodes} nodes of {gpus} GPUs; make them"
        f" agree: {flag} {sim_nodes}x{sim.gpus_per_node}, or sim: {{{split}nodes_per_rack: {nodes},"
        f" gpus_per_node: {gpus}}} (one cluster and one rack, as {flag} builds it)",
        field=field,
        reads=SIM_FLEET_READS,
    )


def check_sim_inventory(full: GpuwardenConfig) -> list[ConfigError]:
    """A warning when ``alerting.sim_inventory`` is on and nothing in the configuration says the fleet's
    size: serve then assumes the default fleet, whatever ``exporter --simulate`` serves elsewhere."""
    if not full.alerting.sim_inventory or _sim_size_written(full) or full.exporter.simulate:
        return []
    sim = full.sim
    return [
        ConfigError(
            f"serve takes the default simulated fleet as its inventory ({sim.nodes} nodes of"
            f" {sim.gpus_per_node} GPUs): alerts from an exporter simulating another size name nodes it does"
            " not know; write the exporter's size as exporter.simulate: NODESxGPUS in this file (serve and"
            " the exporter both read it) and start the exporter with it and no --simulate",
            field="alerting.sim_inventory",
            reads=SIM_FLEET_READS,
        )
    ]


def mig_gpus(full: GpuwardenConfig, spec: str, flag: str) -> list[tuple[str, int]]:
    """``sim.mig_gpus`` as ``(node, index)``, each checked against the fleet ``spec`` (``NODESxGPUS``) serves:
    a GPU it does not have is refused (``ConfigError`` naming the setting and ``flag``), not left in whole-GPU
    mode without a word. ``config validate`` and ``exporter`` call it alike."""
    from gpuwarden.sim import parse_simulate_spec  # noqa: PLC0415

    nodes, gpus = parse_simulate_spec(spec)
    chosen = []
    for item in full.sim.mig_gpus:
        node, _, index = item.rpartition(":")
        number, gpu = int(node.removeprefix("node-")), int(index)
        if not 1 <= number <= nodes or gpu >= gpus:
            raise ConfigError(
                f"{item!r}: {flag} {spec} serves node-01 to node-{nodes:02d} with GPUs 0 to {gpus - 1}; name"
                " one of those GPUs",
                field="sim.mig_gpus",
            )
        chosen.append((f"node-{number:02d}", gpu))
    return chosen
