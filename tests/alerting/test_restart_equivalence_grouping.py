"""A restart of ``serve`` rebuilds the open incidents as live holds them: where each is rooted for the alerts
that join it next, the workloads it is filed under, the GPUs it counts lost, and the incident a muted alert
is released into (run live and restarted, as in ``test_restart_equivalence``). Each case is one the restart
fuzz (``benchmarks/restart_fuzz.py``) found: live kept what no longer held, a restart read it afresh."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from alerting import scenarios as sc
from alerting.inventory import StaticInventory
from alerting.matchers import parse_matcher
from gpuwarden.model import Alert
from tests.alerting.restart_serves import Serve, _both, _resolved

_C = {"cluster": sc.CLUSTER}


def _grouped(serve: Serve) -> list[tuple[object, ...]]:
    """Each open incident as the engine groups with it: its members, root path, workloads and lost GPUs."""
    return sorted(
        (tuple(sorted(inc.members)), inc.root_path, sorted(w.name for w in inc.workloads), sorted(inc.lost))
        for inc in serve.engine._open.values()
    )


def _stall(rank: int, **kwargs: object) -> Alert:
    return Alert(
        {**_C, "alertname": "TrainingJobStalled", "slurm_job": "llm-70b", "rank": str(rank)}, **kwargs
    )  # type: ignore[arg-type]


def _gpu(alertname: str, node: str, gpu: int, **labels: str) -> Alert:
    return Alert(
        {
            **_C,
            "alertname": alertname,
            "Hostname": node,
            "gpu": str(gpu),
            "UUID": sc.gpu_uuid(node, gpu),
            **labels,
        }
    )


def test_an_alert_that_started_earlier_moves_where_its_incident_is_rooted_as_a_restart_reads_it(
    tmp_path: Path,
) -> None:
    # Seeds 403 and 311: an XID and the job's stalls at one instant, rooted at the XID's GPU; a repeat of one
    # stall then said it started a minute before (an HA pair's other Prometheus). Live kept the XID as the
    # root, shown and where new alerts join; a restart roots it at the job (the XID cannot explain an
    # earlier stall): a node down under the job's GPUs later went into another incident than live's (403),
    # and the restarted serve's first refresh, of an unchanged inventory, retitled it (311).
    def steps(serve: Serve, restart: bool) -> None:
        serve.engine.ingest([_gpu("GPUXid", "r07-n01", 1, xid="31")])
        serve.engine.ingest([_stall(17), _stall(72), _stall(81)])
        serve.refresh(serve.inventory)  # a start's first refresh assesses whatever the inventory
        serve.clock.advance(5)
        serve.engine.tick()
        serve.engine.ingest([_stall(72, starts_at=serve.clock.now() - timedelta(seconds=60))])
        if restart:
            serve.restart()
        serve.refresh(serve.inventory)

    live, restarted = _both(tmp_path, steps, announce_delay_seconds=0)
    assert [root for _, root, _, _ in _grouped(live)] == [()]  # the job's: rootless
    assert [kind for kind, _, _, _ in live.incidents()] == ["job_stalled"]
    assert _grouped(restarted) == _grouped(live)
    assert restarted.incidents() == live.incidents()
    assert restarted.kinds() == live.kinds() and restarted.told() == live.told()


_CHAT = Alert(
    {**_C, "alertname": "ChatHighErrorRate", "namespace": "serving", "service": "chat"},
    annotations={"error_ratio": "0.3"},
)


def test_an_incident_all_of_whose_alerts_resolved_is_rooted_where_they_were_as_after_a_restart(
    tmp_path: Path,
) -> None:
    # Seed 472: the chat service's errors, rack r01's power loss and a node of it in one incident; the rack
    # came back while the errors went on (rooted at the service), then they stopped too. Live kept the
    # service's root through the quiet period; a restart roots it where all its alerts were (the rack), and
    # an exporter gone stale in that rack joined it there and opened its own incident live.
    power = Alert({**_C, "alertname": "RackPowerLoss", "rack": "r01"})
    down = Alert({**_C, "alertname": "NodeDown", "node": "r01-n03"})

    def steps(serve: Serve, restart: bool) -> None:
        serve.engine.ingest([_CHAT])
        serve.engine.ingest([power, down])
        serve.clock.advance(5)
        serve.engine.tick()
        serve.engine.ingest([_resolved(power), _resolved(down)])
        serve.clock.advance(5)
        serve.engine.tick()
        serve.engine.ingest([_resolved(_CHAT)])
        if restart:
            serve.restart()

    live, restarted = _both(tmp_path, steps, announce_delay_seconds=0, quiet_period_seconds=600)
    assert [root for _, root, _, _ in _grouped(live)] == [("c1", "r01")]
    assert _grouped(restarted) == _grouped(live)


def test_a_refresh_whose_lower_priority_waits_keeps_the_workloads_its_incidents_were_assessed_with(
    tmp_path: Path,
) -> None:
    # Seed 406: a refresh found spare GPUs for the job (its P0 to be lowered once that settles), while one
    # incident fired and another, its XID resolved, sat in its quiet period. Live filed both under their
    # alerts' own workloads only (none: the job is on their GPUs per the inventory, not their labels) until
    # a reassessment completed; a restart files them under the job their stored impact still shows, and a
    # day later an incident merged into another than live's.
    def steps(serve: Serve, restart: bool) -> None:
        serve.engine.ingest([_gpu("GPUXid", "r07-n01", 3, xid="79")])
        serve.engine.ingest([_gpu("GPUXid", "r07-n02", 0, xid="79")])
        serve.clock.advance(5)
        serve.engine.tick()
        serve.engine.ingest([_resolved(_gpu("GPUXid", "r07-n02", 0, xid="79"))])
        serve.clock.advance(5)
        serve.engine.tick()
        serve.refresh(sc.fleet_inventory(spare_gpus=64))  # lower: waits
        if restart:
            serve.restart()

    config = {"announce_delay_seconds": 0, "priority_settle_seconds": 120, "quiet_period_seconds": 600}
    live, restarted = _both(tmp_path, steps, **config)
    assert [w for _, _, w, _ in _grouped(live)] == [["llm-70b"], ["llm-70b"]]
    assert [p for _, _, p, _ in live.incidents()] == ["P0", "P0"]
    assert _grouped(restarted) == _grouped(live)


def test_a_muted_alert_moved_to_another_incident_is_released_there_as_after_a_restart(tmp_path: Path) -> None:
    # Seed 422: a stalled rank fired again while its incident was silenced (muted), then a fault on its GPU
    # opened an incident that took it. Live remembered it as of the silenced incident, muted still; a
    # restart reads the incident it is of now, unsilenced, and the next tick released it there.
    def steps(serve: Serve, restart: bool) -> None:
        serve.engine.ingest([_stall(17), _stall(81)])  # rank 81 runs on r08-n03's GPU 1
        (incident_id,) = serve.engine.open_incident_ids()
        serve.engine.ingest([_gpu("DCGMExporterStale", "r01-n01", 0)])
        serve.engine.ingest([_gpu("GPUXid", "r08-n03", 2, xid="13")])  # roots the job's incident there
        serve.engine.silence_incident(incident_id, 3600, "carol")
        serve.engine.ingest([_resolved(_stall(81))])
        serve.clock.advance(5)
        serve.engine.tick()
        serve.engine.ingest([_stall(81)])
        assert serve.engine.muted_count() == 1
        nvlink = _gpu("GPUNVLinkErrors", "r08-n03", 1)
        serve.engine.ingest([Alert(nvlink.labels, starts_at=serve.clock.now() - timedelta(seconds=60))])
        if restart:
            serve.restart()
        serve.clock.advance(5)
        serve.engine.tick()

    live, restarted = _both(tmp_path, steps, announce_delay_seconds=0)
    assert live.engine.muted_count() == 0
    assert sorted(restarted.kinds()) == sorted(live.kinds())  # listed by opening, then by id (each run's own)
    assert restarted.told() == live.told()
    assert _grouped(restarted) == _grouped(live)


def test_an_alert_muted_as_its_incident_reopened_is_of_that_opening_after_a_restart(tmp_path: Path) -> None:
    # Seed 664: an XID's incident resolved by hand; the XID fired again under a silence of its GPU (muted: the
    # incident stayed resolved), and an XID 79 its root explains reopened it, the muted one firing then. It
    # resolved since: live counts it of this opening (the GPUs it recovers), a restart read it as of the
    # earlier one (it named no alert firing since the reopening) and retitled the incident at its next change.
    xid119 = _gpu("GPUXid", "r01-n02", 3, xid="119")

    def steps(serve: Serve, restart: bool) -> None:
        serve.engine.ingest([xid119])
        serve.engine.ingest([_resolved(xid119)])
        now = serve.clock.now()
        uuid = sc.gpu_uuid("r01-n02", 3)
        serve.engine.add_silence([parse_matcher(f'UUID="{uuid}"')], now, now + timedelta(seconds=60), "dave")
        [incident_id] = serve.engine.open_incident_ids()
        serve.engine.resolve(incident_id, "alice")
        serve.clock.advance(5)
        serve.engine.ingest([xid119])  # muted: its incident stays resolved
        serve.engine.ingest([_gpu("GPUXid", "r01-n02", 0, xid="79")])  # its root explains it: reopened
        serve.clock.advance(30)
        serve.engine.ingest([_resolved(xid119)])
        if restart:
            serve.restart()

    live, restarted = _both(tmp_path, steps, announce_delay_seconds=0)
    earlier = [sorted(inc.earlier) for s in (live, restarted) for inc in s.engine._open.values()]
    assert earlier == [[], []]


def test_an_alert_that_started_flapping_since_its_incident_reopened_is_of_that_opening_after_a_restart(
    tmp_path: Path,
) -> None:
    # An XID changed five times (not flapping yet), its incident was resolved by hand and another XID its
    # root explains reopened it; the first XID's sixth change made it flapping (an event of that, none of
    # the change) and it resolved, flapping (none either). Live counts it of this opening; a restart read no
    # event of it firing or resolving since the reopening and took it for one of the earlier opening.
    xid119, xid79 = _gpu("GPUXid", "r01-n02", 3, xid="119"), _gpu("GPUXid", "r01-n02", 0, xid="79")

    def steps(serve: Serve, restart: bool) -> None:
        serve.engine.ingest([xid119, xid79])
        for alert in (_resolved(xid119), xid119, _resolved(xid119), xid119, _resolved(xid119)):
            serve.clock.advance(5)
            serve.engine.ingest([alert])
        serve.engine.ingest([_resolved(xid79)])
        [incident_id] = serve.engine.open_incident_ids()
        serve.engine.resolve(incident_id, "alice")
        serve.clock.advance(5)
        serve.engine.ingest([xid79])  # reopened
        for alert in (xid119, _resolved(xid119)):
            serve.clock.advance(5)
            serve.engine.ingest([alert])
        if restart:
            serve.restart()

    live, restarted = _both(tmp_path, steps, announce_delay_seconds=0)
    assert "flapping_started" in live.kinds()[0]
    earlier = [sorted(inc.earlier) for s in (live, restarted) for inc in s.engine._open.values()]
    assert earlier == [[], []]


def test_an_incident_whose_last_flapping_alert_settled_is_rooted_where_its_alerts_were_as_after_a_restart(
    tmp_path: Path,
) -> None:
    # Seed 1660: rack r07's power loss, a node of it and llm-70b's stalls in one incident, all resolved; then
    # one stall flapped (the incident rooted at the job while only it was live) and settled resolved. Live
    # kept the job's root through the quiet period; a restart roots it where all its alerts were (the rack),
    # and a stalled rank later moved to a GPU's incident in the restarted serve only.
    power = Alert({**_C, "alertname": "RackPowerLoss", "rack": "r07"})
    down = Alert({**_C, "alertname": "NodeDown", "node": "r07-n03"})
    stalls = [_stall(rank) for rank in (9, 10, 64, 75)]

    def steps(serve: Serve, restart: bool) -> None:
        serve.engine.ingest([power, down])
        serve.engine.ingest(stalls)
        serve.clock.advance(5)
        serve.engine.ingest([_resolved(a) for a in (power, down, *stalls)])
        for k in range(6):  # rank 75 flaps, and ends resolved
            serve.clock.advance(5)
            serve.engine.ingest([_stall(75) if k % 2 == 0 else _resolved(_stall(75))])
        assert any(m.flapping for inc in serve.engine._open.values() for m in inc.members.values())
        serve.clock.advance(310)
        serve.engine.tick()  # the flap settles: nothing fires
        if restart:
            serve.restart()

    live, restarted = _both(
        tmp_path, steps, announce_delay_seconds=0, quiet_period_seconds=600, flap_window_seconds=300
    )
    assert [root for _, root, _, _ in _grouped(live)] == [("c1", "r07")]
    assert _grouped(restarted) == _grouped(live)


def test_an_incident_in_its_quiet_period_that_takes_another_in_stores_the_later_last_alert(
    tmp_path: Path,
) -> None:
    # Seed 1701: rack r01's incident, reopened by a node of it going down again (rooted at that node); a GPU
    # of another node of the rack fell off the bus (its own incident) and came back; then the node came
    # back too, and its incident, rooted at the rack once nothing fired, took the GPU's in. Live kept the
    # GPU's later last alert in memory only, and wrote it to the row at the incident's next change; a
    # restart read the row's earlier one.
    power = Alert({**_C, "alertname": "RackPowerLoss", "rack": "r01"})
    down = Alert({**_C, "alertname": "NodeDown", "node": "r01-n03"})
    lost = _gpu("GPULost", "r01-n02", 0)

    def steps(serve: Serve, restart: bool) -> None:
        serve.engine.ingest([power, down])
        serve.engine.ingest([_resolved(power), _resolved(down)])
        serve.clock.advance(601)
        serve.engine.tick()  # resolved
        serve.engine.ingest([down])  # reopened, rooted at the node
        serve.clock.advance(5)
        serve.engine.ingest([lost])
        assert len(serve.engine._open) == 2
        serve.clock.advance(5)
        serve.engine.ingest([_resolved(lost)])
        serve.clock.advance(5)
        serve.engine.ingest([_resolved(down)])  # quiet: rooted at the rack, it takes the GPU's in
        assert len(serve.engine._open) == 1
        if restart:
            serve.restart()

    live, restarted = _both(tmp_path, steps, announce_delay_seconds=0, quiet_period_seconds=600)
    [(live_row, _)] = live.engine.store.list_rows()
    [(restarted_row, _)] = restarted.engine.store.list_rows()
    [inc] = live.engine._open.values()
    assert live_row.last_alert_at == inc.last_alert_at == live.clock.now() - timedelta(seconds=10)
    assert restarted_row.last_alert_at == live_row.last_alert_at
    assert [i.last_alert_at for i in restarted.engine._open.values()] == [inc.last_alert_at]


def test_a_refresh_places_the_open_incidents_workloads_anew_as_a_restart_does(tmp_path: Path) -> None:
    # Seed 2232: a double-bit ECC error on a GPU of llm-70b (an incident filed under the job's GPUs), then a
    # refresh no longer listed the job; the incident's lower priority waited to settle, so its assessment
    # kept the job it had shown. Live kept the GPUs the job had held too, and another of them running hot
    # later joined the incident; a restart places the job anew (nowhere), and that GPU opened its own.
    fleet = sc.fleet_inventory()
    gone = StaticInventory(
        fleet.node_list, [w for w in fleet.workload_list if w.ref.name != "llm-70b"], fleet.spare
    )

    def steps(serve: Serve, restart: bool) -> None:
        serve.refresh(fleet)
        serve.engine.ingest([_gpu("GPUDoubleBitEccErrors", "r07-n03", 3)])
        [inc] = serve.engine._open.values()
        assert ("c1", "r07-n02", 1) in inc.placed  # the job's GPUs
        serve.clock.advance(5)
        serve.refresh(gone)  # a lower priority waits to settle
        if restart:
            serve.restart()
            serve.refresh(gone)
        serve.clock.advance(5)
        serve.engine.ingest([_gpu("GPUTemperatureHigh", "r07-n02", 1)])

    live, restarted = _both(tmp_path, steps, announce_delay_seconds=0, priority_settle_seconds=120)
    assert [sorted(i.placed) for i in live.engine._open.values()] == [[], []]
    assert _grouped(restarted) == _grouped(live)
    assert restarted.incidents() == live.incidents()
