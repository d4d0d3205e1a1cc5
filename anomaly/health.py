"""Health of ``anomaly run``: whether the service is scoring current data, and if not, why.

Two verdicts on one report, as ``serve`` gives them: liveness (``/healthz``, ``/-/healthy``) fails only when
the loop stalled, which a restart mends; readiness (``/-/ready``) fails on a source outage too, or on a source
that answers with no series at all, which a restart does not mend (a liveness probe failing on it restarted
the service all through the outage).
"""

from __future__ import annotations

from typing import Any

from anomaly.service import AnomalyService

STALL_TICKS = 3
"""Ticks without one ending (plus a tick's reads) before the loop counts as stalled."""


def stall_seconds(service: AnomalyService) -> float:
    """How long no tick may end before ``/healthz`` says ``stalled``: a few ticks, plus a tick's worst reads
    (a source reads its queries concurrently, within ``read_deadline_seconds`` however many there are)."""
    cfg = service.cfg
    return STALL_TICKS * cfg.infer_every_seconds + cfg.read_deadline_seconds * max(1, len(service.sources))


def liveness(service: AnomalyService) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body): 503 when no tick ended for ``stall_seconds``, else 200 (the body still says
    ``source_down`` with its reasons while a source is down)."""
    body = report(service)
    return (503 if body["status"] == "stalled" else 200), body


def readiness(service: AnomalyService) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body): 503 with reasons when a source is down or the loop stalled, else 200 ``ok``."""
    body = report(service)
    return (503 if body["reasons"] else 200), body


def report(service: AnomalyService) -> dict[str, Any]:
    """The body: ``status`` (``ok``, else the first reason's kind: ``stalled`` when no tick ended for
    ``stall_seconds``, the scheduler thread dead or a read hung; ``source_down``; ``source_empty``: it has
    answered with no series for ``absent_after_seconds``; ``warm_up_deferred``: the warm-up's history read
    failed, read again at a later tick, ``anomaly.warmupretry``), ``reasons``, ``ticks``,
    ``sources`` and ``alerts_firing``."""
    reasons = []
    since = service.last_tick_end if service.last_tick_end is not None else service.started_monotonic
    idle = service.clock.monotonic() - since
    limit = stall_seconds(service)
    if idle > limit:
        what = "the last tick ended" if service.last_tick_end is not None else "start, and no tick ended"
        reasons.append(f"stalled: {idle:.0f} s since {what} (limit {limit:.0f} s)")
    sources = {}
    for h in service.health():  # a last good read before a restart, from its snapshot, included
        sources[h.name] = {"up": h.up, "last_success": h.last_success, "last_error": h.last_error}
        if not h.up:
            reasons.append(f"source_down: {h.name}: {h.last_error}")
        elif h.empty and h.last_series is not None:
            # Every target gone (GpuwardenSourceStale says so too): nothing is scored, though reads succeed.
            quiet = service.clock.time() - h.last_series
            if quiet >= service.cfg.absent_after_seconds:
                reasons.append(
                    f"source_empty: {h.name}: answers with no series for {quiet:.0f} s (its targets are gone"
                    " or not scraped)"
                )
    retry = service.warm_up_retry
    if retry is not None:
        now = service.clock.time()
        times = f"{retry.failures} time{'s' if retry.failures > 1 else ''}"
        wait = max(0.0, retry.due - now)
        reasons.append(
            f"warm_up_deferred: the history read failed {times} in {now - retry.since:.0f} s; read again in"
            f" {wait:.0f} s, nothing scored until then"
        )
    body: dict[str, Any] = {
        "status": reasons[0].split(":", 1)[0] if reasons else "ok",
        "reasons": reasons,
        "ticks": service.ticks,
        "sources": sources,
        "alerts_firing": len(service.firing),
    }
    return body
