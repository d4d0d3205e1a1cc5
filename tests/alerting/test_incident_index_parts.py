"""The index of open incidents in the situations its random streams never build: each test builds the one a
lookup of ``alerting.incident_index`` is for and checks what a user sees (the incidents, their members,
what merged, when a flap settles) against the full scan, ``OpenIncidents(full_scan=True)``.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from alerting.batch import OpenIncident
from alerting.correlation import join_rank
from alerting.faults import classify
from alerting.incident_index import OpenIncidents
from alerting.member import Member
from alerting.topology import locate
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert, AlertStatus, IncidentState, Priority
from tests.alerting.index_runs import START, Outcome, _engine, _flapped, _run

RACK = {"cluster": "a", "rack": "r1"}


def _xid(node: str, at: float, **where: str) -> Alert:
    """XID 13 on ``node`` of rack r1 (on the GPU of ``where``), ``at`` s after START."""
    labels = {**RACK, "alertname": "GPUXid", "xid": "13", "node": node, **where}
    return Alert(labels, starts_at=START + timedelta(seconds=at))


def _posts(*posts: list[Alert]) -> list[tuple[str, object]]:
    return [("post", list(post)) for post in posts]


def _both(tmp_path: Path, steps: list[tuple[str, object]]) -> Outcome:
    """The outcome of ``steps`` with the index (checked against its tables at every step), asserted equal to
    the full scan's."""
    indexed, clock = _engine(tmp_path, None, full_scan=False)
    got = _run(indexed, clock, steps, check=True)
    scanned, clock = _engine(tmp_path, None, full_scan=True)
    assert got == _run(scanned, clock, steps, check=False)
    return got


def _folded(outcome: Outcome) -> tuple[list[tuple[str, frozenset[str]]], int]:
    """The root target and alerts of each incident not resolved, and how many were merged into another."""
    live = [(target, fps) for _, target, _, _, state, fps, _ in outcome if state != "resolved"]
    merged = [o for o in outcome if any(m.startswith("merged into") for *_, m in o[6])]
    return live, len(merged)


def test_a_node_that_takes_a_signal_twice_folds_in_a_node_of_its_rack_holding_it_once(tmp_path: Path) -> None:
    """XID 13 on node n2 (no GPU named: its incident is rooted at the node), then on two GPUs of n1 of the
    same known rack: n1's incident now holds it twice, and the merge pass finds n2's through the signal
    in the rack (``spread_partners``' ``in_rack`` lookup): one rack incident of the three alerts."""
    n2 = _xid("n2", 0)
    gpus = [_xid("n1", 0, gpu=g) for g in "01"]
    got = _both(tmp_path, _posts([n2], gpus[:1], gpus[1:]))
    fps = frozenset(a.fingerprint for a in (n2, *gpus))
    assert _folded(got) == ([(str([("cluster", "a"), ("name", "r1"), ("type", "rack")]), fps)], 1)


def test_a_node_holding_a_signal_once_that_fires_again_folds_into_its_racks_node_holding_it_twice(
    tmp_path: Path,
) -> None:
    """XID 13 on node n2, then on two GPUs of n1 starting two hours later (too far apart to be one spread:
    n1's incident stays apart); then n2's alert resolves and fires again, starting with n1's: n2's incident,
    touched, finds n1's through a signal of its own in the rack (``spread_partners``' ``signal_racks``
    branch) and they fold."""
    later = 7200.0
    n2 = _xid("n2", 0)
    gpus = [_xid("n1", later, gpu=g) for g in "01"]
    resolved = Alert(n2.labels, status=AlertStatus.RESOLVED)
    again = _xid("n2", later)
    got = _both(tmp_path, _posts([n2], gpus, [resolved], [again]))
    fps = frozenset(a.fingerprint for a in (n2, *gpus))
    assert _folded(got) == ([(str([("cluster", "a"), ("name", "r1"), ("type", "rack")]), fps)], 1)


def _flap(labels: dict[str, str], first: float, changes: int) -> list[tuple[float, Alert]]:
    """``labels`` fired at ``first``, then resolved and fired again ``changes`` times 5 s apart."""
    out = [(first, Alert(labels, starts_at=START))]
    for k in range(1, changes + 1):
        status = AlertStatus.RESOLVED if k % 2 else AlertStatus.FIRING
        out.append((first + 5.0 * k, Alert(labels, status=status, starts_at=START)))
    return out


def test_the_first_of_two_flapping_alerts_of_one_incident_settles_at_its_own_tick(tmp_path: Path) -> None:
    """Two Watchdog alerts (no place: one incident by name) flap, the second 100 s after the first: the tick
    must look at the incident when the first may settle (``_tick_due_at``: the earliest settle time), so
    that it stops flapping 100 s before the second, as in the full scan."""
    changes = AlertingConfig().flap_start_transitions
    timed = _flap({"alertname": "Watchdog"}, 0.0, changes) + _flap(
        {"alertname": "Watchdog", "team": "ml"}, 100.0, changes
    )
    steps: list[tuple[str, object]] = []
    now = 0.0
    for at, alert in sorted(timed, key=lambda t: t[0]):
        if at > now:
            steps.append(("advance", at - now))
            now = at
        steps.append(("post", [alert]))
    steps += [("advance", 5.0)] * int((AlertingConfig().flap_window_seconds + 200) // 5)
    got = _both(tmp_path, steps)
    ((*_, timeline),) = got
    stops = [at for at, kind, _ in timeline if kind == "flapping_stopped"]
    assert len(stops) == 2
    first, second = sorted(stops)
    assert (START.fromisoformat(second) - START.fromisoformat(first)).total_seconds() == 100


def _pathless(labels: dict[str, str]) -> Member:
    kind = classify(labels)
    return Member("fp-new", kind, locate(labels, kind, None), START, True, labels)


def test_an_open_incident_without_members_is_a_join_candidate_of_an_alert_without_a_place() -> None:
    """``join_rank`` lets an alert with no place or workload join an incident all of whose members lack a
    place and have its name: so, one with no member at all. The engine never leaves an open incident empty
    (a move keeps one alert where it takes them from), but a restart rebuilds each open incident from its
    stored row and then adds the alerts the store holds of it: one with none stays without members. The
    index must offer it as the full scan does (its ``memberless`` set)."""
    new = _pathless({"alertname": "Watchdog"})
    found = {}
    for full_scan in (False, True):
        opened = OpenIncidents(full_scan=full_scan)
        for incident_id in ("inc-empty", "inc-backup"):
            opened[incident_id] = OpenIncident(incident_id, (), Priority.P3, IncidentState.TRIGGERED, START)
        opened["inc-backup"].members["fp-backup"] = _pathless({"alertname": "BackupFailed"})
        candidates = opened.join_candidates(new, None)
        found[full_scan] = [i.id for i in candidates if join_rank(i.candidate(), new, None) is not None]
    assert found[False] == found[True] == ["inc-empty"]


def test_the_tick_is_given_a_flapping_incident_at_the_very_time_its_flap_may_settle(tmp_path: Path) -> None:
    """``Member.settles_at`` is the first time the tick may clear a flag (``IncidentGrouping``'s settle
    check skips a member only before it): the index hands the incident over from that time on, not only
    after it. No outcome tells the two apart (``settles_after`` is a millisecond early, and at that time
    the flap window still holds the change), so this asks the index what it hands the tick."""
    engine, clock = _engine(tmp_path, None, full_scan=False)
    _flapped(engine, clock, [{"alertname": "NodeDown", "cluster": "a", "node": "n1"}])
    (inc,) = engine._open.values()
    (member,) = inc.members.values()
    assert member.flapping and member.firing
    clock.advance(member.settles_at - clock.now().timestamp())
    now = clock.now().timestamp()
    assert now == member.settles_at
    assert [i.id for i in engine._open.quiet_candidates(now)] == [inc.id]
    engine.tick()  # the tick looks at it and, the window still holding the change, leaves it flapping
    assert member.flapping


def test_a_node_holding_a_rollouts_xid_beside_a_fault_of_its_own_gives_it_to_the_rollout(
    tmp_path: Path,
) -> None:
    """XID 119 on two GPUs of node n1 (rack r1); two hours later on two GPUs each of n2 and n3 (rack r2): a
    rollout, too far apart from n1's to fold it in, and n1's holds nothing else (the merge pass's, not the
    XID regrouping's). Then an XID 74 on n1: its incident now holds another fault, and is the only one
    touched; it finds the rollout through its XID held on two nodes (``signal_partners``' ``xid_spread``
    lookup) and gives it its XID 119s, as the rollout, touched, would have taken them."""
    later = 7200.0

    def xid(node: str, gpu: str, code: str, rack: str, at: float) -> Alert:
        labels = {"cluster": "a", "rack": rack, "alertname": "GPUXid", "xid": code, "node": node, "gpu": gpu}
        return Alert(labels, starts_at=START + timedelta(seconds=at))

    n1 = [xid("n1", g, "119", "r1", 0.0) for g in "01"]
    rollout = [xid(n, g, "119", "r2", later) for n in ("n2", "n3") for g in "01"]
    nvswitch = xid("n1", "0", "74", "r1", later)
    got = _both(tmp_path, _posts(n1, rollout[:2], rollout[2:], [nvswitch]))
    live = {fps for _, fps in _folded(got)[0]}
    assert live == {frozenset(a.fingerprint for a in (*n1, *rollout)), frozenset({nvswitch.fingerprint})}
    moved = [m for *_, timeline in got for _, kind, m in timeline if kind == "alerts_moved"]
    assert sorted(moved) == [
        "2 XID alerts moved to inc-?: they are its XID spreading (a rollout)",
        "took 2 XID alerts from inc-?: they are its XID spreading (a rollout)",
    ]
