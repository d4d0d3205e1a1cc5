"""``gpuwarden inventory``: serve's inventory as a table or JSON, to check against scontrol."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from alerting.db import make_engine
from alerting.engine import IncidentEngine
from alerting.inventory import StaticInventory
from alerting.inventory_file import inventory_data, load_inventory
from alerting.inventory_view import inventory_states
from alerting.migrate import upgrade
from alerting.slurm_inventory import SlurmInventory
from gpuwarden.cli import app, inventory_cmd
from gpuwarden.clock import FakeClock
from gpuwarden.config import AlertingConfig
from gpuwarden.model import Alert
from tests.alerting.slurm_recorded import RecordedSlurm
from tests.gpuwarden.api_client import api_client
from tests.gpuwarden.cli.built_runner import BuiltCliRunner

runner = BuiltCliRunner()
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


@pytest.mark.parametrize("output", ["yaml", "json"])
def test_an_export_of_serves_inventory_replays_the_incident_at_the_priority_serve_gave(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, output: str
) -> None:
    # The live Slurm inventory after node-01 went DOWN and llm was requeued: its own GPUs are the only free
    # ones of its partition, so llm cannot start again (P0); the cluster's spare GPUs alone would say it can.
    slurm, clock = RecordedSlurm("D-running"), FakeClock()
    reader = SlurmInventory(clock, slurm)
    reader.read()
    slurm.capture = "D-requeued"
    node_down = Alert({"alertname": "NodeDown", "cluster": "cap", "node": "node-01"})
    live = _engine(tmp_path / "live.db", reader.read())
    live.ingest([node_down])
    ((served, _),) = live.store.list_rows(None)
    with api_client(live) as client:
        monkeypatch.setattr(inventory_cmd, "_fetch", lambda url: client.get("/api/v1/inventory").json())
        result = runner.invoke(app, ["inventory", "export", "-o", output])
    assert result.exit_code == 0, result.output
    path = tmp_path / f"inventory.{output}"
    path.write_text(result.stdout)
    replay = _engine(tmp_path / "replay.db", load_inventory(path))  # what alerting.inventory_file reads
    replay.ingest([node_down])
    ((replayed, _),) = replay.store.list_rows(None)
    assert (served.priority, served.title) == (
        "P0",
        "node node-01 is down: 1 node, 4 GPUs, training job llm (14) stopped",
    )
    assert (replayed.priority, replayed.title) == (served.priority, served.title)


def _engine(db: Path, inventory: StaticInventory) -> IncidentEngine:
    sql = make_engine(str(db))
    upgrade(sql)
    return IncidentEngine(sql, FakeClock(), AlertingConfig(announce_delay_seconds=0), inventory)


@pytest.mark.usefixtures("requeued")
def test_export_to_a_file_writes_what_stdout_gets(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yaml"
    result = runner.invoke(app, ["inventory", "export", "--file", str(path)])
    assert result.exit_code == 0, result.output
    assert path.read_text() == runner.invoke(app, ["inventory", "export"]).stdout
    assert [n.name for n in load_inventory(path).node_list] == [f"node-0{k}" for k in range(1, 6)]


def test_an_export_that_cannot_reach_serve_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "inventory.yaml"
    path.write_text("nodes: []\n")  # last night's export
    url = "http://127.0.0.1:25501"  # nothing listens there
    result = runner.invoke(app, ["inventory", "export", "--url", url, "--file", str(path)])
    assert result.exit_code == 1
    assert path.read_text() == "nodes: []\n"
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left beside it


def test_export_to_a_file_in_a_missing_directory_is_refused_before_any_request(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "inventory.yaml"
    result = runner.invoke(app, ["inventory", "export", "--url", "http://127.0.0.1:25501", "-f", str(path)])
    said = " ".join(result.output.split())
    assert (
        result.exit_code == 1
    )  # a file it cannot use (README), as anomaly score's --output: not a usage error
    assert said.startswith(f"error: --file '{path}': cannot write in {path.parent}: it does not exist"), said


def test_export_to_a_directory_is_refused_naming_the_option_and_the_directory(tmp_path: Path) -> None:
    result = runner.invoke(
        app, ["inventory", "export", "--url", "http://127.0.0.1:25501", "-f", str(tmp_path)]
    )
    said = " ".join(result.output.split())
    assert result.exit_code == 1
    assert said == f"error: --file '{tmp_path}': cannot write a directory; give a file name in it", said


@pytest.mark.parametrize("listing", ["nodes", "workloads"])
def test_a_json_listing_says_on_stderr_that_a_source_is_stale_as_the_table_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, listing: str
) -> None:
    # serve's Slurm refresh failed after its last good read: what it lists may be old. The table says so on
    # stderr; with -o json a script got the same list and no word of it.
    slurm, clock = RecordedSlurm("D-running"), FakeClock()
    live = _engine(tmp_path / "live.db", SlurmInventory(clock, slurm).read())
    live.inventory_source = "slurm"
    read_at = clock.now()
    live.inventory_sources = {"slurm": {"read_at": read_at, "failed_at": None}}
    with api_client(live) as client:
        monkeypatch.setattr(inventory_cmd, "_fetch", lambda url: client.get("/api/v1/inventory").json())
        fresh = runner.invoke(app, ["inventory", listing, "-o", "json"])
        clock.advance(600)
        live.inventory_sources = {"slurm": {"read_at": read_at, "failed_at": clock.now()}}
        stale = runner.invoke(app, ["inventory", listing, "-o", "json"])
        table = runner.invoke(app, ["inventory", listing], env=WIDE)
    assert fresh.exit_code == stale.exit_code == 0, stale.output
    assert json.loads(stale.stdout) == json.loads(fresh.stdout) != []  # the document is unchanged
    assert fresh.stderr == ""  # nothing to say: the source line is the table's, as before
    note = " ".join(stale.stderr.split())
    assert "slurm: failed at 2026-01-01T00:10:00Z, last read 2026-01-01T00:00:00Z" in note
    assert note in " ".join(table.stderr.split())  # the same words as below the table


def test_a_source_not_read_yet_is_said_so_not_failed_at_none(monkeypatch: pytest.MonkeyPatch) -> None:
    # Two refreshed sources just after serve started: Kubernetes read, Slurm's first read still running.
    parts = [
        {"name": "kubernetes", "read_at": "2026-01-01T00:00:00Z", "failed_at": None, "stale": False},
        {"name": "slurm", "read_at": None, "failed_at": None, "stale": True},
    ]
    about = {"source": "kubernetes+slurm", "read_at": "2026-01-01T00:00:00Z", "refreshed_sources": parts}
    answer = {"about": about}
    monkeypatch.setattr(inventory_cmd, "_fetch", lambda url: {**answer, "nodes": [], "spare_gpus": {}})
    result = runner.invoke(app, ["inventory", "nodes", "-o", "json"])
    assert result.exit_code == 0 and result.stdout.strip() == "[]"
    assert "slurm: not read yet" in result.stderr and "None" not in result.stderr


@pytest.mark.parametrize("listing", ["nodes", "workloads"])
def test_a_control_character_in_a_name_is_shown_escaped_in_the_table_not_sent_to_the_terminal(
    monkeypatch: pytest.MonkeyPatch, listing: str
) -> None:
    # An inventory file's (or a Kubernetes label's) names reached the terminal as they were: `evil\x1b[31m`
    # turned the table red, `ns\x1b[2J` cleared the screen, a newline split a row; incidents list shows them.
    node = {"name": "evil\x1b[31m", "cluster": "c1", "rack": "r\n1", "gpus": 1, "gpu_uuids": []}
    job = {"kind": "pod", "namespace": "ns\x1b[2J", "name": "job\x07", "cluster": "c1", "units": [["n1:0"]]}
    answer = {"about": {"source": "file"}, "nodes": [node], "workloads": [job], "spare_gpus": {"c\x1b1": 1}}
    monkeypatch.setattr(inventory_cmd, "_fetch", lambda url: json.loads(json.dumps(answer)))
    table = runner.invoke(app, ["inventory", listing], env=WIDE)
    assert table.exit_code == 0, table.output
    assert "\x1b" not in table.stdout + table.stderr and "\x07" not in table.stdout, table.stdout
    shown = {"nodes": ["evil\\x1b[31m", "r\\n1"], "workloads": ["ns\\x1b[2J", "job\\x07"]}[listing]
    assert all(name in table.stdout for name in shown), table.stdout
    as_json = runner.invoke(app, ["inventory", listing, "-o", "json"])
    assert json.loads(as_json.stdout)[0]["name"] == (node if listing == "nodes" else job)["name"]


@pytest.mark.usefixtures("requeued")
@pytest.mark.parametrize("listing", ["nodes", "workloads"])
def test_a_listing_at_an_80_column_terminal_folds_names_and_states_and_cuts_none(listing: str) -> None:
    """README: at a narrow terminal a table folds a long cell, never cuts a name the next command takes;
    at the terminal's default 80 columns rich cut a workload's kind, name, state and nodes to ``runni…``,
    ``node-0…``."""
    result = runner.invoke(app, ["inventory", listing], env={"COLUMNS": "80"})
    assert result.exit_code == 0, result.output
    assert max(len(line) for line in result.stdout.splitlines()) <= 80, result.stdout
    assert "…" not in result.stdout, result.stdout


@pytest.mark.usefixtures("requeued")
@pytest.mark.parametrize(
    ("listing", "option", "said"),
    [
        ("nodes", "--rack", "No nodes found (rack r99)."),
        ("workloads", "--node", "No workloads found (node r99)."),
    ],
    ids=["nodes", "workloads"],
)
def test_an_empty_listing_says_none_found_on_stderr_and_json_stays_a_list(
    listing: str, option: str, said: str
) -> None:
    table = runner.invoke(app, ["inventory", listing, option, "r99"], env=WIDE)
    assert table.exit_code == 0, table.output
    assert table.stdout == "" and said in table.stderr and "source: slurm" in table.stderr, table.stderr
    as_json = runner.invoke(app, ["inventory", listing, option, "r99", "-o", "json"])
    assert as_json.exit_code == 0, as_json.output
    assert json.loads(as_json.stdout) == [] and "No " not in as_json.stderr, as_json.stderr
