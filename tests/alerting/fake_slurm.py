"""What the Slurm inventory tests share: a fake Slurm answering the reader's commands from editable state, a
job of it, and the names of an inventory's workloads."""

from __future__ import annotations

import json
from collections.abc import Sequence

from alerting.inventory import StaticInventory
from gpuwarden.errors import SourceError


class FakeSlurm:
    """Answers the commands the reader runs, from editable state."""

    def __init__(self) -> None:
        self.jobs: list[dict[str, object]] = []
        self.node_state = "mixed"
        self.states: dict[str, str] = {}  # a node's own state, else node_state
        self.features: dict[str, str] = {}  # a node's active features (sinfo: "a100,ib")
        self.partitions: dict[str, list[str]] = {}  # a node's partitions, else ["gpu"]
        self.partition_states: dict[str, str] = {}  # scontrol show partition: name -> State (UP, DOWN, ...)
        self.extra: dict[str, dict[str, object]] = {}  # more sinfo fields of a node (boot_time, ...)
        self.broken = False
        self.removed: set[str] = set()  # nodes gone from slurm.conf (or `scontrol delete nodename`)
        self.cluster = "c1"  # ClusterName
        self.accounting: list[str] | None = None  # sacct's lines (JobIDRaw|JobID|State|End); None: disabled

    def __call__(self, argv: Sequence[str]) -> str:
        if self.broken:
            raise SourceError("slurmctld not responding", source="slurm")
        if argv[0] == "sacct":
            if self.accounting is None:
                raise SourceError("sacct exited 1: Slurm accounting storage is disabled", source="slurm")
            return "".join(f"{line}\n" for line in self.accounting)
        if list(argv[:3]) == ["scontrol", "show", "config"]:
            return f"ClusterName = {self.cluster}\n"
        if list(argv[:3]) == ["scontrol", "show", "topology"]:
            return "SwitchName=r07 Level=0 LinkSpeed=1 Nodes=n[1-2]\n"
        if list(argv[:3]) == ["scontrol", "show", "partition"]:
            return "".join(
                f"PartitionName={p} AllowGroups=ALL Nodes=n[1-2] State={state} TotalNodes=2\n"
                for p, state in self.partition_states.items()
            )
        if argv[0] == "sinfo":
            nodes = [
                {
                    "name": n,
                    "gres": "gpu:8",
                    "state": self.states.get(n, self.node_state),
                    "partitions": self.partitions.get(n, ["gpu"]),
                    "active_features": self.features.get(n, ""),
                    **self.extra.get(n, {}),
                }
                for n in ("n1", "n2")
                if n not in self.removed
            ]
            return json.dumps({"nodes": nodes})
        return json.dumps({"jobs": self.jobs})


def _job(job_id: int, name: str, state: str) -> dict[str, object]:
    return {
        "job_id": job_id,
        "name": name,
        "job_state": state,
        "job_resources": {"allocated_nodes": [{"nodename": "n1"}, {"nodename": "n2"}]},
        "gres_detail": ["gpu:8(IDX:0-7)", "gpu:2(IDX:0-1)"],
    }


def names(inventory: StaticInventory) -> list[str]:
    return sorted(w.ref.name for w in inventory.workload_list)
