"""The index of open incidents: an entry follows its incident as it grows, merges and resolves, and a tick
or a new alert reads only the incidents it may touch, whatever else is open."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import event

from alerting.batch import OpenIncident
from alerting.engine import IncidentEngine
from alerting.faults import classify
from alerting.incident_index import OpenIncidents
from alerting.member import Member
from alerting.topology import locate
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert, AlertStatus
from tests.alerting.index_runs import START, _check_filed, _engine, _flapped, _timeline


def _one(engine: IncidentEngine) -> OpenIncident:
    (inc,) = engine._open.values()
    return inc


def test_an_index_entry_follows_its_incident_as_it_grows_merges_and_resolves(tmp_path: Path) -> None:
    engine, clock = _engine(tmp_path, None, full_scan=False)
    node = {"cluster": "a", "rack": "r1"}
    first_down = Alert({"alertname": "NodeDown", **node, "node": "n1"}, starts_at=START)
    engine.ingest([first_down])
    first = _one(engine)
    assert engine._open.filed(first.id)["root"] == {("a", "r1", "n1")}
    assert not engine._open.filed(first.id)["holding_twice"]
    # Grows: two XIDs 13 on the node's GPUs join the node's incident, which now holds that signal twice.
    xids = [Alert({"alertname": "GPUXid", "xid": "13", **node, "node": "n1", "gpu": g}) for g in "01"]
    engine.ingest(xids)
    assert _one(engine) is first
    assert engine._open.filed(first.id)["holding_twice"] == {first.members[xids[0].fingerprint].signal}
    # Merges: a GPU of a second node of the rack is lost (an incident of its own), then the node goes
    # down: its incident and the first roll up to the rack, the one taken in is filed nowhere any more and
    # the one left is filed under the rack.
    lost = Alert({"alertname": "GPULost", **node, "node": "n2", "gpu": "0"}, starts_at=START)
    engine.ingest([lost])
    assert len(engine._open) == 2
    _check_filed(engine)
    second_down = Alert({"alertname": "NodeDown", **node, "node": "n2"}, starts_at=START)
    engine.ingest([second_down])
    rack = _one(engine)
    merged = [row.id for row, _ in engine.store.list_rows(include_merged=True) if row.merged_into]
    assert merged and rack.id not in merged
    assert engine._open.filed(rack.id)["root"] == {("a", "r1")}
    assert engine._open.filed(rack.id)["under"] == {("a",), ("a", "r1")}
    for incident_id in merged:
        assert not any(engine._open.filed(incident_id).values())
    _check_filed(engine)
    # Resolves: every alert resolved, the quiet period over: nothing is filed.
    ended = [
        Alert(dict(a.labels), status=AlertStatus.RESOLVED) for a in (first_down, second_down, lost, *xids)
    ]
    engine.ingest(ended)
    clock.advance(AlertingConfig().quiet_period_seconds + 1)
    engine.tick()
    assert not engine._open
    assert not any(engine._open.filed(rack.id).values())


def test_an_open_set_without_its_incidents_files_nothing() -> None:
    opened = OpenIncidents()
    assert not any(opened.filed("inc-x").values())


def test_a_tick_reads_the_rows_of_only_the_incidents_it_may_resolve_or_settle(tmp_path: Path) -> None:
    """The tick read the row of every open incident, every 5 s: 10,000 reads with 10,000 open. Only an
    incident with no alert firing (its quiet period) or one flapping has anything for it to do."""
    engine, clock = _engine(tmp_path, None, full_scan=False)
    nodes = [
        Alert({"alertname": "NodeDown", "cluster": "a", "node": f"n{k}"}, starts_at=START) for k in range(3)
    ]
    engine.ingest(nodes)
    engine.ingest([Alert(dict(nodes[0].labels), status=AlertStatus.RESOLVED)])
    by_alert = {fp: inc.id for inc in engine._open.values() for fp in inc.members}
    quiet, firing = by_alert[nodes[0].fingerprint], {by_alert[a.fingerprint] for a in nodes[1:]}
    read: list[object] = []

    def record(conn: object, cursor: object, statement: str, params: object, *rest: object) -> None:
        if "FROM incidents" in statement:
            read.append(params)

    event.listen(engine.store.engine, "before_cursor_execute", record)
    clock.advance(10)
    engine.tick()
    assert any(quiet in str(p) for p in read)
    assert not any(i in str(p) for p in read for i in firing)
    clock.advance(AlertingConfig().quiet_period_seconds)
    engine.tick()
    assert quiet not in engine._open and firing <= set(engine._open)


def test_an_alert_without_a_place_is_compared_only_with_incidents_of_alerts_of_its_name(
    tmp_path: Path,
) -> None:
    """It joins only an incident whose alerts all lack a place and have its name (``join_rank``); it was
    compared with every incident without a topology root, a job's stalls included."""
    engine, _ = _engine(tmp_path, None, full_scan=False)
    engine.ingest(
        [
            Alert({"alertname": "Watchdog"}, starts_at=START),
            Alert({"alertname": "BackupFailed"}, starts_at=START),
            Alert({"alertname": "TrainingJobStalled", "slurm_job": "j1", "rank": "0"}, starts_at=START),
        ]
    )
    assert len(engine._open) == 3 and all(not inc.root_path for inc in engine._open.values())
    labels = {"alertname": "Watchdog", "team": "ml"}
    kind = classify(labels)
    new = Member("fp", kind, locate(labels, kind, None), START, True, labels)
    (found,) = engine._open.join_candidates(new, None)
    assert {m.labels["alertname"] for m in found.members.values()} == {"Watchdog"}
    engine.ingest([Alert(labels, starts_at=START)])
    assert len(engine._open) == 3  # it joined the Watchdog incident


def test_a_tick_reads_a_flapping_incident_only_once_its_flap_may_settle(tmp_path: Path) -> None:
    """Under a stream where every alert flaps, every open incident was reread at every tick (its row and
    each flapping alert's): seconds a tick with thousands open, though a flap can only settle once its
    changes leave the flap window."""
    engine, clock = _engine(tmp_path, None, full_scan=False)
    node = {"alertname": "NodeDown", "cluster": "a", "node": "n1"}
    _flapped(engine, clock, [node])
    inc = _one(engine)
    assert all(m.flapping and m.firing for m in inc.members.values())
    read: list[str] = []

    def record(conn: object, cursor: object, statement: str, params: object, *rest: object) -> None:
        if "FROM incidents" in statement or "FROM alerts" in statement:
            read.append(str(params))

    event.listen(engine.store.engine, "before_cursor_execute", record)
    # Its changes were 5 s apart over the last 30 s: it may settle once all but the last two (stop
    # transitions) left the window, the third-last (10 s ago) a window from now. Until then: not read.
    settles = AlertingConfig().flap_window_seconds - 10
    for _ in range(int(settles // 5) - 1):  # ticks 5 s apart until 5 s before
        clock.advance(5)
        engine.tick()
    assert not [p for p in read for fp in [inc.id, *inc.members] if fp in p]
    clock.advance(5)  # a window after it: read (it settles once past the window)
    engine.tick()
    assert any(inc.id in p for p in read)
    clock.advance(5)
    engine.tick()
    assert "alert NodeDown stopped flapping" in [e.message for e in _timeline(engine, inc.id)]
    assert not any(m.flapping for m in inc.members.values())


def _pairs(shape: str, gpus: int) -> tuple[list[Alert], list[Alert]]:
    """The first and the second alert of one signal on each of ``gpus`` GPUs (one per node of cluster a)."""

    def on(node: int, gpu: str, labels: dict[str, str]) -> Alert:
        where = {"cluster": "a", "node": f"n{node:02d}", "gpu": gpu}
        if shape == "per node, each in its rack":
            where["rack"] = f"r{node:02d}"
        return Alert({**where, **labels}, starts_at=START)

    if shape == "per link":
        made = [[on(i, "0", {"alertname": "GPUNVLinkDown", "link": k}) for i in range(gpus)] for k in "01"]
    elif shape == "per process":
        made = [
            [on(i, "0", {"alertname": "GPUXid", "xid": "13", "pid": k}) for i in range(gpus)] for k in "12"
        ]
    else:  # two GPUs of each node: each node's incident holds the XID twice, rooted at its node
        made = [[on(i, g, {"alertname": "GPUXid", "xid": "13"}) for i in range(gpus)] for g in "01"]
    return made[0], made[1]


def _counting(
    ask: Callable[..., list[OpenIncident]], name: str, asked: Counter[str]
) -> Callable[..., list[OpenIncident]]:
    def counted(*args: object) -> list[OpenIncident]:
        found = ask(*args)
        asked[name] += len(found)
        return found

    return counted


def _asked_for_the_last_alert(tmp_path: Path, shape: str, gpus: int) -> Counter[str]:
    """Incidents the index hands correlation (joins, spreads, XID regrouping) while the last GPU's second
    alert is applied, after every other GPU's incident took its two alerts."""
    engine, _ = _engine(tmp_path, None, full_scan=False)
    first, second = _pairs(shape, gpus)
    engine.ingest(first)
    engine.ingest(second[:-1])
    asked: Counter[str] = Counter()
    for name in ("join_candidates", "spread_partners", "signal_partners"):
        setattr(engine._open, name, _counting(getattr(engine._open, name), name, asked))
    engine.ingest(second[-1:])
    # The grouping: each GPU (node) its own incident, holding its two alerts.
    assert sorted(len(inc.members) for inc in engine._open.values()) == [2] * gpus
    return asked


@pytest.mark.parametrize("shape", ["per link", "per process", "per node, each in its rack"])
def test_a_second_alert_of_one_gpu_is_compared_with_as_many_incidents_whatever_the_storm_size(
    tmp_path: Path, shape: str
) -> None:
    """Every incident holding its signal twice was a join candidate of every new alert of that name (and a
    partner of every touched incident in the spread and XID regrouping passes): quadratic, 40 s for 1,000
    GPUs' second alerts. Only a rack, or a node of an unknown rack, may roll a signal up to the cluster
    (``correlation.rolls_up``); a GPU's incident or a node's in a known rack takes it only from its rack."""
    small = _asked_for_the_last_alert(tmp_path, shape, 2)
    large = _asked_for_the_last_alert(tmp_path, shape, 8)
    assert large == small
    assert small["join_candidates"] == 1  # its own GPU's (node's) incident
