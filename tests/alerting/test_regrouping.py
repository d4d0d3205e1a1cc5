from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from alerting import scenarios as sc
from alerting.batch import Batch, OpenIncident
from alerting.engine import IncidentEngine
from alerting.faults import classify
from alerting.joining import earlier_members
from alerting.member import Member
from alerting.regrouping import regroup_ranks, regroup_spread
from alerting.root_facts import beside_held, root_facts
from alerting.store_models import IncidentRow
from alerting.topology import locate
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert, IncidentState, Priority

AT = datetime(2026, 3, 1, tzinfo=UTC)
INVENTORY = sc.fleet_inventory()


def _member(fp: str, **labels: str) -> Member:
    labels = {"cluster": sc.CLUSTER, **labels}
    kind = classify(labels)
    return Member(fp, kind, locate(labels, kind, INVENTORY), AT, True, labels)


def _stall(fp: str, rank: int) -> Member:
    return _member(fp, alertname="TrainingJobStalled", slurm_job="llm-70b", rank=str(rank))


def _incident(incident_id: str, root: tuple[str, ...], *members: Member) -> OpenIncident:
    inc = OpenIncident(incident_id, root, Priority.P0, IncidentState.TRIGGERED, AT)
    inc.members.update((m.fingerprint, m) for m in members)
    return inc


def test_a_rank_moved_to_the_fault_holding_its_gpu_leaves_what_its_old_incident_gathered(sql: Engine) -> None:
    # Rank 3 runs on rack r07; it stalled inside the NVSwitch incident of r08-n03 before r07's went down.
    switch = _member("nvlink", alertname="GPUNVLinkErrors", Hostname="r08-n03", gpu="0")
    rank3, rank80 = _stall("rank3", 3), _stall("rank80", 80)
    assert rank3.location.runs_on and rank80.location.runs_on
    nvlink = _incident("inc-nvlink", switch.location.path[:3], switch, rank3)
    down = _member("down", alertname="NodeDown", Hostname="r07-n01")
    rack = _incident("inc-rack", down.location.path[:2], down)
    for inc in (nvlink, rack):  # gathered before the move
        assert inc.facts() == root_facts(inc.members.values())
    assert list(nvlink.stalled_ranks()[0]) == ["rank3"]
    with Session(sql) as session:
        moved = regroup_ranks(Batch(session, AT), rack, [nvlink, rack])
    assert moved == {"inc-nvlink", "inc-rack"}
    assert list(rack.members) == ["down", "rank3"]
    # Another rank stalls on the switch's node: as many members as before the move, not the same ones.
    nvlink.members["rank80"] = rank80
    assert list(nvlink.stalled_ranks()[0]) == ["rank80"]
    assert nvlink.facts() == root_facts([switch, rank80])
    assert list(rack.stalled_ranks()[0]) == ["rank3"]
    assert rack.facts() == root_facts([down, rank3])


def _moves_of_ranks_joined_in(sql: Engine, order: list[int]) -> tuple[list[object], list[str]]:
    """The moves' timeline data and what stays, of a cluster-wide incident holding stalled ranks (joined in
    ``order``) whose GPUs a rack's fault then holds, as ``regroup_ranks`` moves them one by one."""
    ranks = [_stall(f"rank{r:02d}", r) for r in order]  # 1, 9 and 17 run on r07
    job = _incident("inc-job", ("c1",), *ranks)
    power = _member("power", alertname="RackPowerLoss", rack="r07")
    rack = _incident("inc-rack", power.location.path, power)
    with Session(sql) as session:
        for incident_id in ("inc-job", "inc-rack"):
            _stored(session, incident_id, AT)
        batch = Batch(session, AT)
        regroup_ranks(batch, job, [job, rack])
        moves = [(e.incident_id, e.data) for e in batch.events if e.kind == "alerts_moved"]
        session.rollback()
    return moves, list(job.members)


def test_ranks_moved_one_by_one_are_told_in_the_same_order_whatever_order_they_joined_in(sql: Engine) -> None:
    # Seed 112 of ``benchmarks/restart_fuzz.py``: a restart reads an incident's members in stored order, not
    # the order they joined in, and its rack's incident listed the ranks it took over in another order.
    moves, stays = _moves_of_ranks_joined_in(sql, [17, 1, 9])
    # One move to the one incident taking them (one entry, not one per rank), in fingerprint order.
    assert [data["fingerprints"] for inc, data in moves if inc == "inc-rack"] == [["rank01", "rank09"]]
    assert stays == ["rank17"]  # the last one stays: an incident is never left empty
    assert _moves_of_ranks_joined_in(sql, [9, 17, 1]) == (moves, stays)


def _stored(session: Session, incident_id: str, opened_at: datetime) -> IncidentRow:
    row = IncidentRow(
        id=incident_id,
        title="",
        priority="P0",
        state="triggered",
        root_kind="rack_down",
        root_target={},
        opened_at=opened_at,
        last_opened_at=AT,
        updated_at=AT,
        last_alert_at=AT,
        first_onset_at=opened_at,
        impact={},
        actions=[],
        reopen_count=0,
    )
    session.add(row)
    return row


def test_a_restart_reads_a_rank_moved_into_a_reopened_incident_as_of_its_current_opening(sql: Engine) -> None:
    # The rack's incident reopened at AT (its NodeDown of the earlier opening stays resolved); a stalled rank
    # of the NVSwitch's incident, since resolved, moves in. Live it counts in the rack's recovery; a restart
    # took it for an alert of the earlier opening (the move's event was not a kind it read).
    switch = _member("nvlink", alertname="GPUNVLinkErrors", Hostname="r08-n03", gpu="0")
    rank3 = _stall("rank3", 3)
    rank3.firing = False
    nvlink = _incident("inc-nvlink", switch.location.path[:3], switch, rank3)
    down = _member("down", alertname="NodeDown", Hostname="r07-n01")
    down.firing = False
    rack = _incident("inc-rack", down.location.path[:2], down)
    rack.earlier.add("down")
    with Session(sql) as session:
        row = _stored(session, "inc-rack", AT - timedelta(hours=1))
        _stored(session, "inc-nvlink", AT)
        assert regroup_ranks(Batch(session, AT), rack, [nvlink, rack]) == {"inc-nvlink", "inc-rack"}
        session.flush()
        assert rack.earlier == {"down"}
        assert earlier_members(session, row, rack.members) == rack.earlier


def test_a_restart_keeps_out_of_the_count_alerts_of_an_absorbed_incidents_earlier_opening(
    sql: Engine,
) -> None:
    # An incident never reopened took in one that had reopened: live, that one's alert of its earlier opening
    # stays out of the recovery count (``IncidentMerging._fold``) until it fires again; so after a restart.
    down, lost = _member("down", alertname="NodeDown", Hostname="r07-n01"), _stall("rank3", 3)
    down.firing = lost.firing = False
    members = {"down": down, "rank3": lost}
    with Session(sql) as session:
        row = _stored(session, "inc-rack", AT)
        row.opened_at = AT - timedelta(hours=1)
        row.last_opened_at = row.opened_at
        batch = Batch(session, AT)
        batch.event(
            row.id, "merged", "absorbed inc-x (2 alerts)", {"from": "inc-x", "earlier": ["down", "rank3"]}
        )
        session.flush()
        assert earlier_members(session, row, members) == {"down", "rank3"}
        batch.event(row.id, "alert_firing", "alert NodeDown (r07-n01) firing", {"fingerprint": "down"})
        session.flush()
        assert earlier_members(session, row, members) == {"rank3"}


def test_a_rollouts_xids_taken_from_another_incident_are_listed_by_fingerprint(sql: Engine) -> None:
    # As a restart reads them: the lost GPU's incident holds two XID 119s beside its fault, joined in another
    # order than their fingerprints'; the rollout's ``alerts_moved`` lists them alike either way.
    xids = [
        _member(f"x{n}{g}", alertname="GPUXid", xid="119", Hostname=f"r07-n0{n}", gpu=str(g))
        for n in (1, 2)
        for g in range(8)
    ]
    spread = _incident("inc-rollout", ("c1", "r07"), *xids)
    lost = _member("lost", alertname="GpuLost", Hostname="r08-n03", gpu="3")
    xb, xa = (
        _member(f"x{k}", alertname="GPUXid", xid="119", Hostname="r08-n03", gpu=g) for k, g in ("b5", "a6")
    )
    holder = _incident("inc-lost", lost.location.path, lost, xb, xa)
    with Session(sql) as session:
        for incident_id in ("inc-rollout", "inc-lost"):
            _stored(session, incident_id, AT)
        batch = Batch(session, AT)
        regroup_spread(
            batch, spread, [spread, holder], INVENTORY, held=lambda _i: False, end_if_beside=lambda *_a: None
        )
        moved = [e.data["fingerprints"] for e in batch.events if e.incident_id == "inc-rollout"]
        session.rollback()
    assert moved == [["xa", "xb"]]


def _fleet(sql: Engine) -> tuple[FakeClock, IncidentEngine]:
    clock = FakeClock()
    config = AlertingConfig(announce_delay_seconds=0)
    return clock, IncidentEngine(sql, clock, config, sc.fleet_inventory(spare_gpus=8))


def _xid_119(node: str, gpu: int) -> Alert:
    return Alert(
        {"cluster": sc.CLUSTER, "Hostname": node, "gpu": str(gpu), "alertname": "GPUXid", "xid": "119"}
    )


def _rollout_on_r07(engine: IncidentEngine) -> str:
    """A driver rollout's XID 119 on every GPU of r07-n01 and r07-n02: one incident, rooted at rack r07."""
    engine.ingest([_xid_119(f"r07-n0{n}", g) for n in (1, 2) for g in range(8)])
    row = engine.store.alert(_xid_119("r07-n01", 0).fingerprint)
    assert row is not None and row.incident_id is not None
    return row.incident_id


def _silenced_by(engine: IncidentEngine, alert: Alert) -> tuple[str | None, list[str]]:
    """The incident holding ``alert`` and the silences muting it (Alertmanager's ``silencedBy``)."""
    row = engine.store.alert(alert.fingerprint)
    assert row is not None
    return row.incident_id, engine.mute_state(alert.fingerprint, dict(alert.labels), row.incident_id)[0]


def test_a_silenced_rollout_that_reaches_another_rack_takes_its_xid_and_its_silence_ends(
    sql: Engine,
) -> None:
    # The rollout on rack r07 is silenced; GPU 3 of r08-n03 is lost (its own incident, paging), then an XID
    # 119 fires on GPU 5 there. Regrouping once moved it into the silenced rollout, muted, its root widened
    # to the cluster. It is the rollout's, silenced or not (as it would be unsilenced: it spreads), and the
    # rollout reaching another rack is not what its silence was set for: the silence ends, nothing muted.
    clock, engine = _fleet(sql)
    rollout = _rollout_on_r07(engine)
    engine.silence_incident(rollout, 3600, "op")
    clock.advance(10)
    engine.ingest([Alert({"cluster": sc.CLUSTER, "Hostname": "r08-n03", "gpu": "3", "alertname": "GpuLost"})])
    [lost] = [i for i in engine.open_incident_ids() if i != rollout]
    clock.advance(10)
    beside = _xid_119("r08-n03", 5)
    engine.ingest([beside])
    assert _silenced_by(engine, beside) == (rollout, [])
    assert len(engine.store.get(rollout).alert_fingerprints) == 17 and engine.silenced_until() == {}
    assert "silence_ended" in [e.kind for e in engine.store.get(rollout).timeline]
    assert len(engine.store.get(lost).alert_fingerprints) == 1


def test_an_xid_regrouped_into_a_rollout_whose_silence_its_post_ended_is_named_in_that_end(
    sql: Engine,
) -> None:
    # XID 119 on r07-n01's GPUs (one node, no rollout yet), silenced; GPU 3 of r08-n03 lost, its own
    # incident. One POST: r08-n03's XID 119 (it joins the GPU loss: nothing spreads yet), then r07-n02's:
    # the XID reaching another node ends the silence at its join, and regrouping then moves r08-n03's XID
    # into the rollout, another rack, beside what the silence was set for too. The silence's end named only
    # r07-n02's: regrouping asked whether a silence still held the rollout (no: ended) and said nothing.
    clock, engine = _fleet(sql)
    engine.ingest([_xid_119("r07-n01", g) for g in range(8)])
    [rollout] = engine.open_incident_ids()
    engine.silence_incident(rollout, 3600, "op")
    clock.advance(10)
    engine.ingest([Alert({"cluster": sc.CLUSTER, "Hostname": "r08-n03", "gpu": "3", "alertname": "GpuLost"})])
    [lost] = [i for i in engine.open_incident_ids() if i != rollout]
    clock.advance(10)
    engine.ingest([_xid_119("r08-n03", 3), _xid_119("r07-n02", 0), _xid_119("r07-n02", 1)])
    assert _silenced_by(engine, _xid_119("r08-n03", 3)) == (rollout, [])
    [ended] = [e for e in engine.store.get(rollout).timeline if e.kind == "silence_ended"]
    assert ended.data["beside"] == 3
    assert ended.message.startswith(
        "silence ended early (silenced by op): GPUXid XID 119 (r07-n02, 0) fired, a fault beside the one the"
        " silence"
    )
    moved_in = f"XID alerts of {lost} moved in (a rollout spreading), a fault beside the one the silence was"
    assert moved_in in ended.message


def test_a_silenced_incidents_xid_goes_where_it_groups_when_a_rollout_spreads_and_the_silence_holds(
    sql: Engine,
) -> None:
    # GPU 3 of r08-n03 is lost and silenced, then its XID 119 fires (it joins, muted). A rollout on r07
    # then spreads the same XID: unsilenced, regrouping moves it to the rollout, as the signal spreading.
    # A silence mutes an incident, not how alerts group (it kept the XID back before): the XID goes to the
    # rollout, which pages for its own spread anyway, and is not muted there; the GPU loss keeps its
    # silence, which nothing beside it joined.
    clock, engine = _fleet(sql)
    engine.ingest([Alert({"cluster": sc.CLUSTER, "Hostname": "r08-n03", "gpu": "3", "alertname": "GpuLost"})])
    [lost] = engine.open_incident_ids()
    engine.silence_incident(lost, 3600, "op")
    silence = [s.id for s in engine.silences() if s.incident_id == lost]
    clock.advance(10)
    own = _xid_119("r08-n03", 3)
    engine.ingest([own])
    assert _silenced_by(engine, own) == (lost, silence)
    clock.advance(10)
    rollout = _rollout_on_r07(engine)
    assert _silenced_by(engine, own) == (rollout, [])
    assert len(engine.store.get(rollout).alert_fingerprints) == 17
    assert len(engine.store.get(lost).alert_fingerprints) == 1 and lost in engine.silenced_until()


def test_a_rollouts_xid_regrouped_into_its_silenced_incident_ends_the_silence_and_moves_all_the_same(
    sql: Engine,
) -> None:
    # The rollout's incident (r07) is silenced; r08-n03's incident holds its GPU 3 lost and an XID 119 of
    # GPU 5, the rollout's signal. Unsilenced, regrouping moves that XID to the rollout; the silence kept it
    # where it was ("a held target takes only its own fault"), so how alerts grouped depended on a mute. It
    # moves as ever, and since the rollout reaching another rack is not what its silence was set for, the
    # silence ends first (as the XID's own join into it would end it).
    xids = [
        _member(f"x{n}{g}", alertname="GPUXid", xid="119", Hostname=f"r07-n0{n}", gpu=str(g))
        for n in (1, 2)
        for g in range(8)
    ]
    rollout = _incident("inc-rollout", xids[0].location.path[:2], *xids)
    lost = _member("lost", alertname="GpuLost", Hostname="r08-n03", gpu="3")
    stray = _member("stray", alertname="GPUXid", xid="119", Hostname="r08-n03", gpu="5")
    holder = _incident("inc-lost", lost.location.path, lost, stray)
    assert rollout.facts().spread_of is not None
    lifted: list[tuple[str, str]] = []
    with Session(sql) as session:
        moved = regroup_spread(
            Batch(session, AT),
            rollout,
            [holder],
            INVENTORY,
            held=lambda i: i == rollout.id,
            end_if_beside=lambda o, _, why: lifted.append((o.id, why)),
        )
    assert moved == {"inc-rollout", "inc-lost"} and "stray" in rollout.members
    assert [i for i, _ in lifted] == ["inc-rollout"]
    assert "a fault beside the one the silence was set for" in lifted[0][1]


def test_alerts_merged_in_the_instant_before_a_reopening_stay_of_the_earlier_opening_after_a_restart(
    sql: Engine,
) -> None:
    # Found by the restart fuzz (seed 98): in one tick an incident took in another's resolved alerts, then
    # resolved, then reopened; live, the reopening made them earlier (out of "2 of 5 nodes recovered"). The
    # replay read every event from the reopening's time on, the merge of the same instant included.
    down, lost = _member("down", alertname="NodeDown", Hostname="r07-n01"), _stall("rank3", 3)
    down.firing = False
    members = {"down": down, "rank3": lost}
    with Session(sql) as session:
        row = _stored(session, "inc-rack", AT)
        row.opened_at = AT - timedelta(hours=1)
        row.last_opened_at = AT
        batch = Batch(session, AT)
        batch.event(row.id, "merged", "absorbed inc-x (1 alert)", {"from": "inc-x", "fingerprints": ["down"]})
        batch.event(row.id, "resolved", "resolved: all alerts quiet for the quiet period", {})
        batch.event(row.id, "reopened", "reopened: rank 3 fired again", {"fingerprint": "rank3"})
        session.flush()
        assert earlier_members(session, row, members) == {"down"}


def test_alerts_moved_into_a_silenced_incident_without_a_root_end_its_silence_as_a_join_would_not(
    sql: Engine,
) -> None:
    # A job's stalls only (no root), silenced: the silence was set for whatever fault stalls the job. A GPU
    # lost joining it, or its incident merged into it, ended nothing, while regrouping's own rule ended the
    # silence for the same alert moved in. One rule now (``root_facts.beside_held``), the same answer.
    stalled = _incident("inc-stalls", (), _stall("rank3", 3))
    lost = _member("lost", alertname="GpuLost", Hostname="r08-n03", gpu="3")
    assert not beside_held(stalled.root_path, stalled.facts, [lost])  # a join's, a merge's, a regrouping's
    other_gpu = _member("x", alertname="GpuLost", Hostname="r08-n03", gpu="5")
    elsewhere = _incident("inc-other", other_gpu.location.path, other_gpu)
    assert beside_held(elsewhere.root_path, elsewhere.facts, [lost])  # rooted: beside it


def test_two_faults_coming_into_a_silenced_stalls_incident_end_its_silence_whole_or_one_by_one(
    sql: Engine,
) -> None:
    # A job's stalls only, silenced. GPU 3 of r07-n01 lost joins it (the stalls' cause: no end), then GPU
    # 5 of the node lost joins it, beside the root GPU 3 gave it: the silence ends. The two as one incident
    # merged into it ended nothing (a merge looked only at roots: the stalls had none). One rule: the first
    # fault into it roots it, the rest are judged against it, however they come.
    clock, engine = _fleet(sql)
    stall = Alert(
        {"cluster": sc.CLUSTER, "alertname": "TrainingJobStalled", "slurm_job": "llm-70b", "rank": "3"}
    )
    engine.ingest([stall])
    [stalls] = engine.open_incident_ids()
    engine.silence_incident(stalls, 3600, "op")
    lost = [
        Alert({"cluster": sc.CLUSTER, "Hostname": "r07-n01", "gpu": g, "alertname": "GpuLost"}) for g in "35"
    ]
    clock.advance(10)
    engine.ingest([lost[0]])
    assert list(engine.silenced_until()) == [stalls]
    clock.advance(10)
    engine.ingest([lost[1]])
    assert list(engine.open_incident_ids()) == [stalls] and engine.silenced_until() == {}
    members = [_member(f"g{g}", alertname="GpuLost", Hostname="r07-n01", gpu=g) for g in "35"]
    held = _incident("inc-stalls", (), _stall("rank3", 3))
    assert beside_held(held.root_path, held.facts, members)  # merged in whole: the same answer
    assert not beside_held(held.root_path, held.facts, members[:1])
