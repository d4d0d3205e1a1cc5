"""HTTP API of ``gpuwarden serve`` (composition root): Alertmanager-compatible ingest and incidents.

Writes need ``Authorization: Bearer <token>`` (compared in constant time). Bodies over the size limit get
413, malformed ones 400 naming the field, and an unexpected failure a clean 503 (never a 500): nothing is
acknowledged that is not durable, so a client retry is always safe.

With an accept journal (``gpuwarden serve`` always has one), alert writes are acknowledged once the whole
validated batch is appended to the journal (see ``alerting.journal``); the applier stores and correlates
them right after. Reads of incidents first wait (at most ``READ_BARRIER_SECONDS``) until everything
acknowledged before the read arrived is applied, so a script sees its own writes; if the applier is
further behind, the answer carries ``X-Gpuwarden-Ingest-Lag`` (bytes not yet applied).

The endpoints of each noun live beside this module (``incident_api``, ``alertmanager_api``, ``outbox_api``,
``inventory_api``, ``health_api``: liveness and readiness); this one wires them, with the token check, the
body limits and the read barrier.
"""

from __future__ import annotations

import hmac
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from alerting.applier import JournalApplier
from alerting.engine import IncidentEngine
from alerting.fencing import LockFence, NotActive, unfenced
from alerting.health import ServiceHealth, cannot_write_reason
from alerting.ingest import parse_json, parse_postable_alerts, parse_webhook, webhook_truncated
from alerting.journal import KIND_POSTABLE, KIND_WEBHOOK, JournalUnwritable
from alerting.outbox import Outbox
from alerting.store import Conflict, NotFound
from alerting.store_models import IncidentRow
from alerting.titles import root_cluster
from alerting.topology import target_from_dict
from gpuwarden.alertmanager_api import AlertmanagerApi, iso
from gpuwarden.allowed_hosts import AllowedHosts
from gpuwarden.api_errors import error_response as _error
from gpuwarden.api_errors import failure_text, no_route
from gpuwarden.api_metrics import ApiMetrics
from gpuwarden.config import ApiConfig
from gpuwarden.errors import InputError
from gpuwarden.graceful import join_within
from gpuwarden.headers import LAG_HEADER
from gpuwarden.health_api import HealthApi
from gpuwarden.httpbody import BodyRefused, check_json_body, read_limited
from gpuwarden.incident_api import IncidentActionsApi, detail_response
from gpuwarden.incident_pages import CONTINUE, continue_key, incident_page
from gpuwarden.inventory_api import InventoryApi, inventory_from_fleet  # noqa: F401 - an old import path
from gpuwarden.model import IncidentState, Priority
from gpuwarden.outbox_api import LIST_QUERY, OutboxApi
from gpuwarden.params import choice, known_query, positive, single
from gpuwarden.route_prefix import RoutePrefix

logger = logging.getLogger(__name__)

BackgroundTask = Callable[[threading.Event], None]
READ_BARRIER_SECONDS = 10.0
INCIDENT_QUERY = ("state", "priority", "limit", CONTINUE)  # ``list_incidents``' parameters
Endpoint = Callable[[Request], Awaitable[Response]]


def incident_summary(
    row: IncidentRow,
    alert_count: int,
    silenced_until: datetime | None = None,
    cluster: str = "",
    silence_ids: Sequence[str] = (),
) -> dict[str, Any]:
    """The list shape of ``GET /api/v1/incidents``; ``cluster``: its root cause's, as titles name it;
    ``silence_ids``: the silences holding it."""
    return {
        "id": row.id,
        "title": row.title,
        "priority": row.priority,
        "state": row.state,
        "root_cause": {"kind": row.root_kind, "target": row.root_target, "cluster": cluster},
        "alert_count": alert_count,
        "opened_at": iso(row.opened_at),
        "resolved_at": iso(row.resolved_at),
        "last_opened_at": iso(row.last_opened_at or row.opened_at),  # a reopen's time: the list's order
        "merged_into": row.merged_into,  # resolved into another, which took its alerts (``alert_count``)
        "silenced_until": iso(silenced_until),  # notifies nobody until then
        "silence_ids": list(silence_ids),  # expiring each lifts the silence early: DELETE /api/v2/silence/ID
    }


class CatchAll:
    """Loop boundary: an unexpected exception becomes a logged, counted 503, never a 500; one that says
    the store cannot be reached marks it down (readiness, ``gpuwarden_store_up``)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics, health: ServiceHealth) -> None:
        self.app = app
        self.metrics = metrics
        self.health = health

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Run the app; answer 503 if it raises before it started a response."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)  # type: ignore[arg-type]
        except Exception as exc:
            self.metrics.errors += 1
            unreachable = self.health.store_failed(exc)
            logger.exception("request failed", extra={"path": scope.get("path")})
            if not started:
                # A full disk is no unreachable store, and it refused the write: say what readiness says.
                why = cannot_write_reason(exc) if unreachable else ""
                failed = failure_text(scope.get("method", ""), scope["path"], unreachable, why)
                response = _error(503, failed, route=scope["path"])
                response.headers["Retry-After"] = "1"
                await response(scope, receive, send)


class _Handlers:
    """The endpoints, sharing the engine, the limits and the counters."""

    def __init__(
        self,
        engine: IncidentEngine,
        config: ApiConfig,
        metrics: ApiMetrics,
        applier: JournalApplier | None = None,
        outbox: Outbox | None = None,
        *,
        health: ServiceHealth | None = None,
        fence: LockFence | None = None,
    ) -> None:
        self.engine = engine
        self.fence = fence or unfenced()
        self.config = config
        self.metrics = metrics
        self.applier = applier
        self.outbox = outbox
        self.health = health or ServiceHealth()
        self.token = config.token.get_secret_value().encode() if config.token is not None else None

    def authorized(self, request: Request) -> bool:
        """Constant-time check of the bearer token; no configured token means no writes."""
        if self.token is None:
            return False
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), self.token)

    async def read_body(self, request: Request) -> bytes:
        """The body, refusing more than the limit before reading it all."""
        return await read_limited(
            request, self.config.max_body_bytes, self.config.body_timeout_seconds, "api.max_body_bytes"
        )

    async def barrier(self) -> int:
        """Wait until what was acknowledged before now is applied; returns the bytes still behind."""
        applier = self.applier
        if applier is None:
            return 0
        target = applier.journal.end
        if applier.applied >= target:
            return 0
        if not self.health.store_up:  # the applier cannot catch up: waiting made every read take 10 s
            return target - applier.applied
        await run_in_threadpool(applier.wait_applied, target, READ_BARRIER_SECONDS)
        return max(0, target - applier.applied)

    def write(
        self,
        route: str,
        handler: Callable[[Request, bytes], Awaitable[Response]],
        *,
        barrier: bool = False,
        query: bool = True,
    ) -> Endpoint:
        """Wrap a write endpoint: token, size limit, input errors (and the read barrier if asked). It takes
        no query parameter (its fields are the body's: ``/ack?by=alice`` acknowledged "by api"), unless
        ``query`` is False: Alertmanager's API ignores them, and a webhook's URL is Alertmanager's config."""

        async def endpoint(request: Request) -> Response:
            lag = 0
            if not self.authorized(request):
                response: Response = _error(401, "missing or wrong bearer token", route=route)
                response.headers["WWW-Authenticate"] = "Bearer"
            else:
                lag = await self.barrier() if barrier else 0
                try:
                    if query:
                        where = f"{request.method} {route}"
                        known_query(request.query_params, (), where, ": send its fields in the body")
                    body = await self.read_body(request)
                    check_json_body(request, body)
                    response = await handler(request, body)
                except BodyRefused as exc:
                    response = _error(exc.status, str(exc), exc.field, route=route)
                except NotFound as exc:
                    response = _error(404, str(exc), exc.field, route=route)
                except Conflict as exc:
                    response = _error(409, str(exc), exc.field, route=route)
                except InputError as exc:
                    response = _error(exc.status, str(exc), exc.field, route=route, code=exc.code)
                except NotActive as exc:  # nothing was journaled; a store commit was rolled back
                    response = _error(503, str(exc), route=route)
                    response.headers["Retry-After"] = "1"
                except JournalUnwritable as exc:  # logged by the journal, once until it takes alerts again
                    response = _error(503, f"{exc}; nothing was stored, a retry is safe", route=route)
                    response.headers["Retry-After"] = "10"
            if lag:
                response.headers[LAG_HEADER] = str(lag)
            self.metrics.count(route, response.status_code)
            return response

        return endpoint

    def read(
        self,
        route: str,
        handler: Callable[[Request], Awaitable[Response]],
        query: Sequence[str] | None = (),
    ) -> Endpoint:
        """Wrap a read endpoint: the read barrier, input errors and not-found. A query parameter not in
        ``query`` is refused, naming those it takes, where gpuwarden's own API silently ignored it (a
        misspelt filter listed everything); None: any is taken, as Alertmanager's API ignores the unknown."""

        async def endpoint(request: Request) -> Response:
            lag = await self.barrier()
            try:
                if query is not None:
                    known_query(request.query_params, query, f"{request.method} {route}")
                response = await handler(request)
            except NotFound as exc:
                response = _error(404, str(exc), exc.field, route=route)
            except InputError as exc:
                response = _error(exc.status, str(exc), exc.field, route=route, code=exc.code)
            if lag:
                response.headers[LAG_HEADER] = str(lag)
            self.metrics.count(route, response.status_code)
            return response

        return endpoint

    async def fenced(self) -> None:
        """Raise ``NotActive`` unless this server still holds the store lock (verified within the fence's
        bound, else now, off the event loop). A store that cannot be asked does not stop acknowledging into
        the journal (the applier's commits are fenced themselves); a lock another server took does."""
        if not self.fence.fresh:
            await run_in_threadpool(self.fence.require, unreachable_ok=True)

    def accept(self, kind: int, body: bytes, alerts: int, accepted_at: float | None = None) -> None:
        """Append a validated batch to the journal and wake the applier (the ack point)."""
        assert self.applier is not None
        at = self.engine.clock.time() if accepted_at is None else accepted_at
        self.applier.journal.append(kind, body, alerts, accepted_at=at)
        self.applier.notify()

    async def post_alerts(self, request: Request, body: bytes) -> Response:
        """Prometheus' alert notifier: ``postableAlerts``; 200 only once durable (journal or commit)."""
        data = parse_json(body)
        timeout = timedelta(seconds=self.engine.config.resolve_timeout_seconds)
        now = self.engine.clock.time()
        alerts = parse_postable_alerts(data, datetime.fromtimestamp(now, UTC), timeout)
        if self.applier is not None:
            await self.fenced()
            # Validated now, against the accept time that the applier parses it again with.
            self.accept(KIND_POSTABLE, body, len(alerts), accepted_at=now)
        else:
            await run_in_threadpool(self.engine.ingest, alerts)
        return Response(status_code=200)

    async def post_webhook(self, request: Request, body: bytes) -> Response:
        """Alertmanager's webhook v4 (idempotent: the same payload twice changes nothing more)."""
        data = parse_json(body)
        alerts = parse_webhook(data)
        if truncated := webhook_truncated(data):
            self.metrics.count_truncated(truncated)
            logger.warning(
                "Alertmanager left %d alert(s) of group %s out of its webhook notification (max_alerts of "
                "receiver %r): they open no incident; set max_alerts: 0 on gpuwarden's webhook_config",
                truncated, str(data.get("groupKey", "?"))[:200], str(data.get("receiver", "?"))[:200],
            )  # fmt: skip
        if self.applier is not None:
            await self.fenced()
            self.accept(KIND_WEBHOOK, body, len(alerts))
            return JSONResponse({"status": "ok", "accepted": len(alerts)})
        result = await run_in_threadpool(self.engine.ingest, alerts)
        return JSONResponse({"status": "ok", "accepted": result.accepted})

    async def list_incidents(self, request: Request) -> Response:
        """Incidents, newest first (by when each last opened or reopened), merged ones too (resolved, with
        ``merged_into``); ``?state=`` and ``?priority=`` filter, ``?limit=`` caps the list.

        ``X-Total-Count`` says how many match without the cap; ``X-Continue``, when more come after the
        cap, the ``?continue=`` token of the next page (``gpuwarden.incident_pages``).
        """
        params = request.query_params
        state = choice(single(params, "state"), "state", [s.value for s in IncidentState])
        priority = choice(single(params, "priority"), "priority", [p.value for p in Priority])
        limit = positive(single(params, "limit"), "limit")
        after = continue_key(single(params, CONTINUE), state, priority)
        store = self.engine.store

        def listed() -> Response:  # in the thread pool: thousands of incidents take a while to render
            rows, headers = incident_page(store, state, priority, limit, after)
            held = self.engine.incident_silences()  # one read: each incident's end and ids agree
            inventory = self.engine.inventory
            return JSONResponse(
                [
                    incident_summary(
                        r,
                        n,
                        held[r.id][-1].ends_at if r.id in held else None,
                        root_cluster(target_from_dict(r.root_target), inventory),
                        [h.id for h in held.get(r.id, ())],
                    )
                    for r, n in rows
                ],
                headers=headers,
            )

        return await run_in_threadpool(listed)

    async def show_incident(self, request: Request) -> Response:
        """One incident with impact, timeline and alerts."""
        incident_id = request.path_params["incident_id"]
        incident = await run_in_threadpool(self.engine.store.get, incident_id)
        return await run_in_threadpool(detail_response, self.engine, incident)

    async def postmortem(self, request: Request) -> Response:
        """The Markdown postmortem draft."""
        text = await run_in_threadpool(self.engine.postmortem, request.path_params["incident_id"])
        return PlainTextResponse(text, media_type="text/markdown; charset=utf-8")

    def routes(self) -> list[BaseRoute]:
        """Every route of the API."""
        incident = "/api/v1/incidents/{incident_id}"
        silence = "/api/v2/silence/{silence_id}"
        am = AlertmanagerApi(self.engine)
        actions = IncidentActionsApi(self.engine)
        outbox = OutboxApi(self.outbox, self.engine.store)
        inventory = InventoryApi(self.engine)
        probes = HealthApi(self.engine, self.metrics, self.health, self.applier, self.fence)
        routes = [
            Route(
                "/api/v2/alerts",
                self.write("/api/v2/alerts", self.post_alerts, query=False),
                methods=["POST"],
            ),
            Route(
                "/api/v1/webhook/alertmanager",
                self.write("/api/v1/webhook/alertmanager", self.post_webhook, query=False),
                methods=["POST"],
            ),
            Route("/api/v2/alerts", self.read("/api/v2/alerts", am.list_alerts, None), methods=["GET"]),
            Route(
                "/api/v2/alerts/groups",
                self.read("/api/v2/alerts/groups", am.list_groups, None),
                methods=["GET"],
            ),
            Route(
                "/api/v2/silences",
                self.write("/api/v2/silences", am.post_silence, barrier=True, query=False),
                methods=["POST"],
            ),
            Route("/api/v2/silences", self.read("/api/v2/silences", am.list_silences, None), methods=["GET"]),
            Route(silence, self.read("/api/v2/silence/{id}", am.get_silence, None), methods=["GET"]),
            Route(
                silence,
                self.write("/api/v2/silence/{id}", am.expire_silence, barrier=True, query=False),
                methods=["DELETE"],
            ),
            Route("/api/v2/status", self.read("/api/v2/status", am.status, None), methods=["GET"]),
            Route(
                "/api/v2/receivers", self.read("/api/v2/receivers", am.list_receivers, None), methods=["GET"]
            ),
            Route(
                "/api/v1/incidents",
                self.read("/api/v1/incidents", self.list_incidents, INCIDENT_QUERY),
                methods=["GET"],
            ),
            Route(
                "/api/v1/inventory", self.read("/api/v1/inventory", inventory.show_inventory), methods=["GET"]
            ),
            Route(incident, self.read("/api/v1/incidents/{id}", self.show_incident), methods=["GET"]),
            *[
                Route(
                    f"{incident}/{action}",
                    self.write(f"/api/v1/incidents/{{id}}/{action}", handler, barrier=True),
                    methods=["POST"],
                )
                for action, handler in actions.handlers().items()
            ],
            Route(
                f"{incident}/postmortem",
                self.read("/api/v1/incidents/{id}/postmortem", self.postmortem),
                methods=["GET"],
            ),
            Route(
                "/api/v1/outbox",
                self.read("/api/v1/outbox", outbox.list_messages, LIST_QUERY),
                methods=["GET"],
            ),
            Route("/api/v1/outbox/retry", self.write("/api/v1/outbox/retry", outbox.retry), methods=["POST"]),
            Route(
                "/api/v1/outbox/discard",
                self.write("/api/v1/outbox/discard", outbox.discard),
                methods=["POST"],
            ),
            Route("/api/v1/ingest/status", probes.ingest_status, methods=["GET"]),
            Route("/metrics", probes.metrics_endpoint, methods=["GET"]),
            Route("/healthz", probes.healthz, methods=["GET"]),
            # Alertmanager's probe paths, for setups that probe gpuwarden where an Alertmanager stood.
            Route("/-/healthy", probes.healthz, methods=["GET", "HEAD"]),
            Route("/-/ready", probes.ready, methods=["GET", "HEAD"]),
        ]
        return [*routes, *_with_trailing_slash(routes)]


def _with_trailing_slash(routes: Sequence[BaseRoute]) -> list[BaseRoute]:
    """Alertmanager's API paths once more with a trailing slash, answered as without it as Alertmanager 0.25
    does (``/api/v2/alerts/``), where Starlette would redirect (307) to an absolute ``http://`` URL built
    from the Host header: a sender not following redirects stored nothing, and one behind a TLS proxy was
    sent to plain http."""
    return [
        Route(f"{r.path}/", r.endpoint, methods=sorted(r.methods or ()))
        for r in routes
        if isinstance(r, Route) and r.path.startswith("/api/v2/")
    ]


def create_app(
    engine: IncidentEngine,
    config: ApiConfig,
    *,
    extra_routes: Sequence[BaseRoute] = (),
    background: Sequence[BackgroundTask] = (),
    applier: JournalApplier | None = None,
    outbox: Outbox | None = None,
    fence: LockFence | None = None,
    hurry: threading.Event | None = None,
) -> Starlette:
    """The Starlette app; ``background`` tasks run in threads until shutdown.

    With ``applier``, alert writes are acknowledged once journaled and the applier runs as one more
    background task (replaying what the journal held at start; ``/-/ready`` says when it caught up);
    without it they are stored synchronously before the answer. At shutdown each task is waited for 5 s at
    most, and not at all once ``hurry`` is set (a second stop signal); the outbox's send in flight, 5 s more
    at most even then (``Outbox.finish_sends``)."""
    metrics = ApiMetrics(engine)
    if applier is not None:
        health = applier.health
        background = [*background, applier.run]
    else:
        health = ServiceHealth()
        health.replayed.set()  # no journal, nothing to replay
    handlers = _Handlers(engine, config, metrics, applier, outbox, health=health, fence=fence)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        stop = threading.Event()
        threads = [threading.Thread(target=task, args=(stop,), daemon=True) for task in background]
        for t in threads:
            t.start()
        try:
            yield
        finally:
            stop.set()
            join_within(threads, 5, hurry)
            if outbox is not None:  # even hurried: a send cut here is sent again at the next start
                outbox.finish_sends(5)

    app = Starlette(
        routes=[*handlers.routes(), *extra_routes],
        lifespan=lifespan,
        exception_handlers={404: no_route, 405: no_route},
    )
    app.router.redirect_slashes = False  # ``no_route`` redirects, to a relative reference
    app.add_middleware(CatchAll, metrics=metrics, health=health)
    app.add_middleware(AllowedHosts, hosts=config.allowed_hosts)  # with none, it passes every request on
    app.add_middleware(RoutePrefix, prefix=config.route_prefix)  # outermost: the rest sees the path below it
    return app
