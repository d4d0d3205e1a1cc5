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

The Q and F captures come from another 22.05.8 cluster (nodes gpu01-04, gpu07, r01-n1..3, ``gpu:h100:4`` each,
2 CPUs; partitions gpu = all, debug and high = gpu01-02 with PriorityTier 1 and 10,
``PreemptType=preempt/partition_prio``, ``PreemptMode=REQUEUE``, ``SlurmdTimeout=10``, ``ReturnToService=1``;
read them with ``topology="empty.txt"``; jobs 1-5 are earlier, cancelled ones):

* Q-running / Q-requeued: low (6, ``-p debug -w gpu01 --exclusive``) and rq (7, ``-w gpu02``) running; then
  high (8, ``-p high -w gpu01``) preempted low, and ``scontrol requeue 7``: both PENDING, every node well;
* F-running / F-stalled / F-requeued: flap (9, ``-w gpu07``) running; gpu07's slurmd stopped (SIGSTOP):
  gpu07 ``mixed*`` (NOT_RESPONDING), flap still RUNNING; then slurmctld set gpu07 DOWN and requeued flap,
  slurmd went on (SIGCONT) and gpu07 was back (idle) within a second: flap PENDING, gpu07 well.

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
