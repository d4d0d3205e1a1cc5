"""Jobs as ``squeue --json`` of Slurm 24.05 writes them, numbers as objects, for the Slurm reader's tests."""

from __future__ import annotations

from typing import Any


def no_val(number: float | None = None, *, infinite: bool = False) -> dict[str, Any]:
    """A number as Slurm's data_parser (23.02 on) writes it: ``{"set", "infinite", "number"}``."""
    return {"set": number is not None, "infinite": infinite, "number": number or 0}


def job_24_05(job_id: int, state: list[str], nodes: list[str], **fields: Any) -> dict[str, Any]:
    """A job as ``squeue --json`` of Slurm 24.05 (data_parser v0.0.41) writes it: numbers as objects, the
    state a list, the allocation under ``job_resources.nodes.allocation``."""
    return {
        "job_id": job_id,
        "name": "llm",
        "job_state": state,
        "array_job_id": no_val(0),
        "array_task_id": no_val(),
        "het_job_id": no_val(),
        "het_job_offset": no_val(),
        "end_time": no_val(),
        "start_time": no_val(1_700_000_000),
        "time_limit": no_val(infinite=True),
        "node_count": no_val(len(nodes)),
        "priority": no_val(100),
        "partition": "gpu",
        "required_nodes": "",
        "excluded_nodes": "",
        "features": "",
        "tres_per_node": "gres/gpu:4",
        "job_resources": {"nodes": {"count": len(nodes), "allocation": [{"name": n} for n in nodes]}}
        if nodes
        else {},
        "gres_detail": ["gpu:4(IDX:0-3)"] * len(nodes),
        **fields,
    }
