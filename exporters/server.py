"""The exporter's HTTP face: ``/metrics`` renders the cached exposition, ``/healthz`` reports staleness.

A scrape never touches NVML: it returns bytes rendered after the last collection, so it answers in
microseconds even while an NVML call hangs. ``/metrics`` serves the text format 0.0.4, as dcgm-exporter
does, to every scraper that accepts it (Prometheus does), and OpenMetrics 1.0.0 only to one that accepts
nothing else. Extra routes (the simulator's ``/sim/faults``) are mounted only when the caller passes them,
i.e. only with ``--simulate``.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp

from exporters.collection import CollectionLoop
from exporters.exposition import OPENMETRICS_CONTENT_TYPE, TEXT_CONTENT_TYPE
from exporters.xid import XidWatcher
from gpuwarden.api_errors import slash_redirect
from gpuwarden.basic_auth import served
from gpuwarden.graceful import StopRequest, run_until_stopped
from gpuwarden.headers import HEADER_TIMEOUT_SECONDS

if TYPE_CHECKING:
    import uvicorn

    from gpuwarden.webconfig import WebConfig


def _media_ranges(header: str) -> list[tuple[str, dict[str, str], float]]:
    """``Accept``-style header -> [(media or coding, parameters, q)], entries with a bad q dropped."""
    ranges = []
    for part in header.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        if not media:
            continue
        parsed = {}
        for param in params:
            key, _, value = param.partition("=")
            parsed[key.strip().lower()] = value.strip().strip('"')
        try:
            q = float(parsed.pop("q", "1"))
        except ValueError:
            continue
        ranges.append((media.lower(), parsed, q))
    return ranges


def wants_openmetrics(accept: str) -> bool:
    """True only when the scraper takes OpenMetrics 1.0.0 and not the text format 0.0.4.

    Prometheus lists OpenMetrics first, but OpenMetrics requires ``_total`` on counter samples, which
    NVIDIA's names lack, so DCGM counters would reach it as ``unknown``. Like dcgm-exporter, the text
    format is served to any scraper that accepts it; OpenMetrics (no exemplars here to need it) only to one
    that accepts nothing else. A version other than 1.0.0 is not served as 1.0.0: text answers instead.
    """
    text = openmetrics = False
    for media, params, q in _media_ranges(accept):
        if q <= 0:
            continue
        version = params.get("version")
        if media in ("*/*", "text/*") or (media == "text/plain" and version in (None, "0.0.4")):
            text = True
        elif media == "application/openmetrics-text" and version in (None, "1.0.0"):
            openmetrics = True
    return openmetrics and not text


def accepts_gzip(accept_encoding: str) -> bool:
    """True when ``Accept-Encoding`` allows gzip (``gzip;q=0`` refuses it, ``*`` allows it)."""
    allowed: bool | None = None
    for coding, _, q in _media_ranges(accept_encoding):
        if coding == "gzip":
            return q > 0
        if coding == "*":
            allowed = q > 0
    return bool(allowed)


def health(loop: CollectionLoop, xid_watchers: Mapping[str, XidWatcher]) -> tuple[int, dict[str, Any]]:
    """(HTTP status, body) of ``/healthz``.

    503 when the exporter is not serving current GPU values, with the reason: ``stalled`` (the collection
    loop has not ticked for several intervals: its thread died or hangs), ``nvml_unavailable`` (not one
    NVML call answered on a host), ``stale`` (a host's collection overran its deadline: a hung NVML
    call). 200 with ``degraded`` when metrics are current but an XID watcher is not watching (no event set,
    or its waits keep failing), else ``ok``.
    """
    stale, blind, stalled = loop.stale_hosts(), loop.blind_hosts(), loop.stalled_for()
    reasons = []
    if stalled is not None:
        reasons.append(f"stalled: no collection for {stalled:.0f} s (interval {loop.interval:g} s)")
    if blind:
        reasons.append(f"nvml_unavailable: NVML answered nothing on {', '.join(blind)}")
    overran = [host for host in stale if host not in blind]
    if overran:
        reasons.append(f"stale: the collection overran its deadline on {', '.join(overran)}")
    body: dict[str, Any] = {
        "status": reasons[0].split(":", 1)[0] if reasons else "ok",
        "reasons": reasons,
        "stale_hosts": stale,
        "ticks": loop.ticks,
    }
    if xid_watchers:
        body["xid_watchers"] = {
            host: {
                "watching": w.watching,
                "gpus": w.registered,
                "errors": w.errors,
                "last_error": w.problem(),
            }
            for host, w in xid_watchers.items()
        }
        if not reasons and not all(w.watching for w in xid_watchers.values()):
            body["status"] = "degraded"
    return (503 if reasons else 200), body


def create_app(
    loop: CollectionLoop,
    *,
    extra_routes: Sequence[BaseRoute] = (),
    xid_watchers: Mapping[str, XidWatcher] | None = None,
) -> Starlette:
    """The Starlette app serving ``loop``'s exposition; ``/healthz`` also reports the XID watchers."""
    watchers = dict(xid_watchers or {})

    async def metrics(request: Request) -> Response:
        snapshot = loop.exposition
        openmetrics = wants_openmetrics(request.headers.get("accept", ""))
        content_type = OPENMETRICS_CONTENT_TYPE if openmetrics else TEXT_CONTENT_TYPE
        gzipped = accepts_gzip(request.headers.get("accept-encoding", ""))
        body = snapshot.ready(openmetrics=openmetrics, gzipped=gzipped)
        if body is None:
            # The first such scrape of a collection compresses (163 ms for 32x8 simulated GPUs) or renders
            # OpenMetrics: on a worker thread, so other scrapes and /healthz are answered meanwhile.
            body = await run_in_threadpool(snapshot.body, openmetrics=openmetrics, gzipped=gzipped)
        # The answer depends on both headers: a cache between Prometheus and the exporter (a proxy that keeps
        # answers) must not hand a gzipped or OpenMetrics body to a scraper that asked for neither.
        headers = {"Vary": "Accept, Accept-Encoding"}
        if gzipped:
            headers["Content-Encoding"] = "gzip"
        return Response(body, media_type=content_type, headers=headers)

    async def healthz(request: Request) -> JSONResponse:
        status, body = health(loop, watchers)
        return JSONResponse(body, status_code=status)

    async def index(request: Request) -> PlainTextResponse:
        return PlainTextResponse("gpuwarden exporter: see /metrics and /healthz\n")

    routes: list[BaseRoute] = [
        Route("/metrics", metrics, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/", index, methods=["GET"]),
        *extra_routes,
    ]
    app = Starlette(routes=routes, exception_handlers={404: _not_found})
    app.router.redirect_slashes = False  # ``_not_found`` redirects, to a relative reference
    return app


async def _not_found(request: Request, exc: Exception) -> Response:
    """Starlette's 404, or a 307 to a path with a route by a relative ``Location`` (``/metrics/`` to
    ``../metrics``): Starlette's absolute one, built from ``Host``, sent a scraper behind a proxy serving the
    exporter under a prefix (``/exporter/metrics/``) to ``/metrics``, outside it, and one behind a TLS proxy
    to plain http."""
    return slash_redirect(request) or PlainTextResponse("Not Found", status_code=404)


def server_config(
    app: ASGIApp, header_timeout: float = HEADER_TIMEOUT_SECONDS, web: WebConfig | None = None
) -> uvicorn.Config:
    """uvicorn's configuration for an ``app`` of the exporter's or the inference server's: serve's protocol
    (``gpuwarden.httpprotocol``), so that a method the parser does not know (``FOO /metrics``) is answered
    405 with ``Allow`` like ``POST``, not 400, a silent or trickling client does not keep its connection and
    431 answers past 1 MiB of headers; no access log (its INFO lines are under ``log_level`` anyway); the
    command's logging kept (``log_config=None``): uvicorn's own configuration gave its lines
    (``WARNING:  Invalid HTTP request received.``) a handler of their own, neither JSON nor timed.
    ``web``: the web configuration file's TLS, basic auth and headers (``gpuwarden.basic_auth.served``)."""
    import uvicorn  # noqa: PLC0415 - only exporter and inference-server serve; importing stays light

    from gpuwarden.httpprotocol import header_deadline_protocol  # noqa: PLC0415 - imports uvicorn

    protocol = header_deadline_protocol(header_timeout)
    app, tls = served(app, web)
    return uvicorn.Config(app, log_level="warning", access_log=False, log_config=None, http=protocol, **tls)


def serve(
    app: ASGIApp,
    sock: socket.socket,
    stop: StopRequest | None = None,
    web: WebConfig | None = None,
) -> None:
    """Serve ``app`` on a bound socket until SIGINT/SIGTERM (uvicorn's graceful stop), then return; a second
    signal cuts the requests still in flight (``ForcingServer``). With ``stop``, one that came since it was
    caught (before uvicorn was imported) stops it once it started; with ``web``, over its TLS and behind
    its basic auth."""
    from gpuwarden.forced_stop import ForcingServer  # noqa: PLC0415 - imports uvicorn

    config = server_config(app, web=web)
    run_until_stopped(ForcingServer(config), [sock], stop)


def is_loopback(host: str | None) -> bool:
    """Whether a client address is this machine (127.0.0.0/8, ::1, or IPv4-mapped loopback)."""
    if not host:
        return False
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


def loopback_only(routes: Sequence[BaseRoute], *, allow_remote: bool = False) -> list[BaseRoute]:
    """``routes`` with their writes (any method but GET and HEAD) refused with 403 unless the client is
    on this machine. For the simulator's ``/sim/faults``: a server listening on ``0.0.0.0`` must not let
    anyone on the network inject faults. ``allow_remote`` keeps the routes as they are."""
    if allow_remote:
        return list(routes)
    guarded: list[BaseRoute] = []
    for route in routes:
        if not isinstance(route, Route) or (route.methods or set()) <= {"GET", "HEAD"}:
            guarded.append(route)
            continue
        guarded.append(
            Route(route.path, _guard(route.endpoint), methods=list(route.methods or ()), name=route.name)
        )
    return guarded


def _guard(endpoint: Any) -> Any:
    async def guarded(request: Request) -> Response:
        client = request.client
        if not is_loopback(client.host if client is not None else None):
            message = (
                "fault injection is accepted from this machine only; start the server with"
                " --allow-remote-faults to accept it from elsewhere"
            )
            return JSONResponse(
                {"error": {"message": message, "type": "permission_error", "param": None, "code": None}},
                status_code=403,
            )
        response: Response = await endpoint(request)
        return response

    return guarded
