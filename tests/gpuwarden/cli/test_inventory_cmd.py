"""``gpuwarden inventory``: serve's inventory as a table or JSON, to check against scontrol."""

from __future__ import annotations

import json
from typing import Any

import pytest
from typer.testing import CliRunner

from alerting.inventory_file import inventory_data
from alerting.inventory_view import inventory_states
from alerting.slurm_inventory import SlurmInventory
from gpuwarden.cli import app, inventory_cmd
from gpuwarden.clock import FakeClock
from tests.alerting.slurm_recorded import RecordedSlurm

runner = CliRunner()
WIDE = {"COLUMNS": "250"}  # a table row on one line


@pytest.fixture
def requeued(monkeypatch: pytest.MonkeyPatch) -> None:
    """serve's /api/v1/inventory for the recorded Slurm cluster after node-01 went DOWN and llm was requeued
    (node-03 in a reservation, node-04 in a MAINT one)."""
    slurm, clock = RecordedSlurm("D-running"), FakeClock()
    reader = SlurmInventory(clock, slurm)
    reader.read()
    slurm.capture = "D-requeued"
    inventory = reader.read()
    answer = {"about": {"source": "slurm", "read_at": None, **inventory_states(inventory)}}
    answer |= inventory_data(inventory)

    def fetch(url: str) -> dict[str, Any]:
        return json.loads(json.dumps(answer))

    monkeypatch.setattr(inventory_cmd, "_fetch", fetch)


@pytest.mark.usefixtures("requeued")
def test_nodes_show_their_state_and_free_gpus_as_slurm_says_them() -> None:
    result = runner.invoke(app, ["inventory", "nodes", "-o", "json"])
    assert result.exit_code == 0, result.output
    nodes = {n["name"]: n for n in json.loads(result.stdout)}
    assert {name: (n["state"], n["usable"], n["free_gpus"]) for name, n in nodes.items()} == {
        "node-01": ("down", False, 0),
        "node-02": ("idle", True, 4),
        "node-03": ("idle+reserved", False, 0),
        "node-04": ("idle+maintenance+reserved", False, 0),
        "node-05": ("idle", True, 4),
    }
    assert nodes["node-05"]["partitions"] == ["other"]
    table = runner.invoke(app, ["inventory", "nodes"], env=WIDE).stdout
    assert "idle+maintenance+reserved" in table and "free" in table


@pytest.mark.usefixtures("requeued")
def test_workloads_say_whether_they_run_or_are_kept_after_stopping() -> None:
    result = runner.invoke(app, ["inventory", "workloads", "-o", "json"])
    assert result.exit_code == 0, result.output
    (llm,) = json.loads(result.stdout)
    assert (llm["name"], llm["state"], llm["kept_units"], llm["gpus_held"]) == ("llm (14)", "pending", 8, 8)
    table = runner.invoke(app, ["inventory", "workloads"], env=WIDE).stdout
    assert "kept (pending)" in table
