"""What the GPU-fault evaluation reports: recall and latency per class, false and sympathetic alerts, the
re-raises, and one report pooled over several seeds (``merge_reports``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from anomaly.faultclasses import SOFT_DEADLINE_SECONDS, Injection
from anomaly.faultplan import EvalPlan


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
    clear_after_repair: list[float] = field(default_factory=list)  # ``Injection.clear_after`` of each timed
    clear_interrupted: int = 0  # repaired ones a later fault on their target began on before they were clear
    began_inside_open_alerts: int = 0  # injections whose target had alerts firing at their start
    # Drawn where the same fault (or, for a straggler, one as slow) was still active: not injected.
    not_injected_already_active: int = 0
    job_stalled_at_start: int = 0  # slowdowns begun while another fault stalled their job: timed from after

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "hard": self.hard,
            "injected": self.injected,
            "recall_within_deadline": round(self.within_deadline / self.injected, 4)
            if self.injected
            else None,
            "recall_any_time_in_window": round(self.detected / self.injected, 4) if self.injected else None,
            **_spread("latency", self.latencies),
            "detected_by": dict(sorted(self.detected_by.items(), key=lambda kv: -kv[1])),
            "resolved_while_active": self.resolved_while_active,
            "resolved_early_by": dict(sorted(self.resolved_early_by.items(), key=lambda kv: -kv[1])),
            "quiet_while_active": self.quiet_while_active,
            "stuck_after_repair": self.stuck_after_repair,
            "clear_after_repair_timed": len(self.clear_after_repair),
            **_spread("clear_after_repair", self.clear_after_repair),
            "clear_interrupted": self.clear_interrupted,
            "began_inside_open_alerts": self.began_inside_open_alerts,
            "not_injected_already_active": self.not_injected_already_active,
            "job_stalled_at_start": self.job_stalled_at_start,
        }


def _spread(name: str, seconds: Sequence[float]) -> dict[str, float | None]:
    """``name``'s median, 90th percentile and maximum (``NAME_p50_s``, ``_p90_s``, ``_max_s``; None without
    any): the sorted values at n // 2 and 9n // 10, and the last, as the report has always given latencies."""
    ranked = sorted(seconds)
    n = len(ranked)
    return {
        f"{name}_p50_s": ranked[n // 2] if ranked else None,
        f"{name}_p90_s": ranked[min(n - 1, (9 * n) // 10)] if ranked else None,
        f"{name}_max_s": ranked[-1] if ranked else None,
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
    # False alerts beside faults on other GPUs of their node, by ``alertname:model:for`` and those classes.
    beside_faults: dict[tuple[str, tuple[str, ...]], int] = field(default_factory=dict)
    on_hidden_faults: int = 0  # false alerts on a GPU whose own fault could not show yet

    @property
    def false_alerts_per_1000_gpu_days(self) -> float:
        """False alerts normalised to 1,000 GPU-days of observation."""
        return 1000.0 * self.false_alerts / self.gpu_days if self.gpu_days else 0.0

    def false_alerts_by_detector(self) -> dict[str, int]:
        """False alerts counted by ``alertname:model`` (which detector raised them)."""
        out: dict[str, int] = {}
        for a in self.false_alert_examples:
            key = detector_of(a)
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
        of the simulator reaches a neighbour GPU. Counted from the faults as noted (``beside_faults``), not
        read back from the ``beside`` text, which a class's name may make ambiguous."""
        out = {
            f"{detector} beside {', '.join(classes)}": n
            for (detector, classes), n in self.beside_faults.items()
        }
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
            "false_alerts_beside_a_fault": sum(self.beside_faults.values()),
            "false_alerts_beside_faults": self.false_alerts_beside_faults(),
            "false_alerts_on_a_hidden_fault": self.on_hidden_faults,
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


def detector_of(alert: Mapping[str, Any]) -> str:
    """``alertname:model:for`` of an alert as the report lists it: which detector raised it."""
    return f"{alert.get('alertname', '')}:{alert.get('model', '')}:{alert.get('for', '')}"


def summarise_classes(
    injections: list[Injection], plan: EvalPlan, skipped: Sequence[Injection] = ()
) -> dict[str, ClassResult]:
    out = {c.name: ClassResult(c.name, c.hard) for c in plan.all_classes()}
    for inj in skipped:
        out[inj.fault_class.name].not_injected_already_active += 1
    for inj in injections:
        res = out[inj.fault_class.name]
        res.injected += 1
        res.stuck_after_repair += bool(inj.stuck)
        res.clear_interrupted += inj.clear_interrupted
        if inj.clear_after is not None:
            res.clear_after_repair.append(round(inj.clear_after, 1))
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
    beside: dict[tuple[str, tuple[str, ...]], int] = {}
    for r in reports:
        for key, n in r.beside_faults.items():
            beside[key] = beside.get(key, 0) + n
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
            m.clear_after_repair.extend(c.clear_after_repair)
            m.clear_interrupted += c.clear_interrupted
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
        beside_faults=beside,
        on_hidden_faults=sum(r.on_hidden_faults for r in reports),
    )
