"""The Slurm reader against the JSON of releases after 22.05 (data_parser v0.0.39 on: 23.02, 23.11, 24.x),
written from the field tables of Slurm's ``src/plugins/data_parser/v0.0.4x/parsers.c``: numbers as
``{"set", "infinite", "number"}``, states as lists, features and partitions of a node as lists, a job's
allocation under ``job_resources.nodes.allocation``, and ``sinfo --json`` listing grouped ``sinfo`` entries
instead of one entry per node (the nodes are then read from ``scontrol --json show nodes``)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pytest

from alerting.slurm_inventory import SlurmInventory
from gpuwarden.clock import FakeClock
from gpuwarden.errors import SourceError
from tests.alerting.slurm_json import job_24_05, no_val


class Slurm24:
    """Answers as Slurm 24.05 does: ``sinfo --json`` without ``nodes``, ``scontrol --json show nodes``."""

    def __init__(self) -> None:
        self.jobs: list[dict[str, Any]] = []
        self.calls: list[list[str]] = []
        self.nodes_answer: dict[str, Any] | None = None  # what scontrol --json show nodes says

    def __call__(self, argv: Sequence[str]) -> str:
        self.calls.append(list(argv))
        if list(argv[:3]) == ["scontrol", "show", "config"]:
            return "ClusterName = c1\n"
        if list(argv[:3]) == ["scontrol", "show", "topology"]:
            return "SwitchName=r07 Level=0 LinkSpeed=1 Nodes=n[1-2]\n"
        if list(argv[:3]) == ["scontrol", "show", "partition"]:
            return "PartitionName=gpu Nodes=n[1-2] State=UP TotalNodes=2\n"
        if argv[0] == "sinfo":  # grouped by state and partition, as SINFO_DATA
            return json.dumps({"sinfo": [{"nodes": {"nodes": ["n1", "n2"]}, "gres": {"total": "gpu:4"}}]})
        if list(argv) == ["scontrol", "--json", "show", "nodes"]:
            return json.dumps(
                self.nodes_answer if self.nodes_answer is not None else {"nodes": self._nodes()}
            )
        return json.dumps({"jobs": self.jobs})

    @staticmethod
    def _nodes() -> list[dict[str, Any]]:
        return [
            {
                "name": n,
                "gres": "gpu:4",
                "state": ["MIXED"] if n == "n1" else ["IDLE", "DRAIN"],
                "partitions": ["gpu"],
                "features": ["a100", "ib"],
                "active_features": ["a100", "ib"],
                "hostname": n,
                "address": f"10.0.0.{n[1:]}",
                "free_mem": no_val(1000),
            }
            for n in ("n1", "n2")
        ]


def test_a_slurm_24_cluster_reads_as_a_22_05_one_and_keeps_the_job_a_fault_stopped() -> None:
    slurm, clock = Slurm24(), FakeClock(start=1_700_000_000)
    reader = SlurmInventory(clock, slurm, keep_ended_seconds=300)
    slurm.jobs = [job_24_05(41, ["RUNNING"], ["n1"], features="a100&ib")]
    first = reader.read()
    assert ["scontrol", "--json", "show", "nodes"] in slurm.calls
    assert [(n.name, n.gpu_count, n.usable, n.features) for n in first.node_list] == [
        ("n1", 4, True, frozenset({"a100", "ib"})),
        ("n2", 4, False, frozenset({"a100", "ib"})),  # IDLE+DRAIN takes no new job
    ]
    (job,) = first.workload_list
    assert (job.ref.name, job.held, job.constraint) == ("llm (41)", 4, "a100&ib")
    slurm.jobs = [job_24_05(41, ["NODE_FAIL"], ["n1"], end_time=no_val(1_700_000_010), gres_detail=[])]
    clock.advance(20)
    (kept,) = reader.read().workload_list
    assert (kept.ref.name, kept.state, kept.held) == ("llm (41)", "node_fail", 4)


def test_a_release_that_lists_nodes_nowhere_is_refused_naming_what_it_asked() -> None:
    slurm = Slurm24()
    slurm.nodes_answer = {"errors": []}
    with pytest.raises(SourceError, match=r"scontrol --json show nodes: no 'nodes' field"):
        SlurmInventory(FakeClock(), slurm).read()
