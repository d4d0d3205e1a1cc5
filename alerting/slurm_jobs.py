"""Training jobs from ``squeue --json``: where each runs (the GPUs it holds on each node, or what its TRES
say where Slurm gives no index), what it answers to (array tasks, heterogeneous jobs as one), and where it may
start again (partitions, ReqNodeList, ExcNodeList, features, GPUs per node)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from alerting.inventory import WorkloadInfo
from alerting.slurm_hostlist import expand_hostlist, numbers
from gpuwarden.errors import SourceError
from gpuwarden.model import WorkloadKind, WorkloadRef

RUNNING_STATES = {"RUNNING", "COMPLETING", "SUSPENDED"}
# Ended on purpose (or as the job asked): nothing to explain afterwards. Slurm 22.05 lists such a job with
# `gres_detail: []`, so the state is read before a job without GPUs is dropped.
FINISHED_STATES = {"COMPLETED", "CANCELLED", "TIMEOUT", "DEADLINE", "PREEMPTED"}
_IDX = re.compile(r"IDX:([0-9,\-]+)")


def gpu_indices(detail: str) -> list[int]:
    """GPU indices in one ``gres_detail`` entry: ``gpu:4(IDX:0-3)`` -> 0, 1, 2, 3; a node with two GPU types
    has a group per type: ``gpu:a100:2(IDX:0-1),gpu:h100:1(IDX:2)`` -> 0, 1, 2."""
    return sorted({int(v) for group in _IDX.findall(detail or "") for v in numbers(group)})


def slurm_number(value: Any, where: str) -> float | None:
    """A number as Slurm's JSON writes it: plain (22.05, ``null`` when unset), or ``{"set": true,
    "infinite": false, "number": N}`` (data_parser, 23.02 on); None when unset or infinite. Any other shape
    is a ``SourceError`` naming ``where`` (the job and field)."""
    if value is None or (isinstance(value, int | float) and not isinstance(value, bool)):
        return value
    if isinstance(value, Mapping) and "number" in value:
        if value.get("infinite") or not value.get("set", True):
            return None
        number = value["number"]
        if isinstance(number, int | float) and not isinstance(number, bool):
            return number
    raise SourceError(
        f"squeue --json: {where} is {value!r}, neither a number nor {{set, infinite, number}}"
        " (a Slurm release this reader does not know)",
        source="slurm",
    )


def slurm_text(value: Any) -> str:
    """A string field as Slurm's JSON writes it: a string, or a list of words (data_parser's CSV strings)."""
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return "" if value is None else str(value)


def job_number(job: Mapping[str, Any], key: str) -> float:
    """A numeric field of a job; 0 where unset or infinite (an end time not known yet)."""
    return slurm_number(job.get(key), f"job {job.get('job_id')}: {key}") or 0


def job_state(job: Mapping[str, Any]) -> str:
    """A job's state, upper case (a list since Slurm 23.02: its first word)."""
    state = job.get("job_state", "")
    return str(state[0] if isinstance(state, list) and state else state).upper()


@dataclass(frozen=True, slots=True)
class Job:
    """A job as ``squeue`` lists it: its key, its placement and its state (upper case)."""

    job_id: str
    info: WorkloadInfo
    state: str
    guessed: bool = False  # placed by its TRES: Slurm gave no GPU index for some node
    ended_at: float = 0.0  # when it stopped (squeue's end_time), for a job no longer running
    asks_gpus: bool = True  # holds GPUs or its TRES ask some (a het job's CPU-only launcher does not)


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


def parse_jobs(squeue: Mapping[str, Any], node_gpus: Mapping[str, int] | None = None) -> list[Job]:
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
        state = job_state(job)
        unknown = [node for node in nodes if not indices.get(node)]
        guessed = False
        # A job that stopped abnormally keeps its nodes but loses its GPU indices (`gres_detail: []`):
        # placed by its TRES too, for a reader that first sees it stopped (serve restarted after it did).
        if unknown and state not in FINISHED_STATES:
            known = sum(len(v) for v in indices.values())
            for node, count in _tres_gpus(job, unknown, known).items():
                total = max(count, (node_gpus or {}).get(node, count))
                units.append(frozenset(("", node, i) for i in range(total)))
                sizes.append(count)
                guessed = True
        job_id, shown, aliases, group = _names(job)
        name = slurm_text(job.get("name")) or "job"
        ref = WorkloadRef(WorkloadKind.TRAINING_JOB, "", f"{name} ({shown})")
        partitions = tuple(p for p in slurm_text(job.get("partition")).split(",") if p)
        exact = all(size >= len(unit) for size, unit in zip(sizes, units, strict=True))
        info = WorkloadInfo(
            ref,
            tuple(units),
            aliases=(*aliases, name),
            state=state.lower(),
            partitions=partitions,
            nodes=tuple(expand_hostlist(slurm_text(job.get("required_nodes")))),
            excluded_nodes=tuple(expand_hostlist(slurm_text(job.get("excluded_nodes")))),
            constraint=slurm_text(job.get("features")),
            sizes=() if exact else tuple(sizes),
            group=group,
            per_node=tres_count(slurm_text(job.get("tres_per_node"))),
            min_nodes=asked_nodes(slurm_text(job.get("tres_req_str"))),
        )
        ended = float(job_number(job, "end_time")) if state not in RUNNING_STATES else 0.0
        asks = bool(units) or any(tres_count(slurm_text(job.get(key))) for key in _TRES_ASKING)
        out.append(Job(job_id, info, state, guessed=guessed, ended_at=ended, asks_gpus=asks))
    return _one_per_het_job(out)


def job_key(job: Mapping[str, Any]) -> str:
    """The key of a job as ``parse_jobs`` gives it (a het job's id for each of its components)."""
    return _names(job)[0]


def _names(job: Mapping[str, Any]) -> tuple[str, str, tuple[str, ...], str]:
    """A job's key (the het job's id for each of its components), the id users see (``5_0`` for a task of
    array 5), the ids alerts may name it by (its own job id too, which its cgroup carries), and the group
    it belongs to (its array's id, which names every task)."""
    job_id = str(job.get("job_id", ""))
    het, offset = int(job_number(job, "het_job_id")), int(job_number(job, "het_job_offset"))
    if het:
        return str(het), str(het), tuple(dict.fromkeys((str(het), f"{het}+{offset}", job_id))), ""
    array = int(job_number(job, "array_job_id"))
    task = slurm_number(job.get("array_task_id"), f"job {job_id}: array_task_id")
    if array and task is not None:
        shown = f"{array}_{int(task)}"
        return job_id, shown, (shown, job_id), str(array)
    return job_id, job_id, (job_id,), ""


def _one_per_het_job(jobs: list[Job]) -> list[Job]:
    """The components of a heterogeneous job (one key, ``8+0`` and ``8+1``) as one job: a fault on any
    stops all of it. Running while one runs, else stopped as the first that did not finish normally."""
    merged: dict[str, list[Job]] = {}
    for job in jobs:
        merged.setdefault(job.job_id, []).append(job)
    out = []
    for parts in merged.values():
        if len(parts) == 1:
            out.append(parts[0])
            continue
        running = [p for p in parts if p.state in RUNNING_STATES]
        state = (running or [p for p in parts if p.state not in FINISHED_STATES] or parts)[0].state
        first = parts[0].info
        # Where it may start again is where its GPU components may: a CPU-only launcher has no say
        gpu_parts = [p for p in parts if p.asks_gpus] or parts
        reach = gpu_parts[0].info
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
            partitions=_union(p.info.partitions for p in gpu_parts),
            # each component is limited to its own nodes: the job as a whole to their union (none: any)
            nodes=() if any(not p.info.nodes for p in gpu_parts) else _union(p.info.nodes for p in gpu_parts),
            excluded_nodes=_common([p.info.excluded_nodes for p in gpu_parts]),
            constraint=reach.constraint
            if all(p.info.constraint == reach.constraint for p in gpu_parts)
            else "",
            # components asking different GPUs per node, or one a total: the job's GPUs are counted
            per_node=reach.per_node if all(p.info.per_node == reach.per_node for p in gpu_parts) else 0,
            min_nodes=sum(p.info.min_nodes for p in gpu_parts)
            if all(p.info.min_nodes for p in gpu_parts)
            else 0,
            state=state.lower(),
        )
        ended = max(p.ended_at for p in parts)
        guessed, asks = any(p.guessed for p in parts), any(p.asks_gpus for p in parts)
        out.append(Job(parts[0].job_id, info, state, guessed=guessed, ended_at=ended, asks_gpus=asks))
    return out


def _union(groups: Iterable[Sequence[str]]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(x for group in groups for x in group))


def _common(groups: Sequence[Sequence[str]]) -> tuple[str, ...]:
    """What every group lists (in the first one's order)."""
    return tuple(x for x in (groups[0] if groups else ()) if all(x in g for g in groups[1:]))


# One GPU item of a TRES list, as each Slurm release writes it: ``gpu:4`` (before 21.08), ``gres:gpu:4``
# (22.05), ``gres/gpu:4`` (23.02+), each with an optional type (``gres/gpu:h100:4``); a count left out is
# 1, as ``--gres=gpu`` asks. A number right after ``gpu`` is the count, as Slurm reads it, never a type.
_TRES_GPU = re.compile(r"^(?:gres[:/])?gpu(?:[:=](?P<count>\d+)|:[^:=]+(?:[:=](?P<typed>\d+))?)?$")
_TRES_ASKING = ("tres_per_node", "tres_per_job", "tres_per_task", "tres_per_socket")
_ALLOC_GPU = re.compile(r"(?:^|,)gres/gpu=(\d+)(?:,|$)")
# The nodes a job asked in tres_req_str: its minimum for --nodes=1-2 (node_count says what it holds)
_ASKED_NODES = re.compile(r"(?:^|,)node=(\d+)(?:,|$)")


def asked_nodes(tres_req: str) -> int:
    """The fewest nodes a job asked (``node=`` of ``tres_req_str``); 0 where it does not say."""
    match = _ASKED_NODES.search(tres_req)
    return int(match.group(1)) if match else 0


def _tres_gpus(job: Mapping[str, Any], nodes: Sequence[str], known: int) -> dict[str, int]:
    """GPUs the job holds on each of ``nodes`` by its TRES: ``tres_per_node`` (``gres:gpu:4``), else its
    total (``gres/gpu=`` of ``tres_alloc_str``, else ``tres_per_job``, else ``tres_per_task`` times its
    tasks) less the ``known`` GPUs of its other nodes, shared out evenly."""
    per_node = tres_count(slurm_text(job.get("tres_per_node")))
    if per_node:
        return dict.fromkeys(nodes, per_node)
    alloc = _ALLOC_GPU.search(slurm_text(job.get("tres_alloc_str")))
    # Slurm 22.05 leaves gres/gpu out of tres_alloc_str unless AccountingStorageTRES names it
    total = int(alloc.group(1)) if alloc else tres_count(slurm_text(job.get("tres_per_job")))
    if not total:  # --gpus-per-task
        total = tres_count(slurm_text(job.get("tres_per_task"))) * int(job_number(job, "tasks"))
    left = max(0, total - known)
    share, extra = divmod(left, len(nodes)) if nodes else (0, 0)
    counts = {node: share + (1 if i < extra else 0) for i, node in enumerate(nodes)}
    return {node: count for node, count in counts.items() if count}


def tres_count(text: str) -> int:
    """GPUs in a TRES list: ``gres:gpu:4``, ``gres/gpu:h100:1``, ``gpu:a100:2,gres/shard:1``,
    ``gres:gpu:a100:2,gres:gpu:h100:1``."""
    total = 0
    for item in text.split(","):
        match = _TRES_GPU.match(item.strip())
        if match:
            total += int(match["count"] or match["typed"] or 1)
    return total
