"""The Slurm inventory against a real two-node Slurm cluster, and a storm correlated with it."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from alerting.db import make_engine
from alerting.engine import IncidentEngine
from alerting.kept_inventory import KeptInventoryStore
from alerting.kept_jobs import KeptJobStore
from alerting.migrate import upgrade
from alerting.slurm_inventory import SlurmInventory
from gpuwarden.clock import FakeClock, SystemClock
from gpuwarden.model import Alert, Priority, WorkloadKind
from tests.integration import http_probe
from tests.integration.gpuwarden_server import AUTH, gpuwarden_serve, serve_metric
from tests.integration.prometheus_queries import wait_for
from tests.integration.slurm_cluster import slurm_cluster

pytestmark = pytest.mark.integration


def test_nodes_racks_and_a_running_job_come_from_slurm_and_explain_a_node_failure(tmp_path: Path) -> None:
    with slurm_cluster() as cluster:
        # A job that ends on its own: squeue still lists it (COMPLETED, no GPUs); it is not kept.
        clock = FakeClock()
        quick = SlurmInventory(clock, env=cluster.env, keep_ended_seconds=600)
        done = cluster.run(
            "sbatch", "--parsable", "-J", "quick", "--gres=gpu:1", f"--chdir={cluster.conf.parent}",
            "--output=/dev/null", "--wrap", "sleep 5",
        ).strip()  # fmt: skip
        wait_for("quick to run", lambda: bool(quick.read().workload_list), 30)
        cluster.wait_job_not_running(done)
        wait_for(
            "quick to complete",
            lambda: "COMPLETED" in cluster.run("squeue", "-h", "-t", "all", "-j", done, "-o", "%T"),
            30,
        )
        assert quick.read().workload_list == []
        # A job an operator requeues (`scontrol requeue`, as preemption does) while its node is well: no
        # fault stopped it, so it is not kept to be named by a later fault on that node.
        requeued = cluster.submit("requeued", nodes=1, gpus_per_node=4)
        assert [w.ref.name for w in quick.read().workload_list] == [f"requeued ({requeued})"]
        cluster.run("scontrol", "requeue", requeued)
        cluster.wait_job_not_running(requeued)
        wait_for(
            "requeued to be pending",
            lambda: cluster.run("squeue", "-h", "-j", requeued, "-o", "%T").strip() == "PENDING",
            30,
        )
        assert quick.read().workload_list == []
        cluster.run("scancel", requeued)
        job_id = cluster.submit("llm-70b", nodes=2, gpus_per_node=4)
        slurm = SlurmInventory(clock, env=cluster.env, keep_ended_seconds=600)
        inventory = slurm.read()
        assert [(n.name, n.cluster, n.rack, n.gpu_count) for n in inventory.node_list] == [
            ("node-01", "c1", "r01", 4),
            ("node-02", "c1", "r02", 4),
        ]
        (job,) = inventory.workload_list
        assert (job.ref.kind, job.ref.name) == (WorkloadKind.TRAINING_JOB, f"llm-70b ({job_id})")
        assert job.aliases == (job_id, "llm-70b")
        assert job.gpus == {("c1", node, i) for node in ("node-01", "node-02") for i in range(4)}
        assert inventory.spare == {"c1": 0}  # every GPU is held by the job
        # The exporter labels a GPU's job by id (cgroup attribution): the id finds the job too.
        assert inventory.find_workload(WorkloadKind.TRAINING_JOB, job_id) == job.ref

        # node-01 dies: Slurm takes the job off it (requeued); the next read still knows where it ran.
        cluster.run("scontrol", "update", "NodeName=node-01", "State=DOWN", "Reason=psu failed")
        cluster.wait_job_not_running(job_id)
        clock.advance(60)
        later = slurm.read()
        assert [w.ref.name for w in later.workload_list] == [f"llm-70b ({job_id})"]
        assert later.spare == {"c1": 4}  # node-02's GPUs: node-01 is down
        clock.advance(601)
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
    assert f"training job llm-70b ({job_id}) stopped" in incident.title


def test_serve_reads_its_inventory_from_slurm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "gpuwarden.yaml"
    config.write_text(yaml.safe_dump({"alerting": {"slurm_inventory": True, "inventory_refresh_seconds": 1}}))
    with slurm_cluster() as cluster:
        monkeypatch.setenv("SLURM_CONF", str(cluster.conf))
        with gpuwarden_serve(tmp_path, str(tmp_path / "gw.db"), extra_args=["--config", str(config)]) as (
            url,
            _,
        ):
            # The job starts after serve did: a refresh (every second here) finds it.
            job_id = cluster.submit("llm-70b", nodes=2, gpus_per_node=4)
            wait_for(
                "the refresh to find the job",
                lambda: serve_metric(url, "gpuwarden_inventory_workloads") == 1,
                30,
            )
            alerts = [
                {"labels": {"alertname": "NodeDown", "cluster": "c1", "node": "node-02"}},
                {"labels": {"alertname": "TrainingJobStalled", "cluster": "c1", "slurm_job": job_id}},
            ]
            response = http_probe.post(f"{url}/api/v2/alerts", json=alerts, headers=AUTH, timeout=10)
            assert response.status_code == 200
            listed = http_probe.get(f"{url}/api/v1/incidents", timeout=10).json()
            # One incident; one that the node's took in (opened first, then merged) is listed as merged.
            (incident,) = [i for i in listed if not i.get("merged_into")]
            assert (
                incident["priority"] == "P0"
                and f"training job llm-70b ({job_id}) stopped" in incident["title"]
            )
    # slurmctld unreachable when serve starts (no Slurm commands at all here): serve runs without an
    # inventory, says why, and keeps trying at every refresh.
    monkeypatch.setenv("PATH", str(tmp_path))
    with gpuwarden_serve(tmp_path, str(tmp_path / "later.db"), "later", ["--config", str(config)]) as (
        url,
        _,
    ):
        assert serve_metric(url, "gpuwarden_inventory_workloads") == 0
        wait_for(
            "a failed refresh",
            lambda: serve_metric(url, "gpuwarden_inventory_refresh_failures_total") >= 1,
            30,
        )
    log = (tmp_path / "later.log").read_text()
    assert "slurm inventory: cannot read it" in log and "refresh failed; keeping the last one" in log


def test_a_serve_started_after_a_node_failure_still_knows_the_job_it_stopped() -> None:
    with slurm_cluster() as cluster:
        out = cluster.run(
            "sbatch", "--parsable", "-J", "no-requeue", "-N", "2", "--gres=gpu:2", "--no-requeue",
            f"--chdir={cluster.conf.parent}", "--output=/dev/null", "--wrap", "sleep 600",
        )  # fmt: skip
        job_id = out.strip().split(";")[0]
        wait_for(
            "the job to run",
            lambda: cluster.run("squeue", "-h", "-j", job_id, "-o", "%T").strip() == "RUNNING",
            60,
        )
        cluster.run("scontrol", "update", "NodeName=node-01", "State=DOWN", "Reason=psu failed")
        cluster.wait_job_not_running(job_id)
        # A reader that never saw the job run: serve restarted after the failure.
        inventory = SlurmInventory(SystemClock(), env=cluster.env).read()
        (job,) = inventory.workload_list
        assert (job.ref.name, job.state, job.kept) == (f"no-requeue ({job_id})", "node_fail", len(job.units))
        assert job.held == 4 and {node for _, node, _ in job.gpus} == {"node-01", "node-02"}
        assert job.per_node == 2  # --gres=gpu:2 on each node: it starts again only on 2 nodes with 2 each


@pytest.mark.parametrize(
    "options", [("-w", "node-01"), ("--constraint=a100&ib",)], ids=["nodelist", "constraint"]
)
def test_a_job_pinned_to_the_node_that_failed_is_p0_though_the_other_node_is_idle(
    tmp_path: Path, options: tuple[str, ...]
) -> None:
    with slurm_cluster() as cluster:
        for node, features in (("node-01", "a100,ib"), ("node-02", "a100")):
            cluster.run(
                "scontrol", "update", f"NodeName={node}", f"AvailableFeatures={features}",
                f"ActiveFeatures={features}",
            )  # fmt: skip
        # `sbatch -w node-01` (ReqNodeList), or a constraint only node-01 meets: Slurm requeues it, and it
        # waits for node-01 while node-02 idles.
        job_id = cluster.submit("pinned", 1, 2, *options)
        clock = FakeClock()
        slurm = SlurmInventory(clock, env=cluster.env)
        slurm.read()
        cluster.run("scontrol", "update", "NodeName=node-01", "State=DOWN", "Reason=psu failed")
        cluster.wait_job_not_running(job_id)
        clock.advance(30)
        inventory = slurm.read()
    node_02 = inventory.node("node-02")
    assert node_02 is not None and node_02.free == 4  # idle, and no capacity for this job
    sql = make_engine(str(tmp_path / "pinned.db"))
    upgrade(sql)
    engine = IncidentEngine(sql, clock, inventory=inventory)
    engine.ingest([Alert({"alertname": "NodeDown", "cluster": "c1", "node": "node-01"})])
    ((row, _count),) = engine.store.list_rows()
    assert (row.priority, f"training job pinned ({job_id}) stopped" in row.title) == ("P0", True), row.title


def test_a_requeued_job_is_still_named_by_its_node_incident_after_serve_restarts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "gpuwarden.yaml"
    alerting = {"slurm_inventory": True, "inventory_refresh_seconds": 1, "priority_settle_seconds": 0}
    config.write_text(yaml.safe_dump({"alerting": alerting}))
    db, args = str(tmp_path / "gw.db"), ["--config", str(config)]
    node_down = [{"labels": {"alertname": "NodeDown", "cluster": "c1", "node": "node-01"}}]

    def the_incident(url: str) -> dict[str, str]:
        http_probe.post(f"{url}/api/v2/alerts", json=node_down, headers=AUTH, timeout=10).raise_for_status()
        (incident,) = http_probe.get(f"{url}/api/v1/incidents", timeout=10).json()
        return {"priority": incident["priority"], "title": incident["title"]}

    with slurm_cluster() as cluster:
        monkeypatch.setenv("SLURM_CONF", str(cluster.conf))
        with gpuwarden_serve(tmp_path, db, "first", args) as (url, _):
            job_id = cluster.submit("llm-70b", nodes=2, gpus_per_node=4)
            wait_for("the job", lambda: serve_metric(url, "gpuwarden_inventory_workloads") == 1, 30)
            cluster.run("scontrol", "update", "NodeName=node-01", "State=DOWN", "Reason=psu failed")
            cluster.wait_job_not_running(job_id)  # requeued: PENDING, no nodes
            _wait_for_a_read(url)
            before = the_incident(url)
        assert before["priority"] == "P0" and f"training job llm-70b ({job_id}) stopped" in before["title"]
        assert cluster.run("squeue", "-h", "-j", job_id, "-o", "%T").strip() == "PENDING"
        # serve restarts; Slurm names no node for the job now.
        with gpuwarden_serve(tmp_path, db, "second", args) as (url, _):
            _wait_for_a_read(url)
            assert serve_metric(url, "gpuwarden_inventory_workloads") == 1  # the kept job
            assert the_incident(url) == before


def _wait_for_a_read(url: str) -> None:
    """Wait until serve's refresh read Slurm after now (a read that began before it may have ended since)."""
    now = time.time()
    read_at = 'gpuwarden_inventory_last_read_timestamp_seconds{source="slurm"}'
    wait_for("a Slurm read", lambda: serve_metric(url, read_at) > now + 1.5, 30)


def test_a_job_that_left_squeue_while_serve_was_down_is_known_when_its_node_is_down(tmp_path: Path) -> None:
    # MinJobAge=2: Slurm forgets an ended job within a minute. Job 1 runs on both nodes at serve's last read;
    # while serve is down node-01 fails (NODE_FAIL, --no-requeue) and the job leaves squeue. The restarted
    # serve knew nothing of it: node-01's incident named no job. No accounting here (sacct refuses): its end
    # is unknown, and node-01 down, it is kept.
    sql = make_engine(str(tmp_path / "gw.db"))
    upgrade(sql)

    def serve_reader(cluster_env: dict[str, str]) -> SlurmInventory:
        reader = SlurmInventory(SystemClock(), env=cluster_env)
        reader.keep_in(KeptJobStore(sql), KeptInventoryStore(sql, "slurm"))
        return reader

    with slurm_cluster(min_job_age=2) as cluster:
        out = cluster.run(
            "sbatch", "--parsable", "-J", "llm-70b", "-N", "2", "--gres=gpu:2", "--no-requeue",
            f"--chdir={cluster.conf.parent}", "--output=/dev/null", "--wrap", "sleep 600",
        )  # fmt: skip
        job_id = out.strip().split(";")[0]
        wait_for(
            "the job to run",
            lambda: cluster.run("squeue", "-h", "-j", job_id, "-o", "%T").strip() == "RUNNING",
            60,
        )
        assert [w.ref.name for w in serve_reader(cluster.env).read().workload_list] == [f"llm-70b ({job_id})"]
        cluster.run("scontrol", "update", "NodeName=node-01", "State=DOWN", "Reason=psu failed")
        wait_for(
            "Slurm to forget the job",
            lambda: job_id not in cluster.run("squeue", "-h", "-t", "all", "-o", "%i").split(),
            120,
        )
        inventory = serve_reader(cluster.env).read()
    (job,) = inventory.workload_list
    assert (job.ref.name, job.state, job.held) == (f"llm-70b ({job_id})", "gone", 4)
    engine = IncidentEngine(sql, FakeClock(), inventory=inventory)
    engine.ingest([Alert({"alertname": "NodeDown", "cluster": "c1", "node": "node-01"})])
    ((row, _count),) = engine.store.list_rows()
    assert f"training job llm-70b ({job_id}) stopped" in row.title, row.title
