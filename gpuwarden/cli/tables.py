"""Tables printed fast: a listing of 24,000 incidents took rich 30 s to lay out, kubectl prints as many rows
in well under a second.

``print_table`` draws what rich would, character for character, with plain string joins where rich's layout
has nothing to decide: output without colour (a file or a pipe), every column as wide as its widest cell and
the whole table within the console's width (nothing folded or cut), plain one-line text cells, a one-line
title at most (a soft-wrapping console, as the CLI's are, prints it as it is), and rich's default box,
padding and left justification. Anything else (a terminal, a table wider than the console) goes to rich.
"""

from __future__ import annotations

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.table import Table


def print_table(console: Console, table: Table) -> None:
    """Print ``table`` on ``console`` as ``console.print(table, markup=False)`` does, faster where it can."""
    lines = _plain_lines(console, table)
    if lines is None:
        console.print(table, markup=False)  # titles and names are data, not markup
        return
    console.file.write("".join(line + "\n" for line in lines))
    console.file.flush()


def _plain(cell: object) -> bool:
    """A cell whose text rich prints as it is: a ``str`` of one line without control characters (rich drops
    those, and expands tabs)."""
    return isinstance(cell, str) and all(" " <= ch != "\x7f" for ch in cell)


def _plain_lines(console: Console, table: Table) -> list[str] | None:
    """The table's lines as rich draws them, or None where its layout is not this simple case."""
    columns = table.columns
    if (
        console.color_system is not None
        or console.is_terminal
        or not console.encoding.startswith("utf")  # rich draws an ASCII box then
        or table.box is not box.HEAVY_HEAD
        or (table.title and (not _plain(table.title) or not console.soft_wrap))
        or table.caption
        or table.show_footer
        or not table.show_header
        or not table.show_edge
        or table.show_lines
        or table.expand
        or table.width is not None
        or table.min_width is not None
        or table.padding != (0, 1, 0, 1)
        or table.pad_edge is not True
        or table.leading
        or table.row_styles
        or any(row.style is not None or row.end_section for row in table.rows)
        or not columns
    ):
        return None
    cells = [[col.header, *col._cells] for col in columns]
    if not all(_plain(cell) for column in cells for cell in column):
        return None
    if any(
        c.justify != "left"
        or c.vertical != "top"
        or c.width is not None
        or c.max_width is not None
        or c.ratio
        for c in columns
    ):
        return None
    texts: list[list[str]] = [[str(cell) for cell in column] for column in cells]
    widths = [
        max(c.min_width or 0, *(cell_len(t) for t in column))
        for c, column in zip(columns, texts, strict=True)
    ]
    if sum(widths) + 3 * len(widths) + 1 > console.width:  # rich folds or cuts cells to fit
        return None
    padded = [
        [f" {t}{' ' * (width - cell_len(t))} " for t in column]
        for column, width in zip(texts, widths, strict=True)
    ]
    # A soft-wrapping console (every CLI console: ``cli_console``) prints the title as it is, on a line above.
    lines = [str(table.title)] if table.title else []
    bars = ["━" * (w + 2) for w in widths]
    lines.append("┏" + "┳".join(bars) + "┓")
    lines.append("┃" + "┃".join(column[0] for column in padded) + "┃")
    lines.append("┡" + "╇".join(bars) + "┩")
    lines += ["│" + "│".join(row) + "│" for row in zip(*(column[1:] for column in padded), strict=True)]
    lines.append("└" + "┴".join("─" * (w + 2) for w in widths) + "┘")
    return lines
