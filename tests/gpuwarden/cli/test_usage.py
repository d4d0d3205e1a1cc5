"""How ``--help`` shows the options of every command."""

from __future__ import annotations

import inspect
import itertools
import re
from typing import Any

import pytest

from gpuwarden.cli import app
from tests.gpuwarden.cli.built_runner import BuiltCliRunner
from tests.gpuwarden.cli.command_tree import _commands

runner = BuiltCliRunner()
PATHS = ["gpuwarden", *(path for path, _ in _commands(runner.command(app), "gpuwarden"))]


@pytest.mark.parametrize("path", PATHS, ids=PATHS)
def test_help_shows_no_type_after_a_flag_which_takes_no_value(path: str) -> None:
    """typer showed ``--help <bool>``, ``sim faults --all <bool>``, ``--version <bool>``: as if a flag took a
    value, ``--all true``, which is refused (``option '--all' does not take a value``)."""
    shown = runner.invoke(app, [*path.split()[1:], "--help"], env={"COLUMNS": "250"})
    assert shown.exit_code == 0, shown.output
    flags = [line for line in shown.stdout.splitlines() if "--help" in line or "<bool>" in line]
    assert flags and not [line for line in flags if "<bool>" in line], flags


def _groups(command: Any, path: str) -> list[tuple[str, Any]]:
    """Every command group under ``command``, itself included, with its full name."""
    subs = getattr(command, "commands", None)
    if subs is None:
        return []
    return [(path, command), *(item for name, sub in subs.items() for item in _groups(sub, f"{path} {name}"))]


GROUPS = _groups(runner.command(app), "gpuwarden")


@pytest.mark.parametrize(("path", "group"), GROUPS, ids=[path for path, _ in GROUPS])
def test_a_groups_help_lists_each_commands_summary_as_one_paragraph(path: str, group: Any) -> None:
    """typer kept the docstring's line breaks in a group's list of commands: ``incidents --help`` broke
    "mitigate" after "says so when" and "silence" after "a silence that", at any width, and ``config
    --help`` broke each of its two summaries in three places mid-sentence."""
    shown = runner.invoke(app, [*path.split()[1:], "--help"], env={"COLUMNS": "250"})
    assert shown.exit_code == 0, shown.output
    rows = shown.stdout.splitlines()
    for name, sub in group.commands.items():
        summary = " ".join(inspect.cleandoc(sub.help or "").split("\n\n")[0].split())
        if len(summary) < 200:  # one row at 250 columns, unless it was broken
            assert any(summary in row for row in rows), (name, summary, shown.stdout)


def _prose_rows(help_text: str) -> list[list[str]]:
    """The paragraphs of a ``--help``'s prose (above its first box), each a list of its rows, stripped."""
    prose = help_text.split("╭", maxsplit=1)[0].splitlines()
    paragraphs: list[list[str]] = [[]]
    for row in (r.strip() for r in prose[prose.index(next(r for r in prose if "Usage:" in r)) + 1 :]):
        if row:
            paragraphs[-1].append(row)
        elif paragraphs[-1]:
            paragraphs.append([])
    return [p for p in paragraphs if p]


@pytest.mark.parametrize("path", PATHS, ids=PATHS)
def test_a_commands_help_flows_each_paragraph_to_the_terminals_width(path: str) -> None:
    """typer kept the docstring's line breaks in every paragraph after the first: at 80 columns
    ``loadgen --help`` broke "(0 with --allow-errors), when" from "none succeeded", and inference-server,
    anomaly score, anomaly run and inventory export broke their second paragraphs in the same way. A row
    ends early only where the next word would not fit (78 columns: the help's margins)."""
    shown = runner.invoke(app, [*path.split()[1:], "--help"], env={"COLUMNS": "80"})
    assert shown.exit_code == 0, shown.output
    for rows in _prose_rows(shown.stdout):
        for row, following in itertools.pairwise(rows):
            assert len(row) + 1 + len(following.split()[0]) > 76, (row, following, shown.stdout)


@pytest.mark.parametrize(
    "path", [path for path, _ in GROUPS] + PATHS[1:], ids=[p for p, _ in GROUPS] + PATHS[1:]
)
def test_help_at_80_columns_cuts_no_option_name_or_word_of_help(path: str) -> None:
    """At 80 columns ``exporter --help`` showed ``--web.config.fil…``, ``--listen-address…`` and
    ``--allow-remote-f…``: the option's own name could not be read, nor ``(exporter-toolki…`` in its help."""
    shown = runner.invoke(app, [*path.split()[1:], "--help"], env={"COLUMNS": "80"})
    assert shown.exit_code == 0, shown.output
    assert "…" not in shown.stdout, shown.stdout


LEAVES = _commands(runner.command(app), "gpuwarden")


@pytest.mark.parametrize("width", [80, 100, 120])
@pytest.mark.parametrize(("path", "command"), LEAVES, ids=[path for path, _ in LEAVES])
def test_help_shows_every_option_name_whole_at_common_widths(path: str, command: Any, width: int) -> None:
    """rich shrank every column of a help table too wide for the terminal alike, folding option names
    mid-word while the help column had room: at 100 columns ``exporter --help`` showed
    ``--listen-address,--hos`` / ``t``, ``--no-allow-remote-fau`` / ``lts`` and ``--web.config.file,--we`` /
    ``b-config-file``; ``serve``, ``inference-server`` and ``config validate`` cut ``--web-config-file`` up
    to 100 or 130 columns, ``loadgen`` ``--no-allow-errors`` and ``anomaly score``
    ``--keep-repeated-timestamps`` at 80."""
    shown = runner.invoke(app, [*path.split()[1:], "--help"], env={"COLUMNS": str(width)})
    assert shown.exit_code == 0, shown.output
    names = [name for param in command.params for name in (*param.opts, *param.secondary_opts)]
    cut = [
        n for n in names if n.startswith("--") and not re.search(rf"{re.escape(n)}(?![\w.-])", shown.stdout)
    ]
    assert not cut, (cut, shown.stdout)


def test_a_flag_still_refuses_a_value_in_one_line() -> None:
    refused = runner.invoke(app, ["sim", "faults", "--all=true"])
    said = " ".join(refused.stderr.split())
    assert refused.exit_code == 2 and "error: option '--all' does not take a value" in said, said


@pytest.mark.parametrize("path", PATHS, ids=PATHS)
def test_help_shows_what_an_option_takes_not_a_python_type(path: str) -> None:
    """``outbox discard --status <list[str]>`` and ``sim inject --param <list[str]>``: the README says
    ``--help`` shows each choice (``--status <orphaned|failed>``); a repeatable option showed its Python
    type."""
    shown = runner.invoke(app, [*path.split()[1:], "--help"], env={"COLUMNS": "250"})
    assert shown.exit_code == 0, shown.output
    leaked = [line for line in shown.stdout.splitlines() if "[str]" in line or "<list" in line]
    assert not leaked, leaked


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ["serve", "--log-format", "text", "--port"],
            "option '--port' requires an argument; see gpuwarden serve",
        ),
        (["outbox", "list", "--url"], "option '--url' requires an argument; see gpuwarden outbox list"),
        (
            ["incidents", "list", "--limit"],
            "option '--limit' requires an argument; see gpuwarden incidents list",
        ),
    ],
)
def test_an_option_without_its_value_names_the_help_to_read_as_other_usage_errors_do(
    args: list[str], said: str
) -> None:
    """click's error for an option given without its value knows no command: it ended without the `; see
    gpuwarden serve --help` every other usage error carries."""
    refused = runner.invoke(app, args)
    shown = " ".join(refused.stderr.split())
    assert refused.exit_code == 2 and f"error: {said} --help" in shown, shown


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (
            ["incident", "list"],
            "error: no such command 'incident' (did you mean 'incidents'?); see gpuwarden --help",
        ),
        (
            ["incidents", "lst"],
            "error: no such command 'lst' (did you mean 'list'?); see gpuwarden incidents --help",
        ),
    ],
    ids=["group", "command"],
)
def test_a_mistyped_command_is_said_in_one_sentence_with_its_suggestion_in_brackets(
    args: list[str], said: str
) -> None:
    """The most common typo said "no such command 'incident'. Did you mean 'incidents'?; see ...": a
    question, then "?;" before the help to read. It reads as an unknown option's suggestion does."""
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2 and " ".join(refused.stderr.split()) == said, refused.stderr
