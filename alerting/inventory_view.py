"""What the sources said of each node and workload beyond placement, for the inventory API and CLI, under
``about``: where an older CLI reads it (the file format, ``inventory_file.inventory_data``, carries it too
now), with the GPUs each workload holds."""

from __future__ import annotations

from typing import Any

from alerting.inventory import StaticInventory


def inventory_states(inventory: StaticInventory) -> dict[str, list[dict[str, Any]]]:
    """What the sources said of each node and workload beyond placement: a node's state, whether it takes new
    work, its free GPUs and partitions; a workload's state, how many of its units are kept after stopping
    abnormally, and how many GPUs it holds (fewer than its units list where their indices are unknown)."""
    nodes = [
        {
            "cluster": n.cluster,
            "name": n.name,
            "state": n.state,
            "usable": n.usable,
            "free_gpus": n.free,
            "partitions": list(n.partitions),
        }
        for n in inventory.node_list
    ]
    workloads = [
        {
            "kind": w.ref.kind.value,
            "namespace": w.ref.namespace,
            "name": w.ref.name,
            "cluster": w.ref.cluster,
            "state": w.state,
            "kept_units": w.kept,
            "gpus_held": w.held,
        }
        for w in inventory.workload_list
    ]
    return {"node_states": nodes, "workload_states": workloads}
