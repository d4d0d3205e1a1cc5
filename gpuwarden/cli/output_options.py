"""The ``-o/--output`` option, and any other choice of a command, taken in any case and refused with the
choices that are (exit 2); every command that prints something uses them."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Any

import typer
from rich.markup import escape

from gpuwarden.cli.consoles import refuse_option
from gpuwarden.cli.logs import LOG_FORMAT_HELP, LogFormat

# -o/--output of every command that prints something, as kubectl's: json for scripts, and for people a table
# (listings) or text (one item); each listing and each item takes both words for the human form.
TABLE_OUTPUTS = ("table", "text", "json")
TEXT_OUTPUTS = ("text", "table", "json")
EXPORT_OUTPUTS = ("yaml", "json")  # a file alerting.inventory_file reads
MARKDOWN_OUTPUTS = ("markdown", "text", "json")  # a document: the postmortem draft


def output_option(allowed: Sequence[str], help_text: str) -> Any:
    """The ``-o/--output`` option of a command that prints one of ``allowed``, which ``--help`` lists
    (``<table|text|json>``, as it does every other choice); ``check_output`` takes the value as ``allowed``
    spells it and refuses any other, while the command line is read: the command is given one of
    ``allowed``, named here once. Not while the shell completes a command line (``resilient_parsing``):
    nothing runs then, and an error would be printed at the prompt at each TAB."""
    choices = tuple(allowed)

    def checked(ctx: typer.Context, value: str) -> str:
        return value if ctx.resilient_parsing else check_output(value, choices)

    return typer.Option("--output", "-o", metavar=choice_metavar(choices), help=help_text, callback=checked)


def check_output(output: str, allowed: tuple[str, ...]) -> str:
    """``output`` as ``allowed`` spells it (``-o JSON`` is json); refuse one not in it, naming the ones that
    are."""
    return str(check_choice("--output", output, allowed))


def check_choice(option: str, value: str | None, allowed: Sequence[str]) -> str | None:
    """``value`` of ``option`` as ``allowed`` spells it, in any case (``--priority p1`` is P1, as kubectl
    and sacct take either); ``None`` when not given. One not in ``allowed`` is refused, naming the ones that
    are, before any request: exit 2, as for every bad option (1 says that serve failed or refused)."""
    if value is None:
        return None
    for choice in allowed:
        if value.casefold() == choice.casefold():
            return choice
    refuse_option(f"{option} {escape(repr(value))}: use one of {', '.join(allowed)}")


def choice_metavar(allowed: Sequence[str]) -> str:
    """How ``--help`` shows an option taking one of ``allowed``: ``<triggered|acknowledged|...>``, as it shows
    ``-o <table|text|json>``, rather than ``<str>``."""
    return f"<{'|'.join(allowed)}>"


def enum_option(option: str, enum: type[StrEnum], help_text: str) -> Any:
    """An option taking one of ``enum``'s values (``--log-format <text|json>``), in any case, refused as
    every other choice is: ``error: --log-format 'yaml': use one of text, json``, exit 2. typer's own enum
    choice said "invalid value for '--log-format': Value error, 'yaml' is not one of 'text', 'json'" and
    refused ``JSON``. The command is given the member."""
    choices = tuple(member.value for member in enum)

    def checked(ctx: typer.Context, value: str | None) -> StrEnum | str | None:
        if ctx.resilient_parsing or value is None:
            return value
        return enum(str(check_choice(option, str(value), choices)))

    return typer.Option(option, metavar=choice_metavar(choices), help=help_text, parser=str, callback=checked)


def log_format_option() -> Any:
    """``--log-format <text|json>`` of ``serve``, ``exporter``, ``anomaly run`` and ``inference-server``."""
    return enum_option("--log-format", LogFormat, LOG_FORMAT_HELP)
