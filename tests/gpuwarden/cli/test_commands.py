"""What every command of the `gpuwarden` app shares: -o/--output as kubectl users expect it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from pydantic import SecretStr

from alerting import scenarios
from alerting.engine import IncidentEngine
from alerting.inventory_file import load_inventory
from alerting.outbox import Outbox
from gpuwarden.api import create_app
from gpuwarden.cli import app
from gpuwarden.clock import FakeClock
from gpuwarden.config import ApiConfig
from tests.gpuwarden.api_client import AUTH, TOKEN, TestClient, api_client, fleet_engine, route_httpx
from tests.gpuwarden.cli.built_runner import BuiltCliRunner
from tests.gpuwarden.cli.command_tree import _commands
from tests.migrated_store import migrated_sqlite

runner = BuiltCliRunner()
ROOT = Path(__file__).resolve().parents[3]
# `anomaly score --output FILE` names the file it writes, as it always has; it is no format choice.
FILE_OUTPUTS = {"gpuwarden anomaly score"}


def test_every_command_with_an_output_format_takes_both_o_and_output() -> None:
    root = runner.command(app)
    with_output = {
        path: param.opts
        for path, command in _commands(root, "gpuwarden")
        for param in command.params
        if param.name == "output" and path not in FILE_OUTPUTS
    }
    assert {"gpuwarden incidents list", "gpuwarden sim show", "gpuwarden demo", "gpuwarden loadgen"} <= set(
        with_output
    )
    assert "gpuwarden inventory export" in with_output and "gpuwarden anomaly evaluate nab" in with_output
    assert {path: sorted(opts) for path, opts in with_output.items()} == {
        path: ["--output", "-o"] for path in with_output
    }


def test_every_command_with_quiet_takes_both_q_and_quiet() -> None:
    """``loadgen`` took ``--quiet`` alone while ``anomaly score`` and ``evaluate nab`` took ``-q`` too, as
    curl, pip and apt users type it: ``loadgen -q`` was "no such option"."""
    root = runner.command(app)
    with_quiet = {
        path: sorted(param.opts)
        for path, command in _commands(root, "gpuwarden")
        for param in command.params
        if param.name == "quiet"
    }
    assert {"gpuwarden loadgen", "gpuwarden anomaly score", "gpuwarden anomaly evaluate nab"} <= set(
        with_quiet
    )
    assert with_quiet == {path: ["--quiet", "-q"] for path in with_quiet}


@pytest.mark.parametrize("flag", ["-o", "--output"])
def test_inventory_export_writes_json_on_request_which_inventory_file_reads_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flag: str
) -> None:
    url = "http://gpuwarden.test"
    with api_client(fleet_engine(tmp_path)) as client:
        route_httpx(client, url, monkeypatch)
        as_yaml = runner.invoke(app, ["inventory", "export", "--url", url])
        as_json = runner.invoke(app, ["inventory", "export", "--url", url, flag, "json"])
        refused = runner.invoke(app, ["inventory", "export", "--url", url, flag, "table"])
    assert as_yaml.exit_code == 0 and as_json.exit_code == 0, as_json.output
    exported = json.loads(as_json.stdout)
    assert exported["nodes"] and "about" not in exported
    (tmp_path / "inventory.json").write_text(as_json.stdout)
    (tmp_path / "inventory.yaml").write_text(as_yaml.stdout)
    from_json = load_inventory(tmp_path / "inventory.json")
    assert from_json.node_list == load_inventory(tmp_path / "inventory.yaml").node_list
    assert refused.exit_code == 2 and "use one of yaml, json" in refused.stderr


def test_sim_show_takes_o_and_text_for_the_table() -> None:
    as_json = runner.invoke(app, ["sim", "show", "--simulate", "1x2", "-o", "json"])
    assert as_json.exit_code == 0 and len(json.loads(as_json.stdout)["nodes"]) == 1
    as_text = runner.invoke(app, ["sim", "show", "--simulate", "1x2", "-o", "text"])
    assert as_text.exit_code == 0 and "simulated fleet 1x2" in as_text.stdout
    wrong = runner.invoke(app, ["sim", "show", "-o", "yaml"])
    assert wrong.exit_code == 2 and "use one of table, text, json" in wrong.stderr


def test_the_example_config_points_serve_and_its_clients_at_the_same_port() -> None:
    example = yaml.safe_load((ROOT / "deploy" / "gpuwarden.example.yaml").read_text())
    root = runner.command(app)
    url_defaults = {
        path: param.default
        for path, command in _commands(root, "gpuwarden")
        for param in command.params
        if param.name == "url" and path.split()[1] in ("incidents", "inventory", "outbox")
    }
    assert url_defaults and set(url_defaults.values()) == {f"http://127.0.0.1:{example['api']['port']}"}
    assert example["anomaly"]["alert_url"] == f"http://127.0.0.1:{example['api']['port']}"
    channel = example["slack"]["channel"]
    assert channel.startswith("C") and channel[1:].isalnum()  # an id, which serve does not warn about


CLOSED = "http://127.0.0.1:9"  # the discard port: nothing answers, so a request would exit 1, not 2


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["incidents", "list", "-o", "yaml"], "--output 'yaml': use one of table, text, json"),
        (["incidents", "show", "inc-1", "-o", "yaml"], "--output 'yaml': use one of text, table, json"),
        (["inventory", "export", "-o", "table"], "--output 'table': use one of yaml, json"),
        (["outbox", "list", "-o", "yaml"], "--output 'yaml': use one of table, text, json"),
        (["outbox", "list", "--status", "bogus"], "--status 'bogus': use one of pending, sending"),
        (
            ["outbox", "discard", "--notifier", "slack", "--status", "pending", "--yes"],
            "--status 'pending': only orphaned and failed",
        ),
        (["incidents", "list", "--priority", "P9"], "--priority 'P9': use one of P0, P1, P2, P3"),
        (
            ["incidents", "list", "--state", "open"],
            "--state 'open': use one of triggered, acknowledged, mitigating, resolved",
        ),
        (["incidents", "silence", "inc-1", "--for", "1x"], "--for '1x': is not a duration like 30m, 1h"),
        (["incidents", "silence", "inc-1", "--for", "400d"], "--for '400d': is longer than 366 days (1y1d)"),
        (["incidents", "note", "inc-1", ""], "TEXT '': empty; write the note"),
        (["incidents", "note", "inc-1", " \t"], "TEXT ' \\t': empty; write the note"),
        (
            ["incidents", "mitigate", "inc-1", "--action", " "],
            "--action ' ': empty; write what is being done",
        ),
        (["incidents", "show", ""], "INCIDENT_ID '': empty; write the incident's id"),
        (["incidents", "ack", " "], "INCIDENT_ID ' ': empty; write the incident's id"),
        (["incidents", "ack", "inc-1", "--by", " "], "--by ' ': empty; write who does it"),
        (["incidents", "note", "inc-1", "hi", "--by", ""], "--by '': empty; write who does it"),
        (["outbox", "retry", "--incident", " "], "--incident ' ': empty; write the incident's id"),
        (["outbox", "list", "--incident", ""], "--incident '': empty; write the incident's id"),
        (["outbox", "discard", "--notifier", "", "--yes"], "--notifier '': empty; write the notifier"),
        (
            ["outbox", "discard", "--notifier", "slack", "--incident", "", "--yes"],
            "--incident '': empty; write the incident's id",
        ),
        (["outbox", "discard", "--notifier", "slack", "--by", " ", "--yes"], "--by ' ': empty; write who"),
    ],
    ids=[
        "list-output",
        "show-output",
        "export-output",
        "outbox-output",
        "outbox-status",
        "discard-status",
        "priority",
        "state",
        "silence-not-a-duration",
        "silence-too-long",
        "note-empty",
        "note-blank",
        "mitigate-blank",
        "show-empty-id",
        "ack-blank-id",
        "ack-blank-by",
        "note-empty-by",
        "retry-blank-incident",
        "list-empty-incident",
        "discard-empty-notifier",
        "discard-empty-incident",
        "discard-blank-by",
    ],
)
def test_a_bad_option_value_exits_2_naming_it_before_any_request(
    monkeypatch: pytest.MonkeyPatch, args: list[str], said: str
) -> None:
    sent: list[object] = []
    monkeypatch.setattr(httpx, "request", lambda *a, **k: sent.append(a))
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    result = runner.invoke(app, [*args, "--url", CLOSED])
    assert result.exit_code == 2 and said in " ".join(result.stderr.split()), result.stderr
    assert sent == []


@pytest.mark.parametrize("args", [["sim", "show", "-o", "yaml"], ["demo", "-o", "yaml"]], ids=["sim", "demo"])
def test_a_bad_output_format_of_a_local_command_exits_2(args: list[str]) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and "--output 'yaml': use one of" in result.stderr, result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["exporter", "--log-format", "yaml"],
        ["anomaly", "run", "--log-format", "yaml"],
        ["inference-server", "--log-format", "yaml"],
        ["serve", "--log-format", "yaml"],
        ["loadgen", "--route", "embeddings"],
    ],
    ids=["exporter", "anomaly-run", "inference-server", "serve", "loadgen-route"],
)
def test_a_choice_a_server_option_does_not_take_is_said_as_every_bad_option_is(args: list[str]) -> None:
    """They said "invalid value for '--log-format': Value error, 'yaml' is not one of 'text', 'json'", where
    every other choice is refused as ``--output 'yaml': use one of table, text, json`` (README)."""
    result = runner.invoke(app, args)
    option, value = args[-2:]
    said = " ".join(result.stderr.split())
    assert result.exit_code == 2, said
    choices = "chat, completions" if option == "--route" else "text, json"
    assert f"{option} '{value}': use one of {choices}" in said and "Value error" not in said, said


@pytest.mark.parametrize(
    ("args", "json_line"),
    [
        (["exporter", "--log-format", "JSON", "--port", "abc"], True),
        (["serve", "--log-format", "Text", "--port", "abc"], False),
        (["loadgen", "--route", "CHAT", "--url", CLOSED, "--requests", "0"], False),
    ],
    ids=["exporter-json", "serve-text", "loadgen-route"],
)
def test_a_server_option_choice_is_taken_in_any_case(args: list[str], json_line: bool) -> None:
    """README: choices are taken in any case. ``--log-format JSON`` was refused; the bad option after it
    is said in the log format asked for."""
    result = runner.invoke(app, args)
    said = " ".join(result.stderr.split())
    assert result.exit_code == 2 and "use one of" not in said, said
    assert said.startswith('{"ts"') is json_line, said


def test_table_is_text_for_the_commands_that_print_one_report() -> None:
    # kubectl's habit: -o table where a command prints text. loadgen refused it (exit 2) and demo did too.
    demo = runner.invoke(app, ["demo", "-o", "yaml"])
    assert "use one of text, table, json" in " ".join(demo.stderr.split()), demo.stderr
    loadgen = runner.invoke(app, ["loadgen", "--url", CLOSED, "--requests", "1", "-o", "TABLE"])
    assert loadgen.exit_code == 1 and "cannot connect" in loadgen.stderr, loadgen.output


def test_python_dash_m_gpuwarden_is_the_gpuwarden_command(monkeypatch: pytest.MonkeyPatch) -> None:
    # `python -m gpuwarden` said "No module named gpuwarden.__main__" (two people tried it first).
    import runpy  # noqa: PLC0415

    monkeypatch.setattr("sys.argv", ["gpuwarden", "anomaly", "xid", "79"])
    with pytest.raises(SystemExit) as done:
        runpy.run_module("gpuwarden", run_name="__main__", alter_sys=True)
    assert done.value.code in (0, None)


def test_no_help_text_shows_restructuredtext_markup() -> None:
    """``config show --help`` printed "shown as ``<unset: set NAME>``" and ``inventory export --help``
    "With ``--file`` ...": the docstring's double backticks, which --help renders as they are."""
    root = runner.command(app)
    raw = {
        path: text
        for path, command in _commands(root, "gpuwarden")
        for text in (command.help or "", *(getattr(param, "help", None) or "" for param in command.params))
        if "``" in text
    }
    assert raw == {}


def test_an_unreachable_serve_says_where_the_commands_look_for_it() -> None:
    """A first run without serve said only "cannot connect to URL: [Errno 111] Connection refused", where
    loadgen and sim inject say which server should be running (one request path serves every command)."""
    result = runner.invoke(app, ["outbox", "list", "--url", CLOSED])
    said = " ".join(result.stderr.split())
    assert result.exit_code == 1 and f"cannot connect to {CLOSED}" in said, said
    assert "is `gpuwarden serve` running there? (--url or GPUWARDEN_URL)" in said, said


def test_a_malformed_gpuwarden_url_is_named_as_the_variable_not_as_url() -> None:
    """``GPUWARDEN_URL=ftp://x gpuwarden incidents list`` said "--url 'ftp://x': not a valid URL" to someone
    who gave no --url."""
    argv = ["inventory", "nodes"]
    result = runner.invoke(app, argv, env={"GPUWARDEN_URL": "ftp://x"})
    said = " ".join(result.stderr.split())
    assert result.exit_code == 2 and "GPUWARDEN_URL 'ftp://x': not a valid URL" in said, said
    given = runner.invoke(app, [*argv, "--url", "ftp://y"], env={"GPUWARDEN_URL": "ftp://x"})
    assert given.exit_code == 2 and "--url 'ftp://y': not a valid URL" in " ".join(given.stderr.split())


@pytest.mark.parametrize(
    ("argv", "option", "choices"),
    [
        (["incidents", "list"], "--state", "<triggered|acknowledged|mitigating|resolved>"),
        (["incidents", "list"], "--priority", "<P0|P1|P2|P3>"),
        (["outbox", "list"], "--status", "<pending|sending|sent|failed|orphaned|discarded>"),
    ],
    ids=["state", "priority", "status"],
)
def test_a_filter_taking_one_of_some_values_shows_them_in_help(
    argv: list[str], option: str, choices: str
) -> None:
    """--help showed `--state <str>`, `--priority <str>`, `--status <str>`, where `-o` shows its choices."""
    help_text = runner.invoke(app, [*argv, "--help"], env={"COLUMNS": "250"}).stdout
    line = next(line for line in help_text.splitlines() if option in line)
    assert line.split()[2] == choices, line


def _output_commands() -> list[tuple[str, Any]]:
    """Every command with an -o/--output format choice, with that option."""
    root = runner.command(app)
    return [
        (path, param)
        for path, command in _commands(root, "gpuwarden")
        for param in command.params
        if param.name == "output" and path not in FILE_OUTPUTS
    ]


@pytest.mark.parametrize(("path", "param"), _output_commands(), ids=[path for path, _ in _output_commands()])
def test_every_output_option_shows_its_choices_in_help_and_refuses_another_naming_them(
    monkeypatch: pytest.MonkeyPatch, path: str, param: Any
) -> None:
    """--help showed `<str>` for most (demo, sim show, incidents, inventory) and `<text|table|json>` for
    loadgen, whose wrong value got click's boxed error rather than the one line the others print."""
    help_text = runner.invoke(app, [*path.split()[1:], "--help"], env={"COLUMNS": "250"}).stdout
    line = next(line for line in help_text.splitlines() if "--output" in line)
    metavar = line.split()[3]
    assert metavar.startswith("<") and metavar.endswith(">") and "|" in metavar, line
    choices = metavar[1:-1].split("|")
    sent: list[object] = []
    monkeypatch.setattr(httpx, "request", lambda *a, **k: sent.append(a))
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    required = {
        "gpuwarden anomaly evaluate nab": ["--data", ".", "--windows", "w.json"],
        "gpuwarden outbox discard": ["--notifier", "slack", "--yes"],
    }
    positional = (
        ["79"] if path == "gpuwarden anomaly xid" else ["inc-1"] if "{incident_id}" in help_text else []
    )
    args = [*path.split()[1:], *positional, *required.get(path, []), "-o", "bogus"]
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and not sent, result.output
    assert result.stderr.strip() == f"error: --output 'bogus': use one of {', '.join(choices)}", result.stderr


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["demo", "--warmup-minutes", "-1"], "--warmup-minutes -1: use a whole number from 0 to 1440"),
        (["demo", "--warmup-minutes", "x"], "--warmup-minutes 'x': use a whole number from 0 to 1440"),
        (["anomaly", "run", "--ticks", "-1"], "--ticks -1: use a whole number of at least 0"),
        (["anomaly", "run", "--port", "70000"], "--port 70000: use a whole number from 0 to 65535"),
        (["inference-server", "--port", "0"], "--port 0: use a whole number from 1 to 65535"),
        (["inference-server", "--gpu", "-1"], "--gpu -1: use a whole number of at least 0"),
        (["inference-server", "--nodes", "0"], "--nodes 0: use a whole number from 1 to 2048"),
        (
            ["inference-server", "--gpus-per-node", "17"],
            "--gpus-per-node 17: use a whole number from 1 to 16",
        ),
        (["inference-server", "--sim-speedup", "0"], "--sim-speedup 0: use a number of at least 0.001"),
        (["serve", "--log-format", "text", "--port", "0"], "--port 0: use a whole number from 1 to 65535"),
        (["loadgen", "--requests", "0"], "--requests 0: use a whole number from 1 to 1000000"),
        (["loadgen", "--concurrency", "1025"], "--concurrency 1025: use a whole number from 1 to 1024"),
        (["loadgen", "--max-tokens", "0"], "--max-tokens 0: use a whole number from 1 to 4096"),
        (["loadgen", "--rate", "-1"], "--rate -1: use a number of at least 0"),
        (["loadgen", "--duration", "0"], "--duration 0: use a number above 0 and at most 3600"),
        (  # shown as 3600 (the plan's value, rounded), a value it accepts
            ["loadgen", "--duration", "3600.0001"],
            "--duration 3600.0001: use a number above 0 and at most 3600",
        ),
        (["loadgen", "--duration", "x"], "--duration 'x': use a number above 0 and at most 3600"),
        (["exporter", "--port", "0"], "--port 0: use a whole number from 1 to 65535"),
        (["exporter", "--port", "1e3"], "--port '1e3': use a whole number from 1 to 65535"),
        (["exporter", "--port", "9_400"], "--port '9_400': use a whole number from 1 to 65535"),
        (["exporter", "--port", " 5"], "--port ' 5': use a whole number from 1 to 65535"),
        (["exporter", "--port", "0x10"], "--port '0x10': use a whole number from 1 to 65535"),
        (["exporter", "--interval", "nan"], "--interval 'nan': use a number from 0.1 to 604800"),
        (["exporter", "--interval", "0"], "--interval 0: use a number from 0.1 to 604800"),
        (["exporter", "--interval", "1e-300"], "--interval 1e-300: use a number from 0.1 to 604800"),
        (["exporter", "--interval", "1_0"], "--interval '1_0': use a number from 0.1 to 604800"),
        (["exporter", "--interval", "5 "], "--interval '5 ': use a number from 0.1 to 604800"),
        (["loadgen", "--requests", "1_000"], "--requests '1_000': use a whole number from 1 to 1000000"),
        (["loadgen", "--rate", "infinity"], "--rate 'infinity': use a number of at least 0"),
        (["incidents", "list", "--limit", "-1"], "--limit -1: use a whole number from 0 to 1000000000"),
        (["outbox", "list", "--limit", "-1"], "--limit -1: use a whole number from 0 to"),
        (
            ["incidents", "list", "--request-timeout", "0"],
            "--request-timeout 0: use a number from 0.1 to 86400",
        ),
        (
            ["incidents", "--request-timeout", "0", "list"],
            "--request-timeout 0: use a number from 0.1 to 86400",
        ),
    ],
    ids=lambda value: "-".join(value) if isinstance(value, list) else None,
)
def test_a_number_out_of_its_bounds_is_refused_in_one_line_exit_2(
    monkeypatch: pytest.MonkeyPatch, args: list[str], said: str
) -> None:
    """typer's min/max printed a boxed "Invalid value for '--warmup-minutes': Input should be greater than or
    equal to 0" where every other bad option gets one line naming the option, the value and what to give."""
    sent: list[object] = []
    monkeypatch.setattr(httpx, "request", lambda *a, **k: sent.append(a))
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    result = runner.invoke(app, args)
    assert result.exit_code == 2 and not sent, result.output
    assert result.stderr.startswith(f"error: {said}") and len(result.stderr.splitlines()) == 1, result.stderr


def test_a_request_timeout_variable_out_of_bounds_is_named_as_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("GPUWARDEN_REQUEST_TIMEOUT", "0")
    result = runner.invoke(app, ["incidents", "list", "--url", CLOSED])
    assert result.exit_code == 2, result.output
    said = "error: --request-timeout (GPUWARDEN_REQUEST_TIMEOUT) 0: use a number from 0.1 to 86400\n"
    assert result.stderr == said, result.stderr


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["incidents", "ack"], "error: missing argument 'incident_id'; see gpuwarden incidents ack --help"),
        (
            ["incidents", "list", "--bogus"],
            "error: no such option: --bogus; see gpuwarden incidents list --help",
        ),
        (["--bogus"], "error: no such option: --bogus; see gpuwarden --help"),
        (["nosuch"], "error: no such command 'nosuch'; see gpuwarden --help"),
        (
            ["incidents", "list", "--limit"],
            "error: option '--limit' requires an argument; see gpuwarden incidents list --help",
        ),
        (
            ["sim", "inject", "xid", "--url", "http://127.0.0.1:9", "--node", "n", "--param", "bad"],
            "error: --param 'bad': expected NAME=VALUE such as duration=60",  # as every bad option
        ),
    ],
    ids=[
        "missing-argument",
        "unknown-option",
        "unknown-root-option",
        "unknown-command",
        "no-value",
        "bad-param",
    ],
)
def test_a_usage_error_is_one_line_exit_2_as_every_other_bad_option(args: list[str], said: str) -> None:
    # typer drew these in a box under a usage line; every other bad option is one line.
    result = runner.invoke(app, args, prog_name="gpuwarden")
    assert (result.exit_code, result.stdout, result.stderr.strip()) == (2, "", said)


def test_help_and_a_group_without_its_command_still_print_help() -> None:
    for args in (["incidents", "--help"], ["incidents"], ["--help"]):
        result = runner.invoke(app, args, prog_name="gpuwarden")
        assert "Usage: gpuwarden" in result.stdout and "error" not in result.stderr, (args, result.output)


def test_completing_a_command_line_with_a_wrong_output_format_prints_no_error() -> None:
    # The shell asks for completions at each TAB: `-o yaml` typed earlier on the line printed "error: --output
    # 'yaml': ..." into the terminal at the prompt, and completed the rest of the options all the same.
    complete = {"_GPUWARDEN_COMPLETE": "complete_bash", "COMP_WORDS": "gpuwarden incidents list -o yaml --"}
    result = runner.invoke(app, [], env={**complete, "COMP_CWORD": "5"}, prog_name="gpuwarden")
    assert result.exit_code == 0 and "--limit" in result.stdout.split(), result.output
    assert result.stderr == ""


# What README says each listing prints with -o json: a list (of items with these keys, the second set only
# where serve's source reports them) or an object (with these keys).
LISTED_JSON = {
    "incidents list": (
        {"id", "title", "priority", "state", "root_cause", "alert_count", "opened_at", "last_opened_at"}
        | {"resolved_at", "merged_into", "silenced_until", "silence_ids"},
        set(),
    ),
    "inventory nodes": (
        {"name", "cluster", "rack", "gpus", "gpu_uuids"},
        {"state", "usable", "free_gpus", "partitions"},
    ),
    "inventory workloads": (
        {"kind", "namespace", "name", "cluster", "units"},
        {"state", "kept_units", "gpus_held"},
    ),
}
LISTED_OBJECTS = {
    "outbox list": {"counts", "held", "messages", "paused", "blocked"},
    "sim show": {"nodes", "inference_services", "training_jobs", "active_faults"},
}


def test_each_listing_prints_with_o_json_the_document_the_readme_describes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = "http://gpuwarden.test"
    sql = migrated_sqlite(tmp_path / "api.db")
    engine = IncidentEngine(sql, FakeClock(), inventory=scenarios.fleet_inventory())
    created = create_app(engine, ApiConfig(token=SecretStr(TOKEN)), outbox=Outbox(sql, [], FakeClock()))
    printed: dict[str, Any] = {}
    with TestClient(created, base_url=url) as client:
        route_httpx(client, url, monkeypatch)
        down = {"labels": {"alertname": "NodeDown", "cluster": "c1", "node": "r01-n01"}}
        assert client.post("/api/v2/alerts", json=[down], headers=AUTH).status_code == 200
        for command in (*LISTED_JSON, "outbox list"):
            result = runner.invoke(app, [*command.split(), "--url", url, "-o", "json"])
            assert result.exit_code == 0, result.output
            printed[command] = json.loads(result.stdout)
    printed["sim show"] = json.loads(runner.invoke(app, ["sim", "show", "-o", "json"]).stdout)
    for command, (always, reported) in LISTED_JSON.items():
        assert isinstance(printed[command], list) and printed[command], command
        for item in printed[command]:
            assert always <= set(item) <= always | reported, (command, set(item) ^ always)
    assert {command: set(printed[command]) for command in LISTED_OBJECTS} == LISTED_OBJECTS
