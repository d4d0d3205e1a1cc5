"""Health over the API: liveness, readiness, the journal's ingest status and the Prometheus metrics.

``/healthz`` (and Alertmanager's ``/-/healthy``) is liveness: 200 while the process serves and its journal
applier runs (503 naming the applier once it is stuck or dead). ``/-/ready`` is readiness: 503 then too,
while the store is unreachable, while the journal backlog found at start is still replaying, and once this
serve lost the store lock. Routes are wired in ``gpuwarden.api``; none needs a token.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from alerting.applier import JournalApplier
from alerting.engine import IncidentEngine
from alerting.fencing import LockFence
from alerting.health import HealthCollector, ServiceHealth
from gpuwarden.api_metrics import ApiMetrics


class HealthApi:
    """The probes, ``GET /api/v1/ingest/status`` and ``GET /metrics`` of one serve."""

    def __init__(
        self,
        engine: IncidentEngine,
        metrics: ApiMetrics,
        health: ServiceHealth,
        applier: JournalApplier | None,
        fence: LockFence,
    ) -> None:
        self.engine = engine
        self.metrics = metrics
        self.health = health
        self.applier = applier
        self.fence = fence

    async def metrics_endpoint(self, request: Request) -> Response:
        """Prometheus exposition of the API's own counters."""
        registry = CollectorRegistry()
        registry.register(self.metrics)
        registry.register(HealthCollector(self.health, self.applier))
        for collector in self.engine.extra_metrics:
            registry.register(collector)
        # Off the event loop: a collector may wait for the engine (a long replay transaction), and every
        # other request, /healthz included, must not wait with it.
        body = await run_in_threadpool(generate_latest, registry)
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    async def ingest_status(self, request: Request) -> Response:
        """Accepted and applied journal offsets and the lag between them, and the engine ticks done (cheap:
        no store query)."""
        if self.applier is None:
            return JSONResponse({"journal": False, "lag_bytes": 0, **self.health.tick_status()})
        status = self.applier.status()
        # The ticks after the lag: a tick that ended between the two reads is counted, so the tick N + 2
        # a client waits for began after the apply that made this lag 0 (read first, it could have begun
        # before it).
        return JSONResponse({"journal": True, **status, **self.health.tick_status()})

    def applier_problem(self) -> str | None:
        """Why the journal applier is stuck or dead (a restart is what helps), or None."""
        return self.applier.heartbeat.problem() if self.applier is not None else None

    async def healthz(self, request: Request) -> Response:
        """Liveness: the process answers and its applier runs (a store outage or a replay does not make it
        restart; a stuck or dead applier, which would leave acknowledged alerts unapplied, does)."""
        problem = self.applier_problem()
        if problem is not None:
            return PlainTextResponse(f"not healthy: {problem}\n", status_code=503)
        return PlainTextResponse("ok")

    async def ready(self, request: Request) -> Response:
        """Readiness: 503 while the store is unreachable or the startup replay has not caught up."""
        applier = self.applier
        lag = applier.lag_bytes if applier is not None else 0
        reason = self.applier_problem() or self.health.not_ready(lag)
        if self.fence.lost:
            reason = "this serve lost the store lock to another one and is stopping"
        if reason is not None:
            return PlainTextResponse(f"not ready: {reason}\n", status_code=503, headers={"Retry-After": "1"})
        return PlainTextResponse("ok")
