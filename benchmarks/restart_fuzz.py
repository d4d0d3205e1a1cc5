"""Restart equivalence fuzz of the incident engine: one JSON line.

A restart of ``serve`` must change nothing users see. For each seed this draws a random stream of alerts
(XIDs 13/31/43/48/79/119, node and rack down, NVLink, thermal, double-bit ECC, exporter stale, a service's
error rate, stalled ranks of the training job; re-fires, flapping, slow cycles under the flap threshold and
the quiet period (whose repeats are told folded) or resolved longer than the quiet period (whose reopenings
after the first are held as cycling, and remind once the last page is ``remind_after_seconds`` old: 0, 100
or 300 s, drawn per seed), expiry by ``endsAt``) and of what people and time do
(acknowledge, note, silence an incident, extend its silence by an hour, resolve, mitigate, matcher
silences, inventory refreshes, time passing past the quiet, announce and reopen windows, and time brought to
a second either side of a silence's end or of the start of its last half hour, ticked there or not, with a
restart before the next step in half of those), and runs it on
``alerting.scenarios.fleet_inventory()`` twice, each on its own SQLite store: straight through, and with 1-3
restarts (a new engine and outbox on the same file, as ``serve`` starts them) before random steps. In about
one step in ten (drawn apart from the stream) the outbox is unreachable in both runs: that step's changes
stay stored untold, with what their transactions decided they are told with (``alerting.handoff.Telling``),
and are told at a later step, after a restart maybe, in a round with other changes. After every step it
compares everything users see: every incident column, timelines, alert rows, silences, changes not told
yet (all their stored columns, ``merging``, ``also`` and ``folded`` included), outbox messages (what each
says, pages and is told with, for a notifier that holds ``reassessed`` updates as a webhook does also when
each held one goes), and what the engine answers (open incidents, muted alerts, silenced
incidents). The first divergence of each seed is reported with its step and a diff.

Some fires are posted without ``endsAt`` (they end by the resolve timeout), some of those applied in a
journal batch with a later record, and some later re-fires of them carry an ``endsAt`` of their own, earlier
or later, with a restart before half of those (``_timeout_posts``, drawn apart from the stream too).

Some fires that follow a step which sets, extends or expires a silence, or brings time to a silence's end,
are accepted by the journal before that step acts (a second or three before a silence is set, extended or
expired; within the last tick before the end) and applied at their own step, alone or in a batch with a later
record, a restart in between in half of them (``_accepted_before``, drawn apart from the stream too): an
incident silence starts or ends between a record's accept and its apply. Half of those records carry, in
place of the fire's own alerts, an XID 79 on another GPU of the node of the incident the step names: a fault
beside the one its silence was set for. And some fires of several alerts find some of them stored already,
resolved (posted resolved just before, ``_stored_first``): they join their incident in another order than
the store holds them in, which is the order a restart reads members in.

Incident and silence ids are drawn from a random generator per run seeded alike, so both runs name them
alike while they do the same. ``--show SEED`` prints that seed's steps and full diff to stderr.
``--reversed-members`` is a stress, not a restart as ``serve`` does one: each restart reverses the order
of every open incident's members after the engine read them (in stored order, not the order they joined
in), so any divergence is something that depends on member order.

    PYTHONPATH=. .venv/bin/python benchmarks/restart_fuzz.py --seeds 0-299 --steps 60
"""

from __future__ import annotations

import argparse
import difflib
import itertools
import json
import logging
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from seed_list import SEEDS_HELP, seed_list
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

import alerting.joining
import alerting.silencing
from alerting import scenarios as sc
from alerting.db import make_engine
from alerting.engine import IncidentEngine
from alerting.inventory import Inventory
from alerting.matchers import parse_matcher
from alerting.migrate import upgrade
from alerting.outbox import Outbox
from alerting.outbox_tables import OutboxMessage
from alerting.silences import BUTTON_SILENCE_SECONDS, EXTENDABLE
from alerting.store_models import AlertRow, IncidentRow, SilenceRow, TimelineRow, UntoldChangeRow
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.errors import GpuwardenError
from gpuwarden.model import Alert, AlertStatus

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: its tests package
from tests.alerting.outbox_only import HoldingQuiet, Quiet  # only what the outbox stores is compared

Step = tuple[str, dict[str, Any]]
"""One action of a stream: its kind and arguments (plain values, so a stream prints as JSON)."""

RACKS = (1, 3, 7, 8)  # r01 holds the chat service, r07 and r08 the training job
NODES = (1, 2, 3)
GPUS = (0, 1, 2, 3)
XIDS = (13, 31, 43, 48, 79, 119)
TICK_SECONDS = 5.0  # ``serve``'s tick interval (``alerting.tick_interval_seconds``' default)


# --- the stream -------------------------------------------------------------------------------------


def _gpu_labels(rng: random.Random) -> dict[str, str]:
    node = sc.node_name(rng.choice(RACKS), rng.choice(NODES))
    gpu = rng.choice(GPUS)
    return {"cluster": sc.CLUSTER, "Hostname": node, "gpu": str(gpu), "UUID": sc.gpu_uuid(node, gpu)}


def _rank_of(rack: int, node: int, gpu: int) -> int:
    return ((rack - 7) * sc.NODES_PER_RACK + node - 1) * sc.GPUS_PER_NODE + gpu


def _fault(rng: random.Random) -> list[tuple[dict[str, str], dict[str, str]]]:
    """One fault as the alerts (labels, annotations) it raises."""
    kind = rng.choice(
        ("xid", "xid", "node", "rack", "nvlink", "thermal", "dbe", "stale", "service", "stall", "stall")
    )
    gpu = _gpu_labels(rng)
    if kind == "xid":
        return [({**gpu, "alertname": "GPUXid", "xid": str(rng.choice(XIDS))}, {})]
    if kind in ("nvlink", "thermal", "dbe", "stale"):
        name = {
            "nvlink": "GPUNVLinkErrors",
            "thermal": "GPUTemperatureHigh",
            "dbe": "GPUDoubleBitEccErrors",
            "stale": "DCGMExporterStale",
        }[kind]
        return [({**gpu, "alertname": name}, {})]
    if kind == "node":
        node = gpu["Hostname"]
        alerts: list[tuple[dict[str, str], dict[str, str]]] = [
            ({"cluster": sc.CLUSTER, "alertname": "NodeDown", "node": node}, {})
        ]
        lost = rng.sample(GPUS, rng.randint(0, 2))
        return alerts + [
            ({"cluster": sc.CLUSTER, "alertname": "GPULost", "Hostname": node, "gpu": str(g)}, {})
            for g in lost
        ]
    if kind == "rack":
        rack = rng.choice(RACKS)
        alerts = [({"cluster": sc.CLUSTER, "alertname": "RackPowerLoss", "rack": f"r{rack:02d}"}, {})]
        for n in rng.sample(NODES, rng.randint(1, 3)):
            alerts.append(
                ({"cluster": sc.CLUSTER, "alertname": "NodeDown", "node": sc.node_name(rack, n)}, {})
            )
        return alerts
    if kind == "service":
        labels = {"cluster": sc.CLUSTER, "alertname": "ChatHighErrorRate", "namespace": "serving"}
        ratio = rng.choice(("0.05", "0.3", "0.6"))
        return [({**labels, "service": "chat"}, {"error_ratio": ratio, "summary": "errors"})]
    ranks = {
        _rank_of(rng.choice((7, 8)), rng.choice(NODES), rng.choice(GPUS)) for _ in range(rng.randint(1, 4))
    }
    base = {"cluster": sc.CLUSTER, "alertname": "TrainingJobStalled", "slurm_job": "llm-70b"}
    return [({**base, "rank": str(r)}, {}) for r in sorted(ranks)]


def stream(seed: int, steps: int) -> tuple[dict[str, float], list[Step], list[int]]:
    """The seed's configuration, its steps, and the steps before which the second run restarts."""
    rng = random.Random(seed)
    config = {
        "announce_delay_seconds": rng.choice((0.0, 10.0, 30.0)),
        "quiet_period_seconds": rng.choice((60.0, 120.0)),
        "reopen_window_seconds": rng.choice((300.0, 86_400.0)),
        "flap_window_seconds": 300.0,
        "priority_settle_seconds": rng.choice((0.0, 120.0)),
    }
    # How old a held reopening's last page must be for it to remind: short enough that a stream's cycles
    # remind; drawn apart from the stream, so the steps are the ones they were without it.
    config["remind_after_seconds"] = random.Random(f"remind-after-{seed}").choice((0.0, 100.0, 300.0))
    fired: list[tuple[dict[str, str], dict[str, str]]] = []
    out: list[Step] = []
    for _ in range(steps):
        out.append(_step(rng, config, fired))
    restarts = set(rng.sample(range(1, steps), rng.randint(1, min(3, steps - 1)))) if steps > 1 else set()
    # A restart within one tick of a silence's end (or of its last half hour), in half of those steps: drawn
    # apart from the stream, so the steps are the ones they were without it.
    near = random.Random(f"near-silence-end-{seed}")
    restarts |= {
        k + 1 for k, (kind, _) in enumerate(out[:-1]) if kind == "to_silence" and near.random() < 0.5
    }
    restarts |= _timeout_posts(random.Random(f"timeout-posts-{seed}"), out)
    restarts |= _accepted_before(random.Random(f"accepted-before-{seed}"), out)
    _stored_first(random.Random(f"stored-first-{seed}"), out)
    return config, out, sorted(restarts)


_ACCEPTING = ("silence", "extend", "expire_silence", "to_silence")
"""Steps before whose action the journal may accept the next step's fire (``_accepted_before``)."""


def _accepted_before(rng: random.Random, out: list[Step]) -> set[int]:
    """Make some fires that follow a step of ``_ACCEPTING`` accepted by the journal before that step acts,
    drawn from ``rng`` (apart from the stream: its steps and their kinds stay the ones they were): the step
    accepts the record (``accept``: ``gap`` seconds before a silence is set, extended or expired; a
    ``to_silence`` within the last tick before its mark), and the fire applies it at its own time, alone or
    in a batch with a later record (``accepted``), an XID 79 on another GPU of the node of the incident the
    step names in half of them (``beside``). Returns the steps before which to restart: half of those fires
    (between the accept and the apply)."""
    restarts: set[int] = set()
    for k, ((kind, args), (after, then)) in enumerate(itertools.pairwise(out)):
        if kind not in _ACCEPTING or after != "fire" or "timeout" in then or rng.random() >= 0.8:
            continue
        args["accept"] = {"gap": rng.choice((1.0, 3.0)), "beside": rng.random() < 0.5}
        then["accepted"] = {"later": rng.random() < 0.5}
        if rng.random() < 0.5:
            restarts.add(k + 1)
    return restarts


def _stored_first(rng: random.Random, out: list[Step]) -> None:
    """Make some fires of several alerts find some of them, not the first, stored already (``stored_first``:
    posted resolved at the start of the step when the store does not hold them), drawn from ``rng`` (apart
    from the stream): they join in the order posted, and the store holds them in another."""
    for kind, args in out:
        if kind == "fire" and len(args["alerts"]) > 1 and "accepted" not in args and rng.random() < 0.4:
            later = range(1, len(args["alerts"]))
            args["stored_first"] = sorted(rng.sample(later, rng.randint(1, len(later))))


def _timeout_posts(rng: random.Random, out: list[Step]) -> set[int]:
    """Make some posts of ``out`` come as Alertmanager's API takes them without ``endsAt``, drawn from
    ``rng`` (apart from the stream: its steps and their kinds stay the ones they were): a fire without an
    end is posted without one in about half of them (``ingest.parse_postable_alerts`` ends it the resolve
    timeout after it was received, ``Alert.timeout``), half of those applied as the journal applies them, in
    a batch with a later record (the batch's time is the later one). In half of them, the next re-fire of
    one alert within 8 steps re-fires that alert instead, with an ``endsAt`` of its own: earlier than the
    timeout end, which stands (``spans.merged_ends``), or later, which a timeout post there next (the
    re-fire after, likewise) keeps, as a timeout. Returns the steps before which to restart: half of those
    explicit ends, so that the mark is read back from the store."""
    restarts: set[int] = set()
    follow: tuple[Any, str, int] | None = None  # (the alert, what its next post is, the step it was drawn)
    for k, (kind, args) in enumerate(out):
        if kind != "fire" or args["ends_in"] is not None:
            continue
        refire = len(args["alerts"]) == 1 and args["started"] == 0.0
        if follow is not None and refire and k - follow[2] <= 8 and rng.random() < 0.5:
            alert, then, _ = follow
            args["alerts"] = [alert]
            if then == "explicit":
                args["ends_in"] = rng.choice((30.0, 120.0, 900.0))  # resolve_timeout is 300 s
                if rng.random() < 0.5:
                    restarts.add(k)
                follow = (alert, "timeout", k) if args["ends_in"] > 300 else None
            else:
                args["timeout"] = "journal" if rng.random() < 0.5 else "api"
                follow = (alert, "explicit", k)
        elif rng.random() < 0.5:
            args["timeout"] = "journal" if rng.random() < 0.5 else "api"
            follow = (args["alerts"][0], "explicit", k)
    return restarts


def _step(
    rng: random.Random, config: dict[str, float], fired: list[tuple[dict[str, str], dict[str, str]]]
) -> Step:
    roll = rng.random()
    pick = rng.random()  # which incident, alert or silence an action names (of those there are then)
    if roll < 0.25 or not fired:
        alerts = _fault(rng)
        fired.extend(alerts)
        ttl = rng.choice((None, None, None, 60.0, 200.0))
        back = rng.choice((0.0, 0.0, 30.0, 90.0))
        return "fire", {"alerts": alerts, "ends_in": ttl, "started": back}
    if roll < 0.40:
        labels, annotations = fired[int(pick * len(fired))]
        if rng.random() < 0.3 and "error_ratio" in annotations:
            annotations = {**annotations, "error_ratio": rng.choice(("0.05", "0.3", "0.6"))}
        return "fire", {"alerts": [(labels, annotations)], "ends_in": None, "started": 0.0}
    if roll < 0.52:
        return "resolve", {"alerts": [fired[int(pick * len(fired))][0]]}
    if roll < 0.57:
        labels = fired[int(pick * len(fired))][0]
        if rng.random() < 0.5:
            # A slow cycle, too slow to flag as flapping: resolved for less than the quiet period, so its
            # quiet and firing again repeat (folded after the first: ``alerting.flapping.folded``), or for
            # longer, so it resolves and reopens each time (held as cycling after the first reopening:
            # ``alerting.flapping.repeats_reopening``). Which, from the pick's fraction: no new draw, so
            # the stream draws what it drew before.
            longer = (pick * len(fired)) % 1 >= 0.5
            off = config["quiet_period_seconds"] + (10 if longer else -10)
            return "cycle", {"labels": labels, "times": rng.randint(2, 4), "on": 100.0, "off": off}
        return "flap", {"labels": labels, "times": rng.randint(3, 7), "every": rng.choice((5.0, 20.0))}
    if roll < 0.61:
        return "to_silence", {
            "pick": pick,
            "mark": rng.choice(("end", "end", "half_hour")),
            "offset": rng.choice((-1.0, 0.0, 1.0)),
            "tick": rng.random() < 0.5,
        }
    if roll < 0.75:
        windows = (
            5.0,
            15.0,
            config["announce_delay_seconds"] + 1,
            config["quiet_period_seconds"] + 5,
            config["flap_window_seconds"] + 5,
            config["priority_settle_seconds"] + 5,
            config["reopen_window_seconds"] + 10,
        )
        weights = (6, 4, 3, 4, 2, 1, 1)
        return "wait", {"seconds": rng.choices(windows, weights)[0]}
    if roll < 0.90:
        action = rng.choice(("ack", "note", "silence", "extend", "resolve_incident", "mitigate", "approve"))
        return action, {"pick": pick, "seconds": rng.choice((60.0, 300.0, 900.0))}
    if roll < 0.96:
        if rng.random() < 0.3:
            return "expire_silence", {"pick": pick}
        labels = fired[int(pick * len(fired))][0]
        name = rng.choice(sorted(set(labels) - {"cluster"}))
        return "matcher_silence", {
            "matcher": f'{name}="{labels[name]}"',
            "seconds": rng.choice((60.0, 600.0)),
        }
    return "inventory", {"variant": rng.choice(("fleet", "spare", "kept", "gone"))}


def inventory(variant: str) -> Inventory:
    """The scenario fleet as a refresh may find it: as it is, with spare GPUs, with the training job kept
    as stopped by a failure, or with the job gone."""
    if variant == "spare":
        return sc.fleet_inventory(spare_gpus=64)
    return sc.fleet_inventory(job={"fleet": "running"}.get(variant, variant))


# --- one run ----------------------------------------------------------------------------------------


class _Ids:
    """``uuid`` as the engine's modules use it, drawing from the current run's generator."""

    rng = random.Random(0)

    def uuid4(self) -> uuid.UUID:
        return uuid.UUID(int=self.rng.getrandbits(128), version=4)


_IDS = _Ids()


@dataclass
class Run:
    """An engine and its outbox on one SQLite store, as ``serve`` wires them."""

    path: Path
    config: AlertingConfig
    clock: FakeClock = field(default_factory=FakeClock)
    ids: random.Random = field(default_factory=lambda: random.Random(7))
    inventory: Inventory = field(default_factory=sc.fleet_inventory)
    errors: list[str] = field(default_factory=list)  # what the last step refused, as users see it
    reversed_members: bool = False  # ``--reversed-members``: each restart reverses the members' order
    # A record the journal accepted and has not applied (its time, and the alerts it carries in place of
    # the fire's own, if any): kept across a restart, as the journal keeps it.
    accepted: tuple[datetime, list[tuple[dict[str, str], dict[str, str]]] | None] | None = None

    def __post_init__(self) -> None:
        upgrade(make_engine(str(self.path)))
        self.sql: Engine | None = None
        self.restart()

    def restart(self) -> None:
        """A new engine and outbox on the same store, as the next ``serve`` starts (its inventory read)."""
        if self.sql is not None:
            self.sql.dispose()
        self.sql = make_engine(str(self.path))
        with self.active():
            self.engine = IncidentEngine(self.sql, self.clock, self.config, self.inventory)
            if self.reversed_members:
                for inc in self.engine._open.values():
                    inc.members = dict(reversed(inc.members.items()))
                    inc.forget_facts()
            self.outbox = Outbox(self.sql, [Quiet(), HoldingQuiet()], self.clock)
            self.engine.subscribe(self.outbox)

    def active(self) -> _Active:
        return _Active(self)

    def do(self, step: Step, *, outbox_down: bool = False) -> None:
        """Run one step, with the outbox unreachable throughout when ``outbox_down`` (its changes are told at
        a later step); a refusal is kept as users see it (its type and message)."""
        self.errors = []
        if outbox_down:
            self.outbox.enqueue = _unreachable  # type: ignore[method-assign]
        with self.active():
            kind, args = step
            try:
                _ACTIONS[kind](self, args)
            except GpuwardenError as exc:
                self.errors.append(f"{type(exc).__name__}: {exc}")
            finally:
                self.outbox.__dict__.pop("enqueue", None)

    def now(self) -> datetime:
        return self.clock.now()

    def incident(self, pick: float) -> str | None:
        """The incident a step names: of those stored, sorted by id."""
        assert self.sql is not None
        with Session(self.sql) as session:
            ids = sorted(session.scalars(select(IncidentRow.id).where(IncidentRow.merged_into.is_(None))))
        return ids[int(pick * len(ids))] if ids else None


def _unreachable(change: object) -> int:
    raise OSError("the outbox's store is unreachable")


class _Active:
    """Incident and silence ids drawn from this run's generator while it runs."""

    def __init__(self, run: Run) -> None:
        self.run = run

    def __enter__(self) -> None:
        _IDS.rng = self.run.ids

    def __exit__(self, *exc: object) -> None:
        _IDS.rng = random.Random(0)


@contextmanager
def _drawn_ids() -> Iterator[None]:
    """The engine's modules draw incident and silence ids from ``_IDS`` meanwhile."""
    modules = (alerting.joining, alerting.silencing)
    kept = [m.uuid for m in modules]
    for module in modules:
        module.uuid = _IDS  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for module, original in zip(modules, kept, strict=True):
            module.uuid = original  # type: ignore[attr-defined]


def _fire(run: Run, args: dict[str, Any]) -> None:
    now = run.now()
    if "accepted" in args and run.accepted is not None:
        _apply_accepted(run, args)
        return
    for k in args.get("stored_first", ()):
        labels = args["alerts"][k][0]
        if run.engine.store.alert(Alert(labels).fingerprint) is None:
            run.engine.ingest([Alert(labels, status=AlertStatus.RESOLVED)])
    ends = None if args["ends_in"] is None else now + timedelta(seconds=args["ends_in"])
    starts = now - timedelta(seconds=args["started"])
    timeout = args.get("timeout")
    if timeout is None:
        run.engine.ingest(
            [
                Alert(labels, annotations=notes, starts_at=starts, ends_at=ends)
                for labels, notes in args["alerts"]
            ]
        )
        return
    # Posted without endsAt: as ``ingest.parse_postable_alerts`` stores it, ending the resolve timeout after
    # it was received; by the journal, received a second before a later record applied in the same batch.
    at = now - timedelta(seconds=1.0) if timeout == "journal" else now
    ends = at + timedelta(seconds=run.config.resolve_timeout_seconds)
    alerts = [
        Alert(labels, annotations=notes, starts_at=at - (now - starts), ends_at=ends, timeout=True)
        for labels, notes in args["alerts"]
    ]
    if timeout == "journal":
        run.engine.apply_accepted([(at, alerts), (now, [])], lambda _session: None)
    else:
        run.engine.ingest(alerts)


def _apply_accepted(run: Run, args: dict[str, Any]) -> None:
    """The fire the journal accepted at an earlier step (``_accept``), applied now as the applier applies it:
    at its accept time, alone or with a later record (the batch's time is then now)."""
    assert run.accepted is not None
    (at, beside), run.accepted = run.accepted, None
    back = timedelta(seconds=args["started"])
    ends = None if args["ends_in"] is None else at + timedelta(seconds=args["ends_in"])
    alerts = [
        Alert(labels, annotations=notes, starts_at=at - back, ends_at=ends)
        for labels, notes in (beside or args["alerts"])
    ]
    batches: list[tuple[datetime, list[Alert]]] = [(at, alerts)]
    if args["accepted"]["later"]:
        batches.append((run.now(), []))
    run.engine.apply_accepted(batches, lambda _session: None)


def _accept(run: Run, args: dict[str, Any], incident_id: str | None, gap: float | None = None) -> None:
    """When the step says so (``_accepted_before``): the journal accepts the next step's fire now, before
    this step's action, which comes ``gap`` seconds later (no tick between, as ``serve`` ticks every 5 s);
    in place of the fire's own alerts, an XID 79 beside ``incident_id``'s fault when the step says so."""
    accept = args.get("accept")
    if accept is None:
        return
    beside = _beside(run, incident_id) if accept["beside"] and incident_id is not None else None
    run.accepted = (run.now(), beside)
    run.clock.advance(accept["gap"] if gap is None else gap)


def _beside(run: Run, incident_id: str) -> list[tuple[dict[str, str], dict[str, str]]] | None:
    """An XID 79 on the next GPU of the node of the incident's first alert (by fingerprint) that names a
    node: a fault beside one rooted at that GPU or a GPU of that node; None when none of its alerts does."""
    assert run.sql is not None
    with Session(run.sql) as session:
        rows = session.scalars(
            select(AlertRow).where(AlertRow.incident_id == incident_id).order_by(AlertRow.fingerprint)
        ).all()
    for row in rows:
        node = row.labels.get("Hostname") or row.labels.get("node")
        if node:
            gpu = (int(row.labels.get("gpu", "0")) + 1) % len(GPUS)
            labels = {
                "cluster": sc.CLUSTER,
                "Hostname": node,
                "gpu": str(gpu),
                "UUID": sc.gpu_uuid(node, gpu),
            }
            return [({**labels, "alertname": "GPUXid", "xid": "79"}, {})]
    return None


def _resolve(run: Run, args: dict[str, Any]) -> None:
    run.engine.ingest([Alert(labels, status=AlertStatus.RESOLVED) for labels in args["alerts"]])


def _flap(run: Run, args: dict[str, Any]) -> None:
    for k in range(args["times"]):
        status = AlertStatus.RESOLVED if k % 2 == 0 else AlertStatus.FIRING
        run.engine.ingest([Alert(args["labels"], status=status)])
        run.clock.advance(args["every"])
        run.engine.tick()


def _cycle(run: Run, args: dict[str, Any]) -> None:
    for _ in range(args["times"]):
        for status, seconds in ((AlertStatus.FIRING, args["on"]), (AlertStatus.RESOLVED, args["off"])):
            run.engine.ingest([Alert(args["labels"], status=status)])
            _wait(run, {"seconds": seconds})


def _wait(run: Run, args: dict[str, Any]) -> None:
    left = args["seconds"]
    while left > 0:  # serve ticks every few seconds; a long wait ticks a few times along the way
        step = min(left, max(5.0, args["seconds"] / 4))
        run.clock.advance(step)
        left -= step
        run.engine.tick()


def _on_incident(act: Callable[[Run, str, dict[str, Any]], object]) -> Callable[[Run, dict[str, Any]], None]:
    def run_it(run: Run, args: dict[str, Any]) -> None:
        incident_id = run.incident(args["pick"])
        _accept(run, args, incident_id)
        if incident_id is not None:
            act(run, incident_id, args)

    return run_it


def _matcher_silence(run: Run, args: dict[str, Any]) -> None:
    now = run.now()
    matcher = parse_matcher(args["matcher"])
    run.engine.add_silence([matcher], now, now + timedelta(seconds=args["seconds"]), "dave")


def _expire_silence(run: Run, args: dict[str, Any]) -> None:
    silences = sorted(run.engine.silences(), key=lambda s: s.id)
    chosen = silences[int(args["pick"] * len(silences))] if silences else None
    _accept(run, args, chosen.incident_id if chosen is not None else None)
    if chosen is not None:
        run.engine.expire_silence(chosen.id)


def _to_silence(run: Run, args: dict[str, Any]) -> None:
    """Time brought to ``offset`` seconds from a running silence's end, or from the start of its last half
    hour (``alerting.silences.EXTENDABLE``): ticked along the way as a wait is, the last tick interval
    (``serve`` ticks every 5 s) without one, then ticked there when ``tick``. With ``accept``, an incident's
    silence where one runs, the next step's record accepted at the start of that last interval. The restart,
    when the stream draws one, comes before the next step: within one tick of the mark."""
    now = run.now()
    running = sorted((s for s in run.engine.silences() if s.ends_at > now), key=lambda s: s.id)
    if "accept" in args:  # an incident's silence where there is one: its end is what the record straddles
        running = [s for s in running if s.incident_id is not None] or running
    if not running:
        _accept(run, args, None, 0.0)
        return
    silence = running[int(args["pick"] * len(running))]
    mark = silence.ends_at - (EXTENDABLE if args["mark"] == "half_hour" else timedelta(0))
    seconds = (mark + timedelta(seconds=args["offset"]) - now).total_seconds()
    if seconds > TICK_SECONDS:
        _wait(run, {"seconds": seconds - TICK_SECONDS})
        seconds = TICK_SECONDS
    _accept(run, args, silence.incident_id, 0.0)  # within the last tick before the mark
    if seconds > 0:
        run.clock.advance(seconds)
    if args["tick"]:
        run.engine.tick()


def _refresh(run: Run, args: dict[str, Any]) -> None:
    run.inventory = inventory(args["variant"])
    run.engine.replace_inventory(run.inventory)


_ACTIONS: dict[str, Callable[[Run, dict[str, Any]], None]] = {
    "fire": _fire,
    "resolve": _resolve,
    "flap": _flap,
    "cycle": _cycle,
    "wait": _wait,
    "ack": _on_incident(lambda r, i, _: r.engine.acknowledge(i, "alice")),
    "note": _on_incident(lambda r, i, _: r.engine.add_note(i, "bob", "looking")),
    "silence": _on_incident(lambda r, i, a: r.engine.silence_incident(i, a["seconds"], "carol")),
    # The Slack button's hour, by another person: a repeat, or a new silence in the last half hour.
    "extend": _on_incident(
        lambda r, i, _: r.engine.silence_incident(i, BUTTON_SILENCE_SECONDS, "slack:erin")
    ),
    "resolve_incident": _on_incident(lambda r, i, _: r.engine.resolve(i, "alice")),
    "mitigate": _on_incident(lambda r, i, _: r.engine.mark_mitigating(i, "runbook", "drain")),
    "approve": _on_incident(lambda r, i, _: r.engine.approve_remediation(i, "bob")),
    "matcher_silence": _matcher_silence,
    "expire_silence": _expire_silence,
    "to_silence": _to_silence,
    "inventory": _refresh,
}


# --- what users see -----------------------------------------------------------------------------------


def _columns(row: object, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    table = row.__table__  # type: ignore[attr-defined]
    return {c.name: _plain(getattr(row, c.key)) for c in table.columns if c.name not in skip}


def _plain(value: object) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


_UNSEEN = ("reassessment",)
"""Incident columns users never see, compared through what they decide: what refreshes left pending (the
first refresh after a start assesses anew what live assessed before, so it may note a stopped job sooner,
which changes nothing until that job leaves the inventory, and then the priority shows it)."""


def seen(run: Run) -> dict[str, Any]:
    """Everything users see of a run, as plain values (timeline rows by their place, not their seq)."""
    assert run.sql is not None
    with Session(run.sql) as session:
        events = session.scalars(select(TimelineRow).order_by(TimelineRow.seq)).all()
        place = {}
        timelines: dict[str, list[dict[str, Any]]] = {}
        for e in events:
            line = timelines.setdefault(e.incident_id, [])
            place[e.seq] = (e.incident_id, len(line))
            line.append(_columns(e, ("seq", "incident_id")))
        untold = [
            {**_columns(u, ("id", "event_seq")), "event": place.get(u.event_seq or -1)}
            for u in session.scalars(select(UntoldChangeRow).order_by(UntoldChangeRow.id))
        ]
        outbox = [
            {**_columns(m, ("id", "payload")), "payload": json.loads(m.payload)}
            for m in session.scalars(select(OutboxMessage).order_by(OutboxMessage.id))
        ]
        seen = {
            "incidents": [
                _columns(r, _UNSEEN) for r in session.scalars(select(IncidentRow).order_by(IncidentRow.id))
            ],
            "timelines": timelines,
            "alerts": [_columns(r) for r in session.scalars(select(AlertRow).order_by(AlertRow.fingerprint))],
            "silences": [_columns(r) for r in session.scalars(select(SilenceRow).order_by(SilenceRow.id))],
            "untold": untold,
            "outbox": outbox,
        }
    engine = run.engine
    seen["engine"] = {
        "open": sorted(engine.open_incident_ids()),
        "muted": engine.muted_count(),
        "silenced_until": {k: v.isoformat() for k, v in sorted(engine.silenced_until().items())},
        "silences": sorted(s.id for s in engine.silences()),
        "refused": run.errors,
    }
    return seen


def diff(a: dict[str, Any], b: dict[str, Any], lines: int = 60) -> list[str]:
    """The unified diff of two views (straight, restarted), cut to ``lines``."""
    left = json.dumps(a, indent=1, sort_keys=True, default=str).splitlines()
    right = json.dumps(b, indent=1, sort_keys=True, default=str).splitlines()
    out = list(difflib.unified_diff(left, right, "straight", "restarted", n=4, lineterm=""))
    return out[:lines] + ([f"... {len(out) - lines} more lines"] if len(out) > lines else [])


# --- a seed -------------------------------------------------------------------------------------------


@dataclass
class Divergence:
    """The first step after which the restarted run showed something else."""

    seed: int
    step: int
    action: Step
    restarts: list[int]
    diff: list[str]


def run_seed(
    seed: int, steps: int, work: Path, *, show: bool = False, reversed_members: bool = False
) -> Divergence | None:
    """Both runs of one seed, compared after every step; the first divergence, if any."""
    config, actions, restarts = stream(seed, steps)
    down = random.Random(f"outbox-down-{seed}")  # apart from the stream: the same steps as without it
    outages = {k for k in range(steps) if down.random() < 0.1}
    alerting_config = AlertingConfig(**config)
    straight = Run(work / f"{seed}-straight.db", alerting_config)
    restarted = Run(work / f"{seed}-restarted.db", alerting_config, reversed_members=reversed_members)
    if show:
        print(
            json.dumps(
                {"seed": seed, "config": config, "restarts": restarts, "outbox_down": sorted(outages)}
            ),
            file=sys.stderr,
        )
    try:
        for k, action in enumerate(actions):
            if show:
                print(f"{k:3d} {json.dumps(action)}", file=sys.stderr)
            if k in restarts:
                restarted.restart()
            straight.do(action, outbox_down=k in outages)
            restarted.do(action, outbox_down=k in outages)
            a, b = seen(straight), seen(restarted)
            if a != b:
                found = Divergence(seed, k, action, restarts, diff(a, b, 400 if show else 60))
                if show:
                    print("\n".join(found.diff), file=sys.stderr)
                return found
        return None
    finally:
        for run in (straight, restarted):
            if run.sql is not None:
                run.sql.dispose()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=seed_list, default="0-9", help=f"{SEEDS_HELP} (default %(default)s)")
    parser.add_argument("--steps", type=int, default=60, help="steps per stream (default 60)")
    parser.add_argument("--show", type=int, help="print this seed's steps and full diff to stderr")
    parser.add_argument(
        "--reversed-members",
        action="store_true",
        help="a stress: each restart reverses every open incident's members (what depends on their order)",
    )
    args = parser.parse_args(argv)
    started = time.perf_counter()
    chosen = [args.show] if args.show is not None else args.seeds
    found: list[Divergence] = []
    # The outages' "telling listeners ... failed" are expected here. Given back after: a test runs this in
    # its worker, whose later tests read their logs (they found none while it stayed disabled).
    before = logging.root.manager.disable
    logging.disable(logging.ERROR)
    try:
        with tempfile.TemporaryDirectory() as work, _drawn_ids():
            for seed in chosen:
                divergence = run_seed(
                    seed,
                    args.steps,
                    Path(work),
                    show=args.show is not None,
                    reversed_members=args.reversed_members,
                )
                if divergence is not None:
                    found.append(divergence)
    finally:
        logging.disable(before)
    result = {
        "seeds": len(chosen),
        "steps": args.steps,
        **({"reversed_members": True} if args.reversed_members else {}),
        "divergent": [d.seed for d in found],
        "first": {
            str(d.seed): {"step": d.step, "action": d.action, "restarts": d.restarts, "diff": d.diff}
            for d in found
        },
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
