"""Scenarios the alerting tests run on SQLite and integration/test_postgres_store runs on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import CollectorRegistry
from sqlalchemy import Engine, select, text

from alerting import scenarios as sc
from alerting.db import make_engine
from alerting.engine import IncidentEngine
from alerting.kept_jobs import KeptJobStore
from alerting.migrate import upgrade
from alerting.notifiers.recorder import SlackRecorder
from alerting.notifiers.slack import SlackNotifier, make_client
from alerting.notifiers.webhook import WebhookNotifier
from alerting.outbox import Outbox
from alerting.outbox_metrics import OutboxCollector
from alerting.slurm_inventory import SlurmInventory
from alerting.store_models import IncidentRow
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert, AlertStatus
from tests.alerting.notifiers.incidents import lifecycle, reassessed
from tests.alerting.slurm_recorded import RecordedSlurm

START = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
CONFIG = AlertingConfig(announce_delay_seconds=0, priority_settle_seconds=0)


def serve(sql: Engine, clock: FakeClock, slurm: RecordedSlurm) -> tuple[IncidentEngine, SlurmInventory]:
    """What ``serve`` builds at its start: a Slurm reader that keeps stopped jobs in the store; the engine."""
    reader = SlurmInventory(clock, slurm)
    reader.keep_in(KeptJobStore(sql))
    return IncidentEngine(sql, clock, CONFIG, reader.read()), reader


def requeued_job_named_after_restart(sql: Engine) -> None:
    """The scenario, on any migrated store (the PostgreSQL integration test runs it too)."""
    # llm ran on node-01,02; node-01 went DOWN and Slurm requeued it: PENDING, no nodes in squeue.
    slurm, clock = RecordedSlurm("D-running"), FakeClock()
    gw, reader = serve(sql, clock, slurm)
    gw.ingest([Alert({"alertname": "NodeDown", "cluster": "cap", "node": "node-01"})])
    slurm.capture = "D-requeued"
    clock.advance(30)
    gw.replace_inventory(reader.read())
    ((row, _),) = gw.store.list_rows(None)
    assert row.priority == "P0" and "training job llm (14) stopped" in row.title
    # serve restarts: a new reader, which never saw llm run, and a new engine on the same store.
    clock.advance(60)
    again, reader = serve(sql, clock, slurm)
    clock.advance(60)
    again.replace_inventory(reader.read())
    again.ingest([Alert({"alertname": "NodeDown", "cluster": "cap", "node": "node-01", "again": "1"})])
    incident = again.store.get(row.id)
    assert (incident.priority.value, "training job llm (14) stopped" in incident.title) == ("P0", True)
    (kept,) = reader.read().workload_list
    assert (kept.ref.name, kept.state, kept.held) == ("llm (14)", "pending", 8)
    # --gres=gpu:4 on each of its 2 nodes (-N2: at least 2), read back from the store
    assert (kept.per_node, kept.min_nodes) == (4, 2)
    # kept an hour from when it stopped, as without the restart
    clock.advance(3600)
    assert reader.read().workload_list == []
    assert KeptJobStore(sql).load("cap") == {}


def a_held_update_is_counted_held_not_pending(sql: Engine, recorder: SlackRecorder) -> None:
    """The test above on the store ``sql`` (SQLite or PostgreSQL, which groups by the held expression)."""
    clock = FakeClock()
    registry = CollectorRegistry()
    hook = WebhookNotifier(f"{recorder.root_url}/hooks/ops", name="webhook:ops", edit_interval_seconds=300)
    outbox = Outbox(sql, [hook], clock)
    registry.register(OutboxCollector(outbox))
    outbox(lifecycle()[0])
    outbox.dispatch_due()
    outbox(reassessed("reset_gpu", 1))
    assert outbox.dispatch_due() == 0  # held

    def depth(status: str) -> float | None:
        return registry.get_sample_value(
            "gpuwarden_outbox_messages", {"notifier": "webhook:ops", "status": status}
        )

    assert (depth("held"), depth("pending"), depth("sent")) == (1, 0, 1)
    assert outbox.depths() == ({"pending": 1, "sent": 1}, 1)  # what ``outbox list`` shows: pending 1 (held 1)
    clock.advance(301)  # due now, not yet sent (the dispatcher polls): the backlog again
    assert (depth("held"), depth("pending")) == (0, 1)
    assert outbox.dispatch_due() == 1
    assert (depth("held"), depth("pending"), depth("sent")) == (0, 0, 2)
    hook.close()


def a_rate_limit_pause_outlives_a_restart(sql: Engine, recorder: SlackRecorder) -> None:
    """Slack asks for 60 s; serve restarts 10 s later: no call to Slack for any incident until 60 s passed.

    The pause was kept in memory: the restarted outbox called Slack at once for the other incidents, and
    Slack answered 429 again (and may rate limit an app that keeps calling harder)."""
    clock = FakeClock()
    slack = SlackNotifier(make_client(recorder.token, base_url=recorder.base_url, rate_limit_retries=0), "#c")
    outbox = Outbox(sql, [slack], clock)
    for incident_id in ("inc-a", "inc-b", "inc-c"):
        outbox(lifecycle(incident_id)[0])
    recorder.fail_next("chat.postMessage", status=429, retry_after=60)
    assert outbox.dispatch_due() == 0
    clock.advance(10)
    restarted = Outbox(sql, [slack], clock)  # a new serve (or the standby) on the same store
    assert restarted.paused("slack")
    for _ in range(49):
        clock.advance(1)
        assert restarted.dispatch_due() == 0
    assert len(recorder.calls) == 1  # the refused one only
    clock.advance(1)
    assert restarted.dispatch_due() == 3
    assert len(recorder.channel_messages()) == 3


def a_merged_incident_shows_the_alerts_it_handed_over(path: str) -> None:
    """The test above on the store at ``path`` (a SQLite file or a PostgreSQL URL)."""
    store = make_engine(path)
    upgrade(store)
    clock = FakeClock(START.timestamp())
    engine = IncidentEngine(store, clock, AlertingConfig(announce_delay_seconds=0), sc.fleet_inventory())
    try:
        _shows_what_it_handed_over(engine, clock)
    finally:
        store.dispose()  # PostgreSQL: no connection left to the garbage collector


def _shows_what_it_handed_over(engine: IncidentEngine, clock: FakeClock) -> None:
    node = sc.node_name(1, 1)
    lost = Alert(
        {"alertname": "GPULost", "Hostname": node, "gpu": "3", "cluster": sc.CLUSTER}, starts_at=START
    )
    engine.ingest([lost, *sc.node_failure(1, 2, START)])
    clock.advance(60)
    rack = Alert({"alertname": "RackPowerLoss", "rack": "r01", "cluster": sc.CLUSTER}, starts_at=clock.now())
    engine.ingest([rack])
    counts = {row.id: n for row, n in engine.store.list_rows(include_merged=True)}
    (gone,) = [r for r in _rows(engine) if r.merged_into]
    assert counts[gone.id] == 1
    assert engine.store.get(gone.id).alert_fingerprints == [lost.fingerprint]
    assert [a.fingerprint for a in engine.store.alerts_of(gone.id)] == [lost.fingerprint]
    evidence = [line for line in engine.postmortem(gone.id).splitlines() if "Evidence" in line]
    assert evidence == [f"- Evidence: 1 alert, moved into {gone.merged_into} (GPULost)"]


def _rows(engine: IncidentEngine) -> list[IncidentRow]:
    with engine._sessions() as session:
        return list(session.scalars(select(IncidentRow)))


def history_then_back(db: str, restart: bool) -> list[tuple[object, ...]]:
    """Three nodes down, two of them back and their incidents resolved; then (after a restart, if asked) a
    resolved repeat of the first, the second down again, a repeat of the third: the store's incidents and
    alerts after it. ``db``: a migrated store's path or URL."""
    clock = FakeClock()
    config = AlertingConfig(announce_delay_seconds=0, quiet_period_seconds=5)
    stores = [make_engine(db)]
    engine = IncidentEngine(stores[0], clock, config)
    down = [{"alertname": "NodeDown", "cluster": "c1", "node": f"x{k}"} for k in range(3)]
    engine.ingest([Alert(labels) for labels in down])
    clock.advance(10)
    engine.ingest([Alert(labels, status=AlertStatus.RESOLVED) for labels in down[:2]])
    clock.advance(10)
    engine.tick()
    if restart:
        stores.append(make_engine(db))
        engine = IncidentEngine(stores[-1], clock, config)
    clock.advance(10)
    engine.ingest([Alert(down[0], status=AlertStatus.RESOLVED), Alert(down[1]), Alert(down[2])])
    clock.advance(10)
    engine.tick()
    with stores[-1].connect() as conn:
        incidents = list(conn.execute(text("SELECT * FROM incidents ORDER BY title")))
        alerts = list(conn.execute(text("SELECT * FROM alerts ORDER BY fingerprint")))
    for store in stores:
        store.dispose()
    named = {row[0]: f"incident {k}" for k, row in enumerate(incidents)}  # ids are drawn at random
    return [tuple(named.get(v, v) if isinstance(v, str) else v for v in row) for row in [*incidents, *alerts]]
