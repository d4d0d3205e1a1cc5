"""Slurm jobs that ran when ``serve`` last read Slurm and left ``squeue`` while no ``serve`` ran: how each
ended, as a restarted reader judges it at its first read.

Slurm lists an ended job ``MinJobAge`` (300 s by default), then forgets it; a ``serve`` down longer knew
nothing of a job that its node's failure stopped meanwhile, and the node's incident never named it. The
reader now keeps the jobs it last saw running in the store (``kept_inventory`` rows of kind ``RAN``), and
asks Slurm's accounting (``sacct``) how those ``squeue`` no longer lists ended: failed (``NODE_FAIL``,
``FAILED``, ``OUT_OF_MEMORY``, ...) within the keep window, it is kept from its end on, as if ``serve`` had
seen it stop; finished on purpose (``COMPLETED``, ``CANCELLED``, ...) it is not. Without accounting
(``accounting_storage/none``: sacct refuses) its end is unknown: it is kept, state ``gone``, only where one
of its nodes is in trouble now (down, failing, not responding) or gone from Slurm, the sign of a fault that
may have stopped it; a warning names each job and what was made of it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

from alerting.inventory import WorkloadInfo
from alerting.inventory_file import workload_data, workload_from_data
from alerting.slurm_jobs import FINISHED_STATES
from gpuwarden.errors import SourceError

logger = logging.getLogger(__name__)

RAN = "ran"  # a kept_inventory row: a job the reader saw running at its last read (``ran_rows``)
GONE = "gone"  # the state of a job kept though how it ended is unknown
SACCT_BATCH = 500  # job ids per sacct call
Runner = Callable[[Sequence[str]], str]


def ran_rows(
    running: Mapping[str, WorkloadInfo], since: Mapping[str, float]
) -> dict[tuple[str, str], tuple[float, Mapping[str, Any]]]:
    """The rows of the jobs running now (``since``: when each was first seen running)."""
    return {(RAN, job_id): (since[job_id], workload_data(info)) for job_id, info in running.items()}


def ran_jobs(stored: Mapping[tuple[str, str], tuple[float, Mapping[str, Any]]]) -> dict[str, WorkloadInfo]:
    """The jobs a reader before this one last saw running; a row that does not read is left out, warned."""
    out: dict[str, WorkloadInfo] = {}
    for (kind, job_id), (_, data) in stored.items():
        if kind != RAN:
            continue
        try:
            out[job_id] = workload_from_data(data)
        except ValueError as exc:
            logger.warning("slurm inventory: job %s last seen running left out: %s", job_id, exc)
    return out


def parse_sacct(text: str) -> dict[str, tuple[str, float]]:
    """Job id -> its state (first word, upper case: ``CANCELLED by 0`` is ``CANCELLED``) and end (Unix time,
    0 where unknown), from ``sacct --noheader --parsable2 --allocations --format=JobIDRaw,JobID,State,End``.
    A heterogeneous job's components (``8+0``, ``8+1``) answer for its id too: the first that did not
    finish on purpose says how it ended."""
    out: dict[str, tuple[str, float]] = {}
    for line in text.splitlines():
        fields = line.split("|")
        if len(fields) < 4 or not fields[2].strip():
            continue
        raw, shown, state, end = (f.strip() for f in fields[:4])
        fate = (state.split()[0].upper(), _end(end))
        for key in dict.fromkeys((raw, shown.split("+")[0])):
            if key and (key not in out or out[key][0] in FINISHED_STATES):
                out[key] = fate
    return out


def _end(text: str) -> float:
    """sacct's ``End`` (local time, as serve's own): Unix time; 0 for ``Unknown``, ``None`` and the like."""
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        return 0.0


def accounting(run: Runner, job_ids: Sequence[str]) -> tuple[dict[str, tuple[str, float]], str]:
    """How Slurm's accounting says ``job_ids`` ended, and why it could not say, if it could not."""
    fates: dict[str, tuple[str, float]] = {}
    for start in range(0, len(job_ids), SACCT_BATCH):
        batch = ",".join(job_ids[start : start + SACCT_BATCH])
        argv = ["sacct", "--noheader", "--parsable2", "--allocations", f"--jobs={batch}"]
        try:
            fates.update(parse_sacct(run([*argv, "--format=JobIDRaw,JobID,State,End"])))
        except SourceError as exc:
            return fates, str(exc)
    return fates, ""


def judge_unseen(
    run: Runner,
    unseen: Mapping[str, WorkloadInfo],
    in_trouble: Callable[[Iterable[str]], bool],
    now: float,
    keep_seconds: float,
) -> dict[str, tuple[float, WorkloadInfo]]:
    """The jobs among ``unseen`` (last seen running by a reader before this one, not in ``squeue`` now) to
    keep, each since when; ``in_trouble``: whether one of the nodes given is in trouble or gone from Slurm.
    Said in one warning, job by job."""
    if not unseen:
        return {}
    fates, cannot = accounting(run, sorted(unseen))
    kept: dict[str, tuple[float, WorkloadInfo]] = {}
    said = []
    for job_id, info in sorted(unseen.items()):
        name = info.ref.name
        if job_id in fates:
            state, end = fates[job_id]
            if state in FINISHED_STATES:
                said.append(f"{name}: {state.lower()}, not kept")
            elif end > 0 and abs(now - end) > keep_seconds:
                said.append(f"{name}: {state.lower()}, too long ago to keep")
            else:  # an end sacct does not say (or in a SLURM_TIME_FORMAT not read here): from now on
                since = min(end, now) if end > 0 else now
                kept[job_id] = (since, replace(info, state=state.lower(), kept=len(info.units)))
                said.append(f"{name}: {state.lower()}, kept" + ("" if end > 0 else " (its end not known)"))
        elif in_trouble({node for _, node, _ in info.gpus}):
            kept[job_id] = (now, replace(info, state=GONE, kept=len(info.units)))
            said.append(f"{name}: end unknown, kept (a node of it is in trouble or gone)")
        else:
            said.append(f"{name}: end unknown, not kept (its nodes are well)")
    logger.warning(
        "slurm inventory: jobs running when gpuwarden last read Slurm left squeue while it was down: %s%s",
        "; ".join(said),
        f" (sacct could not say how they ended: {cannot})" if cannot else "",
    )
    return kept
