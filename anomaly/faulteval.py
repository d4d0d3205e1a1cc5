"""GPU-fault evaluation on the simulated fleet: inject every fault class many times, score the detection.

The harness drives a ``FakeClock``: every ``interval`` seconds it runs one ``AnomalyService.infer`` (whose
source reads the fleet, e.g. the exporter's collectors through ``CollectorSource``; this module never
imports the exporter), and every ``fit_every`` a ``fit``. Faults hit a random GPU at a random time, stay for
``hold`` seconds, then the GPU is repaired. The fleet's ``fault_log`` is the ground truth.

* A fault is detected when an alert on its GPU (same ``Hostname`` and ``gpu`` labels) is raised between its
  start and ``deadline`` seconds later: one collection interval for hard faults, 5 minutes for soft ones.
* An alert is false when no fault window (start .. repair + ``grace``) is open on a fault that reaches its GPU
  (``gpuwarden.sim.faults.reaches``: its own GPU, or every GPU of its node for a node-wide fault; an alert
  naming no GPU, any fault on its node) or on a GPU that runs its training job (a stalled job slows every
  rank: those alerts are sympathetic, not false; an inference service's replicas each draw their own load,
  so an alert on another replica is false). A fault on another GPU of its node does not reach it (the
  simulator shares no cooling or NVLink state between GPUs): such a false alert names the faults open beside
  it (``beside``), counted apart (``false_alerts_beside_a_fault``).
  One on a GPU of a faulted job other than the fault's target is counted apart (``sympathetic``: detector
  and delay from when the newest such fault seen by then could be seen: its start, or its node's return,
  below); one raised more than the soft deadline (5 minutes) after that is listed (``late_sympathetic``):
  not false by the targets' definition, but noise an operator sees long after the fault showed (a rank
  alert 37 minutes into a runaway).
* Long outages (``node_down_long``, 20-30 minutes, past ``anomaly.forget_after_seconds``) come from their
  own random stream, on a node no other fault touches meanwhile, so the other classes' draws per seed stay
  as they were; their results can still move wherever an outage reaches (a job it stalls, the node's GPUs
  relearnt after it, its GPUs missing from their peers' while it lasts). Two in three bring a thermal
  runaway or a straggler begun on one of the node's GPUs while it is down (``*_while_down``), held past its
  return and timed from it (``hidden_until``), in its recall, latency and list of misses.
* An alert on a fault's target (raised after its start) that resolves before the fault is repaired is a
  premature resolution: an operator reads "resolved" while the GPU still has the fault. Counted per class
  (``resolved_while_active``, injections with at least one; ``resolved_early_by``, per detector), and
  ``quiet_while_active`` counts those whose target then had no alert firing at all (its incident would
  resolve). The other side: an alert on its target raised after its start (at most ``grace`` after its
  repair) and still firing ``stuck_seconds`` after its repair is stuck (``stuck_after_repair``), unless a
  later fault hit the same target (3 hours: longer than the fleet detector's hold, 240 ticks).
* A fault drawn for a target where the same fault is still active (a second cooling failure on a GPU whose
  failed cooler is not repaired yet) is not injected: the fleet would run the same effect on, there is
  nothing new to detect. Counted per class (``not_injected_already_active``), not in recall.
* A fault that began while alerts raised before it were still firing on its target (an earlier fault's,
  minutes after its repair) can only be detected by a new alert: the open ones hide it. Counted per class
  (``began_inside_open_alerts``); a miss lists those alerts (``open_alerts_at_start``) and the target's
  previous fault (``previous``).
* An alert the service re-raised (``anomaly.reescalate_alerts``: resolved and raised anew while firing) is
  counted (``reraised``) and told apart: for a new fault when a fault on its target began after the activity
  it ended had started (``reraised_for_new_fault``), else mid-fault (``reraised_mid_fault``, listed): the
  same fault told twice, which serve calls cycling.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from anomaly.service import AnomalyService
from gpuwarden.clock import FakeClock
from gpuwarden.labelnumbers import label_number
from gpuwarden.model import Alert
from gpuwarden.sim import Fleet, TrainingJob, parse_fault
from gpuwarden.sim.faults import FaultSpec, reaches


@dataclass(frozen=True, slots=True)
class FaultClass:
    """A kind of fault to inject; ``payload`` is ``parse_fault`` input without node and GPU."""

    name: str
    hard: bool
    payload: Mapping[str, Any]
    needs_workload: bool = False  # a slower idle GPU shows nothing: inject only where work runs
    node_level: bool = False  # aimed at a whole node; detected by an alert naming the node without a GPU
    deadline_seconds: float | None = None  # None: one interval for hard faults, 5 minutes for soft ones
    hold_seconds: float | None = (
        None  # how long it stays before the repair; None: the plan's ``hold_seconds``
    )

    def deadline(self, interval: float) -> float:
        """Seconds after the start within which a detection counts."""
        if self.deadline_seconds is not None:
            return self.deadline_seconds
        return interval if self.hard else SOFT_DEADLINE_SECONDS


FAULT_CLASSES: tuple[FaultClass, ...] = (
    FaultClass("xid_79_fell_off_bus", True, {"kind": "xid", "xid": 79}),
    FaultClass("xid_48_double_bit_ecc", True, {"kind": "xid", "xid": 48}),
    FaultClass("gpu_lost", True, {"kind": "gpu_lost"}),
    FaultClass("dbe_contained_xid_94", True, {"kind": "xid", "xid": 94}),
    FaultClass("hw_thermal_slowdown", False, {"kind": "hw_thermal_slowdown"}),
    FaultClass("power_brake", False, {"kind": "power_brake"}),
    # A failed cooler stays failed until someone repairs it: an hour, long enough for a detector whose band
    # learns the heat to let its alert go (the thermal detector's did after ~40 minutes at 30 s ticks).
    FaultClass("thermal_runaway", False, {"kind": "thermal_runaway"}, hold_seconds=3600.0),
    FaultClass("straggler", False, {"kind": "straggler"}, needs_workload=True),
    FaultClass("ecc_sbe_storm", False, {"kind": "ecc_sbe_storm"}),
    FaultClass("nvlink_crc_burst", False, {"kind": "nvlink_crc_burst", "link": 0}),
    FaultClass("nvlink_down", False, {"kind": "nvlink_down", "link": 0}),
    FaultClass("memory_leak", False, {"kind": "memory_leak"}),
    FaultClass("hung", False, {"kind": "hung"}),
    # The collector of a down node stops producing samples; the presence detector's bound (90 s by default)
    # plus up to two collection intervals.
    FaultClass("node_down", False, {"kind": "node_down"}, node_level=True, deadline_seconds=150.0),
)
SOFT_DEADLINE_SECONDS = 300.0
# A node down longer than ``anomaly.forget_after_seconds`` (900 s): the service forgets its series and takes
# them up again when it is back. Drawn from their own random stream (``_long_outages``), so the classes
# above keep their seeds' draws. A GPU fault begun while the node is down is held past its return and timed
# from it (``Injection.hidden_until``): only then can anything see it.
LONG_OUTAGE = FaultClass(
    "node_down_long", False, {"kind": "node_down"}, node_level=True, deadline_seconds=150.0
)
LONG_OUTAGE_SECONDS = (1200.0, 1800.0)
WHILE_DOWN_CLASSES: tuple[FaultClass, ...] = (
    FaultClass("thermal_runaway_while_down", False, {"kind": "thermal_runaway"}, hold_seconds=3600.0),
    FaultClass(
        "straggler_while_down", False, {"kind": "straggler"}, needs_workload=True, hold_seconds=2400.0
    ),
)
LONG_OUTAGE_CLASSES: tuple[FaultClass, ...] = (LONG_OUTAGE, *WHILE_DOWN_CLASSES)


@dataclass(slots=True)
class Injection:
    """One injected fault and what the detector made of it."""

    fault_class: FaultClass
    node: str
    gpu: int | None
    started_at: float
    fault_id: str = ""
    repaired_at: float | None = None
    detected_at: float | None = None
    detected_by: str = ""
    resolved_early_by: list[str] = field(default_factory=list)  # ``alertname:model`` resolved while active
    quiet: bool = False  # its target had no alert firing left while it was still active
    stuck: bool | None = None  # an alert still firing ``stuck_seconds`` after the repair; None: not checked
    open_at_start: tuple[str, ...] = ()  # ``detector:query`` of the alerts firing on its target at its start
    hold_seconds: float | None = None  # drawn for this one (a long outage); None: its class's or the plan's
    hidden_until: float | None = None  # begun on a node that was down: timed from its return
    stalled_until: float | None = None  # its job stalled by another fault at the last tick: timed from after

    def spec(self) -> FaultSpec:
        """The fault as the fleet is given it."""
        payload = {**self.fault_class.payload, "node": self.node}
        if self.gpu is not None:
            payload["gpu"] = self.gpu
        return parse_fault(payload)

    def seen_from(self) -> float:
        """When it could first be seen: its start; its node's return for one begun while it was down; for a
        slowdown begun while its training job was stalled, the last tick it was (``_note_stalled``)."""
        return max(self.started_at, self.hidden_until or 0.0, self.stalled_until or 0.0)

    def shows_at(self, at: float) -> bool:
        """Whether an alert on its target at ``at`` can be about it: not while another fault stalls its job
        (``stalled_until``): every rank idles then, and an alert there is that fault's, sympathetic."""
        return self.stalled_until is None or at > self.stalled_until

    def latency(self) -> float | None:
        """Seconds from when it could first be seen to its detection."""
        return None if self.detected_at is None else max(0.0, self.detected_at - self.seen_from())

    def held_from(self) -> float:
        """When its hold starts: its start; for a slowdown begun while its training job was stalled, the last
        tick it was (``stalled_until``). Held from its start, a straggler begun 557 s before the end of
        another node's outage that stalled its job was repaired some 40 s after the job ran again (seed
        1200): no detector had the 5 minutes it is scored against. One begun while its own node is down has
        a hold that outlasts the outage (``WHILE_DOWN_CLASSES``)."""
        return max(self.started_at, self.stalled_until or 0.0)

    def hold(self, default: float) -> float:
        """Seconds it stays before the repair, from ``held_from``."""
        held = self.hold_seconds if self.hold_seconds is not None else self.fault_class.hold_seconds
        return default if held is None else held


@dataclass(slots=True)
class ClassResult:
    """Recall and latency of one fault class."""

    name: str
    hard: bool
    injected: int = 0
    detected: int = 0
    within_deadline: int = 0
    latencies: list[float] = field(default_factory=list)
    detected_by: dict[str, int] = field(default_factory=dict)
    resolved_while_active: int = 0  # injections with an alert on their target resolved before the repair
    resolved_early_by: dict[str, int] = field(default_factory=dict)
    quiet_while_active: int = 0  # ... of which the target then had no alert firing (its incident resolves)
    stuck_after_repair: int = 0  # injections with an alert on their target firing ``stuck_seconds`` after it
    began_inside_open_alerts: int = 0  # injections whose target had alerts firing at their start
    not_injected_already_active: int = 0  # drawn where the same fault was still active: not injected
    job_stalled_at_start: int = 0  # slowdowns begun while another fault stalled their job: timed from after

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        lat = sorted(self.latencies)
        return {
            "hard": self.hard,
            "injected": self.injected,
            "recall_within_deadline": round(self.within_deadline / self.injected, 4)
            if self.injected
            else None,
            "recall_any_time_in_window": round(self.detected / self.injected, 4) if self.injected else None,
            "latency_p50_s": lat[len(lat) // 2] if lat else None,
            "latency_p90_s": lat[min(len(lat) - 1, (9 * len(lat)) // 10)] if lat else None,
            "latency_max_s": lat[-1] if lat else None,
            "detected_by": dict(sorted(self.detected_by.items(), key=lambda kv: -kv[1])),
            "resolved_while_active": self.resolved_while_active,
            "resolved_early_by": dict(sorted(self.resolved_early_by.items(), key=lambda kv: -kv[1])),
            "quiet_while_active": self.quiet_while_active,
            "stuck_after_repair": self.stuck_after_repair,
            "began_inside_open_alerts": self.began_inside_open_alerts,
            "not_injected_already_active": self.not_injected_already_active,
            "job_stalled_at_start": self.job_stalled_at_start,
        }


@dataclass(slots=True)
class FaultEvalReport:
    """Per-class results and the false-alert rate."""

    classes: dict[str, ClassResult]
    gpu_days: float
    false_alerts: int
    false_alert_examples: list[dict[str, str]]
    interval_seconds: float
    missed: list[dict[str, Any]] = field(default_factory=list)
    reraised: list[dict[str, Any]] = field(default_factory=list)  # ``new_fault``: the class, or None
    sympathetic: list[dict[str, Any]] = field(default_factory=list)  # alerts on a faulted job's other GPUs

    @property
    def false_alerts_per_1000_gpu_days(self) -> float:
        """False alerts normalised to 1,000 GPU-days of observation."""
        return 1000.0 * self.false_alerts / self.gpu_days if self.gpu_days else 0.0

    def false_alerts_by_detector(self) -> dict[str, int]:
        """False alerts counted by ``alertname:model`` (which detector raised them)."""
        out: dict[str, int] = {}
        for a in self.false_alert_examples:
            key = _detector(a)
            out[key] = out.get(key, 0) + 1
        return out

    def false_alerts_by_gpu(self) -> dict[str, int]:
        """False alerts counted by ``seed/Hostname/gpu``, most first (a lemon GPU shows as one big count)."""
        out: dict[str, int] = {}
        for a in self.false_alert_examples:
            key = f"{a.get('seed', '')}/{a.get('Hostname', '')}/{a.get('gpu', '')}"
            out[key] = out.get(key, 0) + 1
        return dict(sorted(out.items(), key=lambda kv: -kv[1])[:20])

    def false_alerts_beside_faults(self) -> dict[str, int]:
        """False alerts raised while a fault was open on another GPU of their node, by ``alertname:model:for``
        and the classes of those faults: the eval took them as the fault's until fix/attrib, though no fault
        of the simulator reaches a neighbour GPU."""
        out: dict[str, int] = {}
        for a in self.false_alert_examples:
            if a.get("beside"):
                classes = sorted({f.split(" GPU ")[0] for f in a["beside"].split(", ")})
                key = f"{_detector(a)} beside {', '.join(classes)}"
                out[key] = out.get(key, 0) + 1
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def sympathetic_by_detector(self) -> dict[str, dict[str, float]]:
        """Alerts on a faulted job's other GPUs by ``alertname:model:for``: how many, how many later than the
        soft deadline after the fault could be seen (``Injection.seen_from``), and the longest delay."""
        out: dict[str, dict[str, float]] = {}
        for a in self.sympathetic:
            key = f"{a['alertname']}:{a['model']}:{a['for']}"
            row = out.setdefault(key, {"alerts": 0, "late": 0, "max_delay_s": 0.0})
            row["alerts"] += 1
            row["late"] += a["delay_s"] > SOFT_DEADLINE_SECONDS
            row["max_delay_s"] = max(row["max_delay_s"], a["delay_s"])
        return dict(sorted(out.items(), key=lambda kv: -kv[1]["alerts"]))

    def late_sympathetic(self) -> list[dict[str, Any]]:
        """Sympathetic alerts raised later than the soft deadline after their fault could be seen: not false
        alerts by the targets' definition, but noise an operator sees long after the fault showed."""
        return [a for a in self.sympathetic if a["delay_s"] > SOFT_DEADLINE_SECONDS]

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "interval_seconds": self.interval_seconds,
            "gpu_days": round(self.gpu_days, 3),
            "false_alerts": self.false_alerts,
            "false_alerts_per_1000_gpu_days": round(self.false_alerts_per_1000_gpu_days, 3),
            "false_alerts_by_detector": self.false_alerts_by_detector(),
            "false_alerts_by_gpu": self.false_alerts_by_gpu(),
            "false_alerts_beside_a_fault": sum(bool(a.get("beside")) for a in self.false_alert_examples),
            "false_alerts_beside_faults": self.false_alerts_beside_faults(),
            "false_alert_examples": self.false_alert_examples[:10],
            "missed": self.missed[:20],
            "reraised": len(self.reraised),
            "reraised_for_new_fault": sum(r["new_fault"] is not None for r in self.reraised),
            "reraised_mid_fault": [r for r in self.reraised if r["new_fault"] is None][:10],
            "sympathetic_alerts": len(self.sympathetic),
            "sympathetic_by_detector": self.sympathetic_by_detector(),
            "late_sympathetic": len(self.late_sympathetic()),
            "late_sympathetic_examples": self.late_sympathetic()[:20],
            "classes": {name: c.to_json() for name, c in self.classes.items()},
        }


def _detector(alert: Mapping[str, Any]) -> str:
    """``alertname:model:for`` of an alert as the report lists it: which detector raised it."""
    return f"{alert.get('alertname', '')}:{alert.get('model', '')}:{alert.get('for', '')}"


@dataclass(slots=True)
class EvalPlan:
    """When and where to inject, and how long each fault stays."""

    duration_seconds: float
    interval_seconds: float = 30.0
    spacing_seconds: float = 1200.0
    hold_seconds: float = 600.0
    grace_seconds: float = 900.0
    stuck_seconds: float = 3 * 3600.0
    warmup_seconds: float = 3600.0
    seed: int = 0
    classes: tuple[FaultClass, ...] = FAULT_CLASSES
    long_outages: bool = True  # add ``LONG_OUTAGE_CLASSES``, drawn apart from ``classes``

    def all_classes(self) -> tuple[FaultClass, ...]:
        """The classes it scores."""
        return (*self.classes, *LONG_OUTAGE_CLASSES) if self.long_outages else self.classes


def _schedule(plan: EvalPlan, fleet: Fleet, start: float) -> list[Injection]:
    """Every injection of the plan in start order: ``classes`` drawn as ever, then the long outages."""
    out = _draw_classes(plan, fleet, start)
    if plan.long_outages:
        out = sorted([*out, *_long_outages(plan, fleet, start, out)], key=lambda inj: inj.started_at)
    return out


def _draw_classes(plan: EvalPlan, fleet: Fleet, start: float) -> list[Injection]:
    rng = random.Random(plan.seed)
    gpus = [(g.node, g.index) for g in fleet.gpu_refs()]
    busy = [(n, i) for n, i in gpus if fleet.workload_on(n, i) is not None]
    out: list[Injection] = []
    order: list[FaultClass] = []
    t = start + plan.warmup_seconds
    end = start + plan.duration_seconds - plan.hold_seconds - plan.grace_seconds
    while t < end:
        if not order:
            order = list(plan.classes)
            rng.shuffle(order)
        fault_class = order.pop()
        candidates = busy if fault_class.needs_workload else gpus
        node, gpu = rng.choice(candidates)
        at = t + rng.uniform(0.0, plan.spacing_seconds / 2)
        out.append(Injection(fault_class, node, None if fault_class.node_level else gpu, at))
        t += plan.spacing_seconds
    return out


def _long_outages(plan: EvalPlan, fleet: Fleet, start: float, others: Sequence[Injection]) -> list[Injection]:
    """As many long outages as any other class gets, on their own random stream, each on a node no other
    fault touches during it (its window and theirs with ``grace``), so no other fault shares its node (one
    on a GPU of a job the node runs can still feel it); two in every three with a thermal runaway or a
    straggler begun on one of its GPUs while it is down."""
    rng = random.Random(f"{plan.seed}/long-outage")
    out: list[Injection] = []
    bag: list[FaultClass | None] = []  # each of the three in every three outages, as the classes are drawn
    step = plan.spacing_seconds * len(plan.classes)
    t = start + plan.warmup_seconds
    end = start + plan.duration_seconds - LONG_OUTAGE_SECONDS[1] - plan.grace_seconds
    while t < end:
        at = t + rng.uniform(0.0, plan.spacing_seconds / 2)
        hold = rng.uniform(*LONG_OUTAGE_SECONDS)
        if not bag:
            bag = [None, *WHILE_DOWN_CLASSES]
            rng.shuffle(bag)
        companion = bag.pop()
        begins = at + rng.uniform(60.0, hold / 2)
        last = at + hold if companion is None else max(at + hold, begins + (companion.hold_seconds or 0.0))
        node = rng.choice(_free_nodes(fleet, [*others, *out], at, last + plan.grace_seconds, plan))
        out.append(Injection(LONG_OUTAGE, node, None, at, hold_seconds=hold))
        gpus = [
            g.index
            for g in fleet.gpu_refs()
            if g.node == node
            and (companion is None or not companion.needs_workload or fleet.workload_on(node, g.index))
        ]
        if companion is not None and gpus:
            out.append(Injection(companion, node, rng.choice(gpus), begins, hidden_until=at + hold))
        t += step
    return out


def _free_nodes(
    fleet: Fleet, injections: Sequence[Injection], since: float, until: float, plan: EvalPlan
) -> list[str]:
    """Nodes no fault touches from ``since`` to ``until`` (each with its repair's grace); all when none."""
    nodes = sorted({g.node for g in fleet.gpu_refs()})
    busy = {
        o.node
        for o in injections
        if o.started_at <= until and since <= o.started_at + o.hold(plan.hold_seconds) + plan.grace_seconds
    }
    return [n for n in nodes if n not in busy] or nodes


class _Truth:
    """Open fault windows by node and by training job, for attributing alerts."""

    def __init__(self, fleet: Fleet, grace: float) -> None:
        self.fleet = fleet
        self.grace = grace
        self.injections: list[Injection] = []

    def workload(self, node: str, gpu: int | None) -> str | None:
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
        return any(_aims_at(inj, node, gpu) and inj.shows_at(at) for inj in self.open_at(at))

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
            if not _aims_at(inj, node, gpu) and inj.seen_from() <= at and job in self.jobs(inj)
        ]
        return max(sharing, key=Injection.seen_from, default=None)

    def beside(self, node: str, at: float) -> list[Injection]:
        """Open faults on another GPU of ``node``: they do not reach an alert's GPU (``_aims_at``), but a
        reader of a false alert raised beside one wants to know (the eval took such alerts as the fault's
        until fix/attrib)."""
        return [inj for inj in self.open_at(at) if inj.node == node]


def _aims_at(inj: Injection, node: str, gpu: int | None) -> bool:
    """Whether ``inj`` acts on ``node``/``gpu``: the simulator's reach (its GPU, or every GPU of its node for
    a node-wide fault; never a neighbour GPU); an alert naming no GPU is on its node's every fault."""
    if gpu is None:
        return inj.node == node
    return reaches(inj.spec(), node, gpu)


def _target(alert: Alert) -> tuple[str | None, int | None]:
    node = alert.labels.get("Hostname")
    return node, label_number(alert.labels.get("gpu"))


def run_fault_eval(
    fleet: Fleet,
    service: AnomalyService,
    clock: FakeClock,
    plan: EvalPlan,
    before_tick: Callable[[], None] | None = None,
) -> FaultEvalReport:
    """Run the plan; ``before_tick`` lets the caller pump event watchers before each read."""
    start = clock.time()
    pending = _schedule(plan, fleet, start)
    truth = _Truth(fleet, plan.grace_seconds)
    skipped: list[Injection] = []
    tally = _Tally(counted_from=plan.warmup_seconds + start)
    reraised: list[dict[str, Any]] = []
    rise = (service.cfg.pending_ticks - 1) * plan.interval_seconds  # a re-raise's climb: pending_ticks reads
    last_fit = start
    end = start + plan.duration_seconds
    while clock.time() < end:
        tick_at = clock.time() + plan.interval_seconds
        while pending and pending[0].started_at <= tick_at:
            inj = pending.pop(0)
            clock.advance(max(0.0, inj.started_at - clock.time()))
            # Repairs due by now first: a fault due for repair is not "still active" for the next one drawn
            # there, and its repair's GPU reset would end a fault injected on that GPU just before it.
            _repair_due(fleet, truth.injections, clock.time(), plan.hold_seconds)
            (truth.injections if _inject(fleet, service, inj) else skipped).append(inj)
        _repair_due(fleet, truth.injections, clock.time(), plan.hold_seconds)
        clock.advance(tick_at - clock.time())
        if before_tick is not None:
            before_tick()
        result = service.infer()
        now = clock.time()
        _note_stalled(fleet, truth.injections, now, plan.interval_seconds)
        if now - last_fit >= service.cfg.fit_every_seconds:
            service.fit()
            last_fit = now
        for alert in result.raised:
            _attribute(alert, now, truth, tally)
        for alert in result.resolved:
            _resolved_early(alert, now, truth.injections, service)
        reraised += _reraised(
            result.raised, result.resolved, now, truth.injections, rise=rise, grace=truth.grace
        )
        _check_stuck(truth.injections, service, now, plan.stuck_seconds, grace=plan.grace_seconds)
    gpus = len(fleet.gpu_refs())
    observed = max(0.0, plan.duration_seconds - plan.warmup_seconds)
    return FaultEvalReport(
        classes=_summarise(truth.injections, plan, skipped),
        gpu_days=gpus * observed / 86400.0,
        false_alerts=len(tally.false_alerts),
        false_alert_examples=tally.false_alerts,
        interval_seconds=plan.interval_seconds,
        missed=[
            _missed(inj, truth)
            for inj in truth.injections
            if (lat := inj.latency()) is None or lat > inj.fault_class.deadline(plan.interval_seconds)
        ],
        reraised=reraised,
        sympathetic=tally.sympathetic,
    )


def _reraised(
    raised: Sequence[Alert],
    resolved: Sequence[Alert],
    now: float,
    injections: Sequence[Injection],
    *,
    rise: float,
    grace: float,
) -> list[dict[str, Any]]:
    """The tick's re-raised alerts (resolved and raised in one tick), each with the class of the newest fault
    on its target that began after the activity it ended had started and was on when the climb that re-raised
    it began, ``rise`` seconds before ``now`` (None: it re-raised mid-fault). A fault drawn after that, or
    repaired ``grace`` before it, raised nothing: a runaway's wave re-raised an hour after a straggler on its
    GPU was repaired, or at the tick a fault was drawn there, is the runaway told twice."""
    ended = {a.fingerprint: a.starts_at for a in resolved}
    climb = now - rise
    out = []
    for alert in raised:
        began = ended.get(alert.fingerprint)
        if began is None:
            continue
        node, gpu = _target(alert)
        new = [
            i
            for i in injections
            if (i.node, i.gpu) == (node, gpu)
            and began.timestamp() < i.started_at <= climb
            and (i.repaired_at is None or i.repaired_at + grace >= climb)
        ]
        out.append(
            {
                "Hostname": node or "",
                "gpu": gpu,
                "for": alert.labels.get("for", ""),
                "model": alert.labels.get("model", ""),
                "at": f"{now:.0f}",
                "new_fault": new[-1].fault_class.name if new else None,
            }
        )
    return out


def _inject(fleet: Fleet, service: AnomalyService, inj: Injection) -> bool:
    """Start ``inj`` on the fleet, noting the alerts already firing on its target; False (nothing injected)
    where the same fault is still active there."""
    spec = inj.spec()
    if any(r.spec == spec for r in fleet.active_faults()):
        return False
    inj.open_at_start = tuple(
        sorted(
            f"{f.detector}:{f.query}"
            for f in service.firing.values()
            if _target(f.alert) == (inj.node, inj.gpu)
        )
    )
    inj.fault_id = fleet.inject(spec)
    return True


def _missed(inj: Injection, truth: _Truth) -> dict[str, Any]:
    """A miss (or a late detection) as the report lists it: what it was, how long after it could be seen
    (``Injection.seen_from``) it was detected, and what it began inside of."""
    out: dict[str, Any] = {
        "class": inj.fault_class.name,
        "node": inj.node,
        "gpu": inj.gpu,
        "workload": truth.workload(inj.node, inj.gpu),
        "detected_after_s": None if (lat := inj.latency()) is None else round(lat),
    }
    if inj.open_at_start:
        out["open_alerts_at_start"] = list(inj.open_at_start)
    before = [
        o
        for o in truth.injections
        if (o.node, o.gpu) == (inj.node, inj.gpu) and o.started_at < inj.started_at
    ]
    if before:
        prev = before[-1]
        ended = (
            "still active"
            if prev.repaired_at is None or prev.repaired_at > inj.started_at
            else (f"repaired {inj.started_at - prev.repaired_at:.0f} s before")
        )
        out["previous"] = f"{prev.fault_class.name}, {ended}"
    return out


def _note_stalled(fleet: Fleet, injections: Sequence[Injection], now: float, interval: float) -> None:
    """Time each slowdown (``needs_workload``: a straggler) not yet seen on a working job from after ``now``
    while its training job is stalled at this tick by another fault (a rank hung, lost or on another node
    that is down): every rank then waits at 0 % utilisation, at the idle clock and power, the slower GPU with
    them, so there is nothing to see until the job runs again. Only while it has not been seen yet: the tick
    before was its first or a stalled one (``seen_from`` at or after it). A job stalled later hides a fault
    already shown, which stays timed from when it was. Its own node down is the outage: timed from its
    return (``hidden_until``), not counted here."""
    for inj in injections:
        if not inj.fault_class.needs_workload or inj.repaired_at is not None or inj.gpu is None:
            continue
        if not fleet.node(inj.node).up:
            continue
        if not now - interval <= inj.seen_from() <= now:
            continue
        work = fleet.workload_on(inj.node, inj.gpu)
        if isinstance(work, TrainingJob) and work.stalled:
            inj.stalled_until = now


def _repair_due(fleet: Fleet, injections: list[Injection], now: float, hold: float) -> None:
    for inj in injections:
        if inj.repaired_at is None and now - inj.held_from() >= inj.hold(hold):
            if any(r.id == inj.fault_id for r in fleet.active_faults()):
                fleet.clear_fault(inj.fault_id)
            inj.repaired_at = now
            if inj.gpu is None:  # the node is back: what began on it while down shows from now
                for o in injections:
                    if o.node == inj.node and o.hidden_until is not None and o.repaired_at is None:
                        o.hidden_until = now
            # A GPU fault on a node that another fault took down: its reboot repairs the GPU too. A reset
            # would end every other fault on the GPU (a hang begun in a failed cooler's last minutes): one
            # still held there is reset by its own repair.
            others = any(o.repaired_at is None and (o.node, o.gpu) == (inj.node, inj.gpu) for o in injections)
            if inj.gpu is not None and fleet.node(inj.node).up and not others:
                fleet.reset_gpu(inj.node, inj.gpu)


@dataclass(slots=True)
class _Tally:
    """Raised alerts that no fault's own target accounts for: false, or on a faulted job's other GPUs."""

    counted_from: float
    false_alerts: list[dict[str, str]] = field(default_factory=list)
    sympathetic: list[dict[str, Any]] = field(default_factory=list)


def _attribute(alert: Alert, now: float, truth: _Truth, tally: _Tally) -> None:
    node, gpu = _target(alert)
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
            tally.sympathetic.append(_sympathetic(alert, now, shared))
            return
    if now >= tally.counted_from:
        tally.false_alerts.append({**dict(alert.labels), "at": f"{now:.0f}", **_beside(node, now, truth)})


def _beside(node: str | None, now: float, truth: _Truth) -> dict[str, str]:
    """``beside``: the open faults on other GPUs of a false alert's node (``hung GPU 3, ...``), if any."""
    faults = [] if node is None else truth.beside(node, now)
    return {"beside": ", ".join(f"{inj.fault_class.name} GPU {inj.gpu}" for inj in faults)} if faults else {}


def _sympathetic(alert: Alert, now: float, inj: Injection) -> dict[str, Any]:
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


def _resolved_early(alert: Alert, now: float, injections: list[Injection], service: AnomalyService) -> None:
    """Note ``alert`` on every fault of its target that it was raised for and that is still active."""
    target = _target(alert)
    raised = now if alert.starts_at is None else alert.starts_at.timestamp()
    for inj in injections:
        if (inj.node, inj.gpu) == target and inj.repaired_at is None and inj.started_at <= raised:
            inj.resolved_early_by.append(
                f"{alert.labels.get('alertname', '')}:{alert.labels.get('model', '')}"
            )
            inj.quiet = inj.quiet or all(_target(f.alert) != target for f in service.firing.values())


def _check_stuck(
    injections: list[Injection], service: AnomalyService, now: float, after: float, *, grace: float
) -> None:
    """Mark each fault repaired ``after`` seconds ago whose target still fires an alert raised for it (from
    its start to ``grace`` after its repair, the window that explains an alert; a later one is false)."""
    for inj in injections:
        if inj.stuck is not None or inj.repaired_at is None or now < inj.repaired_at + after:
            continue
        later = any(
            o.node == inj.node and o.gpu == inj.gpu and o.started_at > inj.started_at for o in injections
        )
        inj.stuck = not later and any(
            _target(f.alert) == (inj.node, inj.gpu)
            and f.alert.starts_at is not None
            and inj.started_at <= f.alert.starts_at.timestamp() <= inj.repaired_at + grace
            for f in service.firing.values()
        )


def _summarise(
    injections: list[Injection], plan: EvalPlan, skipped: Sequence[Injection] = ()
) -> dict[str, ClassResult]:
    out = {c.name: ClassResult(c.name, c.hard) for c in plan.all_classes()}
    for inj in skipped:
        out[inj.fault_class.name].not_injected_already_active += 1
    for inj in injections:
        res = out[inj.fault_class.name]
        res.injected += 1
        res.stuck_after_repair += bool(inj.stuck)
        res.began_inside_open_alerts += bool(inj.open_at_start)
        res.job_stalled_at_start += inj.stalled_until is not None
        if inj.resolved_early_by:
            res.resolved_while_active += 1
            res.quiet_while_active += inj.quiet
            for by in inj.resolved_early_by:
                res.resolved_early_by[by] = res.resolved_early_by.get(by, 0) + 1
        latency = inj.latency()
        if latency is None:
            continue
        res.detected += 1
        res.latencies.append(round(latency, 1))
        res.detected_by[inj.detected_by] = res.detected_by.get(inj.detected_by, 0) + 1
        if latency <= inj.fault_class.deadline(plan.interval_seconds):
            res.within_deadline += 1
    return out


def merge_reports(reports: list[FaultEvalReport]) -> FaultEvalReport:
    """One report over several independent runs (seeds): counts and GPU-days add up."""
    classes: dict[str, ClassResult] = {}
    for r in reports:
        for name, c in r.classes.items():
            m = classes.setdefault(name, ClassResult(name, c.hard))
            m.injected += c.injected
            m.detected += c.detected
            m.within_deadline += c.within_deadline
            m.latencies.extend(c.latencies)
            for k, v in c.detected_by.items():
                m.detected_by[k] = m.detected_by.get(k, 0) + v
            m.resolved_while_active += c.resolved_while_active
            m.quiet_while_active += c.quiet_while_active
            m.stuck_after_repair += c.stuck_after_repair
            m.began_inside_open_alerts += c.began_inside_open_alerts
            m.not_injected_already_active += c.not_injected_already_active
            m.job_stalled_at_start += c.job_stalled_at_start
            for k, v in c.resolved_early_by.items():
                m.resolved_early_by[k] = m.resolved_early_by.get(k, 0) + v
    return FaultEvalReport(
        classes=classes,
        gpu_days=sum(r.gpu_days for r in reports),
        false_alerts=sum(r.false_alerts for r in reports),
        false_alert_examples=[a for r in reports for a in r.false_alert_examples],
        interval_seconds=reports[0].interval_seconds if reports else 0.0,
        missed=[m for r in reports for m in r.missed],
        reraised=[m for r in reports for m in r.reraised],
        sympathetic=[m for r in reports for m in r.sympathetic],
    )
