"""The active ``serve``: its API on uvicorn until a stop signal (exit 0) or the loss of the store lock
(exit 1), with a watch on a PostgreSQL store lock."""

from __future__ import annotations

import gc
import logging
import threading
from typing import TYPE_CHECKING, Any

from gpuwarden.cli.logs import LogFormat
from gpuwarden.cli.startup import StartupLines
from gpuwarden.graceful import StopRequest, run_until_stopped
from gpuwarden.urls import host_port

if TYPE_CHECKING:
    import socket

    import uvicorn
    from starlette.applications import Starlette

    from alerting.applier import JournalApplier
    from alerting.engine import IncidentEngine
    from alerting.fencing import LockFence
    from alerting.instance_lock import InstanceLocks
    from alerting.outbox import Outbox
    from gpuwarden.api import BackgroundTask
    from gpuwarden.config import ApiConfig
    from gpuwarden.forced_stop import ForcingServer
    from gpuwarden.webconfig import WebConfig

    # What ``serve`` builds once it holds the lock: fence, engine, background tasks, extra routes, outbox,
    # applier.
    Service = tuple[
        LockFence, IncidentEngine, list[BackgroundTask], list[object], Outbox | None, JournalApplier
    ]

logger = logging.getLogger("gpuwarden.serve")


def lock_watch(locks: InstanceLocks, fence: LockFence, interval: float = 1.0) -> BackgroundTask:
    """Keep a PostgreSQL store lock, telling ``fence`` what each check found; a loss (a standby took it
    meanwhile) calls the fence's ``on_lost``, which stops serve."""

    def run(stop: threading.Event) -> None:
        while not stop.wait(interval):
            try:
                fence.record(locks.status())
            except Exception:  # loop boundary: the next check tries again
                logger.exception("instance lock: check failed")
                continue
            if fence.lost:
                return

    return run


def run_active(
    started: tuple[InstanceLocks, socket.socket, Service],
    api: ApiConfig,
    where: tuple[str, int, str, str],
    stop: StopRequest,
    lines: StartupLines | None = None,
    *,
    web: WebConfig | None = None,
) -> None:
    """Serve the API until a stop signal (exit 0) or until the store lock is lost (exit 1, said on
    ``lines``: a JSON line with ``--log-format json``); ``web``: the web configuration file's TLS, basic auth
    and headers."""
    from alerting.db import close_engine  # noqa: PLC0415 - see build_service
    from alerting.fencing import LockStatus  # noqa: PLC0415
    from gpuwarden.api import create_app  # noqa: PLC0415

    locks, listener, (fence, engine, background, routes, outbox, applier) = started
    lost: list[LockStatus] = []

    def on_lost(status: LockStatus) -> None:
        lost.append(status)
        server.should_exit = True  # uvicorn's own graceful stop, as on SIGTERM

    fence.on_lost = on_lost
    if locks.can_be_lost:  # file locks last as long as the process: nothing to watch for SQLite
        background = [*background, lock_watch(locks, fence)]
    # What was acknowledged but not applied before a crash is replayed by the applier's thread once the port
    # is open: a replay of minutes with no port would fail every liveness probe. New writes are appended
    # after the backlog, so they are applied after it, in order; /-/ready says when it caught up.
    hurry = threading.Event()  # the second stop signal: nothing more is waited for (``ForcingServer``)
    if outbox is not None:
        outbox.hurry = hurry
    app = create_app(
        engine,
        api,
        extra_routes=routes,  # type: ignore[arg-type]
        background=background,
        applier=applier,
        outbox=outbox,
        fence=fence,
        hurry=hurry,
    )
    server = uvicorn_server(app, where[0], where[1], api, web)
    server.hurry = hurry
    try:  # SIGTERM (every pod stop) ends like Ctrl-C: shutdown, then the locks released here, exit 0
        run_until_stopped(server, [listener], stop)
    finally:
        listener.close()
        close_engine(engine.store.engine)  # while the lock is held: no other server writes meanwhile
        locks.release()
    if hurry.is_set():
        logger.info(
            "serve: stopped at the second stop signal without waiting: requests in flight were cut, what the"
            " journal holds is applied and what the outbox holds is sent at the next start"
        )
    if lost:
        raise (lines or StartupLines(LogFormat.TEXT, logger)).failed(f"stopped: {lost[0].detail}", 1)


def uvicorn_server(
    app: Starlette, address: str, port_number: int, api: ApiConfig, web: WebConfig | None = None
) -> ForcingServer:
    """The active server's uvicorn, with its bounds against idle and slow clients; the collector tuned for
    the long-lived state startup loaded. A second stop signal cuts the requests in flight (``ForcingServer``).
    """
    from gpuwarden.forced_stop import ForcingServer  # noqa: PLC0415 - imports uvicorn

    # The engine holds every open incident and the status of every stored alert; the applier allocates a
    # few objects per alert. With the default collector (a pass every 700 allocations, full passes over all
    # that state) collection took about a quarter of the applier's time in a storm. What startup loaded
    # is long-lived: frozen out of collections; young passes every 10,000 allocations.
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)
    # [::1]:8080, not ::1:8080; under api.route_prefix: 127.0.0.1:8080/gpuwarden
    tls = " (https)" if web is not None and web.ssl_context is not None else ""
    logger.info("serving on %s%s%s", host_port(address, port_number), api.route_prefix, tls)
    return ForcingServer(api_server_config(app, api, web, host=address, port=port_number))


def api_server_config(
    app: Starlette, api: ApiConfig, web: WebConfig | None = None, **options: Any
) -> uvicorn.Config:
    """uvicorn's configuration for serve's apps, the active one's and the standby's (with ``options``
    of their own): no access log, serve's logging kept, and the bounds against idle and slow clients
    (api.header_timeout_seconds, api.keep_alive_seconds, api.max_connections; the body's deadline is the
    app's, api.body_timeout_seconds), so that a standby's descriptors are held no longer than the active's.
    With ``web`` (``--web.config.file``), over its TLS, behind its basic auth and with its headers."""
    import uvicorn  # noqa: PLC0415 - the reason build_service gives

    from gpuwarden.basic_auth import served  # noqa: PLC0415
    from gpuwarden.httpprotocol import header_deadline_protocol  # noqa: PLC0415

    token = api.token.get_secret_value() if api.token is not None else None
    guarded, tls = served(app, web, bearer=token)
    return uvicorn.Config(
        guarded,
        log_level="warning",
        access_log=False,
        log_config=None,
        http=header_deadline_protocol(api.header_timeout_seconds),
        timeout_keep_alive=api.keep_alive_seconds,
        limit_concurrency=api.max_connections,
        **tls,
        **options,
    )
