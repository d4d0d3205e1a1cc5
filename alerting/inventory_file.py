"""Inventory files: a ``StaticInventory`` as YAML (or JSON), what ``alerting.inventory_file`` reads and
``gpuwarden inventory export`` writes. Errors name the file, line and field.

Besides placement, a file may say what a source said of each node and workload (a node's state, whether it
takes new work, its free and idle GPUs, its partitions; a workload's state, partitions, unit sizes, pods per
unit, group, kept units and GPUs per node), so that an export of a Slurm or Kubernetes inventory, read back,
gives the same priorities as the live one: whether a stopped job can start again is judged by the nodes' free
GPUs then, not by the cluster's ``spare_gpus``. Every one of these fields is optional: a file without them
(one written by hand, or by an older export) reads as before.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from alerting.inventory import RUNNING, GpuKey, NodeInfo, StaticInventory, WorkloadInfo
from gpuwarden.config_problems import suggesting_config_error
from gpuwarden.errors import ConfigError
from gpuwarden.model import WorkloadKind, WorkloadRef
from gpuwarden.yamlfile import field_path, not_a_mapping, read_yaml

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
    state: str = Field("", description="as its source said it (idle+maintenance+reserved, ready+cordoned)")
    usable: bool = Field(True, description="whether it takes new work (not down, drained, cordoned, ...)")
    free_gpus: int | None = Field(
        None, ge=0, le=MAX_NODE_GPUS, description="GPUs a new job could get there; unset: spare_gpus decides"
    )
    idle_gpus: list[Annotated[int, Field(ge=0, le=MAX_NODE_GPUS)]] = Field(
        default_factory=list, description="the indices of its free GPUs, where known"
    )
    partitions: list[Name] = Field(default_factory=list, description="Slurm partitions; empty: any")
    addresses: list[Name] = Field(
        default_factory=list, description="other names alerts give it (Slurm's NodeHostname, NodeAddr)"
    )
    features: list[Name] = Field(default_factory=list, description="Slurm's active node features")

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
        if self.free_gpus is not None and self.free_gpus > self.gpus:
            raise ValueError(f"free_gpus {self.free_gpus} for {self.gpus} gpus: correct one of them")
        beyond = sorted(i for i in set(self.idle_gpus) if i >= self.gpus)
        if beyond:
            raise ValueError(f"idle_gpus has GPU {beyond[0]}, but the node has {self.gpus}, numbered from 0")
        return self


class _WorkloadEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: WorkloadKind
    namespace: str = ""
    name: Name
    cluster: str = Field("", description="its cluster; when empty, that of its GPUs' nodes if they share one")
    units: list[list[str]] = Field(
        description='each unit (replica or rank) lists its GPUs as "node:index" (the GPUs it may be on, where'
        " sizes says it holds fewer)"
    )
    aliases: list[Name] = Field(default_factory=list, description="other names alerts use for it")
    pods: list[Name] = Field(default_factory=list, description="its pods: an alert naming one points here")
    state: Name = Field(
        RUNNING, description="as its source said it (Slurm: pending, node_fail; pods: running)"
    )
    partitions: list[Name] = Field(default_factory=list, description="where it may start again; empty: any")
    nodes: list[Name] = Field(
        default_factory=list,
        description="the only nodes it may start again on (Slurm's ReqNodeList); empty: any",
    )
    excluded_nodes: list[Name] = Field(
        default_factory=list, description="nodes it may not start again on (Slurm's ExcNodeList)"
    )
    constraint: str = Field("", description="Slurm's --constraint (a100&ib), matched with nodes' features")
    sizes: list[Annotated[int, Field(ge=0, le=MAX_NODE_GPUS)]] = Field(
        default_factory=list, description="per unit, how many GPUs it holds; empty: every GPU it lists"
    )
    unit_pods: list[list[Name]] = Field(default_factory=list, description="per unit, its pods")
    group: str = Field("", description="a name it answers to with others (a Slurm array job's id)")
    kept: int = Field(0, ge=0, description="units that stopped abnormally, kept with the GPUs they held")
    unready: list[Annotated[int, Field(ge=0)]] = Field(
        default_factory=list,
        description="the units (by position) of a service whose pods run but are not Ready",
    )
    per_node: int = Field(
        0,
        ge=0,
        le=MAX_NODE_GPUS,
        description="GPUs it asks on each of its nodes (Slurm's --gres=gpu:8); 0: its GPUs are counted",
    )
    min_nodes: int = Field(
        0,
        ge=0,
        description="the fewest nodes it asked (Slurm's --nodes=2-4: 2); 0: as many as it holds",
    )
    queued_ahead: int = Field(
        0, ge=0, description="GPUs pending jobs ahead of it in its partitions ask (Slurm gives them first)"
    )

    @model_validator(mode="after")
    def _runs_somewhere(self) -> _WorkloadEntry:
        if not self.units and not self.pods:  # pending pods only (as an export writes it): known by name
            raise ValueError("no units and no pods: list the GPUs of its units, or its pods if none runs yet")
        for name, per_unit in (("sizes", self.sizes), ("unit_pods", self.unit_pods)):
            if per_unit and len(per_unit) != len(self.units):
                raise ValueError(f"{len(per_unit)} {name} for {len(self.units)} units: give one per unit")
        if self.kept > len(self.units):
            raise ValueError(f"kept {self.kept} of {len(self.units)} units: at most every unit is kept")
        if any(i >= len(self.units) for i in self.unready):
            raise ValueError(f"unready names a unit past the {len(self.units)} units (counted from 0)")
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
    if data is None:  # 0 bytes, comments or a null: an export cut short, not a fleet without nodes
        raise ConfigError(
            "the inventory file is empty (no nodes, workloads or spare_gpus): a shell redirection"
            " (`inventory export > FILE`) empties the file before serve answers, and leaves it so when serve"
            " cannot be reached; write it with `gpuwarden inventory export --file FILE`, which replaces the"
            " file only once the export is complete, or write `nodes: []` for a fleet without nodes",
            path=str(path),
        )
    if not isinstance(data, dict):
        raise not_a_mapping(data, str(path), InventoryFile.model_fields)
    try:
        entries = InventoryFile.model_validate(data)
    except ValidationError as exc:
        raise suggesting_config_error(exc, InventoryFile, str(path), positions) from exc

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
    nodes = [
        NodeInfo(
            n.name,
            n.cluster,
            n.rack,
            n.gpus,
            tuple(n.gpu_uuids),
            state=n.state,
            usable=n.usable,
            free=n.free_gpus,
            idle=frozenset(n.idle_gpus),
            partitions=tuple(n.partitions),
            addresses=tuple(n.addresses),
            features=frozenset(n.features),
        )
        for n in entries.nodes
    ]
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
    w: _WorkloadEntry, by_name: dict[str, list[NodeInfo]], refuse: Callable[..., Exception]
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
        if not unit and not w.sizes:
            raise refuse("a unit with no GPU: list its GPUs, or say how many it holds in sizes", "units", u)
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
    # Sizes that each say a unit holds every GPU it lists say nothing: the sources leave them out then.
    exact = not w.sizes or all(size == len(unit) for size, unit in zip(w.sizes, units, strict=True))
    return WorkloadInfo(
        ref,
        tuple(units),
        aliases=tuple(w.aliases),
        pods=tuple(w.pods),
        state=w.state,
        partitions=tuple(w.partitions),
        nodes=tuple(w.nodes),
        excluded_nodes=tuple(w.excluded_nodes),
        constraint=w.constraint,
        sizes=() if exact else tuple(w.sizes),
        unit_pods=tuple(tuple(pods) for pods in w.unit_pods),
        group=w.group,
        kept=w.kept,
        unready=tuple(sorted(set(w.unready))),
        per_node=w.per_node,
        min_nodes=w.min_nodes,
        queued_ahead=w.queued_ahead,
    )


def inventory_data(inventory: StaticInventory) -> dict[str, Any]:
    """The inverse of ``load_inventory``: a mapping to write as YAML, with what the sources said of nodes and
    workloads where it is not the default (a file inventory's export is as it was).

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
                **({"addresses": list(n.addresses)} if n.addresses else {}),
                **_node_state(n),
            }
            for n in inventory.node_list
        ],
        "workloads": [workload_data(w) for w in inventory.workload_list],
        "spare_gpus": dict(inventory.spare),
    }


def workload_data(w: WorkloadInfo) -> dict[str, Any]:
    """One workload as an inventory file lists it."""
    return {
        "kind": w.ref.kind.value,
        "namespace": w.ref.namespace,
        "name": w.ref.name,
        **({"cluster": w.ref.cluster} if w.ref.cluster else {}),
        "units": [
            [f"{node}:{index}" for _, node, index in sorted(unit, key=lambda g: (g[1], g[2]))]
            for unit in w.units
        ],
        **({"aliases": list(w.aliases)} if w.aliases else {}),
        **({"pods": list(w.pods)} if w.pods else {}),
        **_workload_state(w),
    }


def workload_from_data(data: Mapping[str, Any]) -> WorkloadInfo:
    """A workload that ``workload_data`` wrote (the store keeps kept Slurm jobs so); ``ValueError`` names
    the field that is wrong."""
    try:
        entry = _WorkloadEntry.model_validate(data)
    except ValidationError as exc:
        raise ValueError(str(exc)) from exc

    def refuse(message: str, *loc: str | int) -> ValueError:
        return ValueError(f"{field_path(loc)}: {message}")

    return _workload(entry, {}, refuse)


def _node_state(n: NodeInfo) -> dict[str, Any]:
    """A node's fields beyond placement that differ from a file's defaults."""
    out: dict[str, Any] = {}
    if n.state:
        out["state"] = n.state
    if not n.usable:
        out["usable"] = False
    if n.free is not None:
        out["free_gpus"] = n.free
    if n.idle:
        out["idle_gpus"] = sorted(n.idle)
    if n.partitions:
        out["partitions"] = list(n.partitions)
    if n.features:
        out["features"] = sorted(n.features)
    return out


def _workload_state(w: WorkloadInfo) -> dict[str, Any]:
    """A workload's fields beyond placement that differ from a file's defaults. A unit that lists no GPU
    (where it is not known) takes its size along, so that the units keep their order for ``unit_pods``."""
    out: dict[str, Any] = {}
    if w.state != RUNNING:
        out["state"] = w.state
    for key, names in (
        ("partitions", w.partitions),
        ("nodes", w.nodes),
        ("excluded_nodes", w.excluded_nodes),
    ):
        if names:
            out[key] = list(names)
    if w.constraint:
        out["constraint"] = w.constraint
    if w.sizes or not all(w.units):
        out["sizes"] = [w.size(i) for i in range(len(w.units))]
    if w.unit_pods:
        out["unit_pods"] = [list(pods) for pods in w.unit_pods]
    if w.group:
        out["group"] = w.group
    if w.kept:
        out["kept"] = w.kept
    if w.unready:
        out["unready"] = list(w.unready)
    if w.per_node:
        out["per_node"] = w.per_node
    if w.min_nodes:
        out["min_nodes"] = w.min_nodes
    if w.queued_ahead:
        out["queued_ahead"] = w.queued_ahead
    return out
