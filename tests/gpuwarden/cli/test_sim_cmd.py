"""`gpuwarden sim show`: what a simulated fleet looks like."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from gpuwarden.cli import app

runner = CliRunner()


def test_the_table_shows_pci_bus_ids_as_they_are_not_as_emoji() -> None:
    result = runner.invoke(app, ["sim", "show", "--simulate", "1x8"])
    assert result.exit_code == 0, result.output
    listed = json.loads(runner.invoke(app, ["sim", "show", "--simulate", "1x8", "--output", "json"]).stdout)
    bus_ids = [g["pci_bus_id"] for g in listed["nodes"][0]["gpus"]]
    assert "00000000:AB:00.0" in bus_ids  # Rich would read ":ab:" as an emoji code
    for bus_id in bus_ids:
        assert bus_id in result.stdout
    assert "\U0001f18e" not in result.stdout
