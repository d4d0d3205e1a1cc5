"""What a ``serve --standby`` answers on its port while another ``serve`` holds the store.

Its port used to stay closed until it took over, so a client sent to it (``incidents list --url``, a
Prometheus that lists both replicas) got "Connection refused" and no hint of where to go. It now listens
and answers every API request 503 naming the active server (pid, host, since when), with ``Retry-After``;
liveness (``/healthz``, ``/-/healthy``) is 200, readiness (``/-/ready``) 503, so a Kubernetes Service
sends it nothing and a liveness probe leaves it alone; ``/metrics`` says ``gpuwarden_serve_standby 1``.
Nothing is journaled or stored: a standby opens neither.
"""

from __future__ import annotations

import threading

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from alerting.db import connection_names
from alerting.instance_lock import InstanceBusy
from gpuwarden.api_errors import error_response, slash_redirect
from gpuwarden.headers import STANDBY_ACTIVE_ELSEWHERE, STANDBY_HEADER, STANDBY_STORE_UNANSWERED
from gpuwarden.redaction import hidden_names
from gpuwarden.route_prefix import RoutePrefix

ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
# A standby takes the lock within about a second of its release (PostgreSQL wakes it; a SQLite file lock is
# polled every 0.25 s) and then starts in about half a second: the earliest it could take requests.
RETRY_AFTER_SECONDS = "1"


class StandbyState:
    """Why this server is a standby, as the last attempt to take the store lock found it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._why = "waiting for the store lock"
        self._held_elsewhere = True  # the last attempt found a holder (not a store it could not ask)

    def waiting(self, reason: Exception) -> None:
        """Record what the last attempt found (``InstanceBusy`` names the holder; a store error, why the
        store cannot be asked), without the store's host and user: requests without a token read it (the
        log line of the attempt has them)."""
        said = str(reason).splitlines()[0] if str(reason) else type(reason).__name__
        with self._lock:
            self._why = hidden_names(said, known=connection_names(reason))
            self._held_elsewhere = isinstance(reason, InstanceBusy)

    @property
    def kind(self) -> str:
        """``STANDBY_HEADER``'s value: whether another serve holds the store, or the store did not answer."""
        with self._lock:
            return STANDBY_ACTIVE_ELSEWHERE if self._held_elsewhere else STANDBY_STORE_UNANSWERED

    @property
    def message(self) -> str:
        """What every refused request is told."""
        with self._lock:
            why, held_elsewhere = self._why, self._held_elsewhere
        if not held_elsewhere:
            # No active server is known: one whose store refuses it (a wrong password or database name in
            # the shared configuration) waits as this one does, and "send requests to the active one" sent
            # people looking for a server that did not exist.
            return (
                f"this serve is a standby and takes no requests: it cannot ask the store for its lock: {why};"
                " whether another serve is active is unknown: check the store's address and credentials"
                " (api.db); this one takes over once the store answers and no other serve holds it"
            )
        return (
            f"this serve is a standby and takes no requests: {why}; send requests to the active one (through"
            " the one address, Service or VIP, in front of both); this one takes over when that one stops"
        )


class StandbyCollector(Collector):
    """``gpuwarden_serve_standby 1``: which replica is the standby, for dashboards and alerts."""

    def collect(self) -> list[GaugeMetricFamily]:
        """One gauge."""
        return [standby_gauge(1)]


def standby_gauge(value: int) -> GaugeMetricFamily:
    """``gpuwarden_serve_standby``: 1 on a standby waiting for the store lock, 0 on the active server."""
    return GaugeMetricFamily(
        "gpuwarden_serve_standby",
        "1 while this serve is a standby waiting for the store lock, 0 once it is the active one.",
        value=value,
    )


def standby_app(state: StandbyState, route_prefix: str = "") -> Starlette:
    """The standby's HTTP app: liveness 200, readiness 503, ``/metrics``, every other request 503; under
    ``route_prefix`` (``api.route_prefix``) as the active server's, so that its probes find it."""

    async def healthy(request: Request) -> Response:
        return PlainTextResponse("ok: standby\n")

    async def ready(request: Request) -> Response:
        return PlainTextResponse(
            f"not ready: {state.message}\n", status_code=503, headers={"Retry-After": RETRY_AFTER_SECONDS}
        )

    async def metrics(request: Request) -> Response:
        registry = CollectorRegistry()
        registry.register(StandbyCollector())
        return Response(generate_latest(registry), media_type="text/plain; version=0.0.4; charset=utf-8")

    async def refuse(request: Request) -> Response:
        # A probe path with a trailing slash is redirected as the active server does (``../healthy``): the
        # catch-all refused it 503, and a liveness probe written so restarted the standby.
        redirect = slash_redirect(request, probes)
        if redirect is not None:
            return redirect
        response = error_response(503, state.message, route=request.url.path)
        response.headers["Retry-After"] = RETRY_AFTER_SECONDS
        response.headers[STANDBY_HEADER] = state.kind  # the CLI says what to do by it (``api_requests``)
        return response

    probes = [
        Route("/healthz", healthy, methods=["GET", "HEAD"]),
        Route("/-/healthy", healthy, methods=["GET", "HEAD"]),
        Route("/-/ready", ready, methods=["GET", "HEAD"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    app = Starlette(routes=[*probes, Route("/{path:path}", refuse, methods=ALL_METHODS)])
    app.add_middleware(RoutePrefix, prefix=route_prefix)
    return app
