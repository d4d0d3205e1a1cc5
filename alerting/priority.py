"""The P0-P3 priority an impact implies, and the reason it gives.

Priorities follow DESIGN.md exactly:
P0 service completely unavailable (endpoint down or >50 % errors) or a training job fully stopped with
no spare capacity; P1 >= 25 % of a service's capacity lost, SLO fast burn (>= 14.4x) or a training job
stalled by a fatal fault while spare capacity exists; P2 latency SLO slow burn, thermal/power throttling, one
redundant replica lost, or capacity lost with no workload on it; P3 anything else (correctable ECC trend,
a single non-fatal XID, rising temperature).

``alerting.impact.assess`` measures what a fault takes and asks this module what that is worth: the
thresholds, the names that say a service is down or its clocks are held down, the rules in their order
and the notes its reason adds.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping

from alerting.faults import normalised
from alerting.member import Member, onset_key
from alerting.topology import target_label
from gpuwarden.model import FaultKind, Priority, RootCause, WorkloadKind, WorkloadRef, percent

FAST_BURN = 14.4
SLOW_BURN = 1.0
SERVICE_DOWN_ERRORS = 0.5
SEVERE_SHARE = 0.25
DEGRADING_KINDS = frozenset(
    {
        FaultKind.STRAGGLER,
        FaultKind.NVLINK,
        FaultKind.ECC_DBE,
        FaultKind.ROW_REMAP_FAILURE,
        FaultKind.SERVICE_DEGRADED,  # latency or errors with no measure the rule gave: some users
    }
)
_DOWN_NAME = re.compile(r"(service|endpoint|inference)(is)?(down|unavailable)$")


@functools.lru_cache(maxsize=1024)
def says_down(alertname: str) -> bool:
    """``InferenceServiceDown``, ``chat_service_down``, ``EndpointUnavailable``: compared as ``classify``
    compares names, lower case without separators."""
    return _DOWN_NAME.search(normalised(alertname)) is not None


_THROTTLING = re.compile("throttl|slowdown|clocksreduced|clockevent|powercap")


@functools.lru_cache(maxsize=1024)
def throttles(alertname: str) -> bool:
    """``GpuThermalThrottling``, ``GpuHwThermalSlowdown`` (NVML's own name for it),
    ``GpuOverheatingClocksReduced``: the clocks are held down, not only a temperature that rises."""
    return _THROTTLING.search(normalised(alertname)) is not None


UNAVAILABLE = "inference service completely unavailable"  # the P0 reason of a service down


def priority_of(
    root: RootCause,
    *,
    shares: Mapping[WorkloadRef, float],
    stopped: Mapping[WorkloadRef, int],
    spare: bool,
    error_ratio: float,
    burn: float,
    throttling: bool,
    capacity_lost: bool,
    degrading: FaultKind | None = None,
) -> tuple[Priority, str]:
    """The first rule of DESIGN.md's table that the impact meets, and why."""
    services = {k: v for k, v in shares.items() if k.kind is WorkloadKind.INFERENCE_SERVICE}
    if any(v >= 1.0 for v in services.values()):
        return Priority.P0, UNAVAILABLE
    if error_ratio > SERVICE_DOWN_ERRORS:
        return Priority.P0, f"error ratio {percent(error_ratio)} > 50%"
    if stopped and not spare:
        return Priority.P0, "training job fully stopped with no spare capacity"
    if any(v >= SEVERE_SHARE for v in services.values()):
        return Priority.P1, "at least 25% of a service's capacity lost"
    if error_ratio >= SEVERE_SHARE:
        return Priority.P1, f"error ratio {percent(error_ratio)}: at least 25% of requests fail"
    if burn >= FAST_BURN:
        return Priority.P1, f"SLO fast burn {burn:g}x, at least 14.4x"
    if stopped:
        return Priority.P1, "training job stalled by a fatal fault (spare capacity available)"
    if burn >= SLOW_BURN:
        return Priority.P2, f"SLO slow burn {burn:g}x"
    if throttling:
        return Priority.P2, "thermal/power throttling"
    if error_ratio > 0:
        return Priority.P2, f"error ratio {percent(error_ratio)}: some requests fail"
    if any(v > 0 for v in services.values()):
        share = max(v for v in services.values() if v > 0)
        return Priority.P2, f"redundant replicas lost ({percent(share)} of a service's capacity)"
    if capacity_lost:
        return Priority.P2, "GPU capacity lost, no workload affected"
    kind = root.kind if root.kind in DEGRADING_KINDS else degrading
    if kind is not None:
        # Any member's, not only the root's: the alert that pinpoints a straggler's GPU must not lower
        # the priority its step-time alert gave.
        what = "service degraded" if kind is FaultKind.SERVICE_DEGRADED else kind.value
        return Priority.P2, f"{what}: performance degraded"
    return Priority.P3, "potential problem, not urgent"


def first_degrading(live: Iterable[Member]) -> FaultKind | None:
    """The kind of the earliest (``onset_key``) member whose fault degrades performance, if any: not the first
    in member order, which is the order alerts joined while ``serve`` runs and the store's after a restart
    (a job's straggler and a GPU's NVLink errors under an XID 13 said "straggler" or "nvlink" by that)."""
    degrading = [m for m in live if m.kind in DEGRADING_KINDS]
    return min(degrading, key=onset_key).kind if degrading else None


def reason_notes(
    reason: str,
    combined: bool,
    shares: Mapping[WorkloadRef, float],
    unready: Mapping[WorkloadRef, int],
    own: Mapping[WorkloadRef, float],
) -> str:
    """The priority's reason with what its share counted beyond this fault's own losses. A service down only
    with what other incidents took says what this one holds, as its title does ("50% of replicas lost
    (more in other incidents)"): not "completely unavailable" as if this fault alone took it."""
    if combined and ("capacity lost" in reason or "replicas lost" in reason):
        reason += f", counting what other open incidents took ({percent(max(shares.values()))})"
    elif reason == UNAVAILABLE:
        down = sorted(
            (r for r, v in shares.items() if r.kind is WorkloadKind.INFERENCE_SERVICE and v >= 1.0), key=str
        )
        if down and all(r in own for r in down):
            reason = (
                f"{target_label(down[0])} completely unavailable: {percent(own[down[0]])} of its replicas"
                " lost here, the rest in other open incidents"
            )
    if unready:
        counts = sorted(unready.items(), key=lambda kv: str(kv[0]))
        reason += ", counting replicas that were not ready: " + ", ".join(
            f"{target_label(ref)} {count}" for ref, count in counts
        )
    return reason
