"""``gpuwarden exporter``: start-up failures are one clear line and exit 1, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from gpuwarden.cli import app


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["exporter", "--port", "19999"], "cannot initialise NVML (LibraryNotFound)"),
        (["exporter", "--simulate", "2y8"], "expected NODESxGPUS"),
        (["exporter", "--simulate", "2x8", "--port", "0"], "invalid option"),
    ],
    ids=["no-driver", "bad-simulate-spec", "bad-port"],
)
def test_startup_errors_print_one_line_and_exit_1(argv: list[str], words: str) -> None:
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 1
    assert words in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_bad_config_file_names_the_field(tmp_path: Path) -> None:
    config = tmp_path / "gpuwarden.yaml"
    config.write_text("exporter:\n  prot: 9400\n")
    result = CliRunner().invoke(app, ["exporter", "--config", str(config)])
    assert result.exit_code == 1
    assert "exporter.prot" in result.output
