"""What impact reads of an alert besides its labels: its error ratio and SLO burn rate.

A rule gives them in a label or an annotation (``0.7``, ``70%``, ``14.4x``), or a burn-rate rule says fast
or slow in its name; ``read_measures`` keeps them on the member, read again only when its annotations are
replaced, and ``measures`` is what a repeat of a firing alert may change of them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

from alerting.faults import normalised
from alerting.member import Member
from alerting.priority import FAST_BURN, SLOW_BURN
from gpuwarden.model import FaultKind

MEASURES = ("error_ratio", "burn_rate", "slo_burn_rate")
"""What impact reads from an alert besides its labels: a label, else an annotation (Prometheus rules put
``{{ $value }}`` in annotations; a label that changes with the value would make a new alert each time)."""


def measures(recommended_action: str, annotations: Mapping[str, str]) -> tuple[str, ...] | None:
    """What a repeat of a firing alert may change that impact depends on; None when it carries none."""
    values = tuple(annotations.get(name, "") for name in MEASURES)
    if recommended_action == "none" and not any(values):
        return None
    return (recommended_action, *values)


def _ratio(member: Member) -> float:
    """``error_ratio`` as a fraction: a value over 1 and up to 100 was written as a percentage."""
    value = _float(member, "error_ratio")
    return value / 100 if 1 < value <= 100 else min(value, 1.0)


def read_measures(member: Member) -> None:
    """Read the member's error ratio (``_ratio``) and burn rate into it (a burn-rate rule that gives no value
    says fast or slow in its name; a value it gives wins), with the annotations they were read from
    (``Member.measured_of``). Every recompute of an incident needs them of each member, and a 10,000-alert
    incident is recomputed at each batch: ``assess`` reads them again only when the member's annotations
    are others than those (its labels and kind never change; its annotations are replaced, never changed
    in place)."""
    member.error_ratio = _ratio(member)
    member.burn_rate = _float(member, "burn_rate", "slo_burn_rate") or (
        _named_burn(member.labels) if member.kind is FaultKind.SERVICE_DEGRADED else 0.0
    )
    member.measured_of = member.annotations


def _float(member: Member, *names: str) -> float:
    """The first of these labels or annotations that reads as a number: ``0.7``, ``70%`` (0.7, as
    ``humanizePercentage`` writes it), ``14.4x``; 0 when none does."""
    for source in (member.labels, member.annotations):
        for name in names:
            raw = source.get(name)
            if raw is None:  # the usual case, without an exception per member per recompute
                continue
            text, scale = raw.strip(), 1.0
            if text.endswith("%"):
                text, scale = text[:-1].strip(), 0.01
            elif text[-1:] in ("x", "X"):
                text = text[:-1].strip()
            try:
                value = float(text) * scale
            except ValueError:
                continue
            if math.isfinite(value):
                return value
    return 0.0


_FAST, _SLOW = re.compile("fastburn"), re.compile("slowburn")


def _named_burn(labels: Mapping[str, str]) -> float:
    """The burn rate an SLO alert's name or Sloth's ``sloth_severity`` says, for rules that put no value in
    an annotation: a fast burn pages at 14.4x, a slow one (ticket) at 1x."""
    name = normalised(labels.get("alertname", ""))
    severity = labels.get("sloth_severity", "")
    if _FAST.search(name) or severity == "page":
        return FAST_BURN
    if _SLOW.search(name) or severity == "ticket":
        return SLOW_BURN
    return 0.0
