"""``gpuwarden inference-server``: the traced toy inference server (its load: ``loadgen_cmd``)."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer

from gpuwarden.cli.consoles import err_console, option_said
from gpuwarden.cli.logs import LogFormat, configure_logging, keep_running_on_sighup
from gpuwarden.cli.numbers import number, whole_number
from gpuwarden.cli.output_options import log_format_option
from gpuwarden.cli.startup import EXIT_CONFIG, EXIT_USAGE, StartupLines
from gpuwarden.cli.web_config import WEB_CONFIG_OPTION, web_config, with_web_config_problems
from gpuwarden.clock import AcceleratedClock, Clock, SystemClock
from gpuwarden.errors import ConfigError, InputError
from gpuwarden.graceful import StopRequest  # stdlib only: light for every command
from gpuwarden.limits import MAX_GPUS_PER_NODE, MAX_SIM_NODES
from gpuwarden.urls import host_port

logger = logging.getLogger("gpuwarden.inference")

LISTEN_BACKLOG = 2048  # uvicorn's default backlog, which it sets again when it starts serving


def inference_server(
    *,
    port: Annotated[int, whole_number("--port", 1, 65535, help="Port to listen on.")] = 8000,
    host: Annotated[str, typer.Option(help="Address to bind.")] = "127.0.0.1",
    config: Annotated[Path | None, typer.Option(help="gpuwarden YAML config (its tracing section).")] = None,
    node: Annotated[str, typer.Option(help="Simulated node the server runs on.")] = "node-01",
    gpu: Annotated[int, whole_number("--gpu", 0, help="GPU index on that node.")] = 0,
    nodes: Annotated[
        int, whole_number("--nodes", 1, MAX_SIM_NODES, help="Nodes in the embedded simulated fleet.")
    ] = 1,
    gpus_per_node: Annotated[
        int, whole_number("--gpus-per-node", 1, MAX_GPUS_PER_NODE, help="GPUs per simulated node.")
    ] = 1,
    seed: Annotated[int, whole_number("--seed", None, help="Simulation seed.")] = 0,
    sim_speedup: Annotated[
        float,
        number(
            "--sim-speedup",
            0.001,
            help="Simulated time runs this many times faster (thermal faults build up).",
        ),
    ] = 1.0,
    tracing: Annotated[
        bool | None,
        typer.Option(
            help="Trace requests and serve span metrics on /metrics (default: tracing.enabled, else on).",
            show_default=False,
        ),
    ] = None,
    otlp_endpoint: Annotated[
        str | None,
        typer.Option(
            help="OTLP/HTTP traces URL (beats tracing.otlp_endpoint and OTEL_EXPORTER_OTLP_*ENDPOINT);"
            " without one no span is exported."
        ),
    ] = None,
    trace_console: Annotated[
        bool, typer.Option(help="Print every span as JSON on stdout (debugging; about 40 lines a request).")
    ] = False,
    quiet_spans: Annotated[bool, typer.Option(help="Record spans for metrics but export none.")] = False,
    allow_remote_faults: Annotated[
        bool,
        typer.Option(help="Accept POST/DELETE /sim/faults from other machines (default: this one only)."),
    ] = False,
    log_format: Annotated[LogFormat, log_format_option()] = LogFormat.TEXT,
    web_config_file: Annotated[Path | None, WEB_CONFIG_OPTION] = None,
) -> None:
    """Serve a deterministic OpenAI-compatible toy model whose speed follows its simulated GPU.

    The standard OTEL_SERVICE_NAME and OTEL_EXPORTER_OTLP_[TRACES_]ENDPOINT variables apply where neither
    an option nor the gpuwarden configuration sets the service name or the endpoint; the start-up line says
    which endpoint won and where it came from. OTEL_SDK_DISABLED=true turns span export off (the span
    metrics on /metrics still count every request). SIGTERM stops the
    server like Ctrl-C: requests in flight finish, buffered spans are flushed for at most
    tracing.otlp_timeout_seconds (what is left counts as dropped), the exit status is 0.
    """
    # Before anything logs: the OpenTelemetry exporter's warnings (a collector down) and uvicorn's came
    # through Python's last-resort handler, bare, with no time, level or logger, whatever --log-format.
    configure_logging(logging.INFO, log_format)
    lines = StartupLines(log_format, logger)  # why it cannot start: a JSON line too with json
    # Imported here: the rest of the CLI must start without uvicorn, OpenTelemetry and the config model.
    from exporters.inference_server import create_inference_server  # noqa: PLC0415
    from exporters.server import serve  # noqa: PLC0415 - imports starlette
    from exporters.span_settings import TracingOptions, resolve_tracing  # noqa: PLC0415
    from gpuwarden.config import load_config  # noqa: PLC0415

    options = TracingOptions(
        enabled=tracing, otlp_endpoint=otlp_endpoint, trace_console=trace_console, quiet_spans=quiet_spans
    )
    try:
        loaded = load_config(config, secrets_for={"tracing"})
    except ConfigError as exc:  # every problem of the file, as config validate lists them
        raise lines.refused(with_web_config_problems(exc, web_config_file)) from exc
    web = web_config(web_config_file, lines)
    try:
        settings = resolve_tracing(loaded.tracing, os.environ, options)
    except InputError as exc:  # --otlp-endpoint: a usage error, said with its value (password hidden, as
        from gpuwarden.redaction import hidden_password  # noqa: PLC0415 - the setting's refusal shows it)

        said = option_said(exc.field, hidden_password(otlp_endpoint or ""), exc.message)
        raise lines.failed(said, EXIT_USAGE) from exc
    except ConfigError as exc:  # a tracing setting, at its file and line as config validate says it
        raise lines.refused(loaded.locate(exc)) from exc
    except ValueError as exc:
        raise lines.failed(str(exc), EXIT_CONFIG) from exc
    cfg = settings.config
    fleet_clock: Clock = AcceleratedClock(sim_speedup) if sim_speedup != 1.0 else SystemClock()
    from gpuwarden.sim import build_fleet  # noqa: PLC0415 - only this command runs a fleet

    fleet = build_fleet(nodes, gpus_per_node, seed=seed, clock=fleet_clock)
    try:
        server = create_inference_server(
            cfg, fleet, node=node, gpu=gpu, allow_remote_faults=allow_remote_faults
        )
    except InputError as exc:  # the fleet lacks --node or --gpu: said as the option, not the fleet's field
        option, value = ("--gpu", gpu) if exc.field == "gpu" else ("--node", node)
        raise lines.failed(option_said(option, value, exc.message), EXIT_USAGE) from exc
    except ValueError as exc:
        raise lines.failed(str(exc), EXIT_USAGE) from exc
    sock = _listen(host, port, lines, on_error=server.shutdown)
    # Listening, not only bound, before the line says where: a client that connects on reading it waits in
    # the backlog until uvicorn accepts, where it was refused while uvicorn was still starting.
    sock.listen(LISTEN_BACKLOG)
    keep_running_on_sighup("inference-server")
    # Caught from here: a stop signal between the start-up line and uvicorn's start (its import takes a
    # while) killed the server, exit 143, its buffered spans never flushed.
    with StopRequest().caught() as stop:
        _say_started(
            f"inference server on {web.scheme if web else 'http'}://{host_port(host, port)}"
            f" (/v1/chat/completions, /v1/completions, /metrics): model {cfg.model_name} on simulated {node}"
            f" GPU {gpu}; tracing {'on' if cfg.enabled else 'off'}, spans exported: {settings.destination}",
            log_format,
        )
        if settings.warning is not None:  # after the start-up line: scripts read that first
            logger.warning("%s", settings.warning)
        try:
            # as the exporter serves: serve's protocol, no access log
            serve(server.app, sock, stop, web=web)
        finally:
            sock.close()
            server.shutdown()


def _say_started(line: str, log_format: LogFormat) -> None:
    """The start-up line: a log line with ``--log-format json``, as the others are; in text, the plain line it
    always was."""
    if log_format is LogFormat.JSON:
        logger.info("%s", line)
    else:
        err_console.print(line, markup=False)


def _listen(host: str, port: int, lines: StartupLines, on_error: Callable[[], None]) -> socket.socket:
    """The listening socket, bound before the startup line says where: a port in use is one error line
    naming the option at fault (as for ``serve`` and ``exporter``), exit 75 (``exit_status``)."""
    from gpuwarden.cli.machine_checks import listen_socket  # noqa: PLC0415

    try:
        return listen_socket(host, port, "--host", "--port")
    except ConfigError as exc:
        on_error()
        raise lines.refused(exc) from exc


def register(app: typer.Typer) -> None:
    """Add ``inference-server`` to the root app."""
    app.command("inference-server")(inference_server)
