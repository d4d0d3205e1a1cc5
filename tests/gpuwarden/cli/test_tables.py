"""``print_table``: rich's table, drawn with string joins where rich has nothing to lay out (a listing of
24,000 incidents took rich 30 s), and given to rich otherwise."""

from __future__ import annotations

import io
import json

import pytest
from rich.console import Console
from rich.table import Column, Table

from gpuwarden.cli import app
from gpuwarden.cli.consoles import cli_console, whole_column
from gpuwarden.cli.tables import print_table
from tests.gpuwarden.cli.incidents_answers import DETAIL, runner
from tests.http_stub import FixedAnswer

CELLS = {
    "ascii": [["inc-0123456789ab", "P1", "triggered", "GPU lost @ gpu node-01/5", "title"]],
    "wide and combining": [["日本", "é", "e\u0301", "😀x", "a\u200bb"], ["", "P2", "x", "y", "z"]],
    "spaces and empty": [["  lead", "trail  ", " ", "", "a  b"]],
    "markup and emoji codes": [["[red]x[/red]", ":ab:", "[bold]", "\\[x]", "00000000:AB:00.0"]],
    "a control character": [["bell\x07", "tab\tx", "cr\rx", "del\x7f", "ok"]],
    "wider than the console": [["x" * 300, "P1", "a", "b", "c"]],
}


def _table(rows: list[list[str]], title: str = "") -> Table:
    table = Table(
        whole_column("id", (r[0] for r in rows)),
        "priority",
        Column("state", overflow="fold"),
        "root",
        "title",
        title=title or None,
    )
    for row in rows:
        table.add_row(*row)
    return table


def _printed(draw: str, rows: list[list[str]], title: str = "", **console: object) -> str:
    out = io.StringIO()
    target = cli_console(file=out) if not console else Console(file=out, **console)  # type: ignore[arg-type]
    if draw == "rich":
        target.print(_table(rows, title), markup=False)
    else:
        print_table(target, _table(rows, title))
    return out.getvalue()


@pytest.mark.parametrize("rows", CELLS.values(), ids=CELLS.keys())
def test_a_table_is_printed_as_rich_prints_it(rows: list[list[str]]) -> None:
    assert _printed("fast", rows) == _printed("rich", rows)


@pytest.mark.parametrize(
    "title", ["simulated fleet 2x8 (seed 0)", "  lead and trail  ", "日本" * 40, "bell\x07"], ids=str.strip
)
def test_a_table_with_a_title_is_printed_as_rich_prints_it(title: str) -> None:
    rows = CELLS["wide and combining"]
    assert _printed("fast", rows, title) == _printed("rich", rows, title)
    assert _printed("fast", rows, title, width=300) == _printed("rich", rows, title, width=300)


@pytest.mark.parametrize(
    "console",
    [{"width": 60}, {"force_terminal": True, "color_system": "truecolor", "width": 200}, {"width": 200}],
    ids=["narrow", "colour terminal", "200 columns"],
)
def test_a_table_on_another_console_is_printed_as_rich_prints_it(console: dict[str, object]) -> None:
    rows = CELLS["wide and combining"] + CELLS["ascii"]
    assert _printed("fast", rows, **console) == _printed("rich", rows, **console)  # type: ignore[arg-type]


def test_incidents_list_of_thousands_is_drawn_without_richs_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    """``incidents list --limit 0`` of 24,000 incidents took 44 s, 30 of them in rich's table layout."""
    monkeypatch.delenv("COLUMNS", raising=False)
    items = [{**DETAIL, "id": f"inc-{i:012x}"} for i in range(2000)]
    rich_ones = [{**DETAIL, "id": f"inc-{i:012x}"} for i in range(2)]
    stub = FixedAnswer(200, json.dumps(rich_ones).encode())
    try:
        expected = runner.invoke(app, ["incidents", "list", "--url", stub.url]).stdout.splitlines()
    finally:
        stub.close()

    def no_layout(*_: object) -> None:
        raise AssertionError("rich laid the table out")

    monkeypatch.setattr(Table, "__rich_console__", no_layout)
    stub = FixedAnswer(200, json.dumps(items).encode())
    try:
        result = runner.invoke(app, ["incidents", "list", "--url", stub.url, "--limit", "0"])
    finally:
        stub.close()
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert len(lines) == 2000 + 4
    assert lines[:4] == expected[:4] and lines[-1] == expected[-1]
