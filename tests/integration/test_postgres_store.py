"""The incident store on a real, throwaway PostgreSQL 15: migrations, a storm, and a restart."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import httpx
import orjson
import pytest
from sqlalchemy import Engine, create_engine, func, inspect, select, text
from sqlalchemy.pool import NullPool

from alerting import scenarios
from alerting.advisory_lock import ADVISORY_KEY
from alerting.applier import JournalApplier
from alerting.db import make_engine
from alerting.engine import IncidentEngine
from alerting.fencing import LockState, NotActive
from alerting.instance_lock import InstanceBusy, InstanceLocks
from alerting.journal import KIND_POSTABLE, AcceptJournal, applied_offset
from alerting.migrate import upgrade
from alerting.notifiers.recorder import SlackRecorder
from alerting.store_models import IncidentRow
from gpuwarden.clock import FakeClock
from gpuwarden.model import Alert, AlertStatus, IncidentState, RackRef, label_fingerprint
from tests.alerting.query_plans import incident_silence_query_plan, resolved_incident_query_plans
from tests.alerting.test_kept_jobs import requeued_job_named_after_restart
from tests.alerting.test_merge_chain import a_merged_incident_shows_the_alerts_it_handed_over
from tests.alerting.test_migrate import (
    an_opening_stored_before_0019_is_read_as_told_at_the_end_of_its_delay,
    downgrade,
)
from tests.alerting.test_outbox import webhook_edits_flipping_every_30_s
from tests.alerting.test_outbox_metrics import a_held_update_is_counted_held_not_pending
from tests.alerting.test_outbox_pauses import a_rate_limit_pause_outlives_a_restart
from tests.alerting.test_reminding import (
    a_restart_offers_the_outbox_no_opening_the_store_says_was_announced,
    an_incident_of_before_0019_is_stored_as_announced_at_the_end_of_its_delay,
)
from tests.integration import http_probe
from tests.integration.gpuwarden_server import AUTH, gpuwarden_serve, serve_metric
from tests.integration.postgres import Postgres
from tests.integration.servers import free_port
from tests.integration.tcp_proxy import SilentableProxy


@pytest.mark.integration
def test_storm_on_postgres_is_one_rack_incident_and_survives_a_restart(postgres_url: str) -> None:
    sql = make_engine(postgres_url)
    upgrade(sql)
    upgrade(sql)  # idempotent
    assert {"alerts", "incidents", "timeline", "silences"} <= set(inspect(sql).get_table_names())
    clock = FakeClock()
    inventory = scenarios.fleet_inventory()
    engine = IncidentEngine(sql, clock, inventory=inventory)
    storm = scenarios.rack_failure(7, clock.now()) + scenarios.node_failure(3, 2, clock.now())
    for i in range(0, 150, 25):
        engine.ingest(storm[i : i + 25])
    sql.dispose()

    second = make_engine(postgres_url)
    restarted = IncidentEngine(second, clock, inventory=inventory)
    for i in range(150, len(storm), 25):
        restarted.ingest(storm[i : i + 25])
    rows = [(r, n) for r, n in restarted.store.list_rows() if r.state != IncidentState.RESOLVED.value]
    assert sorted((r.root_kind, r.priority) for r, _ in rows) == [("node_down", "P2"), ("rack_down", "P0")]
    assert sum(n for _, n in rows) == len(storm)
    rack = next(r for r, _ in rows if r.root_kind == "rack_down")
    incident = restarted.store.get(rack.id)
    assert incident.root_cause.target == RackRef("c1", "r07")
    assert incident.opened_at.tzinfo is not None
    assert restarted.acknowledge(rack.id, "pg-user").state is IncidentState.ACKNOWLEDGED

    # Resolved, then forgotten after the retention period (90 days by default).
    resolved = [replace(a, status=AlertStatus.RESOLVED) for a in storm]
    for i in range(0, len(resolved), 100):
        restarted.ingest(resolved[i : i + 100])
    clock.advance(restarted.config.quiet_period_seconds + 1)
    restarted.tick()
    assert list(restarted.open_incident_ids()) == []
    clock.advance(91 * 86_400)
    with second.connect() as conn:  # with the incidents the storm merged away
        stored = conn.execute(select(func.count()).select_from(IncidentRow)).scalar_one()
    pruned = restarted.prune()
    assert (pruned.incidents, len(pruned.alerts)) == (stored, len(storm))
    assert (restarted.store.alert_count(), restarted.store.list_rows()) == (0, [])
    second.dispose()


@pytest.mark.integration
def test_on_postgres_repeats_keep_the_later_end_of_an_overlap_and_take_an_open_one(postgres_url: str) -> None:
    """The repeats' one UPDATE compares the stored endsAt with a bound one that may be null (a webhook
    alert's open end): PostgreSQL must type that parameter, as SQLite need not."""
    sql = make_engine(postgres_url)
    upgrade(sql)
    clock = FakeClock()
    engine = IncidentEngine(sql, clock)
    now, minute = clock.now(), timedelta(minutes=1)
    ha, hooked = {"alertname": "HA", "node": "n1"}, {"alertname": "Hooked", "node": "n1"}
    engine.ingest([Alert(ha, starts_at=now - minute, ends_at=now + 4 * minute), Alert(hooked)])
    engine.ingest([Alert(ha, starts_at=now - minute, ends_at=now + minute), Alert(hooked)])  # repeats
    ends = {a.labels["alertname"]: a.ends_at for a in engine.store.firing_alerts()}
    assert ends == {"HA": now + 4 * minute, "Hooked": None}
    sql.dispose()


@pytest.mark.integration
def test_on_postgres_the_resolve_timeout_mark_outlives_a_restart_and_0017_downgrades(
    postgres_url: str,
) -> None:
    """The repeats' UPDATE writes the mark (a boolean bound to PostgreSQL's type) and reads it in its CASE;
    a restarted engine lets an explicit earlier endsAt stand over a timeout; 0017 goes down and up again."""
    sql = make_engine(postgres_url)
    upgrade(sql)
    clock = FakeClock()
    now, minute = clock.now(), timedelta(minutes=1)
    labels = {"alertname": "Open", "node": "n1"}
    engine = IncidentEngine(sql, clock)
    engine.ingest([Alert(labels, ends_at=now + 15 * minute)])
    # Posted again without endsAt (a repeat: the fast path): the later explicit end stays, as a timeout.
    engine.ingest([Alert(labels, ends_at=now + 5 * minute, timeout=True)])
    engine = IncidentEngine(sql, clock)
    engine.ingest([Alert(labels, ends_at=now + minute)])
    assert [a.ends_at for a in engine.store.firing_alerts()] == [now + minute]
    downgrade(sql, "0016_untold_folded")
    assert "ends_by_timeout" not in {c["name"] for c in inspect(sql).get_columns("alerts")}
    upgrade(sql)
    assert "ends_by_timeout" in {c["name"] for c in inspect(sql).get_columns("alerts")}
    sql.dispose()


@pytest.mark.integration
def test_on_postgres_a_fault_back_through_another_alert_reopens_its_incident_and_another_fault_does_not(
    postgres_url: str,
) -> None:
    sql = make_engine(postgres_url)
    upgrade(sql)
    clock = FakeClock()
    engine = IncidentEngine(sql, clock, inventory=scenarios.fleet_inventory())
    storm = scenarios.rack_failure(7, clock.now(), stalled_job=None)
    for i in range(0, len(storm), 64):
        engine.ingest(storm[i : i + 64])
    [rack] = engine.open_incident_ids()
    engine.ingest([replace(a, status=AlertStatus.RESOLVED) for a in storm])
    clock.advance(engine.config.quiet_period_seconds + 1)
    engine.tick()
    assert list(engine.open_incident_ids()) == []
    clock.advance(600)
    # A bad driver on the repaired rack: a new fault, its own incident (the stored root read from JSON).
    xids = scenarios.driver_rollout_xids((7,), clock.now(), stalled_job=None)
    engine.ingest([a for a in xids if a.labels["Hostname"] == "r07-n01"])
    [rollout] = engine.open_incident_ids()
    assert rollout != rack
    # A node of it hangs: the rack's outage back through alerts it never had, so the rack's incident.
    hung = [Alert({**a.labels, "alertname": "GPUHung"}) for a in scenarios.node_failure(7, 5, clock.now())]
    engine.ingest([a for a in hung if "gpu" in a.labels])
    assert sorted(engine.open_incident_ids()) == sorted([rack, rollout])
    assert [e.kind for e in engine.store.get(rack).timeline].count("reopened") == 1
    sql.dispose()


@pytest.mark.integration
def test_accept_journal_commits_its_offset_in_postgres_and_replays_only_the_rest(
    postgres_url: str, tmp_path: Path
) -> None:
    sql = make_engine(postgres_url)
    upgrade(sql)
    directory = tmp_path / "journal"  # a PostgreSQL store keeps its journal in a local data directory
    journal = AcceptJournal(directory, lambda jid: applied_offset(sql, jid))
    applier = JournalApplier(journal, IncidentEngine(sql, FakeClock(), inventory=scenarios.fleet_inventory()))
    body = [{"labels": {"alertname": "NodeDown", "cluster": "c1", "node": "r01-n01"}}]
    journal.append(KIND_POSTABLE, orjson.dumps(body), 1)
    applier.apply_available()
    body[0]["labels"]["node"] = "r01-n02"
    end = journal.append(KIND_POSTABLE, orjson.dumps(body), 1)  # acknowledged, not applied: then a crash
    journal.close()

    engine = IncidentEngine(sql, FakeClock(), inventory=scenarios.fleet_inventory())
    replay = JournalApplier(AcceptJournal(directory, lambda jid: applied_offset(sql, jid)), engine)
    assert replay.apply_available() == 1
    assert applied_offset(sql, journal.journal_id) == end
    assert engine.store.alert_count() == 2
    assert len(engine.store.list_rows()) == 1
    sql.dispose()


@pytest.mark.integration
def test_a_store_host_that_stops_answering_fails_the_applier_within_the_connect_timeout_and_loses_nothing(
    postgres: Postgres, tmp_path: Path
) -> None:
    # Without a connect timeout the applier's reconnect waited psycopg's 130 s for a host that accepts and
    # never answers; now the attempt fails after 2 s, the loop reports the store down and retries.
    with SilentableProxy(free_port(), ("127.0.0.1", postgres.port)) as proxy:
        url = postgres.url.replace(f":{postgres.port}/", f":{proxy.port}/")
        sql = make_engine(url, connect_timeout=2)
        upgrade(sql)
        journal = AcceptJournal(tmp_path / "journal", lambda jid: applied_offset(sql, jid))
        engine = IncidentEngine(sql, FakeClock(), inventory=scenarios.fleet_inventory())
        applier = JournalApplier(journal, engine, retry_seconds=0.2)
        stop = threading.Event()
        loop = threading.Thread(target=applier.run, args=(stop,), daemon=True)
        loop.start()
        try:
            proxy.silence()
            body = [{"labels": {"alertname": "NodeDown", "cluster": "c1", "node": "r01-n01"}}]
            end = journal.append(KIND_POSTABLE, orjson.dumps(body), 1)
            applier.notify()
            _until(lambda: applier.failures >= 2, "the applier never reported the silent store")
            assert loop.is_alive() and applier.lag_bytes > 0 and not applier.health.store_up
            assert "store.connect_timeout_seconds" in (applier.health.store_error or "")
            assert "connection timeout expired" in (applier.last_error or "")
            proxy.resume()
            _until(lambda: applier.lag_bytes == 0, "the applier never applied once the store answered")
        finally:
            stop.set()
            loop.join(_GUARD_SECONDS)
        assert applied_offset(sql, journal.journal_id) == end and applier.health.store_up
        assert engine.store.alert(label_fingerprint(body[0]["labels"])) is not None
        sql.dispose()


_GUARD_SECONDS = 60  # far below the 130 s of an unbounded connect: ends a hung test, measures no speed


def _until(done: Callable[[], bool], why: str) -> None:
    deadline = time.monotonic() + _GUARD_SECONDS
    while not done():
        assert time.monotonic() < deadline, why
        time.sleep(0.1)


@pytest.mark.integration
def test_a_record_postgres_refuses_is_quarantined_and_the_next_one_applied(
    postgres_url: str, tmp_path: Path
) -> None:
    # PostgreSQL text cannot hold NUL, which JSON and Prometheus label values can. Serve now refuses it
    # before the 200; a journal written by an earlier version that took it still holds such a record, which
    # must not stop the records behind it.
    sql = make_engine(postgres_url)
    upgrade(sql)
    journal = AcceptJournal(tmp_path / "journal", lambda jid: applied_offset(sql, jid))
    engine = IncidentEngine(sql, FakeClock(), inventory=scenarios.fleet_inventory())
    applier = JournalApplier(journal, engine, poison_after=2)
    bad = [{"labels": {"alertname": "NodeDown", "cluster": "c9", "node": "x1\u0000"}}]
    good = [{"labels": {"alertname": "NodeDown", "cluster": "c1", "node": "r01-n03"}}]
    journal.append(KIND_POSTABLE, orjson.dumps(bad), 1)
    end = journal.append(KIND_POSTABLE, orjson.dumps(good), 1)
    failures = 0
    for _ in range(10):
        try:
            if applier.apply_available() == 0:
                break
        except Exception:  # the applier's loop retries
            failures += 1
    assert applier.quarantined == 1
    assert applied_offset(sql, journal.journal_id) == end
    assert engine.store.alert(label_fingerprint(good[0]["labels"])) is not None
    assert len(list((tmp_path / "journal" / "quarantine").glob("*.json"))) == 1
    sql.dispose()


@pytest.mark.integration
def test_second_server_on_one_postgres_store_is_refused_and_a_lost_lock_is_taken_again(
    postgres_url: str, tmp_path: Path
) -> None:
    first = InstanceLocks.for_server(postgres_url, tmp_path / "a")
    first.try_acquire()
    second = InstanceLocks.for_server(
        postgres_url, tmp_path / "b"
    )  # its own journal: only the store is shared
    with pytest.raises(InstanceBusy) as err:
        second.try_acquire()
    assert err.value.what == f"store {postgres_url}"
    assert err.value.holder.startswith(f"gpuwarden serve, pid {os.getpid()} on ")
    assert first.check() is None

    admin = make_engine(postgres_url)

    def kill_lock_sessions() -> None:
        with admin.begin() as conn:
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name LIKE 'gpuwarden serve%'"
                )
            )

    # The lock session dies (a PostgreSQL restart, a network cut): the server takes its lock again.
    kill_lock_sessions()
    assert first.check() is None
    with pytest.raises(InstanceBusy):
        second.try_acquire()
    # Lost again, and this time a standby took it first: the server learns that it must stop.
    kill_lock_sessions()
    second.try_acquire()
    lost = first.check()
    assert lost is not None and lost.what == f"store {postgres_url}"
    second.release()
    first.release()
    admin.dispose()


@pytest.mark.integration
def test_a_refused_server_names_the_holder_of_its_own_database_not_another_stores(
    postgres_url: str, tmp_path: Path
) -> None:
    """Advisory locks are per database; pg_locks lists the cluster's. The probe's second serve of store B
    named the serve of store A, on another database of the same PostgreSQL, as the holder."""
    admin = make_engine(postgres_url)
    with admin.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").execute(text("CREATE DATABASE other_store"))
    other_url = postgres_url.rsplit("/", 1)[0] + "/other_store"
    other = create_engine(other_url, poolclass=NullPool, connect_args={"application_name": "other store"})
    with other.connect() as held:  # the serve of the other store, holding that database's lock
        assert held.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_KEY}).scalar()
        first = InstanceLocks.for_server(postgres_url, tmp_path / "a")
        first.try_acquire()
        second = InstanceLocks.for_server(postgres_url, tmp_path / "b")
        with pytest.raises(InstanceBusy) as err:
            second.try_acquire()
        assert err.value.holder.startswith(f"gpuwarden serve, pid {os.getpid()} on "), err.value.holder
        assert ", holding it since 20" in err.value.holder
        first.release()
        # Nobody holds this store's lock: the other database's holder is not it.
        assert second.locks[0].holder() == "holder unknown"
        second.try_acquire()
        second.release()
    other.dispose()
    admin.dispose()


EARLIER_STARTED = "2026-11-29T08:15:42+00:00"


@pytest.mark.integration
@pytest.mark.parametrize(
    "host",
    ["gpuwarden-7d9f8c-x2kq9", "gpuwarden-serve-production-us-east-1-7d9f8c6b5d-x2k4p"],
    ids=["start-time-cut", "host-cut"],
)
def test_a_refused_server_says_an_earlier_releases_start_time_is_unknown_not_a_cut_timestamp(
    postgres_url: str, tmp_path: Path, host: str
) -> None:
    """An earlier release named its lock connection "gpuwarden serve, pid N on HOST, started TIME" and
    PostgreSQL kept 63 bytes: the refusal of a rolling update's new serve read "..., started 2026-11-2"."""
    earlier = f"gpuwarden serve, pid 4242 on {host}, started {EARLIER_STARTED}"[:63]
    other = create_engine(postgres_url, poolclass=NullPool, connect_args={"application_name": earlier})
    with other.connect() as held:  # the earlier release's serve, holding the lock
        assert held.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": ADVISORY_KEY}).scalar()
        assert held.execute(text("SHOW application_name")).scalar() == earlier  # as PostgreSQL keeps it
        locks = InstanceLocks.for_server(postgres_url, tmp_path / "a")
        with pytest.raises(InstanceBusy) as err:
            locks.try_acquire()
    other.dispose()
    said = err.value.holder
    whole_host = f"gpuwarden serve, pid 4242 on {host}"
    kept = whole_host if earlier.startswith(f"{whole_host},") else f"{earlier}..."  # else: cut in the host
    assert said.startswith(
        f"{kept} (an earlier release, whose name PostgreSQL cut: its start time is unknown)"
    )
    assert ", holding it since 20" in said  # the lock connection's own start, which PostgreSQL knows
    assert "started" not in said, said  # no cut timestamp


@pytest.mark.integration
def test_serve_stops_when_a_standby_took_the_postgres_lock_it_lost(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GPUWARDEN_ALERTING__JOURNAL_DIR", str(tmp_path / "journal"))
    admin = make_engine(postgres_url)
    with gpuwarden_serve(tmp_path, postgres_url) as (_, proc):
        standby = InstanceLocks.for_server(postgres_url, tmp_path / "standby")
        with pytest.raises(InstanceBusy):
            standby.try_acquire()
        with admin.begin() as conn:  # the server's lock session dies; the standby is first to take it
            conn.execute(
                text(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE application_name LIKE 'gpuwarden serve%'"
                )
            )
        standby.try_acquire()
        assert proc.wait(timeout=60) == 1
    log = (tmp_path / "serve.log").read_text()
    assert "instance lock: lost: store " in log
    standby.release()
    admin.dispose()


def _wait_ready(url: str, status: int, timeout: float = 60.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while True:
        response = http_probe.get(f"{url}/-/ready", timeout=5)
        if response.status_code == status:
            return response
        assert time.monotonic() < deadline, f"/-/ready still {response.status_code}: {response.text}"
        time.sleep(0.2)


@pytest.mark.integration
def test_a_postgres_outage_fails_readiness_and_shows_on_metrics_and_nothing_acknowledged_is_lost(
    postgres: Postgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GPUWARDEN_ALERTING__JOURNAL_DIR", str(tmp_path / "journal"))
    monkeypatch.setenv("GPUWARDEN_ALERTING__TICK_INTERVAL_SECONDS", "0.2")
    labels = {"alertname": "NodeDown", "cluster": "c1", "node": "n1"}
    with gpuwarden_serve(tmp_path, postgres.url) as (url, _):
        assert serve_metric(url, "gpuwarden_store_up") == 1
        postgres.stop()
        not_ready = _wait_ready(url, 503)  # the next tick finds the store gone
        assert "store is unreachable" in not_ready.text, not_ready.text
        # A tick on a connection open when PostgreSQL stopped fails naming nothing ("server closed the
        # connection unexpectedly"), so nothing is hidden; the next connects anew and its error names the
        # address, which /-/ready must hide. Every answer on the way is checked.
        deadline = time.monotonic() + 30
        while "names hidden" not in not_ready.text:
            assert "127.0.0.1" not in not_ready.text, not_ready.text
            assert time.monotonic() < deadline, f"no error naming the store's address: {not_ready.text}"
            time.sleep(0.2)
            not_ready = _wait_ready(url, 503)
        assert "127.0.0.1" not in not_ready.text, not_ready.text
        assert [http_probe.get(f"{url}{p}", timeout=5).status_code for p in ("/healthz", "/-/healthy")] == [
            200,
            200,
        ]
        assert serve_metric(url, "gpuwarden_store_up") == 0
        listing = http_probe.get(f"{url}/api/v1/incidents", timeout=30)
        assert listing.status_code == 503 and "could not be read" in listing.json()["error"], listing.text
        assert (
            http_probe.post(f"{url}/api/v2/alerts", json=[{"labels": labels}], headers=AUTH).status_code
            == 200
        )
        deadline = time.monotonic() + 30
        while serve_metric(url, "gpuwarden_ingest_apply_failures_total") < 1:
            assert time.monotonic() < deadline, "the applier never tried the store"
            time.sleep(0.2)
        assert serve_metric(url, "gpuwarden_ingest_lag_bytes") > 0
        postgres.start()
        _wait_ready(url, 200)
        assert serve_metric(url, "gpuwarden_store_up") == 1
        (incident,) = http_probe.get(f"{url}/api/v1/incidents", timeout=30).json()
        assert incident["root_cause"]["kind"] == "node_down"
        assert serve_metric(url, "gpuwarden_ingest_lag_bytes") == 0


@pytest.mark.integration
@pytest.mark.parametrize("action", ["acknowledge", "resolve"])
def test_an_ack_or_resolve_waits_for_a_concurrent_one_in_flight_and_then_changes_nothing(
    postgres_url: str, action: str
) -> None:
    # A retry while the first attempt's COMMIT is still in flight: the check read the state without a row
    # lock and saw it unchanged, so the retry wrote a second event once the first committed.
    sql = make_engine(postgres_url)
    upgrade(sql)
    clock = FakeClock()
    engine = IncidentEngine(sql, clock)
    labels = {"alertname": "NodeDown", "cluster": "c1", "node": "x1"}
    engine.ingest([Alert(labels)])
    engine.ingest([Alert(labels, status=AlertStatus.RESOLVED)])  # resolvable by hand
    [incident_id] = engine.open_incident_ids()
    kind = "acknowledged" if action == "acknowledge" else "resolved"  # the state and its event
    with sql.connect() as first:  # the first attempt: written, its COMMIT not yet done
        first.execute(text("UPDATE incidents SET state = :s WHERE id = :i"), {"s": kind, "i": incident_id})
        first.execute(
            text(
                "INSERT INTO timeline (incident_id, at, kind, message, data)"
                " VALUES (:i, now(), :k, 'the first attempt', '{\"by\": \"alice\"}')"
            ),
            {"i": incident_id, "k": kind},
        )
        first_pid = first.execute(text("SELECT pg_backend_pid()")).scalar_one()
        with ThreadPoolExecutor(1) as pool:
            retry = pool.submit(getattr(engine, f"{action}_outcome"), incident_id, "alice")
            while not first.execute(  # the retry waits for the first attempt's row lock
                text("SELECT count(*) FROM pg_locks WHERE NOT granted AND :p = ANY(pg_blocking_pids(pid))"),
                {"p": first_pid},
            ).scalar_one():
                assert not retry.done(), retry.result()
                time.sleep(0.01)
            first.commit()
            outcome = retry.result()
    assert not outcome.changed
    timeline = engine.store.get(incident_id).timeline
    assert [e.kind for e in timeline].count(kind) == 1, [e.message for e in timeline]
    sql.dispose()


def _lock_taken_over(admin: Engine, url: str, journal: Path) -> InstanceLocks:
    """Every gpuwarden lock session dies (a PostgreSQL restart) and a standby takes the lock."""
    with admin.begin() as conn:
        conn.execute(
            text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                " WHERE application_name LIKE 'gpuwarden serve%'"
            )
        )
    standby = InstanceLocks.for_server(url, journal)
    standby.try_acquire()
    return standby


def _post_raw(url: str, body: bytes) -> socket.socket:
    """Send a POST of alerts and return the socket without reading: the request waits in the server's
    accept backlog while the server is stopped."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=30)
    head = (
        f"POST /api/v2/alerts HTTP/1.1\r\nHost: {host}\r\nAuthorization: {AUTH['Authorization']}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    sock.sendall(head.encode() + body)
    return sock


def _status_of(sock: socket.socket) -> int | None:
    """The answer's status code, or None when the server closed the connection without one."""
    try:
        answer = sock.recv(4096)
    except ConnectionError:
        return None
    finally:
        sock.close()
    return int(answer.split()[1]) if answer else None


@pytest.mark.integration
def test_a_paused_server_whose_postgres_lock_was_taken_meanwhile_writes_nothing_once_resumed(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The probe's split brain: SIGSTOP the active server, its lock session dies (a PostgreSQL restart), a
    standby takes the lock, SIGCONT. The resumed server answered 200 to the POST waiting in its backlog and
    opened an incident before its once-a-second check noticed the loss."""
    monkeypatch.setenv("GPUWARDEN_ALERTING__JOURNAL_DIR", str(tmp_path / "journal"))
    admin = make_engine(postgres_url)
    with gpuwarden_serve(tmp_path, postgres_url) as (url, proc):
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            standby = _lock_taken_over(admin, postgres_url, tmp_path / "standby")
            waiting = _post_raw(url, orjson.dumps([{"labels": {"alertname": "NodeDown", "node": "r01-n01"}}]))
            time.sleep(3)  # the pause outlasts the fence's 2 s: the resumed server must verify first
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        assert _status_of(waiting) != 200
        assert proc.wait(timeout=60) == 1
    with admin.connect() as conn:
        assert conn.execute(select(func.count()).select_from(IncidentRow)).scalar_one() == 0
    assert "instance lock: lost: store " in (tmp_path / "serve.log").read_text()
    standby.release()
    admin.dispose()


@pytest.mark.integration
def test_a_commit_after_the_postgres_lock_went_to_another_server_is_rolled_back(
    postgres_url: str, tmp_path: Path
) -> None:
    """The check inside the transaction: a write already past every other check does not commit."""
    locks = InstanceLocks.for_server(postgres_url, tmp_path / "a")
    locks.try_acquire()
    sql = make_engine(postgres_url)
    upgrade(sql)
    locks.fence_commits(sql)
    engine = IncidentEngine(sql, FakeClock(), inventory=scenarios.fleet_inventory())
    engine.ingest(scenarios.node_failure(3, 2, engine.clock.now())[:1])  # held: it commits
    admin = make_engine(postgres_url)  # not fenced: it is another server's connection
    standby = _lock_taken_over(admin, postgres_url, tmp_path / "b")
    admin.dispose()
    with pytest.raises(NotActive, match="no longer holds the lock"):
        engine.ingest(scenarios.rack_failure(7, engine.clock.now())[:5])
    with sql.connect() as conn:
        assert conn.execute(select(func.count()).select_from(IncidentRow)).scalar_one() == 1
    assert locks.status().state is LockState.LOST
    standby.release()
    locks.release()
    sql.dispose()


@pytest.mark.integration
def test_on_postgres_resolved_incidents_are_read_through_the_state_resolved_at_index(
    postgres_url: str,
) -> None:
    sql = make_engine(postgres_url)
    upgrade(sql)
    indexes = {ix["name"]: ix["column_names"] for ix in inspect(sql).get_indexes("incidents")}
    assert indexes.get("ix_incidents_state_resolved_at") == ["state", "resolved_at"]
    # A store this small is read whole; forbid that to see which index the planner would pick.
    plans = resolved_incident_query_plans(sql, "EXPLAIN", "SET enable_seqscan = off")
    assert len(plans) >= 3, plans  # recurrence: any at all, those near the node; retention
    assert all("ix_incidents_state_resolved_at" in plan for plan in plans), plans
    sql.dispose()


@pytest.mark.integration
def test_on_postgres_the_silences_of_incidents_are_read_through_the_incident_id_index_and_0018_downgrades(
    postgres_url: str,
) -> None:
    sql = make_engine(postgres_url)
    upgrade(sql)
    indexes = {ix["name"]: ix["column_names"] for ix in inspect(sql).get_indexes("silences")}
    assert indexes.get("ix_silences_incident_id") == ["incident_id"]
    # A store this small is read whole; forbid that to see which index the planner would pick.
    plan = incident_silence_query_plan(sql, "EXPLAIN", "SET enable_seqscan = off")
    assert "ix_silences_incident_id" in plan, plan
    downgrade(sql, "0017_alert_ends_by_timeout")
    assert "ix_silences_incident_id" not in {ix["name"] for ix in inspect(sql).get_indexes("silences")}
    upgrade(sql)
    assert "ix_silences_incident_id" in {ix["name"] for ix in inspect(sql).get_indexes("silences")}
    sql.dispose()


@pytest.mark.integration
def test_on_postgres_an_opening_stored_before_0019_is_told_after_its_delay_and_0019_downgrades(
    postgres_url: str,
) -> None:
    sql = make_engine(postgres_url)
    upgrade(sql)
    an_opening_stored_before_0019_is_read_as_told_at_the_end_of_its_delay(sql)
    sql.dispose()


@pytest.mark.integration
@pytest.mark.parametrize("delay", [10, 0], ids=["delay-10s", "no-delay"])
@pytest.mark.parametrize(
    "restart",
    [
        a_restart_offers_the_outbox_no_opening_the_store_says_was_announced,
        an_incident_of_before_0019_is_stored_as_announced_at_the_end_of_its_delay,
    ],
    ids=["announced", "stored-before-0019"],
)
def test_on_postgres_a_restart_offers_the_outbox_no_opening_the_store_says_was_announced(
    postgres_url: str, delay: float, restart: Callable[[str, float], None]
) -> None:
    sql = make_engine(postgres_url)
    upgrade(sql)
    sql.dispose()
    restart(postgres_url, delay)


@pytest.mark.integration
def test_a_requeued_job_and_a_rate_limit_pause_are_kept_in_postgres_across_a_serve_restart(
    postgres_url: str,
) -> None:
    # One server for both: each PostgreSQL started costs the suite seconds.
    sql = make_engine(postgres_url)
    upgrade(sql)
    requeued_job_named_after_restart(sql)
    with SlackRecorder() as recorder:
        a_rate_limit_pause_outlives_a_restart(sql, recorder)


@pytest.mark.integration
def test_on_postgres_an_incident_merged_into_another_shows_the_alerts_it_handed_over(
    postgres_url: str,
) -> None:
    a_merged_incident_shows_the_alerts_it_handed_over(postgres_url)


@pytest.mark.integration
@pytest.mark.parametrize("restarts", [False, True], ids=["one-serve", "restarted"])
def test_on_postgres_a_webhook_gets_a_flipping_recommendation_once_per_edit_interval(
    postgres_url: str, restarts: bool
) -> None:
    sql = make_engine(postgres_url)
    upgrade(sql)
    with SlackRecorder() as recorder:
        webhook_edits_flipping_every_30_s(sql, recorder, restarts)
    sql.dispose()


@pytest.mark.integration
def test_on_postgres_a_webhook_update_held_on_purpose_is_counted_held(postgres_url: str) -> None:
    sql = make_engine(postgres_url)
    upgrade(sql)
    with SlackRecorder() as recorder:
        a_held_update_is_counted_held_not_pending(sql, recorder)
    sql.dispose()
