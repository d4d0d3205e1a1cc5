"""The inventory of a Slurm cluster, read with Slurm's own commands.

* nodes and their GPUs: ``sinfo --json`` (``gres`` such as ``gpu:8`` or ``gpu:h100:8(S:0-1)``);
* racks: ``scontrol show topology`` with the ``topology/tree`` plugin, a node's rack being the leaf switch
  it hangs off (no topology: the rack is unknown);
* the cluster: ``ClusterName`` of ``scontrol show config``;
* partitions that start no job (``State=DOWN`` or ``INACTIVE`` in ``scontrol show partition``): left out of
  each node's partitions, so that a stopped job of such a partition has no spare GPUs, and a node with none
  left takes no new work (``partitions_down``);
* training jobs: ``squeue --json``, each running job with the GPUs it holds on each node
  (``gres_detail`` such as ``gpu:4(IDX:0-3)``, one entry per allocated node). Job names repeat (array jobs,
  ``bash``), ids do not: a job is ``<name> (<id>)``, and answers to its id (what the exporter's cgroup
  attribution puts in ``slurm_job``) and to its name. Each GPU is one unit (one rank per GPU, as training
  launchers place them).

When a node dies Slurm ends (NODE_FAIL, FAILED) or requeues its jobs, and the next read no longer shows them
on their GPUs; the incident that the node's failure opens must still know that the job ran there. So a job
that stops running for any other reason than finishing (COMPLETED, CANCELLED, TIMEOUT, DEADLINE, PREEMPTED;
``squeue`` lists such a job a while with no GPUs, and its state says it ended), or that vanishes from
``squeue`` while running, stays in the inventory ``keep_ended_seconds`` with the GPUs it last held; with
``keep_in`` a store (``alerting.kept_jobs``) keeps them too, so that a reader started later (serve restarted,
a standby taking over) knows them, a requeued job included, for which Slurm names no node any more. Jobs are
parsed in ``alerting.slurm_jobs``. A node gone from Slurm that a kept job ran on stays listed as last read
(state ``deleted``, no work) while the job is kept; with ``keep_in``'s ``places``
(``alerting.kept_inventory``) across restarts too, where each node as last listed is kept as well: a node
removed while no serve ran, that a job ``squeue`` still lists as stopped ran on, is known at the first read.
Spare GPUs per cluster are the GPUs of usable nodes that no running job holds.

Tested against Slurm 22.05 (Debian 12), and against the JSON of 23.02 to 24.x as their data_parser writes
it (``tests/alerting/test_slurm_inventory_releases.py``): numbers as ``{"set", "infinite", "number"}``
(unset or infinite: not known), states and a node's features as lists, a job's nodes under
``job_resources.nodes.allocation``, and a ``sinfo --json`` that lists grouped ``sinfo`` entries, not one
per node: the nodes are then read from ``scontrol --json show nodes``. JSON that lacks the fields read here
(``nodes``; ``job_resources.allocated_nodes`` or ``job_resources.nodes.allocation`` of a job) or writes a
number in another shape is refused with a ``SourceError`` naming the field, not read as an empty cluster.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Protocol

from alerting.inventory import NodeInfo, StaticInventory, WorkloadInfo, in_cluster
from alerting.kept_inventory import (
    LISTED,
    Kept,
    KeptRecords,
    KeptSync,
    drop_other_clusters,
    kept_nodes,
    left_while_down,
    listed_places,
    node_places,
)
from alerting.slurm_commands import run_command
from alerting.slurm_health import REQUEUED_STATES, NodeTrouble
from alerting.slurm_hostlist import expand_hostlist
from alerting.slurm_jobs import FINISHED_STATES, RUNNING_STATES, Job, parse_jobs
from alerting.slurm_queue import Queued, QueueIndex, parse_queue
from alerting.slurm_unseen import GONE, RAN, judge_unseen, ran_jobs, ran_rows
from alerting.topology import UNKNOWN
from gpuwarden.clock import Clock
from gpuwarden.errors import SourceError

logger = logging.getLogger(__name__)

Runner = Callable[[Sequence[str]], str]
# State words (and 22.05's state_flags) of a node that takes no new job: a MAINT reservation (sinfo `maint`,
# flag MAINTENANCE) or any other (`resv`, RESERVED: held for its users) included; and, as sinfo(1) says them,
# one powering down, rebooting (REBOOT_ISSUED), registered wrong (INVAL, flag INVALID_REG), running network
# performance counters (PERFCTRS) or not registered since slurmctld started (UNKNOWN).
_UNUSABLE = {
    "down", "drain", "drained", "draining", "fail", "failing", "maint", "maintenance", "reserved", "future",
    "not_responding", "powering_down", "reboot_issued", "inval", "invalid_reg", "perfctrs", "unknown",
}  # fmt: skip
NO_SWITCH = "no_switch"  # a node that no switch of topology/tree reaches: Slurm runs no job on it
PARTITIONS_DOWN = "partitions_down"  # a node whose every partition is DOWN or INACTIVE: no job starts on it
# Partition states in which Slurm starts no job (DRAIN only refuses new submissions: queued jobs start)
_CLOSED_PARTITIONS = {"DOWN", "INACTIVE"}
COMPLETING = "COMPLETING"  # a job ending: its processes killed, its epilog running (a requeue's too)
_GRES_COUNT = re.compile(r"^gpu(?::[^:(]+)?:(\d+)")


def gpu_count(gres: str) -> int:
    """GPUs in a node's ``gres`` string: ``gpu:8``, ``gpu:h100:8(S:0-1)``, ``gpu:a:2,gpu:b:2``."""
    total = 0
    for item in re.split(r",(?![^(]*\))", gres or ""):
        match = _GRES_COUNT.match(item.strip())
        if match:
            total += int(match.group(1))
    return total


def node_state(node: Mapping[str, Any]) -> str:
    """A node's state and flags as one word: ``mixed``, ``idle+maintenance+reserved``."""
    state = node.get("state", "")
    states = state if isinstance(state, list) else [state]  # a list since Slurm 23.02
    words = " ".join(str(s) for s in [*states, *(node.get("state_flags") or [])]).lower()
    return "+".join(dict.fromkeys(w for w in re.split(r"[^a-z_]+", words) if w))


def _usable(state: str) -> bool:
    """Whether a node in this state (``node_state``) can run a new job: no DOWN, DRAIN, MAINTENANCE,
    RESERVED, ... among its words (POWERED_DOWN is one word: a powered-down idle node is usable)."""
    return not (_UNUSABLE | {NO_SWITCH, PARTITIONS_DOWN}) & set(state.split("+"))


def parse_topology(text: str) -> dict[str, str]:
    """Node -> the leaf switch (``Level=0``) it hangs off, from ``scontrol show topology``."""
    racks: dict[str, str] = {}
    for line in text.splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if fields.get("Level") == "0" and fields.get("SwitchName") and fields.get("Nodes"):
            for node in expand_hostlist(fields["Nodes"]):
                racks[node] = fields["SwitchName"]
    return racks


def parse_closed_partitions(text: str) -> frozenset[str]:
    """The partitions that start no job (``State=DOWN`` or ``INACTIVE``), from ``scontrol show partition
    --oneliner``."""
    closed = set()
    for line in text.splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if fields.get("PartitionName") and fields.get("State", "").upper() in _CLOSED_PARTITIONS:
            closed.add(fields["PartitionName"])
    return frozenset(closed)


def parse_cluster_name(text: str) -> str:
    """``ClusterName`` from ``scontrol show config``."""
    for line in text.splitlines():
        name, _, value = line.partition("=")
        if name.strip() == "ClusterName":
            return value.strip()
    return UNKNOWN


def parse_nodes(
    sinfo: Mapping[str, Any],
    cluster: str,
    racks: Mapping[str, str],
    running: Iterable[WorkloadInfo],
    closed: frozenset[str] = frozenset(),
) -> list[NodeInfo]:
    """The nodes of ``sinfo --json`` with the GPUs free on each: those no running job holds, on a node that
    takes new work and has a CPU left (ALLOCATED: every CPU taken, no job starts there) and is not held by
    the backfill scheduler for a pending job (PLANNED). A node's partitions
    are those that start jobs (not in ``closed``); one whose every partition is closed takes no new work."""
    held: dict[str, set[int]] = {}
    counted: dict[str, int] = {}  # GPUs held where their indices are unknown
    for info in running:
        for i, unit in enumerate(info.units):
            if info.size(i) < len(unit):
                node = next(iter(unit))[1]
                counted[node] = counted.get(node, 0) + info.size(i)
                continue
            for _, node, index in unit:
                held.setdefault(node, set()).add(index)
    nodes = []
    for node in sinfo["nodes"]:
        count = gpu_count(str(node.get("gres", "")))
        name = str(node.get("name", ""))
        state = node_state(node)
        if racks and name not in racks:
            state += f"+{NO_SWITCH}"
        listed = [str(p) for p in node.get("partitions") or ()]
        partitions = tuple(p for p in listed if p not in closed)
        if listed and not partitions:
            state += f"+{PARTITIONS_DOWN}"
        usable = _usable(state)
        # PLANNED: the backfill scheduler holds the node for a higher-priority pending job (sinfo's node
        # state codes), so its idle GPUs are spoken for, not spare for a stopped job.
        open_now = usable and not {"allocated", "planned"} & set(state.split("+"))
        idle = frozenset(range(count)) - held.get(name, set()) if open_now else frozenset()
        free = max(0, len(idle) - counted.get(name, 0))
        rack = racks.get(name, UNKNOWN)
        nodes.append(
            NodeInfo(
                name,
                cluster,
                rack,
                count,
                state=state,
                usable=usable,
                free=free,
                idle=idle,
                partitions=partitions,
                addresses=_addresses(node, name),
                features=_features(node),
            )
        )
    return nodes


def _features(node: Mapping[str, Any]) -> frozenset[str]:
    """A node's active features (``active_features``, else ``features`` of ``sinfo --json``: ``a100,ib``)."""
    said = node.get("active_features") or node.get("features") or ""
    words = said if isinstance(said, list) else str(said).split(",")  # a list in later releases
    return frozenset(str(w).strip() for w in words if str(w).strip())


def _addresses(node: Mapping[str, Any], name: str) -> tuple[str, ...]:
    """A node's NodeHostname and NodeAddr (``hostname``, ``address`` of ``sinfo --json``) unlike its name."""
    said = (str(node.get(key) or "") for key in ("hostname", "address"))
    return tuple(dict.fromkeys(a for a in said if a and a != name))


def _stopped(info: WorkloadInfo, state: str) -> WorkloadInfo:
    """A job that stopped abnormally, as it is kept: every unit stopped, on the GPUs it last held."""
    return replace(info, state=state, kept=len(info.units))


class KeptJobs(Protocol):
    """Where a reader keeps its kept jobs across restarts (``alerting.kept_jobs.KeptJobStore``)."""

    def load(self, cluster: str) -> dict[str, tuple[float, WorkloadInfo]]:
        """The jobs kept for ``cluster``: job id -> since when, placement."""
        ...

    def save(self, cluster: str, kept: Mapping[str, tuple[float, WorkloadInfo]]) -> None:
        """Replace the jobs kept for ``cluster``."""
        ...

    def drop_others(self, cluster: str | None) -> list[str]:
        """Delete the jobs kept for every cluster but ``cluster``; those clusters."""
        ...


class SlurmInventory:
    """Reads the inventory from Slurm; ``read`` runs ``scontrol``, ``sinfo`` and ``squeue`` once."""

    def __init__(
        self,
        clock: Clock,
        run: Runner | None = None,
        *,
        env: Mapping[str, str] | None = None,
        keep_ended_seconds: float = 3600.0,
    ) -> None:
        self._run: Runner = run or (lambda argv: run_command(argv, env))
        self._clock = clock
        self._keep = keep_ended_seconds
        self._running: dict[str, WorkloadInfo] = {}  # job id -> placement, as last read running
        self._kept: dict[str, tuple[float, WorkloadInfo]] = {}  # stopped abnormally: since when, placement
        self._guessed: set[str] = set()  # jobs placed by their TRES, warned of once
        self._store: KeptJobs | None = None
        self._loaded = False  # the store's kept jobs were read back (on the first read that could)
        self._saved: dict[str, tuple[float, WorkloadInfo]] = {}  # what the store holds, as last saved
        self._trouble = NodeTrouble()  # nodes down or unreachable at this read or the one before
        self._listed: dict[str, NodeInfo] = {}  # each node as last listed (a removed one: see ``_removed``)
        self._places: KeptSync | None = None  # where the places of the nodes kept jobs ran on are kept
        self._since: dict[str, float] = {}  # each node listed at the last read: since when (``keep_in``)
        self._ran_since: dict[str, float] = {}  # each job running at the last read: since when (``keep_in``)
        self._unseen: set[str] = set()  # jobs a reader before this one saw running (``slurm_unseen``)

    def keep_in(self, store: KeptJobs, places: KeptRecords | None = None) -> None:
        """Keep the jobs that stopped abnormally in ``store`` too, so that a reader started later (serve
        restarted, a standby taking over) knows them, a requeued job included: Slurm names no node for it;
        and in ``places`` the places of the nodes they ran on (``alerting.kept_inventory``), so that it
        knows one removed from Slurm since (its cluster, rack and GPUs)."""
        self._store = store
        self._places = KeptSync(places, "slurm") if places is not None else None

    def read(self) -> StaticInventory:
        """The cluster as Slurm sees it now, plus jobs that stopped abnormally less than a while ago."""
        cluster = parse_cluster_name(self._run(["scontrol", "show", "config"]))
        racks = parse_topology(self._run(["scontrol", "show", "topology"]))
        closed = parse_closed_partitions(self._run(["scontrol", "show", "partition", "--oneliner", "--all"]))
        # Jobs before nodes: a node failure that requeued a job before squeue answered shows in the nodes
        # read after it. The other way round, a failure between the two reads left the job requeued with its
        # nodes well at this read and the one before (an operator's requeue, it seemed), and it was forgotten.
        squeue = self._json(["squeue", "--json", "--states=all"])
        sinfo = self._nodes()
        node_gpus = {str(n.get("name", "")): gpu_count(str(n.get("gres", ""))) for n in sinfo["nodes"]}
        jobs = parse_jobs(squeue, node_gpus)
        now = self._clock.time()
        self._trouble.update((n, node_state(n)) for n in sinfo["nodes"])
        self._restore(cluster)
        names = {str(n.get("name", "")) for n in sinfo["nodes"]}
        if self._places is not None and (stored := self._places.restore(cluster)):
            self._take_back(stored, names, now)
        running: dict[str, WorkloadInfo] = {}
        for job in jobs:
            if job.state in RUNNING_STATES:
                if self._ending(job):  # where it ran is as last read, not its TRES' guess
                    running[job.job_id] = replace(self._running[job.job_id], state=job.info.state)
                elif job.info.units:
                    running[job.job_id] = job.info
            elif job.job_id in self._running and self._stopped_by_fault(job, self._running[job.job_id]):
                # NODE_FAIL, FAILED, requeued (PENDING) off a node that failed; while no serve ran: at its end
                since = min(job.ended_at or now, now) if job.job_id in self._unseen else now
                self._kept[job.job_id] = (since, _stopped(self._running[job.job_id], job.state.lower()))
            elif job.job_id not in self._kept and self._ended_lately(job, now):
                # stopped abnormally before this reader first saw it running (serve restarted since)
                since = min(job.ended_at, now)
                self._kept[job.job_id] = (since, _stopped(job.info, job.state.lower()))
        self._warn_guessed([j for j in jobs if j.guessed and j.job_id in running and j.state != COMPLETING])
        self._gone({j.job_id for j in jobs}, names, now)
        self._running = running
        self._kept = {k: v for k, v in self._kept.items() if now - v[0] <= self._keep and k not in running}
        self._persist(cluster)
        nodes = parse_nodes(sinfo, cluster, racks, running.values(), closed)
        self._since = {n.name: self._since.get(n.name, now) for n in nodes}
        nodes.extend(self._removed(nodes))
        self._listed = {n.name: n for n in nodes}
        if self._places is not None:
            ran: dict[str, float] = {}
            for since, info in self._kept.values():
                for _, node, _ in info.gpus:
                    ran[node] = min(since, ran.get(node, since))
            rows = listed_places([n for n in nodes if n.name in self._since], self._since, now)
            self._ran_since = {job_id: self._ran_since.get(job_id, now) for job_id in running}
            rows.update(ran_rows(running, self._ran_since))
            self._places.persist(cluster, {**rows, **node_places(self._listed, ran)})
        workloads = self._workloads(running, *parse_queue(squeue))
        spare = sum(n.free or 0 for n in nodes)
        return StaticInventory(nodes, in_cluster(workloads, cluster), {cluster: spare})

    def _take_back(self, stored: Kept, names: set[str], now: float) -> None:
        """What a reader before this one kept (``names``: the nodes listed now): the nodes as it last listed
        them, those kept jobs ran on, and the jobs it saw running (``slurm_unseen``)."""
        self._listed = {**kept_nodes(stored, "slurm"), **self._listed}
        before = {name: since for (kind, name), (since, _) in stored.items() if kind == LISTED}
        self._since = {**before, **self._since}
        left_while_down("slurm", before, names, now)
        seen_running = {k: v for k, v in ran_jobs(stored).items() if k not in self._running}
        self._unseen, self._running = set(seen_running), {**seen_running, **self._running}
        stored_since = {job_id: since for (kind, job_id), (since, _) in stored.items() if kind == RAN}
        self._ran_since = {**stored_since, **self._ran_since}

    def _gone(self, listed: set[str], names: set[str], now: float) -> None:
        """Keep the jobs seen running that ``squeue`` no longer lists (``listed``): gone at this read, how
        they ended unknown; gone while no serve ran, as ``slurm_unseen`` judges them (``names``: the nodes
        listed now)."""
        for job_id, info in self._running.items():
            if job_id not in listed and job_id not in self._unseen:
                self._kept[job_id] = (now, _stopped(info, GONE))
        unseen = {k: v for k, v in self._running.items() if k in self._unseen and k not in listed}

        def in_trouble(nodes: Iterable[str]) -> bool:
            return self._trouble.any_in_trouble(nodes) or bool(set(nodes) - names)

        self._kept.update(judge_unseen(self._run, unseen, in_trouble, now, self._keep))
        self._unseen = set()

    def _removed(self, listed: Sequence[NodeInfo]) -> list[NodeInfo]:
        """Nodes gone from Slurm (slurm.conf and ``scontrol reconfigure``, a dynamic node deleted) that kept
        jobs ran on: as last listed, state ``deleted``, taking no work, while those jobs are kept, so that
        the alerts of the node's incident still find its cluster and rack, and with them the jobs it
        stopped."""
        names = {n.name for n in listed}
        ran = {node for _, info in self._kept.values() for _, node, _ in info.gpus}
        return [
            replace(self._listed[name], state="deleted", usable=False, free=0, idle=frozenset())
            for name in sorted(ran - names)
            if name in self._listed
        ]

    def _workloads(
        self,
        running: Mapping[str, WorkloadInfo],
        queue: Sequence[Queued],
        standing: Mapping[str, float | None],
    ) -> list[WorkloadInfo]:
        """The running and kept jobs, each with the GPUs pending jobs ahead of it ask (``slurm_queue``)."""
        # A job resubmitted under the same name is that name now, not the run that failed before it: an
        # alias two workloads share names neither, so the kept run answers to its id only.
        names = {alias for info in running.values() for alias in info.aliases}
        kept = {
            job_id: replace(info, aliases=tuple(a for a in info.aliases if a not in names))
            for job_id, (_, info) in self._kept.items()
        }
        index = QueueIndex(queue)
        return [
            replace(info, queued_ahead=index.ahead(job_id, info.partitions, standing.get(job_id)))
            for job_id, info in [*running.items(), *kept.items()]
        ]

    def _restore(self, cluster: str) -> None:
        """Take back the jobs the store keeps, once (a store that cannot be read now is asked next read)."""
        if self._store is None or self._loaded:
            return
        try:
            stored = self._store.load(cluster)
        except SourceError as exc:
            logger.warning("slurm inventory: %s; asking again at the next read", exc)
            return
        self._loaded, self._saved = True, stored
        self._kept = {**stored, **self._kept}
        drop_other_clusters(self._store, "slurm", cluster, "the jobs kept")

    def _persist(self, cluster: str) -> None:
        """Save the kept jobs where they changed (a store that cannot be written now is tried next read)."""
        if self._store is None or not self._loaded or self._kept == self._saved:
            return
        try:
            self._store.save(cluster, self._kept)
        except SourceError as exc:
            logger.warning("slurm inventory: %s; trying again at the next read", exc)
            return
        self._saved = dict(self._kept)

    def _stopped_by_fault(self, job: Job, ran: WorkloadInfo) -> bool:
        """Whether a job seen running at the last read stopped abnormally: failed, or requeued off a node in
        trouble (``slurm_health``). A job requeued while all its nodes were well was preempted or requeued
        by a person: no fault stopped it (its PreemptMode=CANCEL twin is PREEMPTED, a finished state)."""
        if job.state in FINISHED_STATES:
            return False
        if job.state not in REQUEUED_STATES:
            return True  # NODE_FAIL, FAILED (a GPU fault kills the job, not its node), BOOT_FAIL, ...
        return self._trouble.any_in_trouble({node for unit in ran.units for _, node, _ in unit})

    def _ending(self, job: Job) -> bool:
        """Whether a job seen running at the last read is COMPLETING (ending, a node failure's requeue too)
        without its GPU indices: Slurm 22.05 lists such a job with ``gres_detail: []``, which placed it by its
        TRES (on GPUs unknown among its nodes', a GRES change warned of) until the next read judged it."""
        return job.state == COMPLETING and job.job_id in self._running and (job.guessed or not job.info.units)

    def _ended_lately(self, job: Job, now: float) -> bool:
        """Whether a job squeue still lists stopped abnormally within the keep window, on nodes it names
        (a requeued job, PENDING again, names none: where it ran is lost with the reader's memory)."""
        if job.state in FINISHED_STATES or not job.info.units or job.ended_at <= 0:
            return False
        return abs(now - job.ended_at) <= self._keep  # abs: slurmctld's clock may run a little ahead

    def _warn_guessed(self, jobs: Sequence[Job]) -> None:
        """Say once per job that it runs without GPU indices (while it does)."""
        for job in jobs:
            if job.job_id not in self._guessed:
                logger.warning(
                    "slurm inventory: job %s runs without GPU indices in squeue's gres_detail (after a"
                    " GRES change?); placed by its TRES on %d GPUs",
                    job.info.ref.name,
                    job.info.held,
                )
        self._guessed = {job.job_id for job in jobs}

    def _nodes(self) -> dict[str, Any]:
        """One entry per node under ``nodes``: ``sinfo --json`` (22.05); a release whose sinfo lists grouped
        ``sinfo`` entries instead (data_parser, 23.02 on) is asked ``scontrol --json show nodes``."""
        argv = ["sinfo", "--json"]
        answer = self._json(argv)
        if "nodes" not in answer and "sinfo" in answer:
            argv = ["scontrol", "--json", "show", "nodes"]
            answer = self._json(argv)
        if not isinstance(answer.get("nodes"), list):
            raise SourceError(
                f"{' '.join(argv)}: no 'nodes' field (a Slurm release this reader does not know)",
                source="slurm",
            )
        return answer

    def _json(self, argv: list[str]) -> dict[str, Any]:
        text = self._run(argv)
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise SourceError(f"{' '.join(argv)}: not JSON ({exc})", source="slurm") from exc
        if not isinstance(data, dict):
            raise SourceError(f"{' '.join(argv)}: not a JSON object", source="slurm")
        return data
