"""click's usage errors said as every other bad option of the CLI is: one line, exit 2; flags shown in
``--help`` without a type; and each command's summary in its group's ``--help`` as one paragraph.

A missing argument, an unknown option or command, an option without its value: typer drew them in a box
under a usage line (``╭─ Error ─╮ Missing argument 'incident_id'.``), where every other bad option is one
line, ``error: --output 'yaml': use one of text, table, json``. ``--help`` is no error and is unchanged.

A command that logs in JSON (``--log-format json`` on the command line, or its default: ``serve``) says its
usage errors as one JSON log line instead (``consoles.usage_logger``), exit 2 still.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

import typer
from rich.markup import escape
from typer.core import TyperGroup

from gpuwarden.cli.consoles import refuse_option, usage_logger
from gpuwarden.cli.logs import LogFormat

# click's exceptions as typer raises them: its own copy of click since typer 0.24 (``typer._click``), click
# itself before; ``typer.BadParameter`` is exported from whichever it is.
_CLICK_ERRORS = importlib.import_module(typer.BadParameter.__module__)
_USAGE_ERROR: type[Exception] = _CLICK_ERRORS.UsageError
_HELP_SHOWN: type[Exception] = _CLICK_ERRORS.NoArgsIsHelpError
# The command path the command line names (``gpuwarden serve``), set by the root group before any option is
# read: the ``--help`` to point at where click's error knows no command (an option given without its value).
_named_path: ContextVar[str | None] = ContextVar("_named_path", default=None)


class OneLineUsageErrors(TyperGroup):
    """The root command group: a usage error anywhere below it (its own options, a command's, a group's) is
    refused in one line naming what to read, ``error: missing argument 'incident_id'; see gpuwarden
    incidents ack --help``, exit 2. Its flags, and those of every command below it, show no type in
    ``--help``."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        """click's, the command's log format for its usage errors (``json_logger``) forgotten after: a test's
        next call, in the same process, does not inherit it."""
        token, path_token = usage_logger.set(None), _named_path.set(None)
        try:
            return super().main(*args, **kwargs)
        finally:
            usage_logger.reset(token)
            _named_path.reset(path_token)

    def make_context(self, info_name: str | None, args: list[str], parent: Any = None, **extra: Any) -> Any:
        """click's, with its usage errors (the root's own options) said in one line; the flags untyped first,
        typer's ``--install-completion`` too (added once the group is built), for a ``--help`` read below."""
        _untyped_flags(self, typer.Context(self))
        _summaries_in_one_paragraph(self)
        usage_logger.set(json_logger(self, args))
        named, _, names = _command_named(self, list(args))
        if "--help" in args or hasattr(named, "commands"):  # help is shown: a group's without its command too
            _help_cells_folded()
        _named_path.set(" ".join([info_name or self.name or "gpuwarden", *names]))
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


def _summaries_in_one_paragraph(group: Any) -> None:
    """Give every command below ``group`` that has none a short help: its help's first paragraph on one
    line. typer 0.29's rich help kept the docstring's line breaks in a group's command list, so a summary
    broke off mid-sentence at each (``config --help``: "as serve, exporter and anomaly run", then "would,
    and the OTEL_* variables ..." on the next row), where the command's own ``--help`` flows it. The
    paragraphs after the first are flowed too (``_flowed``)."""
    for sub in getattr(group, "commands", {}).values():
        if sub.short_help is None and sub.help:
            sub.short_help = " ".join(inspect.cleandoc(sub.help).split("\n\n")[0].split())
        if sub.help:
            sub.help = _flowed(sub.help)
        _summaries_in_one_paragraph(sub)


def _flowed(text: str) -> str:
    """``text`` with each paragraph on one line, for rich to wrap at the terminal's width: typer 0.29 flows
    a command's first paragraph but keeps the docstring's line breaks in the others, so ``loadgen --help``
    (and ``inference-server``, ``anomaly score``, ``anomaly run``, ``inventory export``) broke each line
    of its source at 110 columns and again at the terminal's 80 ("... (0 with --allow-errors), when" /
    "none succeeded, ..."). A paragraph marked ``\\b`` (click's "keep these lines") is left as written, and
    so is what follows ``\\f``."""
    shown, cut, hidden = inspect.cleandoc(text).partition("\f")
    paragraphs = [p if p.startswith("\b") else " ".join(p.split()) for p in shown.split("\n\n")]
    return "\n\n".join(paragraphs) + cut + hidden


def _help_cells_folded() -> None:
    """Make ``--help`` fold what does not fit its column onto the next line, where it cut it with an ellipsis:
    at 80 columns ``exporter --help`` showed ``--web.config.fil…``, ``--listen-address…`` and
    ``--allow-remote-f…`` (an operator could not read the option's name), and ``(exporter-toolki…`` in the
    help. typer's rich help builds its option tables and each option's help (``Columns``) in
    ``typer.rich_utils``, whose cells take rich's default overflow, ``ellipsis``. Imported, and its two
    names replaced, only when help is shown: the module loads rich's tables (a third of a second)."""
    from rich.columns import Columns  # noqa: PLC0415
    from rich.measure import Measurement  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415
    from rich.text import Text  # noqa: PLC0415
    from typer import rich_utils  # noqa: PLC0415

    if getattr(getattr(rich_utils, "Table", None), "folds", False):
        return

    class FoldingTable(Table):
        """A table whose every column folds a word too long for it, and whose columns are each given the
        width of their longest word first where the terminal has room for it, the option names' first."""

        folds = True

        def add_row(self, *renderables: Any, **kwargs: Any) -> None:
            super().add_row(*_names_together(renderables), **kwargs)
            for column in self.columns:  # made by add_row, with rich's default overflow
                column.overflow = "fold"

        def _calculate_column_widths(self, console: Any, options: Any) -> list[int]:
            widths = super()._calculate_column_widths(console, options)
            words = [
                max((_longest_word(console, options, cell) for cell in column.cells), default=0)
                + self._get_padding_width(column._index)
                for column in self.columns
            ]
            return words_kept_whole(widths, words)

    def _longest_word(console: Any, options: Any, cell: Any) -> int:
        """The width of the longest word of ``cell``; an option's help is a ``Columns`` (the help, then its
        default), which rich measures as 1."""
        parts = cell.renderables if isinstance(cell, Columns) else [cell]
        return max((Measurement.get(console, options, part).minimum for part in parts), default=0)

    def _names_together(cells: tuple[Any, ...]) -> list[Any]:
        """An option's row (typer's: the long names, the short ones, the long and short names of a flag's
        off switch, the type, the help; a required mark before) with the off switch's long names beside
        the option's, as click writes them (``--allow-remote-faults / --no-allow-remote-faults``), and a
        space after each comma (``--listen-address, --host``), so that the names' column may break between
        two names rather than inside one. Any other row as it is."""
        row = list(cells)
        if len(row) not in (6, 7) or not all(isinstance(cell, Text) for cell in row[-6:-2]):
            return row
        names, off = (Text(", ").join(cell.split(",")) for cell in (row[-6], row[-4]))
        if off.plain:
            names = Text(" / ").join([names, off]) if names.plain else off
        row[-6], row[-4] = names, Text("")
        return row

    def folding_columns(items: Any, *args: Any, **kwargs: Any) -> Columns:
        for item in items:
            if isinstance(item, Text):
                item.overflow = "fold"
        return Columns(items, *args, **kwargs)

    # The names the module looks up as it builds the help; replaced in the module, which exports neither.
    setattr(rich_utils, "Table", FoldingTable)  # noqa: B010
    setattr(rich_utils, "Columns", folding_columns)  # noqa: B010


HELP_WIDTH = 20  # the narrowest an option's help column is made to give option names room


def words_kept_whole(widths: list[int], words: list[int]) -> list[int]:
    """Column ``widths`` (rich's) changed so that each column, from the first, is at least ``words`` wide (its
    longest word) where the others can give the difference above their own longest words: rich shrank every
    column of a table too wide for the terminal alike, so at 100 columns ``exporter --help`` broke
    ``--listen-address,--hos`` / ``t``, ``--no-allow-remote-fau`` / ``lts`` and ``--web.config.file,--we`` /
    ``b-config-file`` while its help column had room to spare. The total is unchanged."""
    from rich._ratio import ratio_reduce  # noqa: PLC0415 - loaded with the help's tables, when help is shown

    kept = list(widths)
    # The help, last, folds a word rather than leave it too narrow to read: it gives down to HELP_WIDTH.
    floors = [*words[:-1], min(words[-1], HELP_WIDTH)] if words else []
    for i, word in enumerate(words):
        spare = [
            0 if j == i else max(0, width - least)
            for j, (width, least) in enumerate(zip(kept, floors, strict=True))
        ]
        short = min(word - kept[i], sum(spare))
        if short <= 0:
            continue
        taken = ratio_reduce(short, spare, spare, kept)
        kept = [*taken[:i], kept[i] + short, *taken[i + 1 :]]
    return kept


def json_logger(root: Any, args: Sequence[str]) -> str | None:
    """The logger of the command ``args`` name when it logs in JSON: its ``--log-format`` there (the last
    one click takes; ``--log-format=json`` too), else the option's default; None for text or a command
    without the option."""
    command, rest, _ = _command_named(root, list(args))
    option = next((p for p in getattr(command, "params", ()) if p.name == "log_format"), None)
    if option is None:
        return None
    chosen = str(option.default)
    for i, word in enumerate(rest):
        if word == "--":
            break
        value = rest[i + 1] if word == "--log-format" and i + 1 < len(rest) else word.partition("=")[2]
        given = word == "--log-format" or word.startswith("--log-format=")
        if given and value.casefold() in set(LogFormat):  # in any case, as the option takes it
            chosen = value.casefold()  # a value it does not take is a usage error itself: the default says it
    if chosen != LogFormat.JSON:
        return None
    module = sys.modules.get(getattr(command.callback, "__module__", ""))
    return str(getattr(getattr(module, "logger", None), "name", "gpuwarden"))


def _command_named(group: Any, args: list[str]) -> tuple[Any, list[str], list[str]]:
    """The command the first words of ``args`` name below ``group`` (skipping the groups' options and their
    values), the words after its name, and the names of the commands on the way to it (``outbox``,
    ``list``)."""
    names: list[str] = []
    while getattr(group, "commands", None) is not None and args:
        word = args.pop(0)
        if word.startswith("-"):
            takes_value = any(
                word in p.opts and not getattr(p, "is_flag", False) for p in group.params if p.opts
            )
            if takes_value and "=" not in word and args:
                args.pop(0)
            continue
        found = group.commands.get(word)
        if found is None:
            return None, args, names
        group = found
        names.append(word)
    return group, args, names


@contextmanager
def _one_line() -> Iterator[None]:
    """Refuse a usage error raised inside in one line, naming the command whose ``--help`` says what it
    takes: the error's own, else the one the command line names (click's error for an option given without
    its value knows none, and said no ``--help``). A group called without a command (``no_args_is_help``)
    still prints its help."""
    try:
        yield
    except _HELP_SHOWN:
        raise
    except _USAGE_ERROR as exc:
        context = getattr(exc, "ctx", None)
        said = str(exc.format_message()).strip().removesuffix(".")  # type: ignore[attr-defined]
        said = said[:1].lower() + said[1:]
        # "no such command 'incident'. Did you mean 'incidents'?; see ...": the suggestion in brackets, as
        # click says an option's ("no such option: --stat (Possible options: --state)").
        said = re.sub(r"\. Did you mean (.+)\?$", r" (did you mean \1?)", said)
        path = context.command_path if context is not None else _named_path.get()
        help_hint = f"; see {path} --help" if path else ""
        refuse_option(escape(said + help_hint))
