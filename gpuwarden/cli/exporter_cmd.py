"""``gpuwarden exporter``: serve DCGM-compatible /metrics from real NVML or from a simulated fleet."""

from __future__ import annotations

import logging
import os
import socket
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from gpuwarden.cli.consoles import option_said
from gpuwarden.cli.logs import LogFormat, configure_logging, keep_running_on_sighup
from gpuwarden.cli.numbers import number, whole_number
from gpuwarden.cli.output_options import log_format_option
from gpuwarden.cli.sim_checks import check_sim_section, mig_gpus
from gpuwarden.cli.startup import EXIT_CONFIG, EXIT_UNAVAILABLE, EXIT_USAGE, StartupLines
from gpuwarden.cli.web_config import WEB_CONFIG_OPTION, web_config, with_web_config_problems
from gpuwarden.clock import SystemClock
from gpuwarden.errors import ConfigError, InputError, SourceError
from gpuwarden.graceful import StopRequest  # stdlib only: light for every command
from gpuwarden.limits import MAX_INTERVAL_SECONDS, MIN_COLLECT_INTERVAL_SECONDS
from gpuwarden.redaction import hidden_password
from gpuwarden.urls import host_port

if TYPE_CHECKING:
    from exporters.service import ExporterService
    from exporters.training_sim import SimTrainingPublisher
    from gpuwarden.config import ExporterConfig, GpuwardenConfig, TracingConfig
    from gpuwarden.sim import Fleet

logger = logging.getLogger(__name__)


USAGE_ERROR = EXIT_USAGE  # a bad command-line option, as Click, loadgen and inference-server exit
EXPORTER_SECTIONS = ("exporter", "sim", "tracing")
"""The settings the exporter reads: the secrets of the others (Slack's token) need not reach GPU nodes."""


def _real_service(cfg: ExporterConfig, clock: SystemClock) -> ExporterService:
    import pynvml  # noqa: PLC0415 - only the real path needs the driver binding

    from exporters.attribution import ProcCgroupResolver  # noqa: PLC0415
    from exporters.nvml_collector import init_nvml  # noqa: PLC0415
    from exporters.service import NvmlInstance, build_service  # noqa: PLC0415

    init_nvml(pynvml)
    hostname = cfg.hostname or os.environ.get("NODE_NAME") or socket.gethostname()
    instance = NvmlInstance(pynvml, hostname, ProcCgroupResolver(cfg.proc_root))
    return build_service(
        [instance],
        clock=clock,
        interval=cfg.collect_interval_seconds,
        deadline=cfg.nvml_call_timeout_seconds,
        pod_resources_socket=cfg.kubelet_pod_resources_socket,
    )


def _simulated_service(
    fleet: Fleet, cfg: ExporterConfig, clock: SystemClock, *, allow_remote_faults: bool
) -> ExporterService:
    from exporters.nvml_collector import init_nvml  # noqa: PLC0415
    from exporters.server import loopback_only  # noqa: PLC0415
    from exporters.service import NvmlInstance, build_service  # noqa: PLC0415
    from exporters.simulated import SimCgroupResolver, SimPodAssignments  # noqa: PLC0415
    from gpuwarden.sim import SimNvml, fault_routes  # noqa: PLC0415

    instances = []
    kubelet = SimPodAssignments(fleet)
    for node in fleet.nodes:
        nvml = SimNvml(fleet, node.name)
        init_nvml(nvml)
        instances.append(NvmlInstance(nvml, node.name, SimCgroupResolver(fleet, node.name), kubelet))
    return build_service(
        instances,
        clock=clock,
        interval=cfg.collect_interval_seconds,
        deadline=cfg.nvml_call_timeout_seconds,
        pod_resources_socket=cfg.kubelet_pod_resources_socket,
        # The exporter listens on 0.0.0.0 by default: nobody on the network may mark a GPU lost.
        extra_routes=loopback_only(fault_routes(fleet), allow_remote=allow_remote_faults),
    )


def _training_publisher(fleet: Fleet, tracing: TracingConfig) -> SimTrainingPublisher | None:
    """The simulated training jobs' pusher when ``tracing.pushgateway_url`` is set; ``ConfigError`` names
    the setting when its URL is unusable."""
    if tracing.pushgateway_url is None:
        return None
    from exporters.training_sim import SimTrainingPublisher  # noqa: PLC0415

    try:
        return SimTrainingPublisher(fleet, tracing.pushgateway_url, interval=tracing.push_interval_seconds)
    except ValueError as exc:
        raise ConfigError(str(exc), field="tracing.pushgateway_url") from exc


def _build(
    cfg: ExporterConfig, full: GpuwardenConfig, clock: SystemClock, *, allow_remote_faults: bool = False
) -> tuple[ExporterService, SimTrainingPublisher | None]:
    """The exporter service, and with ``--simulate`` the pusher of its simulated training jobs."""
    if not cfg.simulate:
        return _real_service(cfg, clock), None
    from gpuwarden.sim import build_fleet, parse_simulate_spec  # noqa: PLC0415

    nodes, gpus = parse_simulate_spec(cfg.simulate)
    mig = mig_gpus(full, cfg.simulate, "exporter.simulate")  # checked with the settings (_exporter_settings)
    fleet = build_fleet(
        nodes, gpus, seed=full.sim.seed, clock=clock, gpu_model=full.sim.gpu_model, mig_gpus=mig
    )
    publisher = _training_publisher(fleet, full.tracing)
    service = _simulated_service(fleet, cfg, clock, allow_remote_faults=allow_remote_faults)
    if publisher is not None:
        service.loop.extra_families.append(publisher.families)  # failed pushes show on our own /metrics
    return service, publisher


def _exporter_settings(
    full: GpuwardenConfig,
    lines: StartupLines,
    *,
    port: int | None,
    listen_address: str | None,
    interval: float | None,
    simulate: str | None,
) -> ExporterConfig:
    """The exporter section with the command-line options over it; a bad option exits 2 naming it, a bad
    setting (or a fleet that disagrees with the ``sim:`` section) exits 78 naming the file and line, each
    said on ``lines``."""
    from pydantic import ValidationError  # noqa: PLC0415

    from gpuwarden.config import ExporterConfig  # noqa: PLC0415
    from gpuwarden.yamlfile import error_message  # noqa: PLC0415

    options = {
        "port": ("--port", port),
        "listen_address": ("--listen-address", listen_address),
        "collect_interval_seconds": ("--interval", interval),
        "simulate": ("--simulate", simulate),
    }
    updates = {field: value for field, (_, value) in options.items() if value is not None}
    try:
        cfg = ExporterConfig.model_validate({**full.exporter.model_dump(), **updates})
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else ""
        if field in updates:  # a command-line option: a usage error, said as every bad option is
            said = option_said(options[field][0], updates[field], error_message(first))
            raise lines.failed(said, USAGE_ERROR) from exc
        raise lines.failed(f"invalid option: exporter.{field}: {error_message(first)}", EXIT_CONFIG) from exc
    if cfg.simulate:
        flag = "--simulate" if simulate is not None else "exporter.simulate"
        try:
            check_sim_section(full, cfg.simulate, flag)
            mig_gpus(full, cfg.simulate, flag)
        except ConfigError as exc:
            raise lines.refused(full.locate(exc)) from exc
    return cfg


def exporter(
    *,
    port: Annotated[
        int | None,
        whole_number("--port", 1, 65535, help="Port to listen on (default 9400, like dcgm-exporter)."),
    ] = None,
    listen_address: Annotated[
        str | None,
        typer.Option(
            "--listen-address",
            "--host",  # serve's and inference-server's name for it: "no such option: --host" stopped them
            help="Address to listen on (default 0.0.0.0, every interface, like dcgm-exporter).",
        ),
    ] = None,
    interval: Annotated[
        float | None,
        number(
            "--interval",
            MIN_COLLECT_INTERVAL_SECONDS,
            MAX_INTERVAL_SECONDS,
            help=f"Seconds between collections (default 5; at least {MIN_COLLECT_INTERVAL_SECONDS:g}: NVML's"
            " counters refresh no faster, and a shorter interval only spins a core).",
        ),
    ] = None,
    simulate: Annotated[
        str | None, typer.Option(help="Serve a simulated fleet of NODESxGPUS (e.g. 2x8) instead of NVML.")
    ] = None,
    config: Annotated[Path | None, typer.Option("--config", help="YAML configuration file.")] = None,
    log_format: Annotated[LogFormat, log_format_option()] = LogFormat.TEXT,
    allow_remote_faults: Annotated[
        bool,
        typer.Option(
            help="With --simulate: accept POST/DELETE /sim/faults from other machines (default: this one)."
        ),
    ] = False,
    web_config_file: Annotated[Path | None, WEB_CONFIG_OPTION] = None,
) -> None:
    """Serve DCGM-compatible GPU metrics on /metrics (real NVML, or --simulate NODESxGPUS)."""
    # Imported here, like the exporter stage in _real_service and _simulated_service: the rest of the CLI
    # must start without uvicorn (exporters.server.serve) and the configuration model.
    from gpuwarden.config import load_config  # noqa: PLC0415

    configure_logging(logging.INFO, log_format)  # first: why it cannot start is a JSON line with json too
    lines = StartupLines(log_format, logger)
    keep_running_on_sighup("exporter")
    try:
        full = load_config(config, secrets_for=EXPORTER_SECTIONS)
    except ConfigError as exc:  # every problem of the file, as config validate lists them
        raise lines.refused(with_web_config_problems(exc, web_config_file)) from exc
    cfg = _exporter_settings(
        full, lines, port=port, listen_address=listen_address, interval=interval, simulate=simulate
    )
    web = web_config(web_config_file, lines)
    from gpuwarden.cli.machine_checks import check_listen_address, listen_socket  # noqa: PLC0415

    host_field = "--listen-address" if listen_address is not None else "exporter.listen_address"
    try:  # before NVML is touched: a port in use is one line naming the setting, not uvicorn's log line
        check_listen_address(cfg.listen_address, host_field)  # an address not this machine's: as validate
        listener = listen_socket(
            cfg.listen_address, cfg.port, host_field, "--port" if port is not None else "exporter.port"
        )
    except ConfigError as exc:
        raise lines.refused(full.locate(exc)) from exc  # 75 for a port in use (exit_status)
    try:
        service, publisher = _build(cfg, full, SystemClock(), allow_remote_faults=allow_remote_faults)
    except (SourceError, InputError, ConfigError) as exc:
        listener.close()
        if isinstance(exc, ConfigError):
            raise lines.refused(full.locate(exc)) from exc
        # NVML (no driver, no GPU yet): a later start may find it there; an input is wrong as given
        status = EXIT_UNAVAILABLE if isinstance(exc, SourceError) else EXIT_CONFIG
        raise lines.failed(str(exc), status) from exc
    from exporters.server import serve  # noqa: PLC0415

    scheme = web.scheme if web is not None else "http"

    # Caught from here: a stop signal between the line below and uvicorn's start (its import takes a while)
    # killed the exporter, exit 143, its collection and watchers never stopped.
    with StopRequest().caught() as stop:
        service.start()
        mode = f"simulated fleet {cfg.simulate}" if cfg.simulate else "NVML"
        # An IPv6 address in brackets: http://::1:9400/metrics is no URL a browser or Prometheus takes.
        where = host_port(cfg.listen_address, cfg.port)
        logger.info("exporter serving %s on %s://%s/metrics", mode, scheme, where)
        if publisher is not None:
            publisher.start()
        _say_pushes(publisher, full.tracing)
        try:
            serve(service.app, listener, stop, web=web)
        finally:
            listener.close()
            if publisher is not None:
                publisher.stop()
            service.stop()


def _say_pushes(publisher: SimTrainingPublisher | None, tracing: TracingConfig) -> None:
    """Log where training metrics go: a warning when ``tracing.pushgateway_url`` is set for an exporter that
    pushes nothing there (one on NVML: only simulated training jobs push from here)."""
    if publisher is not None:
        logger.info(
            "simulated training jobs push to %s every %g s",
            hidden_password(str(publisher.adapter.pushgateway)),
            publisher.interval,
        )
    elif tracing.pushgateway_url is not None:
        logger.warning(
            "tracing.pushgateway_url is set, but this exporter pushes nothing to it: only simulated"
            " training jobs (--simulate) push from here; a training loop pushes its own"
            " (TrainingMetrics(pushgateway=))"
        )


def register(app: typer.Typer) -> None:
    """Add the ``exporter`` command to the root app."""
    app.command("exporter")(exporter)
