"""One run of the restart fuzz (``restart_fuzz.py``): an engine and its outbox on one SQLite store.

``Run`` wires them as ``serve`` does, restarts them on the same store, and does a stream's steps
(``restart_stream.py``) against them on a fake clock: each step's kind is an action here (``_ACTIONS``).
Incident and silence ids are drawn from a generator per run, seeded alike (``drawn_ids``), so that both
runs of a seed name them alike while they do the same.
"""

from __future__ import annotations

import random
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from restart_stream import GPUS, Step
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
from alerting.silences import BUTTON_SILENCE_SECONDS, EXTENDABLE
from alerting.store_models import AlertRow, IncidentRow
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.errors import GpuwardenError
from gpuwarden.model import Alert, AlertStatus

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: its tests package
from tests.alerting.outbox_only import HoldingQuiet, Quiet  # only what the outbox stores is compared

TICK_SECONDS = 5.0  # ``serve``'s tick interval (``alerting.tick_interval_seconds``' default)


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
def drawn_ids() -> Iterator[None]:
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
