"""The incident store's JSON shapes: what it writes reads back the same, and what an earlier release wrote
still reads."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from alerting import scenarios as sc
from alerting.engine import IncidentEngine
from alerting.store import PEAK, impact_from_dict, impact_to_dict, with_absorbed_peak
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert, Impact, WorkloadKind, WorkloadRef
from tests.migrated_store import migrated_sqlite


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


def _stored(gpus: int, share: float, peak: tuple[str, int, float] | None = None) -> dict[str, object]:
    data = impact_to_dict(Impact(gpus_affected=gpus, affected_share=share))
    if peak is not None:
        data[PEAK] = {
            **impact_to_dict(Impact(gpus_affected=peak[1], affected_share=peak[2])),
            "priority": peak[0],
        }
    return data


@pytest.mark.parametrize(
    ("kept", "absorbed", "worst"),
    [
        ((_stored(8, 0.0), "P2"), (_stored(1, 0.1), "P1"), ("P1", 1)),
        ((_stored(1, 0.0, ("P1", 1, 0.5)), "P3"), (_stored(40, 0.9), "P2"), ("P1", 1)),
        ((_stored(1, 0.0), "P2"), (_stored(1, 0.0, ("P0", 40, 1.0)), "P2"), ("P0", 40)),
        ((_stored(2, 0.0), "P2"), (_stored(8, 0.0), "P2"), ("P2", 8)),
        ((_stored(2, 0.0), "P2"), ({}, "P3"), ("P2", 2)),
    ],
    ids=[
        "more-urgent-wins",
        "own-peak-kept",
        "absorbed-peak-taken",
        "then-more-gpus",
        "absorbed-never-assessed",
    ],
)
def test_a_merge_keeps_the_worse_peak_of_the_two_incidents(
    kept: tuple[dict[str, object], str], absorbed: tuple[dict[str, object], str], worst: tuple[str, int]
) -> None:
    merged = with_absorbed_peak(kept[0], kept[1], absorbed[0], absorbed[1])
    assert (merged[PEAK]["priority"], merged[PEAK]["gpus_affected"]) == worst
    assert merged["gpus_affected"] == kept[0]["gpus_affected"]  # the current impact stays its own


def test_alerts_of_one_post_with_one_start_are_listed_alike_whatever_order_they_came_in(
    tmp_path: Path,
) -> None:
    # A GPU lost, its XID and its heat, posted together with one startsAt: the incident's alerts (the API's
    # `alerts`, `incidents show -o json`) were listed in arrival order, ties left to the database, so two
    # replicas (or a PostgreSQL row rewritten by an update) listed the same incident differently.
    gpu = {"cluster": sc.CLUSTER, "Hostname": sc.node_name(1, 1), "gpu": "0"}
    start = datetime(2026, 1, 1, tzinfo=UTC)
    alerts = [
        Alert({**gpu, "alertname": name, **extra}, starts_at=start)
        for name, extra in (("GPULost", {}), ("GPUXid", {"xid": "79"}), ("GPUThermal", {}))
    ]
    listed = []
    for i, order in enumerate((alerts, alerts[::-1])):
        engine = IncidentEngine(migrated_sqlite(tmp_path / f"{i}.db"), FakeClock(), AlertingConfig())
        engine.ingest(order)
        ((row, _),) = engine.store.list_rows()
        fingerprints = [a.fingerprint for a in engine.store.alerts_of(row.id)]
        assert engine.store.get(row.id).alert_fingerprints == fingerprints
        listed.append(fingerprints)
    assert listed[0] == listed[1]
