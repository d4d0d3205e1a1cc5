"""click's usage errors said as every other bad option of the CLI is: one line, exit 2; and flags shown in
``--help`` without a type.

A missing argument, an unknown option or command, an option without its value: typer drew them in a box
under a usage line (``╭─ Error ─╮ Missing argument 'incident_id'.``), where every other bad option is one
line, ``error: --output 'yaml': use one of text, table, json``. ``--help`` is no error and is unchanged.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer
from rich.markup import escape
from typer.core import TyperGroup

from gpuwarden.cli.consoles import refuse_option

# click's exceptions as typer raises them: its own copy of click since typer 0.24 (``typer._click``), click
# itself before; ``typer.BadParameter`` is exported from whichever it is.
_CLICK_ERRORS = importlib.import_module(typer.BadParameter.__module__)
_USAGE_ERROR: type[Exception] = _CLICK_ERRORS.UsageError
_HELP_SHOWN: type[Exception] = _CLICK_ERRORS.NoArgsIsHelpError


class OneLineUsageErrors(TyperGroup):
    """The root command group: a usage error anywhere below it (its own options, a command's, a group's) is
    refused in one line naming what to read, ``error: missing argument 'incident_id'; see gpuwarden
    incidents ack --help``, exit 2. Its flags, and those of every command below it, show no type in
    ``--help``."""

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        """click's, with its usage errors (the root's own options) said in one line; the flags untyped first,
        typer's ``--install-completion`` too (added once the group is built), for a ``--help`` read below."""
        _untyped_flags(self, typer.Context(self))
        with _one_line():
            return super().make_context(info_name, args, parent=parent, **extra)

    def invoke(self, ctx: Any) -> Any:
        """click's, with the usage errors of the commands below said in one line."""
        with _one_line():
            return super().invoke(ctx)


def _untyped_flags(command: Any, ctx: Any) -> None:
    """Give every flag of ``command`` and of the commands below it, ``--help`` included, an empty metavar:
    typer 0.29 showed ``--help <bool>``, ``sim faults --all <bool>``, as if each took a value (``--all
    true``), which click refuses (``option '--all' does not take a value``). A flag takes none, as
    kubectl's and click's help show it. ``ctx`` only names the help option (``--help``)."""
    for param in command.get_params(ctx):
        if getattr(param, "is_flag", False) and not getattr(param, "count", False):
            param.metavar = ""
    for sub in getattr(command, "commands", {}).values():
        _untyped_flags(sub, ctx)


@contextmanager
def _one_line() -> Iterator[None]:
    """Refuse a usage error raised inside in one line, naming the command whose ``--help`` says what it
    takes where the error knows it (an option given without its value does not). A group called without a
    command (``no_args_is_help``) still prints its help."""
    try:
        yield
    except _HELP_SHOWN:
        raise
    except _USAGE_ERROR as exc:
        context = getattr(exc, "ctx", None)
        said = str(exc.format_message()).strip().removesuffix(".")  # type: ignore[attr-defined]
        said = said[:1].lower() + said[1:]
        help_hint = f"; see {context.command_path} --help" if context is not None else ""
        refuse_option(escape(said + help_hint))
