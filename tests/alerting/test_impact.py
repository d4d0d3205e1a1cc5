"""Priority from impact when the fault is an XID: the catalog says whether the GPU is out of service."""

from __future__ import annotations

from pathlib import Path

import pytest

from alerting import scenarios
from alerting.db import make_engine
from alerting.engine import IncidentEngine
from alerting.migrate import upgrade
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert


def _priority_of(tmp_path: Path, alert: Alert, spare_gpus: int = 0) -> tuple[str, str]:
    path = str(tmp_path / "incidents.db")
    upgrade(make_engine(path))
    config = AlertingConfig(announce_delay_seconds=0)
    engine = IncidentEngine(
        make_engine(path), FakeClock(), config, scenarios.fleet_inventory(spare_gpus=spare_gpus)
    )
    engine.ingest([alert])
    ((row, _),) = engine.store.list_rows()
    return row.priority, str(row.impact.get("priority_reason", ""))


def _xid(node: str, gpu: int, code: int) -> Alert:
    return Alert(
        {"alertname": "GPUXid", "cluster": "c1", "Hostname": node, "gpu": str(gpu), "xid": str(code)}
    )


@pytest.mark.parametrize(
    ("code", "spare", "expected"),
    [
        # GSP RPC timeout: the catalog's action is a GPU reset, so the rank on it is stopped.
        (119, 0, "P0"),  # no spare GPU to restart the job on: fully stopped
        (119, 128, "P1"),  # "training job stalled by one fatal GPU"
        (46, 128, "P1"),
        # A graphics engine exception only needs the application restarted: one non-fatal XID.
        (13, 0, "P3"),
    ],
)
def test_an_xid_that_takes_a_training_gpu_out_of_service_stops_the_job(
    tmp_path: Path, code: int, spare: int, expected: str
) -> None:
    # r07-n01 GPU 2 runs a rank of llm-70b in the scenario fleet.
    assert _priority_of(tmp_path, _xid("r07-n01", 2, code), spare)[0] == expected


def test_an_out_of_service_xid_on_a_replica_loses_that_replica(tmp_path: Path) -> None:
    # Service chat has one replica on GPU 0 of each r01 node.
    assert _priority_of(tmp_path, _xid("r01-n03", 0, 119)) == (
        "P2",
        "redundant replicas lost (12% of a service's capacity)",
    )


def test_an_out_of_service_xid_on_an_idle_gpu_is_lost_capacity(tmp_path: Path) -> None:
    priority, reason = _priority_of(tmp_path, _xid("r03-n02", 5, 119))
    assert (priority, reason) == ("P2", "GPU capacity lost, no workload affected")


def test_an_xid_incident_is_titled_with_the_xid_and_its_meaning(tmp_path: Path) -> None:
    path = str(tmp_path / "incidents.db")
    upgrade(make_engine(path))
    config = AlertingConfig(announce_delay_seconds=0)
    engine = IncidentEngine(make_engine(path), FakeClock(), config, scenarios.fleet_inventory())
    engine.ingest([_xid("r03-n02", 5, 119), _xid("r03-n02", 6, 119)])
    ((row, _),) = engine.store.list_rows()
    assert row.title.startswith("node r03-n02 XID 119 (GSP RPC Timeout): ")


def test_an_xid_on_every_gpu_of_a_rack_is_an_xid_fault_not_a_power_loss(tmp_path: Path) -> None:
    path = str(tmp_path / "incidents.db")
    upgrade(make_engine(path))
    config = AlertingConfig(announce_delay_seconds=0)
    engine = IncidentEngine(make_engine(path), FakeClock(), config, scenarios.fleet_inventory())
    engine.ingest([_xid(f"r03-n0{n}", gpu, 119) for n in range(1, 9) for gpu in range(8)])
    ((row, count),) = engine.store.list_rows()
    assert (row.root_kind, row.root_target.get("name"), count) == ("xid", "r03", 64)
    assert row.title.startswith("rack r03 XID 119 (GSP RPC Timeout): 8 nodes, 64 GPUs")
