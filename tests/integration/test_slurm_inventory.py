"""The Slurm inventory against a real two-node Slurm cluster, and a storm correlated with it."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from alerting.db import make_engine
from alerting.engine import IncidentEngine
from alerting.migrate import upgrade
from alerting.slurm_inventory import SlurmInventory
from gpuwarden.cli import app
from gpuwarden.clock import FakeClock
from gpuwarden.model import Alert, Priority, WorkloadKind
from tests.integration.gpuwarden_server import AUTH, TOKEN, gpuwarden_serve
from tests.integration.slurm_cluster import slurm_cluster

pytestmark = pytest.mark.integration
runner = CliRunner()


def test_nodes_racks_and_a_running_job_come_from_slurm_and_explain_a_node_failure(tmp_path: Path) -> None:
    with slurm_cluster() as cluster:
        job_id = cluster.submit("llm-70b", nodes=2, gpus_per_node=4)
        clock = FakeClock()
        slurm = SlurmInventory(clock, env=cluster.env, keep_ended_seconds=600)
        inventory = slurm.read()
        assert [(n.name, n.cluster, n.rack, n.gpu_count) for n in inventory.node_list] == [
            ("node-01", "c1", "r01", 4),
            ("node-02", "c1", "r02", 4),
        ]
        (job,) = inventory.workload_list
        assert (job.ref.kind, job.ref.name, job.aliases) == (WorkloadKind.TRAINING_JOB, "llm-70b", (job_id,))
        assert job.gpus == {(node, i) for node in ("node-01", "node-02") for i in range(4)}
        assert inventory.spare == {"c1": 0}  # every GPU is held by the job
        # The exporter labels a GPU's job by id (cgroup attribution): the id finds the job too.
        assert inventory.find_workload(WorkloadKind.TRAINING_JOB, job_id) == job.ref

        # node-01 dies: Slurm ends the job; the next read still knows where it ran.
        cluster.run("scancel", job_id)
        clock.advance(60)
        later = slurm.read()
        assert [w.ref.name for w in later.workload_list] == ["llm-70b"]
        assert later.spare == {"c1": 8}
        clock.advance(600)
        assert slurm.read().workload_list == []  # forgotten once the keep window passed

    sql = make_engine(str(tmp_path / "slurm.db"))
    upgrade(sql)
    engine = IncidentEngine(sql, FakeClock(), inventory=inventory)
    engine.ingest(
        [
            Alert({"alertname": "NodeDown", "cluster": "c1", "node": "node-01"}),
            Alert({"alertname": "TrainingJobStalled", "cluster": "c1", "slurm_job": job_id}),
        ]
    )
    (row, _count) = engine.store.list_rows()[0]
    incident = engine.store.get(row.id)
    assert incident.priority is Priority.P0  # the job fully stopped and Slurm shows no spare GPU
    assert "training job llm-70b stopped" in incident.title


def test_serve_reads_its_inventory_from_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "gpuwarden.yaml"
    config.write_text(yaml.safe_dump({"alerting": {"slurm_inventory": True, "inventory_refresh_seconds": 1}}))
    with slurm_cluster() as cluster:
        monkeypatch.setenv("SLURM_CONF", str(cluster.conf))
        with gpuwarden_serve(tmp_path, str(tmp_path / "gw.db"), extra_args=["--config", str(config)]) as (
            url,
            _,
        ):
            job_id = cluster.submit(
                "llm-70b", nodes=2, gpus_per_node=4
            )  # started after serve: the refresh finds it
            time.sleep(3)  # three inventory refreshes (one a second)
            alerts = [
                {"labels": {"alertname": "NodeDown", "cluster": "c1", "node": "node-02"}},
                {"labels": {"alertname": "TrainingJobStalled", "cluster": "c1", "slurm_job": job_id}},
            ]
            response = httpx.post(f"{url}/api/v2/alerts", json=alerts, headers=AUTH, timeout=10)
            assert response.status_code == 200
            (incident,) = httpx.get(f"{url}/api/v1/incidents", timeout=10).json()
            assert incident["priority"] == "P0" and "training job llm-70b stopped" in incident["title"]
    monkeypatch.setenv("PATH", str(tmp_path))  # no Slurm commands (a broken SLURM_CONF takes 30 s to fail)
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", TOKEN)
    refused = runner.invoke(app, ["serve", "--db", str(tmp_path / "x.db"), "--config", str(config)])
    assert refused.exit_code == 1
    assert "alerting.slurm_inventory: cannot read the Slurm inventory" in " ".join(refused.output.split())
