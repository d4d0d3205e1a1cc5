"""A node gone from its source while its incident is open, and serve restarted: scenarios the alerting tests
run on SQLite and integration/test_postgres_store runs on PostgreSQL."""

from __future__ import annotations

from sqlalchemy import Engine

from alerting.engine import IncidentEngine
from alerting.k8s_inventory import KubernetesInventory
from alerting.kept_inventory import LISTED, KeptInventoryStore
from alerting.kept_jobs import KeptJobStore
from alerting.slurm_inventory import SlurmInventory
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert, Priority
from tests.alerting.fake_slurm import FakeSlurm, _job
from tests.alerting.k8s_objects import FakeApi, inventory, serving_cluster

CONFIG = AlertingConfig(announce_delay_seconds=0)


def _kubernetes(sql: Engine, api: FakeApi, clock: FakeClock) -> tuple[IncidentEngine, KubernetesInventory]:
    """What ``serve`` builds at its start: a Kubernetes reader that keeps what it keeps in the store, and
    the engine over its first read."""
    reader = inventory(api, clock)
    reader.keep_in(KeptInventoryStore(sql, "kubernetes"))
    return IncidentEngine(sql, clock, CONFIG, inventory=reader.read()), reader


def a_deleted_kubernetes_node_keeps_its_place_and_lost_replica_after_a_restart(sql: Engine) -> None:
    """g2 fails and is deleted from the API with its llama replica (the autoscaler, `kubectl delete node`);
    serve restarts: the incident's next alert for g2 still finds its cluster and rack, and llama's
    replica lost there. Before, the reader kept both in memory only: after the restart the incident was
    "node g2 is down: 1 node, 1 GPU", P2, its root a node of no cluster."""
    api, clock = FakeApi(), FakeClock(1000.0)
    serving_cluster(api)
    engine, reader = _kubernetes(sql, api, clock)
    engine.ingest([Alert({"alertname": "NodeDown", "node": "g2"})])
    ((row, _),) = engine.store.list_rows(None)
    api.objects["nodes"] = [n for n in api.objects["nodes"] if n["metadata"]["name"] != "g2"]
    api.objects["pods"] = [p for p in api.objects["pods"] if p["spec"]["nodeName"] != "g2"]
    clock.advance(60)
    engine.replace_inventory(reader.read())
    assert engine.store.get(row.id).priority is Priority.P1
    clock.advance(60)
    again, reader = _kubernetes(sql, api, clock)  # serve restarted: a new reader, a new engine
    g2 = reader.read().node("g2")
    assert g2 is not None and (g2.cluster, g2.rack, g2.state, g2.usable, g2.free) == (
        "k1",
        "r1",
        "deleted",
        False,
        0,
    )
    again.ingest([Alert({"alertname": "GpuXid", "xid": "79", "Hostname": "g2", "gpu": "3"})])
    clock.advance(400)
    again.replace_inventory(reader.read())
    incident = again.store.get(row.id)
    assert incident.priority is Priority.P1 and "llama 25% of replicas lost" in incident.title, incident.title
    assert (incident.root_cause.target.cluster, incident.root_cause.target.rack) == ("k1", "r1")
    # kept an hour from the loss, as without the restart: then the node and its replica are forgotten
    clock.advance(3600)
    read = reader.read()
    assert read.node("g2") is None and [w.kept for w in read.workload_list] == [0]
    left = KeptInventoryStore(sql, "kubernetes").load("k1")  # the nodes as listed only
    assert {kind for kind, _ in left} == {LISTED} and "g2" not in {name for _, name in left}


def a_kubernetes_node_deleted_while_serve_was_down_is_judged_at_the_first_read(sql: Engine) -> None:
    """g2's incident is open when serve stops; g2 is deleted with its llama replica while no serve runs. The
    restarted serve's first read finds g2 gone: its replica is lost as of then and g2 is ``deleted``, as had
    serve seen it go. Before, the restarted reader had never known g2: "node g2 is down: 1 node, 1 GPU", P2,
    its root a node of no cluster or rack."""
    api, clock = FakeApi(), FakeClock(1000.0)
    serving_cluster(api)
    engine, reader = _kubernetes(sql, api, clock)
    engine.ingest([Alert({"alertname": "NodeDown", "node": "g2"})])
    ((row, _),) = engine.store.list_rows(None)
    api.objects["nodes"] = [n for n in api.objects["nodes"] if n["metadata"]["name"] != "g2"]
    api.objects["pods"] = [p for p in api.objects["pods"] if p["spec"]["nodeName"] != "g2"]
    clock.advance(600)  # serve down ten minutes
    again, reader = _kubernetes(sql, api, clock)
    g2 = again.inventory.node("g2")
    assert g2 is not None and (g2.cluster, g2.rack, g2.state, g2.usable) == ("k1", "r1", "deleted", False)
    again.ingest([Alert({"alertname": "GpuXid", "xid": "79", "Hostname": "g2", "gpu": "3"})])
    incident = again.store.get(row.id)
    assert incident.priority is Priority.P1 and "llama 25% of replicas lost" in incident.title, incident.title
    assert (incident.root_cause.target.cluster, incident.root_cause.target.rack) == ("k1", "r1")
    clock.advance(3599)  # kept an hour from when the restarted reader saw it gone
    assert reader.read().node("g2") is not None
    clock.advance(2)
    assert reader.read().node("g2") is None


def _slurm(sql: Engine, slurm: FakeSlurm, clock: FakeClock) -> tuple[IncidentEngine, SlurmInventory]:
    """What ``serve`` builds at its start for Slurm (see ``_kubernetes``)."""
    reader = SlurmInventory(clock, slurm)
    reader.keep_in(KeptJobStore(sql), KeptInventoryStore(sql, "slurm"))
    return IncidentEngine(sql, clock, CONFIG, inventory=reader.read()), reader


def a_slurm_node_removed_while_serve_was_down_keeps_its_place_and_stopped_job(sql: Engine) -> None:
    """Job 41 runs on n1 and n2 when serve stops; n2 fails, taking the job (NODE_FAIL, which squeue still
    lists), and leaves Slurm's node list (slurm.conf and `scontrol reconfigure`) while no serve runs. The
    restarted serve keeps the job from squeue, and now n2's place too: before, n2 was a node of no cluster,
    "node n2 is down: 1 node, 1 GPU", P2, the job gone from the incident."""
    slurm, clock = FakeSlurm(), FakeClock()
    slurm.jobs = [_job(41, "llm-70b", "RUNNING")]
    engine, _ = _slurm(sql, slurm, clock)
    engine.ingest([Alert({"alertname": "NodeDown", "node": "n2"})])
    ((row, _),) = engine.store.list_rows(None)
    assert "llm-70b (41)" in row.title and engine.store.get(row.id).priority is Priority.P0, row.title
    slurm.jobs = [{**_job(41, "llm-70b", "NODE_FAIL"), "end_time": int(clock.time()) + 30}]
    slurm.states["n2"] = "down"
    slurm.removed.add("n2")
    clock.advance(60)
    again, _ = _slurm(sql, slurm, clock)
    n2 = again.inventory.node("n2")
    assert n2 is not None and (n2.cluster, n2.rack, n2.gpu_count, n2.state) == ("c1", "r07", 8, "deleted")
    again.ingest([Alert({"alertname": "GpuXid", "xid": "79", "Hostname": "n2", "gpu": "1"})])
    incident = again.store.get(row.id)
    assert "llm-70b (41)" in incident.title and incident.priority is Priority.P0, incident.title
    assert (incident.root_cause.target.cluster, incident.root_cause.target.rack) == ("c1", "r07")


def a_removed_slurm_node_keeps_its_place_and_stopped_job_after_a_restart(sql: Engine) -> None:
    """n2 fails and takes job 41 with it; serve restarts, and n2 leaves Slurm's node list meanwhile
    (slurm.conf and `scontrol reconfigure`): the incident's next alert for n2 still finds its cluster, rack
    and 8 GPUs, and job 41. Before, the job came back from the store but its node's place did not: "node n2
    is down: 1 node, 1 GPU", the job gone from the title."""
    slurm, clock = FakeSlurm(), FakeClock()
    slurm.jobs = [_job(41, "llm-70b", "RUNNING")]
    engine, reader = _slurm(sql, slurm, clock)
    slurm.jobs, slurm.states["n2"] = [_job(41, "llm-70b", "NODE_FAIL")], "down"
    engine.replace_inventory(reader.read())
    engine.ingest([Alert({"alertname": "NodeDown", "node": "n2"})])
    ((row, _),) = engine.store.list_rows(None)
    assert "llm-70b (41)" in row.title, row.title
    slurm.removed.add("n2")  # while serve is down
    clock.advance(60)
    again, reader = _slurm(sql, slurm, clock)
    n2 = reader.read().node("n2")
    assert n2 is not None and (n2.cluster, n2.rack, n2.gpu_count, n2.state, n2.usable) == (
        "c1",
        "r07",
        8,
        "deleted",
        False,
    )
    again.ingest([Alert({"alertname": "GpuXid", "xid": "79", "Hostname": "n2", "gpu": "1"})])
    incident = again.store.get(row.id)
    assert "llm-70b (41)" in incident.title and "8 GPUs" in incident.title, incident.title
    assert (incident.root_cause.target.cluster, incident.root_cause.target.rack) == ("c1", "r07")
    clock.advance(3600)  # the job's keep window over: the node's place goes with it
    assert reader.read().node("n2") is None
    left = KeptInventoryStore(sql, "slurm").load("c1")  # the nodes as listed only
    assert {kind for kind, _ in left} == {LISTED} and "n2" not in {name for _, name in left}
