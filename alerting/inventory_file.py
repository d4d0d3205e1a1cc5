"""Inventory files: a ``StaticInventory`` as YAML (or JSON), what ``alerting.inventory_file`` reads and
``gpuwarden inventory export`` writes. Errors name the file, line and field."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from alerting.inventory import GpuKey, NodeInfo, StaticInventory, WorkloadInfo
from gpuwarden.errors import ConfigError
from gpuwarden.model import WorkloadKind, WorkloadRef
from gpuwarden.yamlfile import field_path, read_yaml, validation_to_config_error

Name = Annotated[str, Field(min_length=1)]
MAX_NODE_GPUS = 4096  # GPUs a node may advertise (time-sliced and MIG devices included)
MAX_SPARE_GPUS = 10_000_000


class _NodeEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: Name
    cluster: Name = Field(description="as alerts carry it in `cluster`")
    rack: str = Field(description="empty or ?: unknown")
    gpus: int = Field(ge=0, le=MAX_NODE_GPUS)
    gpu_uuids: list[Name] = Field(default_factory=list, description="the UUID of GPU 0, 1, ...")

    @model_validator(mode="after")
    def _one_uuid_per_gpu(self) -> _NodeEntry:
        if len(self.gpu_uuids) > self.gpus:
            raise ValueError(
                f"{len(self.gpu_uuids)} gpu_uuids for {self.gpus} gpus: the UUIDs are those of GPUs 0, 1, ..."
                " in order; correct gpus or remove the extra UUIDs"
            )
        twice = sorted({u for u in self.gpu_uuids if self.gpu_uuids.count(u) > 1})
        if twice:
            raise ValueError(f"GPU UUID {twice[0]!r} is listed twice: each GPU has its own")
        return self


class _WorkloadEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: WorkloadKind
    namespace: str = ""
    name: Name
    cluster: str = Field("", description="its cluster; when empty, that of its GPUs' nodes if they share one")
    units: list[Annotated[list[str], Field(min_length=1)]] = Field(
        description='each unit (replica or rank) lists its GPUs as "node:index"'
    )
    aliases: list[Name] = Field(default_factory=list, description="other names alerts use for it")
    pods: list[Name] = Field(default_factory=list, description="its pods: an alert naming one points here")

    @model_validator(mode="after")
    def _runs_somewhere(self) -> _WorkloadEntry:
        if not self.units and not self.pods:  # pending pods only (as an export writes it): known by name
            raise ValueError("no units and no pods: list the GPUs of its units, or its pods if none runs yet")
        return self


class InventoryFile(BaseModel):
    """A static inventory as data: nodes, workloads with their units, spare GPUs per cluster."""

    model_config = ConfigDict(extra="forbid")

    nodes: list[_NodeEntry] = Field(default_factory=list)
    workloads: list[_WorkloadEntry] = Field(default_factory=list)
    spare_gpus: dict[Name, Annotated[int, Field(ge=0, le=MAX_SPARE_GPUS)]] = Field(default_factory=dict)


_GPU_TEXT = re.compile(r"(.+):([0-9]+)")  # ASCII digits: "n1:²" is no index (str.isdigit says it is)


def _gpu_text(text: str) -> tuple[str, int]:
    found = _GPU_TEXT.fullmatch(text)
    if found is None:
        raise ValueError(f'GPU {text!r} must be "node:index"')
    return found.group(1), int(found.group(2))


def load_inventory(path: Path) -> StaticInventory:
    """Read an inventory YAML file (errors name file, line and field)."""
    data, positions = read_yaml(path)
    if not isinstance(data, dict | None):
        raise ConfigError("the top level must be a mapping", path=str(path), line=1)
    try:
        entries = InventoryFile.model_validate(data or {})
    except ValidationError as exc:
        raise validation_to_config_error(exc, str(path), positions) from exc

    def refuse(message: str, *rest: str | int, loc_prefix: tuple[str | int, ...] = ()) -> ConfigError:
        loc = (*loc_prefix, *rest)
        line = next((positions[loc[:d]] for d in range(len(loc), 0, -1) if loc[:d] in positions), None)
        return ConfigError(message, path=str(path), field=field_path(loc), line=line)

    listed: dict[tuple[str, str], int] = {}
    owner: dict[str, int] = {}
    for i, n in enumerate(entries.nodes):
        if (n.cluster, n.name) in listed:
            also = listed[n.cluster, n.name]
            raise refuse(
                f"node {n.name!r} of cluster {n.cluster!r} is listed twice (also nodes[{also}])",
                "nodes",
                i,
                "name",
            )
        listed[n.cluster, n.name] = i
        for j, uuid in enumerate(n.gpu_uuids):
            if uuid in owner:  # alerts naming it would land on one of the two nodes
                raise refuse(
                    f"GPU UUID {uuid!r} is also nodes[{owner[uuid]}]'s: a GPU is in one node",
                    "nodes",
                    i,
                    "gpu_uuids",
                    j,
                )
            owner[uuid] = i
    nodes = [NodeInfo(n.name, n.cluster, n.rack, n.gpus, tuple(n.gpu_uuids)) for n in entries.nodes]
    by_name: dict[str, list[NodeInfo]] = {}
    for node in nodes:
        by_name.setdefault(node.name, []).append(node)
    workloads: list[WorkloadInfo] = []
    seen: dict[WorkloadRef, int] = {}
    for i, w in enumerate(entries.workloads):
        workload = _workload(w, by_name, functools.partial(refuse, loc_prefix=("workloads", i)))
        if workload.ref in seen:
            raise refuse(
                f"{workload.ref} is listed twice (also workloads[{seen[workload.ref]}]); merge its units",
                "workloads",
                i,
                "name",
            )
        seen[workload.ref] = i
        workloads.append(workload)
    return StaticInventory(nodes, workloads, dict(entries.spare_gpus))


def _workload(
    w: _WorkloadEntry, by_name: dict[str, list[NodeInfo]], refuse: Callable[..., ConfigError]
) -> WorkloadInfo:
    """One workload entry: its units checked against the nodes the file lists, its cluster settled;
    ``refuse(message, *loc)`` is the error at ``loc`` under the entry."""

    def key(node: str, index: int, u: int, g: int) -> GpuKey:
        # A node the file does not list may be one another source knows; a listed one says how many.
        candidates = by_name.get(node, [])
        if w.cluster:
            chosen = [n for n in candidates if n.cluster == w.cluster]
            if candidates and not chosen:
                elsewhere = ", ".join(sorted({n.cluster for n in candidates}))
                message = (
                    f"GPU {node}:{index}: node {node} is listed in cluster {elsewhere}, not in the "
                    f"workload's cluster {w.cluster} (list the node in {w.cluster} or correct the "
                    "workload's cluster)"
                )
                raise refuse(message, "units", u, g)
        elif len(candidates) > 1:
            clusters = " and ".join(sorted(n.cluster for n in candidates))
            message = (
                f"GPU {node}:{index}: clusters {clusters} both have a node {node}: "
                "give the workload a cluster"
            )
            raise refuse(message, "cluster")
        else:
            chosen = candidates
        if chosen and index >= chosen[0].gpu_count:
            message = f"GPU {node}:{index}, but node {node} has {chosen[0].gpu_count} GPUs, numbered from 0"
            raise refuse(message, "units", u, g)
        return (chosen[0].cluster if chosen else w.cluster, node, index)

    units = []
    for u, unit in enumerate(w.units):
        gpus = set()
        for g, text in enumerate(unit):
            try:
                node, index = _gpu_text(text)
            except ValueError as exc:
                raise refuse(str(exc), "units", u, g) from exc
            gpus.add(key(node, index, u, g))
        units.append(frozenset(gpus))
    clusters = {gpu[0] for unit in units for gpu in unit}
    cluster = w.cluster or (clusters.pop() if len(clusters) == 1 else "")
    ref = WorkloadRef(w.kind, w.namespace, w.name, cluster)
    return WorkloadInfo(ref, tuple(units), aliases=tuple(w.aliases), pods=tuple(w.pods))


def inventory_data(inventory: StaticInventory) -> dict[str, Any]:
    """The inverse of ``load_inventory``: a mapping to write as YAML.

    A node's ``gpus`` covers every index a workload holds on it: a Kubernetes node whose device plugin now
    reports one GPU fewer (one fell off the bus) may still have a pod placed on the highest index."""
    highest: dict[tuple[str, str], int] = {}
    for w in inventory.workload_list:
        for cluster, node, index in w.gpus:
            highest[cluster, node] = max(highest.get((cluster, node), -1), index)
    return {
        "nodes": [
            {
                "name": n.name,
                "cluster": n.cluster,
                "rack": n.rack,
                "gpus": max(n.gpu_count, highest.get((n.cluster, n.name), -1) + 1, len(n.gpu_uuids)),
                "gpu_uuids": list(n.gpu_uuids),
            }
            for n in inventory.node_list
        ],
        "workloads": [
            {
                "kind": w.ref.kind.value,
                "namespace": w.ref.namespace,
                "name": w.ref.name,
                **({"cluster": w.ref.cluster} if w.ref.cluster else {}),
                "units": [  # a unit whose GPUs are not known holds none the file could name
                    [f"{node}:{index}" for _, node, index in sorted(unit, key=lambda g: (g[1], g[2]))]
                    for unit in w.units
                    if unit
                ],
                **({"aliases": list(w.aliases)} if w.aliases else {}),
                **({"pods": list(w.pods)} if w.pods else {}),
            }
            for w in inventory.workload_list
        ],
        "spare_gpus": dict(inventory.spare),
    }
