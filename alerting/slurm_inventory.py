"""The inventory of a Slurm cluster, read with Slurm's own commands.

* nodes and their GPUs: ``sinfo --json`` (``gres`` such as ``gpu:8`` or ``gpu:h100:8(S:0-1)``);
* racks: ``scontrol show topology`` with the ``topology/tree`` plugin, a node's rack being the leaf switch
  it hangs off (no topology: the rack is unknown);
* the cluster: ``ClusterName`` of ``scontrol show config``;
* training jobs: ``squeue --json``, each running job with the GPUs it holds on each node
  (``gres_detail`` such as ``gpu:4(IDX:0-3)``, one entry per allocated node). Job names repeat (array jobs,
  ``bash``), ids do not: a job is ``<name> (<id>)``, and answers to its id (what the exporter's cgroup
  attribution puts in ``slurm_job``) and to its name. Each GPU is one unit (one rank per GPU, as training
  launchers place them).

When a node dies Slurm ends (NODE_FAIL, FAILED) or requeues its jobs, and the next read no longer shows them
on their GPUs; the incident that the node's failure opens must still know that the job ran there. So a job
that stops running for any other reason than finishing (COMPLETED, CANCELLED, TIMEOUT, DEADLINE, PREEMPTED;
``squeue`` lists such a job a while with no GPUs, and its state says it ended), or that vanishes from
``squeue`` while running, stays in the inventory ``keep_ended_seconds`` with the GPUs it last held.
Spare GPUs per cluster are the GPUs of usable nodes that no running job holds.

Tested against Slurm 22.05 (Debian 12). A later release whose JSON lacks the fields read here (``nodes`` of
``sinfo``; ``job_resources.allocated_nodes`` or ``job_resources.nodes.allocation`` of a job) is refused
with a ``SourceError`` naming the field, not read as an empty cluster.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from alerting.inventory import NodeInfo, StaticInventory, WorkloadInfo, in_cluster
from alerting.topology import UNKNOWN
from gpuwarden.clock import Clock
from gpuwarden.errors import SourceError
from gpuwarden.model import WorkloadKind, WorkloadRef

logger = logging.getLogger(__name__)

Runner = Callable[[Sequence[str]], str]
_RUNNING = {"RUNNING", "COMPLETING", "SUSPENDED"}
# Ended on purpose (or as the job asked): nothing to explain afterwards. Slurm 22.05 lists such a job with
# `gres_detail: []`, so the state is read before a job without GPUs is dropped.
_FINISHED = {"COMPLETED", "CANCELLED", "TIMEOUT", "DEADLINE", "PREEMPTED"}
# State words (and 22.05's state_flags) of a node that takes no new job: a MAINT reservation (sinfo `maint`,
# flag MAINTENANCE) or any other (`resv`, RESERVED: held for its users) included.
_UNUSABLE = {
    "down", "drain", "drained", "draining", "fail", "failing", "maint", "maintenance", "reserved", "future",
    "not_responding",
}  # fmt: skip
NO_SWITCH = "no_switch"  # a node that no switch of topology/tree reaches: Slurm runs no job on it
_GRES_COUNT = re.compile(r"^gpu(?::[^:(]+)?:(\d+)")
_IDX = re.compile(r"IDX:([0-9,\-]+)")


def run_command(argv: Sequence[str], env: Mapping[str, str] | None = None, timeout: float = 30.0) -> str:
    """Run a Slurm command; its stdout, or ``SourceError`` with its stderr.

    A ``SLURM_CONF`` naming no file is refused at once: Slurm's commands retry reading it for 60 s first."""
    conf = (env if env is not None else os.environ).get("SLURM_CONF")
    if conf and not os.path.isfile(conf):
        raise SourceError(
            f"SLURM_CONF names {conf}, which is not a file; set it to slurm.conf", source="slurm"
        )
    try:
        done = subprocess.run(
            list(argv), capture_output=True, text=True, timeout=timeout, check=False, env=env
        )
    except subprocess.TimeoutExpired as exc:
        said = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
        last = said.strip().splitlines()[-1:] or ["nothing"]
        raise SourceError(
            f"{' '.join(argv)} did not answer within {timeout:g} s; it said: {last[0]}", source="slurm"
        ) from exc
    except OSError as exc:
        raise SourceError(f"{argv[0]}: {exc}", source="slurm") from exc
    if done.returncode != 0:
        reason = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise SourceError(f"{' '.join(argv)} exited {done.returncode}: {reason}", source="slurm")
    return done.stdout


def expand_hostlist(text: str) -> list[str]:
    """Slurm's hostlist expression to names: ``node-[01-03,07],gpu9`` -> node-01, node-02, node-03, ..."""
    names: list[str] = []
    depth, start = 0, 0
    for i, ch in enumerate(text + ","):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == "," and depth == 0:
            if text[start:i]:
                names.extend(_expand_one(text[start:i]))
            start = i + 1
    return names


def _expand_one(pattern: str) -> list[str]:
    match = re.search(r"\[([^\]]*)\]", pattern)
    if match is None:
        return [pattern]
    head, tail = pattern[: match.start()], pattern[match.end() :]
    out: list[str] = []
    for value in _numbers(match.group(1)):
        out.extend(head + value + rest for rest in _expand_one(tail))
    return out


def _numbers(ranges: str) -> list[str]:
    """``01-03,7`` -> 01, 02, 03, 7 (zero padding kept)."""
    out: list[str] = []
    for part in ranges.split(","):
        low, _, high = part.partition("-")
        if not high:
            out.append(low)
            continue
        width = len(low) if low.startswith("0") else 0
        out.extend(str(n).zfill(width) for n in range(int(low), int(high) + 1))
    return out


def gpu_count(gres: str) -> int:
    """GPUs in a node's ``gres`` string: ``gpu:8``, ``gpu:h100:8(S:0-1)``, ``gpu:a:2,gpu:b:2``."""
    total = 0
    for item in re.split(r",(?![^(]*\))", gres or ""):
        match = _GRES_COUNT.match(item.strip())
        if match:
            total += int(match.group(1))
    return total


def gpu_indices(detail: str) -> list[int]:
    """GPU indices in one ``gres_detail`` entry: ``gpu:4(IDX:0-3)`` -> 0, 1, 2, 3; a node with two GPU types
    has a group per type: ``gpu:a100:2(IDX:0-1),gpu:h100:1(IDX:2)`` -> 0, 1, 2."""
    return sorted({int(v) for group in _IDX.findall(detail or "") for v in _numbers(group)})


def node_state(node: Mapping[str, Any]) -> str:
    """A node's state and flags as one word: ``mixed``, ``idle+maintenance+reserved``."""
    state = node.get("state", "")
    states = state if isinstance(state, list) else [state]  # a list since Slurm 23.02
    words = " ".join(str(s) for s in [*states, *(node.get("state_flags") or [])]).lower()
    return "+".join(dict.fromkeys(w for w in re.split(r"[^a-z_]+", words) if w))


def _usable(state: str) -> bool:
    """Whether a node in this state (``node_state``) can run a new job: no DOWN, DRAIN, MAINTENANCE,
    RESERVED, ... among its words (POWERED_DOWN is one word: a powered-down idle node is usable)."""
    return not (_UNUSABLE | {NO_SWITCH}) & set(state.split("+"))


def _job_state(job: Mapping[str, Any]) -> str:
    state = job.get("job_state", "")
    return str(state[0] if isinstance(state, list) and state else state).upper()


def parse_topology(text: str) -> dict[str, str]:
    """Node -> the leaf switch (``Level=0``) it hangs off, from ``scontrol show topology``."""
    racks: dict[str, str] = {}
    for line in text.splitlines():
        fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
        if fields.get("Level") == "0" and fields.get("SwitchName") and fields.get("Nodes"):
            for node in expand_hostlist(fields["Nodes"]):
                racks[node] = fields["SwitchName"]
    return racks


def parse_cluster_name(text: str) -> str:
    """``ClusterName`` from ``scontrol show config``."""
    for line in text.splitlines():
        name, _, value = line.partition("=")
        if name.strip() == "ClusterName":
            return value.strip()
    return UNKNOWN


@dataclass(frozen=True, slots=True)
class _Job:
    job_id: str
    info: WorkloadInfo
    state: str
    guessed: bool = False  # placed by its TRES: Slurm gave no GPU index for some node
    ended_at: float = 0.0  # when it stopped (squeue's end_time), for a job no longer running


def _allocated_nodes(job: Mapping[str, Any]) -> list[str]:
    """Node names in allocation order: ``allocated_nodes`` (22.05) or ``nodes.allocation`` (23.11+)."""
    resources = job.get("job_resources") or {}
    if "allocated_nodes" in resources:
        return [str(n.get("nodename", "")) for n in resources["allocated_nodes"]]
    nodes = resources.get("nodes")
    if isinstance(nodes, Mapping) and "allocation" in nodes:
        return [str(n.get("name", "")) for n in nodes["allocation"]]
    if not resources:
        return []  # a pending job holds nothing yet
    raise SourceError(
        f"job {job.get('job_id')}: job_resources has neither allocated_nodes nor nodes.allocation"
        " (a Slurm release this reader does not know)",
        source="slurm",
    )


def parse_jobs(squeue: Mapping[str, Any], node_gpus: Mapping[str, int] | None = None) -> list[_Job]:
    """Every job ``squeue --json`` lists, with the GPUs it holds (none for a job that ended, is pending, or
    holds no GPU). A running job whose ``gres_detail`` gives a node no GPU index (Slurm 22.05 after a GRES
    change: ``[]``, or ``gpu:a100:0(IDX:)``) holds there what its TRES say, on GPUs unknown among the
    node's (``node_gpus``: GPUs per node)."""
    if "jobs" not in squeue:
        raise SourceError("squeue --json: no 'jobs' field", source="slurm")
    out = []
    for job in squeue["jobs"]:
        nodes = _allocated_nodes(job)
        details = job.get("gres_detail") or []
        indices = {node: gpu_indices(detail) for node, detail in zip(nodes, details, strict=False)}
        # in_cluster stamps the cluster
        units = [frozenset({("", node, i)}) for node in nodes for i in indices.get(node, ())]
        sizes = [1] * len(units)
        state = _job_state(job)
        unknown = [node for node in nodes if not indices.get(node)]
        guessed = False
        # A job that stopped abnormally keeps its nodes but loses its GPU indices (`gres_detail: []`):
        # placed by its TRES too, for a reader that first sees it stopped (serve restarted after it did).
        if unknown and state not in _FINISHED:
            known = sum(len(v) for v in indices.values())
            for node, count in _tres_gpus(job, unknown, known).items():
                total = max(count, (node_gpus or {}).get(node, count))
                units.append(frozenset(("", node, i) for i in range(total)))
                sizes.append(count)
                guessed = True
        job_id, shown, aliases, group = _names(job)
        name = str(job.get("name") or "job")
        ref = WorkloadRef(WorkloadKind.TRAINING_JOB, "", f"{name} ({shown})")
        partitions = tuple(p for p in str(job.get("partition") or "").split(",") if p)
        exact = all(size >= len(unit) for size, unit in zip(sizes, units, strict=True))
        info = WorkloadInfo(
            ref,
            tuple(units),
            aliases=(*aliases, name),
            state=state.lower(),
            partitions=partitions,
            nodes=tuple(expand_hostlist(str(job.get("required_nodes") or ""))),
            excluded_nodes=tuple(expand_hostlist(str(job.get("excluded_nodes") or ""))),
            sizes=() if exact else tuple(sizes),
            group=group,
        )
        ended = float(job.get("end_time") or 0) if state not in _RUNNING else 0.0
        out.append(_Job(job_id, info, state, guessed=guessed, ended_at=ended))
    return _one_per_het_job(out)


def _names(job: Mapping[str, Any]) -> tuple[str, str, tuple[str, ...], str]:
    """A job's key (the het job's id for each of its components), the id users see (``5_0`` for a task of
    array 5), the ids alerts may name it by (its own job id too, which its cgroup carries), and the group
    it belongs to (its array's id, which names every task)."""
    job_id = str(job.get("job_id", ""))
    het, offset = job.get("het_job_id") or 0, job.get("het_job_offset") or 0
    if het:
        return str(het), str(het), tuple(dict.fromkeys((str(het), f"{het}+{offset}", job_id))), ""
    array, task = job.get("array_job_id") or 0, job.get("array_task_id")
    if array and isinstance(task, int):
        shown = f"{array}_{task}"
        return job_id, shown, (shown, job_id), str(array)
    return job_id, job_id, (job_id,), ""


def _one_per_het_job(jobs: list[_Job]) -> list[_Job]:
    """The components of a heterogeneous job (one key, ``8+0`` and ``8+1``) as one job: a fault on any
    stops all of it. Running while one runs, else stopped as the first that did not finish normally."""
    merged: dict[str, list[_Job]] = {}
    for job in jobs:
        merged.setdefault(job.job_id, []).append(job)
    out = []
    for parts in merged.values():
        if len(parts) == 1:
            out.append(parts[0])
            continue
        running = [p for p in parts if p.state in _RUNNING]
        state = (running or [p for p in parts if p.state not in _FINISHED] or parts)[0].state
        first = parts[0].info
        units = tuple(u for p in parts for u in p.info.units)
        exact = all(not p.info.sizes for p in parts)
        sizes = () if exact else tuple(p.info.size(i) for p in parts for i in range(len(p.info.units)))
        info = replace(
            first,
            units=units,
            sizes=sizes,
            # the components' ids, then the name (each lists its name last)
            aliases=tuple(
                dict.fromkeys([*(a for p in parts for a in p.info.aliases[:-1]), first.aliases[-1]])
            ),
            partitions=_union(p.info.partitions for p in parts),
            # each component is limited to its own nodes: the job as a whole to their union (none: any)
            nodes=() if any(not p.info.nodes for p in parts) else _union(p.info.nodes for p in parts),
            excluded_nodes=_common([p.info.excluded_nodes for p in parts]),
            state=state.lower(),
        )
        ended = max(p.ended_at for p in parts)
        out.append(_Job(parts[0].job_id, info, state, guessed=any(p.guessed for p in parts), ended_at=ended))
    return out


def _union(groups: Iterable[Sequence[str]]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(x for group in groups for x in group))


def _common(groups: Sequence[Sequence[str]]) -> tuple[str, ...]:
    """What every group lists (in the first one's order)."""
    return tuple(x for x in (groups[0] if groups else ()) if all(x in g for g in groups[1:]))


_TRES_GPU = re.compile(r"^gres[:/]gpu(?::[^:=]+)?[:=](\d+)$")
_ALLOC_GPU = re.compile(r"(?:^|,)gres/gpu=(\d+)(?:,|$)")


def _tres_gpus(job: Mapping[str, Any], nodes: Sequence[str], known: int) -> dict[str, int]:
    """GPUs the job holds on each of ``nodes`` by its TRES: ``tres_per_node`` (``gres:gpu:4``), else its
    total (``gres/gpu=`` of ``tres_alloc_str``, else ``tres_per_job``) less the ``known`` GPUs of its other
    nodes, shared out evenly."""
    per_node = _tres_count(str(job.get("tres_per_node") or ""))
    if per_node:
        return dict.fromkeys(nodes, per_node)
    alloc = _ALLOC_GPU.search(str(job.get("tres_alloc_str") or ""))
    total = int(alloc.group(1)) if alloc else _tres_count(str(job.get("tres_per_job") or ""))
    left = max(0, total - known)
    share, extra = divmod(left, len(nodes)) if nodes else (0, 0)
    counts = {node: share + (1 if i < extra else 0) for i, node in enumerate(nodes)}
    return {node: count for node, count in counts.items() if count}


def _tres_count(text: str) -> int:
    """GPUs in a TRES list: ``gres:gpu:4``, ``gres:gpu:h100:1``, ``gres:gpu:a100:2,gres:gpu:h100:1``."""
    total = 0
    for item in text.split(","):
        match = _TRES_GPU.match(item.strip())
        if match:
            total += int(match.group(1))
    return total


def parse_nodes(
    sinfo: Mapping[str, Any], cluster: str, racks: Mapping[str, str], running: Iterable[WorkloadInfo]
) -> list[NodeInfo]:
    """The nodes of ``sinfo --json`` with the GPUs free on each: those no running job holds, on a node that
    takes new work and has a CPU left (ALLOCATED: every CPU taken, no job starts there)."""
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
        usable = _usable(state)
        open_now = usable and "allocated" not in state.split("+")
        idle = frozenset(range(count)) - held.get(name, set()) if open_now else frozenset()
        free = max(0, len(idle) - counted.get(name, 0))
        partitions = tuple(str(p) for p in node.get("partitions") or ())
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
            )
        )
    return nodes


def _addresses(node: Mapping[str, Any], name: str) -> tuple[str, ...]:
    """A node's NodeHostname and NodeAddr (``hostname``, ``address`` of ``sinfo --json``) unlike its name."""
    said = (str(node.get(key) or "") for key in ("hostname", "address"))
    return tuple(dict.fromkeys(a for a in said if a and a != name))


def _stopped(info: WorkloadInfo, state: str) -> WorkloadInfo:
    """A job that stopped abnormally, as it is kept: every unit stopped, on the GPUs it last held."""
    return replace(info, state=state, kept=len(info.units))


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

    def read(self) -> StaticInventory:
        """The cluster as Slurm sees it now, plus jobs that stopped abnormally less than a while ago."""
        cluster = parse_cluster_name(self._run(["scontrol", "show", "config"]))
        racks = parse_topology(self._run(["scontrol", "show", "topology"]))
        sinfo = self._json(["sinfo", "--json"])
        if "nodes" not in sinfo:
            raise SourceError(
                "sinfo --json: no 'nodes' field (a Slurm release this reader does not know)", source="slurm"
            )
        node_gpus = {str(n.get("name", "")): gpu_count(str(n.get("gres", ""))) for n in sinfo["nodes"]}
        jobs = parse_jobs(self._json(["squeue", "--json", "--states=all"]), node_gpus)
        now = self._clock.time()
        running: dict[str, WorkloadInfo] = {}
        for job in jobs:
            if job.state in _RUNNING:
                if job.info.units:
                    running[job.job_id] = job.info
            elif job.job_id in self._running and job.state not in _FINISHED:
                # NODE_FAIL, FAILED, requeued (PENDING)
                self._kept[job.job_id] = (now, _stopped(self._running[job.job_id], job.state.lower()))
            elif job.job_id not in self._kept and self._ended_lately(job, now):
                # stopped abnormally before this reader first saw it running (serve restarted since)
                since = min(job.ended_at, now)
                self._kept[job.job_id] = (since, _stopped(job.info, job.state.lower()))
        self._warn_guessed([j for j in jobs if j.guessed and j.job_id in running])
        listed = {j.job_id for j in jobs}
        for job_id, info in self._running.items():
            if job_id not in listed:
                # gone from squeue while running: how it ended is unknown
                self._kept[job_id] = (now, _stopped(info, "gone"))
        self._running = running
        self._kept = {k: v for k, v in self._kept.items() if now - v[0] <= self._keep and k not in running}
        nodes = parse_nodes(sinfo, cluster, racks, running.values())
        # A job resubmitted under the same name is that name now, not the run that failed before it: an
        # alias two workloads share names neither, so the kept run answers to its id only.
        names = {alias for info in running.values() for alias in info.aliases}
        kept = [
            replace(info, aliases=tuple(a for a in info.aliases if a not in names))
            for _, info in self._kept.values()
        ]
        workloads = [*running.values(), *kept]
        spare = sum(n.free or 0 for n in nodes)
        return StaticInventory(nodes, in_cluster(workloads, cluster), {cluster: spare})

    def _ended_lately(self, job: _Job, now: float) -> bool:
        """Whether a job squeue still lists stopped abnormally within the keep window, on nodes it names
        (a requeued job, PENDING again, names none: where it ran is lost with the reader's memory)."""
        if job.state in _FINISHED or not job.info.units or job.ended_at <= 0:
            return False
        return abs(now - job.ended_at) <= self._keep  # abs: slurmctld's clock may run a little ahead

    def _warn_guessed(self, jobs: Sequence[_Job]) -> None:
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

    def _json(self, argv: list[str]) -> dict[str, Any]:
        text = self._run(argv)
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise SourceError(f"{' '.join(argv)}: not JSON ({exc})", source="slurm") from exc
        if not isinstance(data, dict):
            raise SourceError(f"{' '.join(argv)}: not a JSON object", source="slurm")
        return data
