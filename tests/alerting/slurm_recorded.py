"""Recorded answers of a real Slurm 22.05.8 cluster, for the Slurm reader's tests.

tests/alerting/slurm_22_05 holds what five ``slurmd -N`` on one host answered (partition gpu = node-01..04,
node-04 ``gpu:h100:4``; partition other = node-05 ``gpu:a100:2,gpu:h100:2``; topology/tree racks r01 =
node-01,02, r02 = node-03,04, r03 = node-05; each node has 2 CPUs):

* A: quick COMPLETED, crash FAILED, tres3 CANCELLED; array 5 (tasks 5_0, 5_1 running, 5_2 pending); mixtype
  holding gpu:a100:2 and gpu:h100:1 on node-05; span5 (``--gpus=5 -N2``); a pending het job 8+0/8+1;
* B: the het job running (8+0 on node-05 without GPU indices after a GRES reconfigure, 8+1 on node-02), slow
  running on node-04;
* C: slow TIMEOUT, array 5 cancelled; a MAINT reservation on node-04, an ordinary one on node-03;
* D-running / D-requeued: llm (``-N2 --gres=gpu:4``) on node-01,02; node-01 set DOWN, llm requeued (PENDING).

``topology.txt`` is the tree above; ``topology-no-switch.txt`` the same cluster before node-05 was in a
switch; ``empty.txt`` stands for topology/none.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

RECORDED = Path(__file__).parent / "slurm_22_05"


class RecordedSlurm:
    """Answers with recorded ``sinfo``/``squeue`` JSON of a real cluster, one capture at a time."""

    def __init__(self, capture: str, topology: str = "topology.txt") -> None:
        self.capture = capture
        self.topology = topology

    def __call__(self, argv: Sequence[str]) -> str:
        if list(argv[:3]) == ["scontrol", "show", "config"]:
            return "ClusterName = cap\n"
        if list(argv[:3]) == ["scontrol", "show", "topology"]:
            return (RECORDED / self.topology).read_text()
        if list(argv[:3]) == ["scontrol", "show", "partition"]:  # both were UP in every capture
            return (
                "PartitionName=gpu Nodes=node-0[1-4] State=UP TotalNodes=4\n"
                "PartitionName=other Nodes=node-05 State=UP TotalNodes=1\n"
            )
        return (RECORDED / f"{argv[0]}-{self.capture}.json").read_text()
