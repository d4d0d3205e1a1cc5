"""Which fault a raised alert is about: its own target's (a detection), a faulted training job's other ranks'
(sympathetic), or none (false), by the open fault windows of the evaluation's ground truth."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from anomaly.faultclasses import Injection
from anomaly.faultreport import detector_of
from gpuwarden.labelnumbers import label_number
from gpuwarden.model import Alert
from gpuwarden.sim import Fleet, TrainingJob
from gpuwarden.sim.faults import reaches


class FaultTruth:
    """Open fault windows by node and by training job, for attributing alerts."""

    def __init__(self, fleet: Fleet, grace: float) -> None:
        self.fleet = fleet
        self.grace = grace
        self.injections: list[Injection] = []

    def workload(self, node: str, gpu: int | None) -> str | None:
        """What ``node``/``gpu`` runs as the report names it (``TrainingJob/pretrain-01``), if anything."""
        if gpu is None:
            return None
        work = self.fleet.workload_on(node, gpu)
        return None if work is None else f"{type(work).__name__}/{getattr(work, 'name', id(work))}"

    def job(self, node: str, gpu: int | None) -> str | None:
        """The training job ``node``/``gpu`` runs, if any: its ranks wait for the slowest at every step, so a
        fault on one slows the others. An inference service's replicas do not (each draws its own load)."""
        work = None if gpu is None else self.fleet.workload_on(node, gpu)
        return self.workload(node, gpu) if isinstance(work, TrainingJob) else None

    def jobs(self, inj: Injection) -> set[str | None]:
        """Training jobs a fault touches: its GPU's, or those of every GPU of its node."""
        if inj.gpu is not None:
            return {self.job(inj.node, inj.gpu)}
        return {self.job(g.node, g.index) for g in self.fleet.gpu_refs() if g.node == inj.node}

    def open_at(self, at: float) -> list[Injection]:
        """Faults whose window (start .. repair + grace) holds ``at``."""
        return [
            inj
            for inj in self.injections
            if inj.started_at <= at <= (inj.repaired_at if inj.repaired_at is not None else at) + self.grace
        ]

    def on_target(self, node: str, gpu: int | None, at: float) -> bool:
        """Whether an open fault aims at ``node``/``gpu`` itself (its GPU, or its whole node)."""
        return any(aims_at(inj, node, gpu) and inj.shows_at(at) for inj in self.open_at(at))

    def shares_job(self, node: str, gpu: int | None, at: float) -> Injection | None:
        """The open fault aimed elsewhere, on the training job ``node``/``gpu`` runs, seen latest by ``at``
        (``Injection.seen_from``): an alert there is sympathetic (a stalled job slows every rank), not false.
        One begun on a node still down is not seen yet: the outage that stalled the job is what the rank
        feels (taken for it, the rank's alert was 'raised' before its fault could be seen, never late)."""
        job = self.job(node, gpu)
        if job is None:
            return None
        sharing = [
            inj
            for inj in self.open_at(at)
            if not aims_at(inj, node, gpu) and inj.seen_from() <= at and job in self.jobs(inj)
        ]
        return max(sharing, key=Injection.seen_from, default=None)

    def beside(self, node: str, gpu: int | None, at: float) -> list[Injection]:
        """Open faults on another GPU of ``node``: they do not reach an alert on ``gpu`` (``aims_at``), but a
        reader of a false alert raised beside one wants to know (the eval took such alerts as the fault's
        until fix/attrib)."""
        return [inj for inj in self.open_at(at) if inj.node == node and not aims_at(inj, node, gpu)]

    def hidden_on(self, node: str, gpu: int | None, at: float) -> list[Injection]:
        """Open faults that act on ``node``/``gpu`` but cannot show at ``at`` (``Injection.shows_at``: a
        straggler idling with its stalled job): an alert there is neither their detection nor excused by them,
        yet they are on its GPU, not beside it."""
        return [inj for inj in self.open_at(at) if aims_at(inj, node, gpu) and not inj.shows_at(at)]


def aims_at(inj: Injection, node: str, gpu: int | None) -> bool:
    """Whether ``inj`` acts on ``node``/``gpu``: the simulator's reach (its GPU, or every GPU of its node for
    a node-wide fault; never a neighbour GPU); an alert naming no GPU is on its node's every fault."""
    if gpu is None:
        return inj.node == node
    return reaches(inj.spec(), node, gpu)


def alert_target(alert: Alert) -> tuple[str | None, int | None]:
    """The node and GPU index an alert names (``Hostname``, ``gpu``); None where it names none."""
    node = alert.labels.get("Hostname")
    return node, label_number(alert.labels.get("gpu"))


@dataclass(slots=True)
class AlertTally:
    """Raised alerts that no fault's own target accounts for: false, or on a faulted job's other GPUs."""

    counted_from: float
    false_alerts: list[dict[str, str]] = field(default_factory=list)
    sympathetic: list[dict[str, Any]] = field(default_factory=list)
    beside_faults: dict[tuple[str, tuple[str, ...]], int] = field(default_factory=dict)  # see FaultEvalReport
    on_hidden_faults: int = 0


def attribute_alert(alert: Alert, now: float, truth: FaultTruth, tally: AlertTally) -> None:
    """Take ``alert``, raised at ``now``, as the detection of the faults on its target that show, else as
    sympathetic to a fault on its training job, else (once ``counted_from`` has passed) as false."""
    node, gpu = alert_target(alert)
    if node is not None:
        for inj in truth.injections:
            open_now = inj.started_at <= now and (inj.repaired_at is None or now <= inj.repaired_at)
            if (
                inj.node == node
                and inj.gpu == gpu
                and open_now
                and inj.detected_at is None
                and inj.shows_at(now)
            ):
                inj.detected_at = now
                inj.detected_by = f"{alert.labels.get('alertname', '')}:{alert.labels.get('model', '')}"
        if truth.on_target(node, gpu, now):
            return
        shared = truth.shares_job(node, gpu, now)
        if shared is not None:
            tally.sympathetic.append(sympathetic_row(alert, now, shared))
            return
    if now >= tally.counted_from:
        _count_false(alert, now, truth, tally)


def _count_false(alert: Alert, now: float, truth: FaultTruth, tally: AlertTally) -> None:
    """List a false alert with the open faults of its node: ``beside`` it, on other GPUs (``hung GPU 3,
    ...``), and ``on`` its own GPU but not shown yet (``FaultTruth.hidden_on``); count the first by detector
    and classes, kept as data beside the text."""
    node, gpu = alert_target(alert)
    row = {**dict(alert.labels), "at": f"{now:.0f}"}
    beside = [] if node is None else truth.beside(node, gpu, now)
    hidden = [] if node is None else truth.hidden_on(node, gpu, now)
    if beside:
        row["beside"] = ", ".join(f"{inj.fault_class.name} GPU {inj.gpu}" for inj in beside)
        key = (detector_of(alert.labels), tuple(sorted({inj.fault_class.name for inj in beside})))
        tally.beside_faults[key] = tally.beside_faults.get(key, 0) + 1
    if hidden:
        row["on"] = ", ".join(
            f"{inj.fault_class.name} GPU {inj.gpu} (not shown yet: its job stalled)" for inj in hidden
        )
        tally.on_hidden_faults += 1
    tally.false_alerts.append(row)


def sympathetic_row(alert: Alert, now: float, inj: Injection) -> dict[str, Any]:
    """A sympathetic alert as the report lists it: where, which detector, for which fault, how late."""
    return {
        "Hostname": alert.labels.get("Hostname", ""),
        "gpu": label_number(alert.labels.get("gpu")),
        "alertname": alert.labels.get("alertname", ""),
        "model": alert.labels.get("model", ""),
        "for": alert.labels.get("for", ""),
        "at": f"{now:.0f}",
        "fault": f"{inj.fault_class.name} {inj.node}" + ("" if inj.gpu is None else f" GPU {inj.gpu}"),
        "delay_s": round(now - inj.seen_from()),
    }
