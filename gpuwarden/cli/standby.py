"""``serve --standby``: wait for the store lock while answering on the port that the active one will have.

The lock is polled in a thread; the main thread serves ``gpuwarden.standby_api`` on a duplicate of the
listening socket, so SIGTERM stops a standby as gracefully as an active server. ``serve`` keeps one
``StopRequest`` caught from before the wait until its active server ends: a SIGTERM that comes as the lock is
taken, or while the active server is being built, is not lost (the standby went on to serve as the active
server) and does not kill the process mid-way; the lock is given back and serve exits 0.

Once the lock is taken the standby app stops (its duplicate closed, keep-alive connections closed) and
``serve`` builds the engine and serves the real API on the same socket: connections that arrive meanwhile
wait in its backlog, none is refused.
"""

from __future__ import annotations

import errno
import importlib
import logging
import socket
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from gpuwarden.cli.machine_checks import listen_socket
from gpuwarden.errors import ConfigError
from gpuwarden.graceful import StopRequest, run_until_stopped
from gpuwarden.urls import host_port

if TYPE_CHECKING:
    from alerting.instance_lock import InstanceLocks
    from gpuwarden.config import ApiConfig, GpuwardenConfig
    from gpuwarden.webconfig import WebConfig

logger = logging.getLogger("gpuwarden.serve")

Sleep = Callable[[float], None]
OnWait = Callable[[Exception], None]
# A standby's shutdown, once it holds the lock, must not wait long for a client that keeps a request open.
SHUTDOWN_SECONDS = 1


class StandbyStopped(Exception):
    """The standby was asked to stop (SIGTERM, SIGINT) while it waited for the lock."""


def wait_as_standby(
    acquire: Callable[[Sleep, OnWait], InstanceLocks],
    listener: socket.socket,
    api: ApiConfig,
    stop: StopRequest | None = None,
    web: WebConfig | None = None,
) -> InstanceLocks | None:
    """Serve the standby app on ``listener`` until ``acquire`` returns the locks (this server is now the
    active one), or until a stop signal (caught by ``stop``, or by one of its own): then None, and locks
    taken just as it came are released. ``acquire`` gets a sleep that raises ``StandbyStopped`` once serving
    ended, and a callback for what each attempt found; what it raises is raised here. ``web``: the web
    configuration file's TLS, basic auth and headers, as the active server serves them."""
    stop = stop or StopRequest()
    import uvicorn  # noqa: PLC0415 - serve imports it anyway; the rest of the CLI must not

    from gpuwarden.cli.active_server import api_server_config  # noqa: PLC0415 - the active server's bounds
    from gpuwarden.standby_api import StandbyState, standby_app  # noqa: PLC0415

    state = StandbyState()
    served = api_server_config(
        standby_app(state, api.route_prefix),
        api,
        web,
        lifespan="off",
        timeout_graceful_shutdown=SHUTDOWN_SECONDS,
    )
    server = uvicorn.Server(served)
    ended = threading.Event()
    outcome: list[InstanceLocks] = []
    failure: list[BaseException] = []

    def sleep(seconds: float) -> None:
        if ended.wait(seconds):
            raise StandbyStopped

    def take() -> None:
        try:
            outcome.append(acquire(sleep, state.waiting))
        except StandbyStopped:
            pass
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread, which raises it
            failure.append(exc)
        finally:
            server.should_exit = True

    waiter = threading.Thread(target=take, name="standby-lock", daemon=True)
    waiter.start()
    # uvicorn closes the sockets it serves on; the duplicate goes, the listening socket stays for serve.
    run_until_stopped(server, [listener.dup()], stop)
    # A signal, also one that came as the lock was taken (the waiter is done then, and the signal's only
    # trace is ``stop``); or serving ended before the lock was taken, which only a signal does.
    signalled = stop.asked or waiter.is_alive()
    ended.set()
    waiter.join()
    if failure:
        raise failure[0]
    if signalled:
        logger.info("standby: stopped before taking over")
        for locks in outcome:  # taken just as the signal came: given back, not used
            locks.release()
        return None
    return outcome[0]


def standby_socket(host: str, port: int, host_field: str, port_field: str) -> socket.socket | None:
    """The standby's bound and listening socket; None when the port is in use (the standby then waits with it
    closed: ``port_taken_said``). It listens at once: its server starts on another thread while the lock's
    first attempt says "standby, waiting", and a connection made meanwhile queues for that server instead of
    being refused (uvicorn calls ``listen`` again with its own backlog)."""
    try:
        sock = listen_socket(host, port, host_field, port_field)
    except ConfigError as exc:
        if not (isinstance(exc.__cause__, OSError) and exc.__cause__.errno == errno.EADDRINUSE):
            raise
        return None
    sock.listen(socket.SOMAXCONN)
    return sock


def port_taken_said(host: str, port: int) -> OnWait:
    """The lock's ``on_wait`` for a standby whose port is in use: once the store is found held, say that it
    waits with the port closed. Said before the lock was tried, it told a standby that took the lock at once
    (the port held by another program, no serve active) that it waited, and it then stopped, the port in
    use."""
    said: list[bool] = []

    def tell(_found: Exception) -> None:
        if not said:
            logger.warning(
                "standby: %s is in use (by the active serve on this host?); waiting with the port closed,"
                " it is bound when this serve takes over",
                host_port(host, port),
            )
            said.append(True)

    return tell


# What ``serve`` imports only once it holds the lock (the store's migrations, the journal, the engine's
# outbox): a standby imports it while it waits, so a handover does not. Seconds on a loaded machine.
_AFTER_LOCK = (
    "alerting.migrate",
    "alerting.applier",
    "alerting.journal",
    "alerting.outbox",
    "alerting.health",
)
_MIGRATION = (
    "alembic.command",
    "alembic.runtime.environment",
    "alembic.runtime.migration",
    "alembic.operations",
)


def preload(cfg: GpuwardenConfig) -> None:
    """Import what ``serve`` needs once it holds the lock, for the notifiers ``cfg`` sets up too; nothing
    here depends on holding it."""
    names = [*_AFTER_LOCK, *_MIGRATION, "alerting.outbox_metrics"]
    if cfg.slack.bot_token is not None:
        names.append("alerting.notifiers.slack")
    if cfg.webhooks:
        names.append("alerting.notifiers.webhook")
    if cfg.slack.signing_secret is not None:
        names.append("alerting.slack_interactions")
    for name in names:
        importlib.import_module(name)
