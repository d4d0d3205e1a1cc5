"""``gpuwarden config``: validate and show the configuration."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from gpuwarden.cli.consoles import err_console  # one line per error: paths and file:line stay whole
from gpuwarden.errors import ConfigError

config_app = typer.Typer(help="Validate and show configuration.", no_args_is_help=True)


@config_app.command("validate")
def validate(
    path: Annotated[Path, typer.Argument(help="YAML configuration file.")],
) -> None:
    """Check a configuration file (and GPUWARDEN_ environment overrides) as serve, exporter and anomaly run
    would, and the OTEL_* variables as inference-server would; exit 1 with the problem. Warnings (a
    maintenance window that already ended) leave it at 0."""
    # Imported here: `gpuwarden --help` and the HTTP commands must start without the configuration model.
    from exporters.span_settings import resolve_tracing  # noqa: PLC0415
    from gpuwarden.cli.preflight import check_config  # noqa: PLC0415
    from gpuwarden.config import load_config  # noqa: PLC0415

    try:
        cfg = load_config(path)
    except ConfigError as exc:  # each of the file's problems, not only the first
        error = exc.in_file(str(path))
        for problem in (error, *error.more):
            err_console.print(f"[red]error:[/red] {escape(str(problem))}")
        raise typer.Exit(1) from exc
    try:
        warnings = check_config(cfg)
    except ConfigError as exc:  # found after loading: the line (or the variable) of its setting
        err_console.print(f"[red]error:[/red] {escape(str(cfg.locate(exc)))}")
        raise typer.Exit(1) from exc
    try:  # the OTEL_* variables inference-server would refuse at start, with its message
        resolve_tracing(cfg.tracing, os.environ)
    except ValueError as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from exc
    for warning in warnings:  # serve would start, and log the same
        err_console.print(f"[yellow]warning:[/yellow] {escape(str(cfg.locate(warning)))}")
    typer.echo(f"{path}: ok")


@config_app.command("show")
def show(
    path: Annotated[Path | None, typer.Argument(help="YAML configuration file.")] = None,
) -> None:
    """Print the effective configuration as JSON, secrets masked."""
    from gpuwarden.config import load_config  # noqa: PLC0415 - see validate

    try:
        cfg = load_config(path)
    except ConfigError as exc:
        err_console.print(f"[red]error:[/red] {escape(str(exc))}")
        raise typer.Exit(1) from exc
    typer.echo(json.dumps(cfg.model_dump(mode="json"), indent=2))


def register(app: typer.Typer) -> None:
    """Add the ``config`` group to the root app."""
    app.add_typer(config_app, name="config")
