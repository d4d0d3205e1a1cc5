"""The incident store's JSON shapes: what it writes reads back the same, and what an earlier release wrote
still reads."""

from __future__ import annotations

from alerting.store import impact_from_dict, impact_to_dict
from gpuwarden.model import Impact, WorkloadKind, WorkloadRef


def test_an_impact_reads_back_with_its_parts_whole() -> None:
    job = WorkloadRef(WorkloadKind.TRAINING_JOB, "research", "etl, nightly")
    impact = Impact(workloads=(job,), gpus_affected=8, parts=("8 GPUs", "training job etl, nightly stopped"))
    stored = impact_to_dict(impact)
    assert stored["summary"] == "8 GPUs, training job etl, nightly stopped"
    assert impact_from_dict(stored) == impact


def test_an_impact_stored_before_its_parts_were_kept_is_one_part_not_split_on_commas() -> None:
    earlier = {"gpus_affected": 8, "summary": "8 GPUs, training job etl, nightly stopped"}
    assert impact_from_dict(earlier).parts == ("8 GPUs, training job etl, nightly stopped",)
    assert impact_from_dict({"summary": ""}).parts == ()
