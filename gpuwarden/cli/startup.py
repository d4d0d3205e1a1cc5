"""How a long-running command (``serve``, ``anomaly run``, ``exporter``, ``inference-server``) says why it
cannot start, and the exit status it then ends with.

Its lines: ``error: ...`` and ``warning: ...`` on stderr with ``--log-format text``; with ``json`` (serve's
default) log lines of the command's logger, in the shape of its other lines (``ts``, ``level``, ``logger``,
``msg``). A log shipper that reads one JSON object per line broke on the plain ones, which were the lines
that said why the process was down.

Its exit status, as ``sysexits.h`` names them, so that systemd (``RestartPreventExitStatus=``) and an
operator tell a configuration a restart cannot fix from a failure a later start may not meet:

- ``EXIT_USAGE`` (2): a bad command-line option, as Click exits;
- ``EXIT_CONFIG`` (78, EX_CONFIG): the configuration (its file, a setting, a variable, an option that sets
  one) is refused: restarting with it cannot help;
- ``EXIT_UNAVAILABLE`` (69, EX_UNAVAILABLE): something it needs did not answer or is not there (the store's
  server, NVML): a restart may succeed once it is back;
- ``EXIT_TEMPFAIL`` (75, EX_TEMPFAIL): what it needs is held by another process (its port, the store's lock,
  the state file): a restart may succeed once that one stops.

Any other failure exits 1, as before.
"""

from __future__ import annotations

import logging

import typer
from rich.markup import escape

from gpuwarden.cli.consoles import err_console
from gpuwarden.cli.logs import LogFormat
from gpuwarden.errors import DOWN, ConfigError

EXIT_USAGE = 2
EXIT_UNAVAILABLE = 69
EXIT_TEMPFAIL = 75
EXIT_CONFIG = 78


def exit_status(error: ConfigError) -> int:
    """The exit status for ``error`` and the problems it carries: ``EXIT_CONFIG`` as soon as one is the
    configuration's (a restart cannot help), else ``EXIT_UNAVAILABLE`` for a dependency down, else
    ``EXIT_TEMPFAIL`` (a resource another process holds)."""
    outside = {problem.outside for problem in (error, *error.more)}
    if None in outside:
        return EXIT_CONFIG
    return EXIT_UNAVAILABLE if DOWN in outside else EXIT_TEMPFAIL


class StartupLines:
    """Where a command says why it cannot start (or why it stopped), and its start-up warnings: plain
    ``error:``/``warning:`` lines on stderr in text, log lines of ``logger`` in JSON (its logging set up
    already)."""

    def __init__(self, log_format: LogFormat, logger: logging.Logger) -> None:
        self.json = log_format is LogFormat.JSON
        self.logger = logger

    def error(self, message: str) -> None:
        """``error: MESSAGE``, or a JSON log line at level error."""
        if self.json:
            self.logger.error("%s", message)
        else:
            err_console.print(f"[red]error:[/red] {escape(message)}", soft_wrap=True)

    def warning(self, message: str) -> None:
        """``warning: MESSAGE``, or a JSON log line at level warning."""
        if self.json:
            self.logger.warning("%s", message)
        else:
            err_console.print(f"[yellow]warning:[/yellow] {escape(message)}", soft_wrap=True)

    def said(self, message: str, level: int = logging.WARNING) -> None:
        """``MESSAGE`` as it is (no ``error:``/``warning:`` before it), or a JSON log line at ``level``."""
        if self.json:
            self.logger.log(level, "%s", message)
        else:
            err_console.print(message, markup=False, soft_wrap=True)

    def problems(self, error: ConfigError) -> None:
        """Each problem of ``error`` on a line of its own: the first, then the others it carries."""
        for problem in (error.alone(), *error.more):  # each listed: no "(and 2 more problems)" on the first
            self.error(str(problem))

    def refused(self, error: ConfigError) -> typer.Exit:
        """Say every problem of ``error`` (``problems``); the exit with its status (``exit_status``)."""
        self.problems(error)
        return typer.Exit(exit_status(error))

    def failed(self, message: str, status: int) -> typer.Exit:
        """Say ``message`` as an error; the exit with ``status``."""
        self.error(message)
        return typer.Exit(status)
