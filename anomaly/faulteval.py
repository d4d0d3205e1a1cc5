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
  it (``beside``), counted apart (``false_alerts_beside_a_fault``). A fault on its own GPU that cannot show
  yet (a straggler whose job another fault stalls: ``Injection.shows_at``) neither detects nor excuses it;
  where no open fault elsewhere on its job makes it sympathetic (below), it is false, and names that fault
  ``on`` its GPU (``false_alerts_on_a_hidden_fault``), not beside it.
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
  nothing new to detect. Nor is a straggler drawn for a GPU that another fault still active there already
  holds at or below the straggler's clock (a thermal runaway's slowdown, ``_no_slower``). Counted per class
  (``not_injected_already_active``), not in recall.
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

from collections.abc import Callable, Sequence
from typing import Any

from anomaly.faultclasses import (
    FAULT_CLASSES,
    LONG_OUTAGE,
    LONG_OUTAGE_CLASSES,
    LONG_OUTAGE_SECONDS,
    SOFT_DEADLINE_SECONDS,
    WHILE_DOWN_CLASSES,
    FaultClass,
    Injection,
)
from anomaly.faultplan import EvalPlan
from anomaly.faultplan import schedule_injections as _schedule
from anomaly.faultreport import ClassResult, FaultEvalReport, merge_reports
from anomaly.faultreport import summarise_classes as _summarise
from anomaly.faulttruth import AlertTally as _Tally
from anomaly.faulttruth import FaultTruth as _Truth
from anomaly.faulttruth import alert_target as _target
from anomaly.faulttruth import attribute_alert as _attribute
from anomaly.faulttruth import sympathetic_row as _sympathetic
from anomaly.service import AnomalyService
from gpuwarden.clock import FakeClock
from gpuwarden.model import Alert
from gpuwarden.sim import Fleet, TrainingJob
from gpuwarden.sim.faults import reaches

# The classes, the plan, the report and the attribution live in their own modules (``anomaly.faultclasses``,
# ``anomaly.faultplan``, ``anomaly.faultreport``, ``anomaly.faulttruth``); what callers have imported from
# here stays importable from here, the helpers the tests drive under their old names.
__all__ = [
    "FAULT_CLASSES",
    "LONG_OUTAGE",
    "LONG_OUTAGE_CLASSES",
    "LONG_OUTAGE_SECONDS",
    "SOFT_DEADLINE_SECONDS",
    "WHILE_DOWN_CLASSES",
    "ClassResult",
    "EvalPlan",
    "FaultClass",
    "FaultEvalReport",
    "Injection",
    "_Tally",
    "_Truth",
    "_attribute",
    "_schedule",
    "_summarise",
    "_sympathetic",
    "merge_reports",
    "run_fault_eval",
]


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
        _note_stalled(fleet, truth.injections, now, plan.interval_seconds, service.cfg.pending_ticks)
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
        _check_clear(truth.injections, service, now, grace=plan.grace_seconds)
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
        beside_faults=tally.beside_faults,
        on_hidden_faults=tally.on_hidden_faults,
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
    where the same fault is still active there, or where it would leave its GPU no slower (``_no_slower``)."""
    spec = inj.spec()
    if any(r.spec == spec for r in fleet.active_faults()) or _no_slower(fleet, inj):
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


def _no_slower(fleet: Fleet, inj: Injection) -> bool:
    """Whether ``inj``, a straggler (a clock factor on its GPU), would leave its GPU running no slower than
    another fault still active on that GPU holds it now: nothing new to detect, as for the same fault still
    active. Eval seed 1792's straggler on node-05 GPU 0 began 17 minutes into a thermal runaway there, the
    GPU at 100 C and its SM clock held at 990 MHz (half its 1,980) by its thermal slowdown: with the
    straggler's 0.6 it ran cooler and read 950 MHz (594 at its hottest ticks), the job's rank as slow as
    before, every alert it could raise (adaptive and fleet SM clock) already firing for the runaway. A GPU
    idle (its clock at idle) or whose job another fault stalls is left to ``_note_stalled``."""
    spec = inj.spec()
    if spec.kind != "straggler" or inj.gpu is None:
        return False
    if not any(reaches(r.spec, inj.node, inj.gpu) for r in fleet.active_faults()):
        return False
    work = fleet.workload_on(inj.node, inj.gpu)
    gpu = fleet.gpu(inj.node, inj.gpu)
    if not isinstance(work, TrainingJob) or work.stalled or gpu.state.sm_clock <= gpu.model.sm_clock_idle:
        return False
    return gpu.state.sm_clock <= spec.param("factor", 0.6) * gpu.model.sm_clock_max


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


def _note_stalled(
    fleet: Fleet, injections: Sequence[Injection], now: float, interval: float, pending: int = 1
) -> None:
    """Time each slowdown (``needs_workload``: a straggler) not yet seen on a working job from after ``now``
    while its training job is stalled at this tick by another fault (a rank hung, lost or on another node
    that is down): every rank then waits at 0 % utilisation, at the idle clock and power, the slower GPU with
    them, so there is nothing to see until the job runs again. Only while it has not been seen yet: the tick
    before was its first or a stalled one (``seen_from`` at or after it), or, not detected yet, it was seen
    at fewer than ``pending`` ticks (``anomaly.pending_ticks``, the reads in a row a learned detector's alert
    needs) before this one. Eval seed 1701's straggler was read at two ticks, its job stalled at the third
    by another node's 21-minute outage that outlasted its hold: counted from its start, a miss no detector
    could have avoided (seed 1715's the same). A job stalled later hides a fault already shown long enough,
    which stays timed from when it was. Its own node down is the outage: timed from its return
    (``hidden_until``), not counted here."""
    for inj in injections:
        if not inj.fault_class.needs_workload or inj.repaired_at is not None or inj.gpu is None:
            continue
        if not fleet.node(inj.node).up:
            continue
        seen = inj.seen_from()
        unseen = now - interval <= seen <= now  # the tick before was its first or a stalled one
        too_few = inj.detected_at is None and now - pending * interval < seen <= now
        if not (unseen or too_few):
            continue
        work = fleet.workload_on(inj.node, inj.gpu)
        if isinstance(work, TrainingJob) and work.stalled:
            inj.stalled_until = now


def _repair_due(fleet: Fleet, injections: list[Injection], now: float, hold: float) -> None:
    for inj in injections:
        if inj.repaired_at is None and inj.due_for_repair(now, hold):
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
            and _raised_within(f.alert, inj.started_at, inj.repaired_at + grace)
            for f in service.firing.values()
        )


def _check_clear(injections: list[Injection], service: AnomalyService, now: float, *, grace: float) -> None:
    """Time each repaired fault's all-clear: the first tick (``now``) its target (its GPU; every GPU of its
    node for a node-wide fault) has no alert firing that was raised for it (from its start to ``grace`` after
    its repair, as ``_check_stuck`` reads it), what an operator waits for before the incident can end. Not
    timed where a later fault on the same target began first (``clear_interrupted``): its alerts are that
    fault's too."""
    for inj in injections:
        if inj.repaired_at is None or inj.clear_after is not None or inj.clear_interrupted:
            continue
        if any(
            o.node == inj.node
            and (inj.gpu is None or o.gpu in (None, inj.gpu))
            and inj.started_at < o.started_at <= now
            for o in injections
        ):
            inj.clear_interrupted = True
            continue
        if not any(
            _on_target(f.alert, inj) and _raised_within(f.alert, inj.started_at, inj.repaired_at + grace)
            for f in service.firing.values()
        ):
            inj.clear_after = now - inj.repaired_at


def _on_target(alert: Alert, inj: Injection) -> bool:
    """Whether ``alert`` names ``inj``'s target: its GPU, or any GPU of its node for a node-wide fault."""
    node, gpu = _target(alert)
    return node == inj.node and (inj.gpu is None or gpu == inj.gpu)


def _raised_within(alert: Alert, start: float, end: float) -> bool:
    """Whether ``alert`` was raised from ``start`` to ``end``: a fault's window that explains it, from its
    start to ``grace`` after its repair (a later one is false)."""
    raised = alert.starts_at
    return raised is not None and start <= raised.timestamp() <= end
