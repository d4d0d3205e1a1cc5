"""The ``gpuwarden`` command: one Typer app; each command group lives in a module of this package."""

from __future__ import annotations

import sys

from gpuwarden.cli.loading import stop_while_loading

# First: the imports below and the command's own loading take seconds, and a stop signal then killed a
# long-running command with exit 143, no line said (``gpuwarden.cli.loading``).
stop_while_loading(sys.argv)

import contextlib  # noqa: E402 - after the handler above
import errno  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
from typing import Annotated  # noqa: E402

import typer  # noqa: E402

from gpuwarden.cli import (  # noqa: E402
    anomaly_cmd,
    config_cmd,
    demo_cmd,
    exporter_cmd,
    incidents_cmd,
    inference_cmd,
    inventory_cmd,
    loadgen_cmd,
    outbox_cmd,
    serve_cmd,
    sim_cmd,
)
from gpuwarden.cli.logs import json_log_line  # noqa: E402
from gpuwarden.cli.usage import OneLineUsageErrors, json_logger  # noqa: E402

app = typer.Typer(
    name="gpuwarden",
    cls=OneLineUsageErrors,
    help="Operations suite for GPU clusters: exporter, anomaly detection, incidents and notifications.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)


def _print_version(wanted: bool) -> None:
    """``--version``: print the release and its commit, and run nothing else."""
    if wanted:
        from gpuwarden.cli.release import version_text  # noqa: PLC0415 - read only when asked

        typer.echo(version_text())
        raise typer.Exit


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            is_eager=True,
            callback=_print_version,
            help="Print the release and the commit it was built from (README: Upgrading), and exit.",
        ),
    ] = False,
) -> None:
    """Operations suite for GPU clusters: exporter, anomaly detection, incidents and notifications."""


# Built-in command groups, listed in one visible place.
config_cmd.register(app)
demo_cmd.register(app)
exporter_cmd.register(app)
sim_cmd.register(app)
anomaly_cmd.register(app)
inference_cmd.register(app)
loadgen_cmd.register(app)
serve_cmd.register(app)
incidents_cmd.register(app)
inventory_cmd.register(app)
outbox_cmd.register(app)


def main() -> None:
    """Console-script entry point."""
    _escape_what_stdout_cannot_encode()
    try:
        try:
            app()
        finally:  # what is still buffered fails here, not at exit as "Exception ignored ... OSError"
            if sys.stdout is not None:
                sys.stdout.flush()
    except OSError as exc:
        if exc.errno == errno.EPIPE and exc.filename is None:  # found by the flush above: as click, quiet
            _stdout_to_devnull()
            raise SystemExit(1) from None
        if exc.errno not in _DISK_ERRNOS or exc.filename is not None:
            raise
        _say_stdout_unwritable(exc)


# What writing to a full, over-quota or failing disk raises; a broken pipe (`| head`) is click's (quiet, 1).
_DISK_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO})


def _say_stdout_unwritable(exc: OSError) -> None:
    """``error: cannot write standard output: No space left on device`` and exit 1, as coreutils say it:
    ``gpuwarden ... > /dev/full`` ended in a traceback. Every command says its own files' errors, naming
    the file (``--output 'out.csv': cannot write it: ...``); an error of a write that names no file and
    reached here is stdout's."""
    _stdout_to_devnull()
    said = f"cannot write standard output: {exc.strerror or exc}"
    # `anomaly run` prints its alerts there: with --log-format json the line is one of its log lines.
    logger = json_logger(typer.main.get_command(app), sys.argv[1:])
    line = json_log_line(logger, logging.ERROR, said) if logger is not None else f"error: {said}"
    sys.stderr.write(f"{line}\n")
    raise SystemExit(1) from None


def _stdout_to_devnull() -> None:
    """Point stdout at /dev/null: the flush of what is left, at exit, would fail again with a traceback."""
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def _escape_what_stdout_cannot_encode() -> None:
    """Let stdout write a character its encoding lacks as an escape (``\\u4e2d``), as Python's stderr does:
    under ``LANG=C`` or ``PYTHONIOENCODING=ascii`` (cron, a minimal container) an incident titled from a
    non-ASCII label stopped ``incidents list`` with a UnicodeEncodeError traceback, rich drawing the table's
    borders in ASCII by then."""
    reconfigure = getattr(sys.stdout, "reconfigure", None)  # a text file; not a replaced stream
    if reconfigure is not None:  # under LANG=C it is surrogateescape, which fails on them too
        reconfigure(errors="backslashreplace")
