"""The CLI's consoles keep data intact and lines whole where a program reads them."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.table import Table
from typer.testing import CliRunner

from gpuwarden.cli import app
from gpuwarden.cli.consoles import cli_console


@pytest.fixture(autouse=True)
def _not_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """No environment that makes Rich treat a pipe as a terminal or fixes its width."""
    for name in ("COLUMNS", "FORCE_COLOR", "TTY_COMPATIBLE"):
        monkeypatch.delenv(name, raising=False)


def test_a_long_line_written_to_a_file_stays_one_line() -> None:
    out = io.StringIO()
    line = "error: " + " ".join(f"word{i}" for i in range(60))
    cli_console(file=out).print(line)
    assert out.getvalue() == line + "\n"


def test_a_table_written_to_a_file_keeps_each_row_on_one_line() -> None:
    out = io.StringIO()
    table = Table("id", "title")
    title = "node node-06 is down: " + ", ".join(
        f"inference service svc-{i} 12% of replicas lost" for i in range(4)
    )
    table.add_row("inc-0123456789ab", title)
    cli_console(file=out).print(table)
    assert any("inc-0123456789ab" in line and title in line for line in out.getvalue().splitlines())


def test_data_that_looks_like_an_emoji_code_is_printed_as_it_is() -> None:
    out = io.StringIO()
    cli_console(file=out).print("00000000:AB:00.0 :smile:", markup=False)
    assert out.getvalue() == "00000000:AB:00.0 :smile:\n"


def test_a_cli_error_longer_than_80_columns_stays_one_line_on_stderr(tmp_path: Path) -> None:
    missing = tmp_path / ("x" * 120 + ".csv")
    result = CliRunner().invoke(app, ["anomaly", "score", "--input", str(missing), "--output", "out.csv"])
    assert result.exit_code == 1
    (line,) = result.stderr.splitlines()
    assert line.startswith("error: ") and str(missing) in line
