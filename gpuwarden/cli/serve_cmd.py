"""``gpuwarden serve``: the incident engine behind its Alertmanager-compatible HTTP API.

Its accept journal (where it lives, its applier) is in ``gpuwarden.cli.serve_journal``.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape

from gpuwarden.cli.active_server import run_active  # light: uvicorn and the API are imported when it runs
from gpuwarden.cli.consoles import refuse_option
from gpuwarden.cli.inventories import inventory_refresh, prepare_inventories
from gpuwarden.cli.logs import LogFormat, configure_logging, keep_running_on_sighup
from gpuwarden.cli.machine_checks import listen_socket, refused_setting, sqlite_path
from gpuwarden.cli.notifiers import build_outbox, stored_outbox
from gpuwarden.cli.numbers import whole_number
from gpuwarden.cli.output_options import log_format_option
from gpuwarden.cli.preflight import check_serve, journal_field, serve_ca_file_refusal, serve_token_refusal
from gpuwarden.cli.serve_journal import build_applier, journal_dir
from gpuwarden.cli.startup import EXIT_TEMPFAIL, StartupLines
from gpuwarden.cli.web_config import WEB_CONFIG_OPTION, web_config, with_web_config_problems
from gpuwarden.clock import SystemClock
from gpuwarden.errors import ConfigError
from gpuwarden.graceful import StopAsked, StopRequest  # stdlib only: light for every command
from gpuwarden.headers import TOKEN_ENV
from gpuwarden.route_prefix import route_prefix_entry  # stdlib only: light for every command

if TYPE_CHECKING:
    import socket

    from alerting.engine import IncidentEngine
    from alerting.health import ServiceHealth
    from alerting.instance_lock import InstanceLocks
    from alerting.outbox import Outbox
    from gpuwarden.api import BackgroundTask
    from gpuwarden.cli.active_server import Service
    from gpuwarden.config import ApiConfig, GpuwardenConfig
    from gpuwarden.webconfig import WebConfig

logger = logging.getLogger("gpuwarden.serve")


def _tick_loop(engine: IncidentEngine, interval: float, health: ServiceHealth) -> BackgroundTask:
    """Tick the engine every ``interval``, once the journal backlog found at start is applied (a tick
    before it would resolve alerts whose later posts are still in the backlog); each tick reads the
    store, so its outcome tells ``health`` whether the store is up while no alert arrives, and ``health``
    counts the ticks that completed (``GET /api/v1/ingest/status``): not one that raised, nor one that could
    not tell the listeners what it decided (the engine logs that and tells it at a later tick)."""

    def run(stop: threading.Event) -> None:
        while not stop.wait(interval):
            if not health.replayed.is_set():
                continue
            untold = engine.counters["listener_errors"]
            try:
                engine.tick()
            except Exception as exc:  # loop boundary: keep ticking, log with the exception
                if health.store_failed(exc):
                    logger.warning(
                        "engine tick failed: the store %s: %s", health.store_trouble, health.store_error
                    )
                else:
                    logger.exception("engine tick failed")
            else:
                health.store_ok()
                if engine.counters["listener_errors"] == untold:
                    health.ticked(engine.clock.now())
            if health.store_file is not None:
                health.store_file.check()

    return run


def _with_token(api: ApiConfig) -> tuple[ApiConfig, ConfigError | None]:
    """The API settings with the write token from the environment, and why serve cannot start with the
    token it has (``serve_token_refusal``, which config validate says too), listed with the other start-up
    problems."""
    from pydantic import SecretStr  # noqa: PLC0415 - see build_service

    refusal = serve_token_refusal(api.token is not None, os.environ)
    if refusal is not None:
        return api, refusal
    token = os.environ.get(TOKEN_ENV)
    if token:
        api = api.model_copy(update={"token": SecretStr(token)})
    return api, None


def _checked_config(
    config: Path | None, lines: StartupLines, web_config_file: Path | None
) -> GpuwardenConfig:
    """The configuration; exit 78 (``exit_status``) naming the file and line, or the variable, of what is
    wrong, and what is wrong with the web configuration file too."""
    from gpuwarden.config import load_config  # noqa: PLC0415 - see build_service

    try:
        return load_config(config)
    except ConfigError as exc:  # every problem of the file, as config validate lists them
        raise lines.refused(with_web_config_problems(exc, web_config_file)) from exc


def _failed(
    cfg: GpuwardenConfig, exc: ConfigError, store: str, store_field: str, lines: StartupLines
) -> typer.Exit:
    """Say a setting's error, and the others it carries, each naming the file and line, the variable or
    the option it came from (``--db 'x.db': ...``, its password hidden, as every bad option is said); the
    exit with its status (``exit_status``: 78 for the configuration, 69 or 75 for a store or port)."""
    from gpuwarden.redaction import hidden_password  # noqa: PLC0415 - see build_service

    said = []
    for problem in (exc.alone(), *exc.more):  # each listed: no "(and 2 more problems)" on the first
        if problem.field in ("api.db", store_field) and store_field != "api.db":  # --db gave the store
            problem = refused_setting(  # noqa: PLW2901
                store_field, hidden_password(store), problem.message, problem.outside
            )
        said.append(cfg.locate(problem))
    return lines.refused(ConfigError.first_of(said))


def _route_prefix(value: str) -> str:
    """``--route-prefix`` as ``api.route_prefix`` takes it; else one line naming it, exit 2."""
    try:
        return route_prefix_entry(value)
    except ValueError as exc:
        refuse_option(escape(f"--route-prefix {exc}"))


def _log(log_format: LogFormat) -> None:
    """``serve`` logs to stderr in ``log_format`` (one JSON object per line unless told otherwise)."""
    handler = logging.StreamHandler(sys.stderr)
    configure_logging(logging.INFO, log_format, handler)  # httpx's request lines (full URLs) quieted there


def take_locks(
    cfg: GpuwardenConfig,
    db: str,
    *,
    standby: bool,
    sleep: Callable[[float], None] | None = None,
    on_wait: Callable[[Exception], None] | None = None,
) -> InstanceLocks:
    """This server's store and journal locks, or a ``ConfigError``/``InstanceBusy`` saying why not; a
    standby waits for them, sleeping with ``sleep`` and telling ``on_wait`` what each attempt found."""
    from sqlalchemy.exc import SQLAlchemyError  # noqa: PLC0415 - see build_service

    from alerting.instance_lock import InstanceLocks, LockFileError  # noqa: PLC0415
    from alerting.migrate import store_error  # noqa: PLC0415

    journal = journal_dir(cfg, db)
    try:
        locks = InstanceLocks.for_server(db, journal, cfg.store.connect_timeout_seconds)
        locks.acquire(wait=standby, sleep=sleep or SystemClock().sleep, on_wait=on_wait)
    except LockFileError as exc:
        if exc.what.startswith("journal"):  # the store's setting when derived from it; --db: see _failed
            raise ConfigError(
                f"{journal}: cannot use it: {exc.reason}", field=journal_field(cfg, "api.db")
            ) from exc
        raise store_error(db, exc.cause) from exc
    except (OSError, SQLAlchemyError, ImportError) as exc:  # ImportError: no driver for the URL
        raise store_error(db, exc) from exc
    return locks


def _bound(locks: InstanceLocks, host: str, port: int, host_field: str, port_field: str) -> socket.socket:
    """``listen_socket``; when it fails, the locks are released and the files taking them made removed (this
    server does not start, and a later start, by another user too, finds none it cannot open)."""
    try:
        return listen_socket(host, port, host_field, port_field)
    except ConfigError:
        locks.discard()
        raise


def _locked_and_bound(
    cfg: GpuwardenConfig,
    db: str,
    *,
    standby: bool,
    where: tuple[str, int, str, str],
    stop: StopRequest,
    web: WebConfig | None = None,
) -> tuple[InstanceLocks, socket.socket] | None:
    """The locks and the bound socket of a server that is now the active one; None for a standby stopped
    (SIGTERM) while it waited. ``where``: host, port and the setting or option each came from.

    A standby binds its port first and answers on it while it waits (``gpuwarden.cli.standby``). If the
    port is taken, as by an active server on the same host and port, it waits with the port closed, as
    standbys did before, and binds it once it holds the lock. Otherwise the port is bound once the store
    lock is taken, so a second server is refused naming the store's holder rather than the port.
    """
    from gpuwarden.cli.standby import port_taken_said, preload, standby_socket, wait_as_standby  # noqa: PLC0415

    host, port, host_field, port_field = where
    on_wait = port_taken_said(host, port) if standby else None  # its port taken: it waits with it closed
    if standby:
        listener = standby_socket(host, port, host_field, port_field)
        preload(cfg)  # what serve imports once it holds the lock: a shorter handover
        if listener is not None:
            try:
                locks = wait_as_standby(
                    lambda sleep, on_wait: take_locks(cfg, db, standby=True, sleep=sleep, on_wait=on_wait),
                    listener,
                    cfg.api,
                    stop,
                    web,
                )
            except BaseException:
                listener.close()
                raise
            if locks is None:
                listener.close()
                return None
            return locks, listener
    try:  # a standby whose port is taken waits here, with SIGTERM caught: it must still stop it
        locks = take_locks(cfg, db, standby=standby, sleep=stop.sleep, on_wait=on_wait)
    except StopAsked:
        return None
    return locks, _bound(locks, host, port, host_field, port_field)


def _store_shown(db: str) -> str:
    """The store as serve's start-up line names it: a SQLite file's absolute path, a server's URL, without
    a password (one a libpq connection string taken for a path holds: ``check_store`` refuses it after)."""
    from gpuwarden.redaction import hidden_password  # noqa: PLC0415 - see build_service

    path = sqlite_path(db)
    return hidden_password(str(Path(path).absolute()) if path else db)


def _holds_password(db: str) -> bool:
    """Whether the store URL ``db`` holds a password (``_store_shown`` hides it)."""
    return sqlite_path(db) is None and _store_shown(db) != db


def build_service(
    cfg: GpuwardenConfig,
    db: str,
    health: ServiceHealth | None = None,
    locks: InstanceLocks | None = None,
) -> tuple[IncidentEngine, list[BackgroundTask], list[object], Outbox | None]:
    """Engine, background loops, extra routes (Slack) and the notification outbox (without a notifier,
    one the API reads and nothing dispatches) for one configuration; ``health`` is shared with the applier
    (``build_applier``). With ``locks``, every store commit first checks, in its transaction, that the store
    lock is still held."""
    # Imported here, not at module level: every other command (--help, incidents, config) must start
    # without the engine, SQLAlchemy, alembic, Starlette and the configuration model.
    from alerting.engine import IncidentEngine  # noqa: PLC0415
    from alerting.health import ServiceHealth  # noqa: PLC0415
    from alerting.migrate import open_store  # noqa: PLC0415
    from alerting.store_file import StoreFile  # noqa: PLC0415

    if health is None:  # no journal to replay
        health = ServiceHealth()
        health.replayed.set()

    inventories = prepare_inventories(cfg)
    clock, sources = inventories.clock, inventories.sources
    sql = open_store(
        db, connect_timeout=cfg.store.connect_timeout_seconds
    )  # after the inventory's settings were checked: a wrong one changes nothing
    health.store_file = StoreFile.watch(sqlite_path(db))
    if locks is not None:
        locks.fence_commits(sql)
    inventories.keep_in(sql)
    inventories.read()
    engine = IncidentEngine(sql, clock, cfg.alerting, inventories.merged())
    inventories.count_relists(engine)  # those of the read just made
    engine.inventory_source = inventories.name
    engine.inventory_sources = inventories.status
    background: list[BackgroundTask] = [_tick_loop(engine, cfg.alerting.tick_interval_seconds, health)]
    if sources:
        background.append(inventory_refresh(engine, inventories, cfg.alerting.inventory_refresh_seconds))
    routes: list[object] = []
    outbox = build_outbox(cfg, sql, clock)  # Slack and the webhooks; None without any
    if outbox is not None:
        from alerting.outbox_metrics import OutboxCollector  # noqa: PLC0415

        engine.subscribe(outbox)  # a listener: the engine now stores each change until the outbox has it
        engine.extra_metrics.append(OutboxCollector(outbox))  # per notifier: sent, retried, failed, depth
        background.append(outbox.run)
    else:  # the API still lists and discards what removed notifiers left
        outbox = stored_outbox(sql, clock)
    if cfg.slack.signing_secret is not None:
        from alerting.slack_interactions import PRESS_WORKERS, slack_interaction_routes  # noqa: PLC0415
        from alerting.slack_press_workers import PressWorkers  # noqa: PLC0415
        from alerting.slack_replays import HandledSlackRequests  # noqa: PLC0415

        handled = HandledSlackRequests(sql)  # in the store: a restart or a standby refuses a replay too
        workers = PressWorkers(PRESS_WORKERS)  # closed at the stop: queued presses cancelled, told
        routes.extend(
            slack_interaction_routes(
                cfg.slack.signing_secret, engine, clock, handled=handled, workers=workers
            )
        )
        background.append(workers.run)
    return engine, background, routes, outbox


def _fenced_service(cfg: GpuwardenConfig, db: str, locks: InstanceLocks) -> Service:
    """``build_service`` and ``build_applier`` behind a fence on ``locks``: every store commit, alert POST,
    journal apply and notification first makes sure that this server still holds the store lock."""
    from alerting.fencing import LockFence  # noqa: PLC0415 - see build_service
    from alerting.health import ServiceHealth  # noqa: PLC0415

    fence = LockFence(locks.status)
    health = ServiceHealth()
    engine, background, routes, outbox = build_service(cfg, db, health, locks)
    applier = build_applier(cfg, db, engine, health, fence)
    if outbox is not None:
        outbox.fence = fence
    return fence, engine, background, routes, outbox, applier


def serve(
    *,
    port: Annotated[
        int | None, whole_number("--port", 1, 65535, help="TCP port (default from config: api.port).")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Listen address (default api.listen_address).")] = None,
    route_prefix: Annotated[
        str | None,
        typer.Option(
            parser=_route_prefix,
            help="Path every route is served under, for a proxy forwarding it unstripped: /gpuwarden serves"
            " /gpuwarden/api/v2/alerts, /gpuwarden/-/ready (default api.route_prefix: the root).",
        ),
    ] = None,
    db: Annotated[
        str | None,
        typer.Option(
            help="SQLite path or SQLAlchemy URL (postgresql+psycopg://...); default api.db:"
            " gpuwarden.db in the working directory."
        ),
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", help="YAML configuration file.")] = None,
    standby: Annotated[
        bool,
        typer.Option(
            "--standby",
            help="If another serve holds the store, wait and take over when it stops; meanwhile its port"
            " answers 503 naming the active one (/-/healthy 200, /-/ready 503).",
        ),
    ] = False,
    log_format: Annotated[LogFormat, log_format_option()] = LogFormat.JSON,
    web_config_file: Annotated[Path | None, WEB_CONFIG_OPTION] = None,
) -> None:
    """Run the incident engine and its HTTP API; the write token comes from GPUWARDEN_API_TOKEN.

    One server is active per store: a second one stops, naming the first, or waits with --standby.
    """
    _log(log_format)  # first: with json, why it cannot start is a JSON line too (StartupLines)
    lines = StartupLines(log_format, logger)
    cfg = _checked_config(config, lines, web_config_file)
    web = web_config(web_config_file, lines)  # before the locks and the port: a refusal leaves nothing
    if route_prefix is not None:  # the active server's and a standby's app read it from the settings
        cfg = cfg.model_copy(update={"api": cfg.api.model_copy(update={"route_prefix": route_prefix})})
    api, no_token = _with_token(cfg.api)
    store, store_field = (db, "--db") if db else (api.db, "api.db")
    address, address_field = (host, "--host") if host else (api.listen_address, "api.listen_address")
    port_number, port_field = (port, "--port") if port else (api.port, "api.port")
    logger.info("store: %s (%s)", _store_shown(store), store_field)  # api.db's default: the working directory
    if store_field == "--db" and _holds_password(store):
        logger.warning(
            "--db holds a password, which every user of this machine can read in the process list (ps);"
            " set GPUWARDEN_API__DB, or api.db: {env: NAME} in the file, instead"
        )
    keep_running_on_sighup("serve")
    where = (address, port_number, address_field, port_field)
    # From here to the end a stop signal is remembered, never fatal and never lost: one that comes as a
    # standby takes the lock or while the active server is built stops serve there, the lock given back.
    with StopRequest().caught() as stop:
        started = _started(
            cfg, store, store_field, standby=standby, where=where, stop=stop, no_token=no_token, lines=lines,
            web=web,
        )  # fmt: skip
        if started is not None:
            run_active(started, api, where, stop, lines, web=web)


def _started(
    cfg: GpuwardenConfig,
    store: str,
    store_field: str,
    *,
    standby: bool,
    where: tuple[str, int, str, str],
    stop: StopRequest,
    no_token: ConfigError | None,
    lines: StartupLines | None = None,
    web: WebConfig | None = None,
) -> tuple[InstanceLocks, socket.socket, Service] | None:
    """The locks, the bound socket and the built service of the server that is now the active one; None
    when a stop signal came first (a standby asked to stop while it waited or during the handover, a plain
    start asked to stop while it started).
    ``no_token``: why the token will not do, listed with the other start-up problems; ``lines``: where
    why it cannot start is said (plain text when None)."""
    from alerting.instance_lock import InstanceBusy  # noqa: PLC0415 - see build_service

    address, _, address_field, _ = where
    lines = lines or StartupLines(LogFormat.TEXT, logger)
    try:
        # Checked before the lock and journal files, so a wrong setting makes none; the inventories are read
        # again once the lock is held, since a standby may take over hours later.
        problems, warnings = check_serve(cfg, store, store_field, address, address_field)
        problems[:0] = [no_token] if no_token is not None else []
        unloadable = serve_ca_file_refusal(cfg, os.environ)
        problems.extend([unloadable] if unloadable is not None else [])
        for warning in warnings:
            logger.warning("%s", cfg.locate(warning))  # a log line in both formats, as serve's others
        try:
            prepare_inventories(cfg, run_plugins=False).close()  # the start runs a kubeconfig's exec plugin
        except ConfigError as exc:  # each problem of the inventory file, as config validate lists them
            problems.extend((exc.alone(), *exc.more))
        if problems:  # every one, as config validate lists them; nothing made yet
            raise ConfigError.first_of(problems)
        # Bound before the store is opened: a taken port or a wrong --host must not leave a migrated store
        # behind, which the release being rolled back to would refuse. An active server's socket is bound,
        # not listening: connections are refused until uvicorn serves.
        active = _locked_and_bound(cfg, store, standby=standby, where=where, stop=stop, web=web)
        if active is None:
            return None  # a standby asked to stop
        locks, listener = active
        try:
            service = None if stop.asked else _fenced_service(cfg, store, locks)
        except BaseException:
            listener.close()
            raise
    except InstanceBusy as exc:
        hint = "stop it first, or start this one with --standby to take over when it stops"
        raise lines.failed(f"{exc}; {hint}", EXIT_TEMPFAIL) from exc
    except ConfigError as exc:
        if stop.asked:  # what failed was waited out after a stop came (a store that did not answer): a stop
            logger.info(
                "serve: stopped before serving: a stop signal came while it started (%s)", exc.alone().message
            )
            return None
        raise _failed(cfg, exc, store, store_field, lines) from exc
    if service is None or stop.asked:
        listener.close()
        if service is not None:
            from alerting.db import close_engine  # noqa: PLC0415 - see build_service

            close_engine(service[1].store.engine)
            locks.release()
        else:  # nothing opened: the lock files and journal directory made for this start go too
            locks.discard()
        if standby:  # it had waited for the lock: the active server's stop handed it over
            logger.info(
                "serve: a stop signal came during the handover; stopped before serving, lock released"
            )
        else:
            logger.info("serve: stopped before serving: a stop signal came while it started; lock released")
        return None
    return locks, listener, service


def register(app: typer.Typer) -> None:
    """Add the ``serve`` command to the root app."""
    app.command("serve")(serve)
