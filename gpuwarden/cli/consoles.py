"""The CLI's Rich consoles, made one way for every command.

Data (a PCI bus id ``00000000:AB:00.0``, a title, a log line) is printed as it is: emoji codes are off, so
``:ab:`` stays text; markup stays on for the CLI's own words (``[red]error:[/red]``), and data printed
through markup goes through ``rich.markup.escape`` or a ``Text``. Nothing is hard-wrapped where a program
reads the output: a line is one line (soft wrap, the terminal folds it on screen), and written to a file or
a pipe (systemd, CI, ``2>file``, ``| grep``) tables take the width they need, not 80 columns.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from contextvars import ContextVar
from typing import IO, NoReturn

import typer
from rich.console import Console, ConsoleDimensions
from rich.markup import escape
from rich.table import Column
from rich.text import Text

from gpuwarden.cli.logs import json_log_line
from gpuwarden.errors import ConfigError

# The width of a console that writes to a file or pipe: wide enough that no table or line is folded.
PIPE_WIDTH = 10_000


class CliConsole(Console):
    """A Console that prints data as it is and, writing to a file or pipe, folds nothing."""

    @property
    def size(self) -> ConsoleDimensions:
        """The terminal's size; to a file or pipe (COLUMNS unset), ``PIPE_WIDTH`` wide."""
        dimensions = Console.size.fget(self)  # type: ignore[attr-defined]
        if self._width is None and "COLUMNS" not in self._environ and not self.is_terminal:
            return ConsoleDimensions(PIPE_WIDTH, dimensions.height)
        return dimensions  # type: ignore[no-any-return]

    @size.setter
    def size(self, new_size: tuple[int, int]) -> None:
        Console.size.fset(self, new_size)  # type: ignore[attr-defined]


def cli_console(*, stderr: bool = False, file: IO[str] | None = None) -> CliConsole:
    """A console for stdout (or stderr, or ``file``) that keeps data intact and lines whole."""
    return CliConsole(stderr=stderr, file=file, emoji=False, soft_wrap=True, highlight=False)


console = cli_console()
err_console = cli_console(stderr=True)

# The logger whose JSON log line says a bad command-line option (``refuse_option``) where the command logs in
# JSON (``--log-format json`` given, or its default: serve), else None: the plain ``error:`` line. The root
# group sets it from the command line (``gpuwarden.cli.usage``), before any option is read.
usage_logger: ContextVar[str | None] = ContextVar("usage_logger", default=None)


def whole_column(header: str, values: Iterable[str]) -> Column:
    """A table column never cut short or wrapped (an id to copy into the next command): as wide as its
    longest value, the other columns narrowed instead. At an 80-column terminal rich cut ``inc-746c1a2b9f0e``
    to ``inc-746c…``, which no command takes."""
    return Column(header, no_wrap=True, min_width=max([len(header), *(len(v) for v in values)]))


def folded(*headers: str) -> list[Column]:
    """Table columns whose long cells fold onto more lines where the table is wider than the terminal, never
    cut: at the default 80 columns rich cut an incident's opened time to ``2026-12…`` and a workload's name
    and nodes to ``llm-c…``, ``node-0…``, which say nothing and which no command takes."""
    return [Column(header, overflow="fold") for header in headers]


def print_problems(error: ConfigError) -> None:
    """A configuration error on stderr, one line per problem: the first, then the others it carries."""
    for problem in (error.alone(), *error.more):  # each listed: no "(and 2 more problems)" on the first
        err_console.print(f"[red]error:[/red] {escape(str(problem))}")


def print_error(error: Exception) -> None:
    """An error on stderr: every problem of a configuration error (``print_problems``), else its one line."""
    if isinstance(error, ConfigError):
        print_problems(error)
    else:
        err_console.print(f"[red]error:[/red] {escape(str(error))}")


def refuse_option(message: str) -> NoReturn:
    """``error: MESSAGE`` (rich markup, escaped by the caller) and exit 2: a bad command-line option. A
    command that logs in JSON says it as one of its log lines at level error (``usage_logger``): a log shipper
    that reads one object per line broke on the plain line that said why the process never started."""
    logger = usage_logger.get()
    if logger is not None:  # the markup's plain text; an emoji code stays as typed (``:x:``), as printed
        line = json_log_line(logger, logging.ERROR, Text.from_markup(message, emoji=False).plain)
        err_console.print(line, markup=False, highlight=False, soft_wrap=True)
    else:
        err_console.print(f"[red]error:[/red] {message}", soft_wrap=True)
    raise typer.Exit(2)


def option_said(option: str, value: object, message: str) -> str:
    """``OPTION VALUE: message``, as every bad option is said (a text quoted, a number as it is), where
    ``message`` may name the value already, as a setting's message does (``'1x' is not a duration ...``,
    ``x.db: cannot open the store``, ``expected NODESxGPUS such as 2x8, got '2y8'``, ``..., got 0 in
    '0x8'``): it is not said twice. A value that is a plain word (a directory named ``cannot``) is not looked
    for unquoted before a space: that is the message's own first word (``cannot write ...``)."""
    shown = repr(value) if isinstance(value, str) else str(value)
    for told in (f", got {shown}", f" in {shown}"):
        message = message.removesuffix(told)
    plain_word = str(value).isalpha()
    # A file in a folder given (`--data D`: `D/c/x.csv line 2: ...`) is named from that folder, `c/x.csv`.
    inside = (f"{value}{os.sep}",) if isinstance(value, str) and value.rstrip(os.sep) else ()
    for told in (f"{shown} ", f"{value}: ", *(() if plain_word else (f"{value} ",)), *inside):
        if message.startswith(told):
            return f"{option} {shown}: {message.removeprefix(told)}"
    return f"{option} {shown}: {message}"
