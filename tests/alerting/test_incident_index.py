"""The index of open incidents gives the incidents the plain scan gives, and follows each incident as it
grows, merges and resolves.

Correlation asks the index only where an open incident could take a new alert; asking every open incident
(``OpenIncidents(full_scan=True)``) is the reference: on random alert streams, with and without an
inventory, both must open, merge, resolve and reopen the same incidents.
"""

from __future__ import annotations

import random
import re
import uuid
from collections import Counter
from collections.abc import Callable, Hashable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import event

from alerting import scenarios as sc
from alerting.batch import OpenIncident
from alerting.correlation import rolls_up
from alerting.engine import IncidentEngine
from alerting.faults import SYMPTOM_KINDS, classify
from alerting.incident_index import OpenIncidents
from alerting.inventory import Inventory, StaticInventory
from alerting.member import Member, Signal
from alerting.topology import RACK_DEPTH, UNKNOWN, locate
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert, AlertStatus, FaultKind, TimelineEvent
from tests.migrated_store import migrated_sqlite

START = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
Outcome = frozenset[tuple[str, str, str, str, str, frozenset[str], tuple[tuple[str, str, str], ...]]]
_INCIDENT_ID = re.compile(r"inc-[0-9a-f]{12}")

# (alert name, extra labels, on a GPU): what faults look like in the streams.
FAULTS: list[tuple[str, dict[str, str], bool]] = [
    ("NodeDown", {}, False),
    ("GPULost", {}, True),
    ("GPUXid", {"xid": "13"}, True),
    ("GPUXid", {"xid": "48"}, True),
    ("GPUXid", {"xid": "79"}, True),
    ("GPUXid", {"xid": "119"}, True),
    ("GPUXid", {"xid": "74"}, True),
    ("GPUNVLinkErrors", {}, True),
    ("DCGMExporterStale", {}, True),
    ("GPUTemperatureHigh", {}, True),
    ("GpuEccDbe", {}, True),
]


def _engine(
    tmp_path: Path, inventory: Inventory | None, *, full_scan: bool
) -> tuple[IncidentEngine, FakeClock]:
    sql = migrated_sqlite(tmp_path / f"{uuid.uuid4().hex}.db")
    clock = FakeClock(START.timestamp())
    engine = IncidentEngine(sql, clock, AlertingConfig(announce_delay_seconds=0), inventory)
    if full_scan:
        engine._open.full_scan = True
    return engine, clock


def _fleet_alert(rng: random.Random) -> dict[str, str]:
    """A fault on the scenario fleet (racks r05-r08: the job runs on r07 and r08), or a stalled rank."""
    if rng.random() < 0.15:
        rank = rng.randrange(128)
        return {
            "cluster": sc.CLUSTER,
            "alertname": "TrainingJobStalled",
            "slurm_job": "llm-70b",
            "rank": str(rank),
        }
    name, extra, on_gpu = rng.choice(FAULTS)
    node = sc.node_name(rng.randint(5, 8), rng.randint(1, 3))
    labels = {"cluster": sc.CLUSTER, "Hostname": node, "alertname": name, **extra}
    if on_gpu:
        gpu = rng.randrange(4)
        labels |= {"gpu": str(gpu), "UUID": sc.gpu_uuid(node, gpu)}
    return labels


def _bare_alert(rng: random.Random) -> dict[str, str]:
    """A fault with no inventory to place it: nodes with or without a cluster or rack label, and now and
    then an alert with no place at all or a job's stall."""
    roll = rng.random()
    if roll < 0.05:
        return {"alertname": rng.choice(["Watchdog", "BackupFailed"])}
    if roll < 0.12:
        return {
            "alertname": "TrainingJobStalled",
            "slurm_job": rng.choice(["j1", "j2"]),
            "rank": str(rng.randrange(4)),
        }
    name, extra, on_gpu = rng.choice(FAULTS)
    labels = {"alertname": name, "node": f"n{rng.randrange(12):02d}", **extra}
    cluster = rng.choice([None, None, "a", "b"])
    if cluster is not None:
        labels["cluster"] = cluster
        if rng.random() < 0.5:
            labels["rack"] = f"r{rng.randrange(2)}"
    if on_gpu:
        labels["gpu"] = str(rng.randrange(3))
    return labels


def _burst(rng: random.Random, make: Callable[[random.Random], dict[str, str]]) -> list[Alert]:
    """One signal on two GPUs of each of several nodes (a driver rollout, a rack's heat), shuffled: what
    rolls up to a rack or cluster, in whatever order it comes."""
    name, extra = rng.choice(
        [("GPUXid", {"xid": "119"}), ("GPUXid", {"xid": "13"}), ("GPUTemperatureHigh", {})]
    )
    alerts = []
    for _ in range(rng.randint(2, 4)):
        labels = make(rng)
        while "gpu" not in labels:
            labels = make(rng)
        node = {k: v for k, v in labels.items() if k in ("cluster", "rack", "node", "Hostname")}
        for gpu in "01":
            at = START + timedelta(seconds=rng.uniform(0, 60))
            alerts.append(Alert({**node, "alertname": name, "gpu": gpu, **extra}, starts_at=at))
    rng.shuffle(alerts)
    return alerts


def _stream(seed: int, placed: bool) -> list[tuple[str, object]]:
    """Steps of a random stream: posts of firing and resolved alerts, and ticks some minutes apart."""
    rng = random.Random(seed)
    make = _fleet_alert if placed else _bare_alert
    steps: list[tuple[str, object]] = []
    fired: list[dict[str, str]] = []
    offset = 0.0
    for _ in range(rng.randint(6, 12)):
        post = _burst(rng, make) if rng.random() < 0.3 else []
        fired.extend(dict(a.labels) for a in post)
        for _ in range(rng.randint(1, 12)):
            if fired and rng.random() < 0.15:
                post.append(Alert(rng.choice(fired), status=AlertStatus.RESOLVED))
                continue
            labels = make(rng)
            fired.append(labels)
            post.append(Alert(labels, starts_at=START + timedelta(seconds=offset + rng.uniform(0, 60))))
        steps.append(("post", post))
        step = rng.choice([10.0, 30.0, 400.0])
        offset += step
        steps.append(("advance", step))
    return steps


# Alerts with no place (what ``join_rank`` groups by name only) and node alerts, for ``_flappy_stream``.
PATHLESS = ["Watchdog", "BackupFailed", "LicenseExpiring", "CertificateExpiring", "QuotaNearlyFull"]


def _flappy_stream(seed: int) -> list[tuple[str, object]]:
    """Steps of a random stream of a few alerts fired and resolved over and over (some start flapping and
    settle), many without a place: the tick's quiet periods and flap settling, and joins by name only."""
    rng = random.Random(seed)
    pool = [
        {"alertname": name, **extra} for name in rng.sample(PATHLESS, 3) for extra in ({}, {"team": "ml"})
    ]
    pool += [{"alertname": "NodeDown", "cluster": "a", "node": f"n{k}"} for k in range(2)]
    pool.append({"alertname": "TrainingJobStalled", "slurm_job": "j1", "rank": "0"})
    firing = [False] * len(pool)
    steps: list[tuple[str, object]] = []
    offset = 0.0
    for _ in range(rng.randint(30, 50)):
        post = []
        for k in rng.sample(range(len(pool)), rng.randint(3, 6)):
            if rng.random() < 0.9:  # most change state: a flap is 6 changes in 10 minutes
                firing[k] = not firing[k]
            at = START + timedelta(seconds=offset)
            post.append(
                Alert(pool[k], starts_at=at) if firing[k] else Alert(pool[k], status=AlertStatus.RESOLVED)
            )
        steps.append(("post", post))
        step = 700.0 if rng.random() < 0.1 else rng.choice([10.0, 20.0, 30.0])  # a pause: quiet periods end
        offset += step
        steps.append(("advance", step))
    return steps


def _outcome(engine: IncidentEngine) -> Outcome:
    """Every incident, open, resolved or merged: root, priority, title, state, its alerts and its timeline
    (not its id, which another run draws anew)."""
    found = set()
    for row, _ in engine.store.list_rows(include_merged=True):
        incident = engine.store.get(row.id)
        target = str(sorted(row.root_target.items()))
        fps = frozenset(incident.alert_fingerprints)
        timeline = tuple(
            (e.at.isoformat(), e.kind, _INCIDENT_ID.sub("inc-?", e.message)) for e in incident.timeline
        )
        found.add((row.root_kind, target, row.priority, incident.title, row.state, fps, timeline))
    return frozenset(found)


def _expected(inc: OpenIncident) -> dict[str, frozenset[Hashable]]:
    """What the index should file ``inc`` under, worked out from scratch."""
    root = inc.root_path
    signals = Counter(m.signal for m in inc.members.values())
    xid_nodes: dict[Signal, set[tuple[str, ...]]] = {}
    for m in inc.members.values():
        if m.signal[1] is FaultKind.XID:
            xid_nodes.setdefault(m.signal, set()).add(m.location.path[: RACK_DEPTH + 1])
    ranks = {g[0] for m in inc.members.values() if m.kind in SYMPTOM_KINDS for g in m.location.runs_on}
    return {
        "root": frozenset({root}) if root else frozenset(),
        "under": frozenset(root[:d] for d in range(1, len(root) + 1)),
        "workload": frozenset((w.kind, w.namespace, w.name) for w in inc.workloads),
        "gpu": frozenset(inc.placed),
        "holding": frozenset(signals),
        "holding_twice": frozenset(s for s, n in signals.items() if n >= 2),
        "rolling_up": frozenset((s, root[0]) for s, n in signals.items() if n >= 2 and rolls_up(root)),
        "xid_spread": frozenset(s for s, nodes in xid_nodes.items() if len(nodes) >= 2),
        "in_rack": frozenset(
            (m.signal, m.location.path[:RACK_DEPTH])
            for m in inc.members.values()
            if len(m.location.path) >= RACK_DEPTH and m.location.path[1] != UNKNOWN
        ),
        "ranks_in": frozenset(ranks),
        "rootless": frozenset() if root else frozenset({()}),
        "pathless": frozenset(
            m.labels.get("alertname", "") for m in inc.members.values() if not m.location.path
        ),
        "memberless": frozenset() if inc.members else frozenset({()}),
    }


def _check_filed(engine: IncidentEngine) -> None:
    for inc in engine._open.values():
        assert engine._open.filed(inc.id) == _expected(inc), inc.id
    now = engine.clock.now().timestamp()
    due = [
        i
        for i in engine._open.values()
        if any(m.flapping and m.settles_at <= now for m in i.members.values())
        or not any(m.firing or m.flapping for m in i.members.values())
    ]
    assert {i.id for i in engine._open.quiet_candidates(now)} == {i.id for i in due}


def _run(engine: IncidentEngine, clock: FakeClock, steps: list[tuple[str, object]], check: bool) -> Outcome:
    for kind, value in steps:
        if kind == "post":
            assert isinstance(value, list)
            engine.ingest(value)
        else:
            assert isinstance(value, float)
            clock.advance(value)
            engine.tick()
        if check:
            _check_filed(engine)
    return _outcome(engine)


def _inventory(kind: str) -> Inventory | None:
    """The scenario fleet, the same without racks (outages of a job's nodes join by the job), or none."""
    if kind == "none":
        return None
    fleet = sc.fleet_inventory()
    if kind == "racks":
        return fleet
    nodes = [replace(n, rack="") for n in fleet.node_list]
    return StaticInventory(nodes, list(fleet.workload_list), dict(fleet.spare))


@pytest.mark.parametrize("inventory_kind", ["racks", "no racks", "none"])
@pytest.mark.parametrize("seed", range(8))
def test_the_index_gives_the_incidents_of_the_full_scan_on_random_streams(
    tmp_path: Path, seed: int, inventory_kind: str
) -> None:
    steps = _stream(seed, placed=inventory_kind != "none")
    inventory = _inventory(inventory_kind)
    indexed, clock = _engine(tmp_path, inventory, full_scan=False)
    got = _run(indexed, clock, steps, check=True)
    scanned, clock = _engine(tmp_path, inventory, full_scan=True)
    assert got == _run(scanned, clock, steps, check=False)
    assert len(got) > 1  # the stream made incidents to tell apart


@pytest.mark.parametrize("seed", range(8))
def test_the_index_gives_the_incidents_of_the_full_scan_on_streams_of_flapping_alerts_without_a_place(
    tmp_path: Path, seed: int
) -> None:
    steps = _flappy_stream(seed)
    indexed, clock = _engine(tmp_path, None, full_scan=False)
    got = _run(indexed, clock, steps, check=True)
    scanned, clock = _engine(tmp_path, None, full_scan=True)
    assert got == _run(scanned, clock, steps, check=False)
    assert len(got) > 1
    kinds = {
        e.kind for row, _ in indexed.store.list_rows(include_merged=True) for e in _timeline(indexed, row.id)
    }
    # The stream made the tick work: quiet periods, resolutions, flaps (and their settling, in most seeds).
    assert {"flapping_started", "quiet", "resolved"} <= kinds, kinds


def _timeline(engine: IncidentEngine, incident_id: str) -> list[TimelineEvent]:
    return engine.store.get(incident_id).timeline


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


def _flapped(engine: IncidentEngine, clock: FakeClock, labels: list[dict[str, str]]) -> None:
    """Fire ``labels``, then resolve and fire them again until they flap (firing at the end)."""
    engine.ingest([Alert(one, starts_at=START) for one in labels])
    for change in range(AlertingConfig().flap_start_transitions):
        clock.advance(5)
        status = AlertStatus.RESOLVED if change % 2 == 0 else AlertStatus.FIRING
        engine.ingest([Alert(one, status=status, starts_at=START) for one in labels])


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


def _flapping_nodes_stream(nodes: int) -> list[tuple[str, object]]:
    """``nodes`` nodes going down and up every 20 s, each starting 5 s after the last and stopping after its
    own number of changes (6 to 10: firing at the end, or resolved); then ticks 5 s apart past every flap
    window and quiet period: they start flapping, settle and resolve at their own ticks."""
    steps: list[tuple[str, object]] = []
    labels = [{"alertname": "NodeDown", "cluster": "a", "node": f"n{k:02d}"} for k in range(nodes)]
    changes = [6 + k % 5 for k in range(nodes)]
    for second in range(0, max(5 * k + 20 * n for k, n in enumerate(changes)) + 5, 5):
        post = []
        for k, one in enumerate(labels):
            flip, at = divmod(second - 5 * k, 20)
            if at == 0 and 0 <= flip <= changes[k]:
                post.append(
                    Alert(one, starts_at=START) if flip % 2 == 0 else Alert(one, status=AlertStatus.RESOLVED)
                )
        steps += [("post", post), ("advance", 5.0)]
    config = AlertingConfig()
    steps += [("advance", 5.0)] * (int(config.flap_window_seconds + config.quiet_period_seconds) // 5 + 12)
    return steps


def test_incidents_of_alerts_that_all_flap_settle_and_resolve_as_in_the_full_scan(tmp_path: Path) -> None:
    """The tick looks at a flapping incident only once its flap may settle: the same incidents and the same
    timelines (each flap's start and stop, each quiet period, each resolution, at the same ticks) as when
    it looks at every open incident at every tick."""
    steps = _flapping_nodes_stream(12)
    indexed, clock = _engine(tmp_path, None, full_scan=False)
    got = _run(indexed, clock, steps, check=True)
    scanned, clock = _engine(tmp_path, None, full_scan=True)
    assert got == _run(scanned, clock, steps, check=False)
    kinds = Counter(kind for *_, timeline in got for _, kind, _ in timeline)
    assert kinds["flapping_started"] == kinds["flapping_stopped"] == 12, kinds
    assert kinds["resolved"] == 5, kinds  # those whose last change was a resolution (7 or 9 changes)


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
