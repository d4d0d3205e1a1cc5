"""Which Slurm nodes were in trouble when a job left them: tells a requeue that a node failure caused from one
that preemption or a person did.

Slurm requeues a job (PENDING again) when one of its nodes fails, when a job of a higher tier preempts it
(``PreemptMode=REQUEUE``) and when an operator runs ``scontrol requeue``; nothing in the job says which (Slurm
22.05, checked on a real cluster: ``squeue --json`` and ``scontrol show job -d`` give the same
``state_reason`` BeginTime, ``restart_cnt`` 1, ``preempt_time`` 0 and ``Requeue=1`` for all three, and
``sacct`` needs accounting). The nodes tell: a node failure shows on one of the job's nodes as DOWN, FAIL or
NOT_RESPONDING at the read that saw the job leave, or at the read before (slurmctld marks a node that stops
answering NOT_RESPONDING for up to ``SlurmdTimeout``, 300 s by default, before it sets it DOWN and requeues
its jobs; with ``ReturnToService=1`` it may be back within a second after that), or as a node that booted or
whose slurmd started again since the read before (``boot_time``, ``slurmd_start_time``). A node that stopped
answering and came back between two reads, for less than one refresh, leaves no trace in Slurm's answers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from alerting.slurm_jobs import slurm_number
from gpuwarden.errors import SourceError

# Node state words (``slurm_inventory.node_state``) of a node that failed, or that slurmctld cannot reach
TROUBLE_STATES = frozenset({"down", "fail", "failing", "not_responding"})
# A requeued job's states: Slurm's requeue (node failure, preemption, scontrol requeue) puts it back in the
# queue. SPECIAL_EXIT (RequeueExitHold: the job's own exit code asked it) is a failure of the job.
REQUEUED_STATES = frozenset({"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED"})


class NodeTrouble:
    """Remembers, from one read to the next, which nodes were in trouble and when each last started."""

    def __init__(self) -> None:
        self._troubled: frozenset[str] = frozenset()  # in trouble at the last read
        self._started: dict[
            str, tuple[float | None, float | None]
        ] = {}  # boot, slurmd start at the last read
        self._now: frozenset[str] = frozenset()  # in trouble at this read, or the one before, or restarted

    def update(self, nodes: Iterable[tuple[Mapping[str, Any], str]]) -> None:
        """Take in a read's nodes (``sinfo --json`` entries, each with its ``node_state``)."""
        troubled, started, restarted = set(), {}, set()
        for node, state in nodes:
            name = str(node.get("name", ""))
            if TROUBLE_STATES & set(state.split("+")):
                troubled.add(name)
            started[name] = (_number(node, "boot_time"), _number(node, "slurmd_start_time"))
            if name in self._started and self._started[name] != started[name]:
                restarted.add(name)
        self._now = frozenset(troubled) | self._troubled | frozenset(restarted)
        self._troubled, self._started = frozenset(troubled), started

    def any_in_trouble(self, nodes: Iterable[str]) -> bool:
        """Whether one of ``nodes`` was in trouble at the last read taken in or the one before it."""
        return any(node in self._now for node in nodes)


def _number(node: Mapping[str, Any], key: str) -> float | None:
    """A node's time field; None where unset or of a shape not known (only a hint here, never an error)."""
    try:
        return slurm_number(node.get(key), key)
    except SourceError:
        return None
