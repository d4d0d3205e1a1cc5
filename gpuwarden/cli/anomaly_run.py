"""``gpuwarden anomaly run``: its settings checked, its state file claimed, its source, service and /metrics
set up, its warm-up, then its ticks (``gpuwarden.cli.anomaly_ticks``) until it stops.

The anomaly stage is imported inside the command: the rest of the CLI, ``--help`` included, must start
without it.
"""

from __future__ import annotations

import errno
import logging
import os
from contextlib import nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, BinaryIO, Protocol

import typer

from gpuwarden.cli.anomaly_checks import foreign_state_file
from gpuwarden.cli.anomaly_ticks import TickLog, _print_alert, _run_scheduled, _run_ticks
from gpuwarden.cli.consoles import option_said
from gpuwarden.cli.logs import LogFormat, configure_logging, keep_running_on_sighup
from gpuwarden.cli.numbers import whole_number
from gpuwarden.cli.output_file import check_writable
from gpuwarden.cli.output_options import log_format_option
from gpuwarden.cli.startup import EXIT_CONFIG, EXIT_TEMPFAIL, StartupLines
from gpuwarden.clock import SystemClock
from gpuwarden.errors import ConfigError, InputError
from gpuwarden.graceful import StopRequest, StopSignal, raising_on_stop
from gpuwarden.headers import TOKEN_ENV
from gpuwarden.redaction import hidden_password
from gpuwarden.urls import host_port

if TYPE_CHECKING:
    from anomaly.forwarder import AlertForwarder
    from anomaly.service import AnomalyService
    from anomaly.snapshot import Snapshot
    from gpuwarden.config_anomaly import AnomalyConfig

# The command's logger: its start line reads as it did before it left ``gpuwarden.cli.anomaly_cmd`` (``anomaly
# run`` logs the logger's name; an operator filters on it).
logger = logging.getLogger("gpuwarden.cli.anomaly_cmd")

RunConfigOption = Annotated[
    Path | None,
    typer.Option("--config", help="YAML configuration (its anomaly section: source, queries, detectors)."),
]


def run(
    config: RunConfigOption = None,
    ticks: Annotated[
        int, whole_number("--ticks", 0, help="Stop after this many ticks (0: run until interrupted).")
    ] = 0,
    port: Annotated[
        int | None,
        whole_number(
            "--port",
            0,
            65535,
            help="Serve /metrics here (default anomaly.port, or none with --ticks; 0: none).",
        ),
    ] = None,
    state_file: Annotated[
        Path | None,
        typer.Option(
            "--state-file",
            help="Keep what the detectors learnt here across restarts, saved every"
            " anomaly.state_save_seconds and at stop (default anomaly.state_file, or none with --ticks).",
        ),
    ] = None,
    log_format: Annotated[LogFormat, log_format_option()] = LogFormat.TEXT,
) -> None:
    """Score the configured PromQL queries every infer_every_seconds; serve scores and bands on /metrics.

    Alerts go to `gpuwarden serve` at anomaly.alert_url (token from GPUWARDEN_API_TOKEN) as Prometheus
    sends rule alerts, or are printed as JSON lines when no alert_url is set.
    """
    # First: with json, why it cannot start and its warnings are JSON lines too (StartupLines).
    configure_logging(logging.INFO, log_format)
    lines = StartupLines(log_format, logger)
    # From the start: the imports, the state file's read and the warm-up take tens of seconds on a large
    # fleet, and SIGHUP's default action ended the run then, nothing closed.
    keep_running_on_sighup("anomaly run", " (the detectors warm up again from Prometheus' history)")
    # Before the stage's imports: a refusal is said at once.
    cfg = _run_config(config, port, ticks, lines, state_file_read=state_file is None and not ticks)
    state, state_lock = _state_path(cfg, state_file, ticks, lines) or (None, None)
    from prometheus_client import CollectorRegistry  # noqa: PLC0415

    from anomaly.promql import PromQLSource, PromQuery  # noqa: PLC0415
    from anomaly.service import AnomalyService  # noqa: PLC0415
    from gpuwarden.cli.anomaly_http import serve_http  # noqa: PLC0415

    clock = SystemClock()
    forwarder = _forwarder(cfg, clock)
    queries = [PromQuery(q.name, q.expr, q.step_seconds, q.kind, q.guard) for q in cfg.queries]
    source = PromQLSource(
        cfg.prometheus_url,
        queries,
        clock,
        timeout_seconds=cfg.query_timeout_seconds,
        max_lookback_seconds=cfg.max_lookback_seconds,
        # A slow Prometheus must not hold a tick past the next one: what has not answered by then is a
        # failed read, held like an outage, and read again from where it stopped.
        deadline_seconds=cfg.read_deadline_seconds,
        setting="anomaly.prometheus_url",
        config_file=None if config is None else str(config),
    )
    tick_log = TickLog([source], forwarder, forwarder.on_alert if forwarder else _print_alert)
    service = AnomalyService(cfg, [source], clock, on_alert=tick_log.on_alert, on_resend=tick_log.on_resend)
    tick_log.warm_up_deferred = lambda: service.warm_up_retry is not None
    registry = CollectorRegistry()
    registry.register(service.collector.status)  # /metrics writes the scores and bands before it
    if forwarder is not None:
        registry.register(forwarder)
    metrics_port = _metrics_port(cfg, port, ticks)
    try:
        server = serve_http(service, registry, cfg.listen_address, metrics_port) if metrics_port else None
    except OSError as exc:
        _close(source, forwarder, state_lock)
        from gpuwarden.cli.machine_checks import refused_setting  # noqa: PLC0415

        setting = "--port" if port is not None else "anomaly.port / anomaly.listen_address"
        where = host_port(cfg.listen_address, metrics_port)
        said = refused_setting(
            setting, metrics_port, f"cannot serve /metrics on {where}: {exc.strerror or exc}"
        )
        raise lines.failed(
            str(said), EXIT_TEMPFAIL if exc.errno == errno.EADDRINUSE else EXIT_CONFIG
        ) from exc
    logger.info(_start_line(service, port, ticks, metrics_port))
    # Caught from before the warm-up to the end of the schedule: a stop signal as the warm-up ended (before
    # the scheduler, whose import takes a while, was there) had SIGTERM's default action again, exit 143.
    stop = StopRequest()
    try:
        with stop.caught() if not ticks else nullcontext(stop):
            if not _warmed_up(service, forwarder, state, cfg):
                return
            if ticks:
                _run_ticks(service, ticks, tick_log.after, state, lines)
            else:
                _run_scheduled(service, tick_log.after, state, stop)
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
        _close(source, forwarder, state_lock)


def _warmed_up(
    service: AnomalyService, forwarder: AlertForwarder | None, state: Path | None, cfg: AnomalyConfig
) -> bool:
    """What serve holds, the state file's snapshot and Prometheus' history taken up (``_warm_up``), or False
    where SIGTERM or SIGINT stopped that: tens of seconds on a large fleet, or a serve or a Prometheus slow to
    answer, so a pod stop comes then too, and SIGTERM's default action (exit 143, no line said) was not the
    stop after the warm-up (exit 0, said). Nothing was learnt, so nothing is saved."""
    try:
        with raising_on_stop():
            _warm_up(service, forwarder, state, cfg)
    except StopSignal as stop:
        saved = f"the state file {state} is as it was" if state is not None else "no state file is kept"
        logger.info("anomaly run stopped by %s during its warm-up: nothing learnt yet; %s", stop, saved)
        return False
    return True


def _warm_up(
    service: AnomalyService, forwarder: AlertForwarder | None, state: Path | None, cfg: AnomalyConfig
) -> None:
    """Prometheus' recent history: the detectors score from the first tick after start. What serve still
    holds bounds what the history left firing is recalled for (``AnomalyService.warm_up``), and the labels
    it holds them by are those the forwarder posts them on under (``AlertForwarder.held``), re-escalation or
    not: the first post after an upgrade that added ``deviation`` was a new alert."""
    from anomaly.forwarder import STATE_COMPONENT  # noqa: PLC0415

    held = forwarder.held() if forwarder is not None else None
    # What the detectors learnt before the restart, when a snapshot of it fits; the history after it.
    snapshot, other_settings = _state_read(state, cfg)
    if forwarder is not None:  # the resolutions serve had not received go on, and into each save
        forwarder.take_up(snapshot)
        service.kept_with[STATE_COMPONENT] = forwarder.state
    service.warm_up(held, snapshot)
    # Saved under other settings, which shape none of them: this fleet's go on (its history now read).
    _take_up_undelivered(service, forwarder, other_settings)


def _state_read(state: Path | None, cfg: AnomalyConfig) -> tuple[Snapshot | None, Snapshot | None]:
    """The state file's snapshot when it can be used, and the one refused for its settings alone
    (``load_state``) with only what ``_take_up_undelivered`` reads of it: the rest (the detectors' arrays,
    hundreds of MB for a large fleet) is not held for the life of the process."""
    from anomaly.forwarder import STATE_COMPONENT  # noqa: PLC0415
    from anomaly.snapshot import load_state  # noqa: PLC0415

    if state is None:
        return None, None
    snapshot, other = load_state(state, cfg)
    if other is not None:
        kept = ("index", STATE_COMPONENT)
        other.components = {name: part for name, part in other.components.items() if name in kept}
    return snapshot, other


def _take_up_undelivered(
    service: AnomalyService, forwarder: AlertForwarder | None, snapshot: Snapshot | None
) -> None:
    """The alerts serve had not received that ``snapshot``, refused for its settings, holds: posted where it
    is this fleet's (``read_by_this_fleet``), else said and left out (None: no snapshot so refused, or no
    serve). A restart to change a setting lost them: a fault that fired and cleared while serve was down
    never reached it."""
    from anomaly.takeup import read_by_this_fleet  # noqa: PLC0415

    if forwarder is None or snapshot is None:
        return
    if read_by_this_fleet(service, snapshot):
        forwarder.take_up(snapshot)
    else:
        logger.warning(
            "anomaly state snapshot %s: the alerts serve had not received are not posted: it is another"
            " fleet's (fewer than half the series it held are read now)",
            snapshot.origin,
        )


class _Closable(Protocol):
    def close(self) -> None: ...


def _close(*held: _Closable | None) -> None:
    """Close what ``anomaly run`` holds (its source, forwarder and hold on the state file; None: not held)."""
    for each in held:
        if each is not None:
            each.close()


def _state_path(
    cfg: AnomalyConfig, option: Path | None, ticks: int, lines: StartupLines | None = None
) -> tuple[Path, BinaryIO] | None:
    """Where ``anomaly run`` keeps its state, and its hold on it (``claim_state_file``): ``--state-file``,
    else none for a ``--ticks`` script, else ``anomaly.state_file``. One that cannot be written, or that
    another process holds, is refused naming the setting (exit 78, or 75 for one another process holds); the
    default (not written in the file) is a warning, and none is kept: a working directory that cannot be
    written stopped no ``anomaly run`` before there was a state file. ``lines``: where that is said (plain
    text when None)."""
    lines = lines or StartupLines(LogFormat.TEXT, logger)
    path = (
        option if option is not None else (None if ticks or cfg.state_file is None else Path(cfg.state_file))
    )
    if path is None:
        return None
    from anomaly.snapshot import StateFileInUse, claim_state_file  # noqa: PLC0415

    chosen = option is not None or "state_file" in cfg.model_fields_set
    setting = "--state-file" if option is not None else "anomaly.state_file"
    status = EXIT_CONFIG
    try:
        check_writable(path, setting)
        foreign = foreign_state_file(path)
        if foreign is not None:
            raise InputError(option_said(setting, str(path), foreign))
        try:
            return path, claim_state_file(path)
        except StateFileInUse as exc:
            status = EXIT_TEMPFAIL  # free once the other anomaly run stops
            raise InputError(option_said(setting, str(path), str(exc))) from exc
    except InputError as exc:
        if not chosen:
            lines.warning(
                f"{exc}; what the detectors learn is not kept across a restart (set anomaly.state_file to a"
                " file that can be written, or null)"
            )
            return None
        raise lines.failed(str(exc), status) from exc


def _metrics_port(cfg: AnomalyConfig, port: int | None, ticks: int) -> int:
    """Where ``anomaly run`` serves /metrics: ``--port``, else none for a ``--ticks`` script, else
    ``anomaly.port``; 0: nowhere."""
    return port if port is not None else (0 if ticks else cfg.port)


def _start_line(service: AnomalyService, port: int | None, ticks: int, metrics_port: int) -> str:
    """What ``anomaly run`` says before its warm-up (an hour of history, tens of seconds on a large fleet):
    what it reads and how often, where /metrics is (or why it is not served) and where alerts go; a
    password in a URL (basic auth in front of Prometheus) hidden."""
    cfg = service.cfg
    count = len(cfg.queries)
    if metrics_port:
        metrics = f"/metrics on http://{host_port(cfg.listen_address, metrics_port)}/metrics"
    else:
        why = "--port 0" if port is not None else ("--ticks without --port" if ticks else "anomaly.port 0")
        metrics = f"/metrics not served ({why})"
    alerts = (
        f"alerts to {hidden_password(str(cfg.alert_url))}"
        if cfg.alert_url
        else "alerts printed as JSON lines (no anomaly.alert_url)"
    )
    return (
        f"anomaly run: {count} quer{'y' if count == 1 else 'ies'} from"
        f" {hidden_password(str(cfg.prometheus_url))} every"
        f" {cfg.infer_every_seconds:g} s; {metrics}; {alerts}; warming up from the last"
        f" {service.warmup_seconds():g} s of history"
    )


def _run_config(
    config: Path | None, port: int | None, ticks: int, lines: StartupLines, *, state_file_read: bool
) -> AnomalyConfig:
    """``anomaly run``'s settings, checked as ``config validate`` checks them (``anomaly_checks``): every
    warning, then every refusal, each naming its file and line, said on ``lines``; exit 78 when any
    refuses.
    ``state_file_read``: the file's ``anomaly.state_file`` is used (no ``--state-file``, no ``--ticks``)."""
    from gpuwarden.cli.anomaly_checks import (  # noqa: PLC0415
        anomaly_run_refusals,
        anomaly_run_warnings,
        check_detectors,
    )
    from gpuwarden.cli.machine_checks import check_listen_address, listen_socket  # noqa: PLC0415
    from gpuwarden.cli.startup import exit_status  # noqa: PLC0415
    from gpuwarden.config import load_config  # noqa: PLC0415
    from gpuwarden.config_anomaly import AnomalyConfig  # noqa: PLC0415

    try:
        loaded = load_config(config, secrets_for={"anomaly"}) if config is not None else None
    except ConfigError as exc:  # every problem of the file, as config validate lists them
        raise lines.refused(exc) from exc
    cfg = loaded.anomaly if loaded is not None else AnomalyConfig()
    refusals = []
    try:
        check_detectors(cfg)  # the service would refuse them with a traceback
    except ConfigError as exc:
        refusals.append(exc)
    metrics_port = _metrics_port(cfg, port, ticks)
    if metrics_port:  # in config validate's words, not the bind's errno
        try:
            check_listen_address(cfg.listen_address, "anomaly.listen_address")
            # Bound and let go: a port in use is said as serve and the exporter say it, at its setting and
            # line with what to do (it was "anomaly.port / anomaly.listen_address: cannot serve /metrics
            # ...", after the state file's lock and the stage's imports).
            port_field = "--port" if port is not None else "anomaly.port"
            listen_socket(cfg.listen_address, metrics_port, "anomaly.listen_address", port_field).close()
        except ConfigError as exc:
            refusals.append(exc)
    written = loaded is not None and "source" in cfg.model_fields_set
    refusals.extend(
        anomaly_run_refusals(cfg, os.environ, source_written=written, state_file_read=state_file_read)
    )
    for warning in anomaly_run_warnings(cfg):  # config validate says the same
        lines.warning(str(loaded.locate(warning) if loaded else warning))
    for refusal in refusals:
        hint = "; pass --config FILE" if config is None and refusal.field == "anomaly.queries" else ""
        lines.error(f"{loaded.locate(refusal) if loaded else refusal}{hint}")
    if refusals:  # 75 where only the port is in use (exit_status), as serve and the exporter
        raise typer.Exit(exit_status(ConfigError.first_of(refusals)))
    return cfg


def _forwarder(cfg: AnomalyConfig, clock: SystemClock) -> AlertForwarder | None:
    """The alert forwarder to ``gpuwarden serve`` when anomaly.alert_url is set."""
    from anomaly.forwarder import AlertForwarder  # noqa: PLC0415

    if not cfg.alert_url:  # a set one is a usable http(s) URL: the configuration checked it
        return None
    token = os.environ.get(TOKEN_ENV, "")  # one serve takes: _run_config refused any other
    return AlertForwarder(cfg.alert_url, token, clock, resend_seconds=cfg.infer_every_seconds)
