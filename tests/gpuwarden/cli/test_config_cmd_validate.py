"""``gpuwarden config validate`` naming problems: every one at once at its line, in the file's order, the
variable of each, durations in words, typos, and the checks after loading."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gpuwarden.cli import app
from tests.gpuwarden.cli.built_runner import BuiltCliRunner
from tests.gpuwarden.cli.config_problems import problem_lines
from tests.gpuwarden.startable import startable

runner = BuiltCliRunner()


@pytest.mark.parametrize(
    ("text", "environ"),
    [
        ("", {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}),
        ("tracing:\n  otlp_endpoint: http://c:4318/v1/traces\n", {"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}),
        ("", {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "ftp://c"}),
    ],
    ids=["grpc-variable-endpoint", "grpc-config-endpoint", "bad-endpoint-variable"],
)
def test_config_validate_refuses_otel_variables_the_inference_server_refuses_with_its_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, environ: dict[str, str]
) -> None:
    path = tmp_path / "gpuwarden.yaml"
    path.write_text(startable(monkeypatch, text))  # nothing else stops serve or anomaly run
    validated = runner.invoke(app, ["config", "validate", str(path)], env=environ)
    served = runner.invoke(app, ["inference-server", "--config", str(path)], env=environ)
    assert validated.exit_code == 1 and served.exit_code == 78, validated.output
    assert served.stderr.startswith("error: OTEL_EXPORTER_OTLP_")
    assert validated.stderr == served.stderr


def test_config_validate_warns_of_a_base_otlp_endpoint_already_ending_in_v1_traces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """inference-server posted its spans to .../v1/traces/v1/traces, a 404, and validate said "ok" alone."""
    path = tmp_path / "gpuwarden.yaml"
    path.write_text(startable(monkeypatch, ""))
    environ = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318/v1/traces"}
    validated = runner.invoke(app, ["config", "validate", str(path)], env=environ)
    assert validated.exit_code == 0 and validated.stdout == f"{path}: ok\n", validated.output
    assert " ".join(validated.stderr.split()) == (
        "warning: OTEL_EXPORTER_OTLP_ENDPOINT=http://c:4318/v1/traces already ends in /v1/traces: it is a"
        " base URL, to which /v1/traces is appended, so spans go to http://c:4318/v1/traces/v1/traces; set"
        " OTEL_EXPORTER_OTLP_TRACES_ENDPOINT to give the traces URL as is, or drop /v1/traces from"
        " OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    plain = runner.invoke(
        app, ["config", "validate", str(path)], env={"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}
    )
    assert plain.exit_code == 0 and plain.stderr == "", plain.stderr


def test_an_otlp_span_exporter_without_an_endpoint_is_said_at_its_line_by_validate_and_inference_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both said "tracing.span_exporter is otlp but ..." with no file or line, unlike every other setting."""
    path = tmp_path / "gpuwarden.yaml"
    path.write_text(startable(monkeypatch, "tracing:\n  span_exporter: otlp\n"))
    line = path.read_text().splitlines().index("  span_exporter: otlp") + 1
    validated = runner.invoke(app, ["config", "validate", str(path)])
    served = runner.invoke(app, ["inference-server", "--config", str(path)])
    assert validated.exit_code == 1 and served.exit_code == 78, validated.output
    expected = f"error: {path}:{line}: tracing.span_exporter: otlp, but no OTLP endpoint is set"
    assert " ".join(served.stderr.split()).startswith(expected), served.stderr
    assert validated.stderr == served.stderr


def test_config_validate_lists_every_problem_of_the_file_each_at_its_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "three.yaml"
    path.write_text(startable(monkeypatch, "api:\n  prot: 1\n  port: x\n") + "  infer_every_seconds: -1\n")
    result = runner.invoke(app, ["config", "validate", str(path)])
    lines = [" ".join(line.split()) for line in result.stderr.strip().splitlines()]
    assert result.exit_code == 1, result.stderr
    assert len(lines) == 3 and all(line.startswith(f"error: {path}:") for line in lines), lines
    said = "\n".join(lines)
    assert f"{path}:2: api.prot: unknown field" in said
    assert f"{path}:3: api.port: 'x' is not a whole number; write one" in said
    assert f"{path}:8: anomaly.infer_every_seconds: -1 is less than 0.001" in said
    assert "more problem" not in said  # the first line said "(and 2 more problems)" above the two


@pytest.mark.parametrize(
    ("text", "said"),
    [
        pytest.param(
            "alerting:\n  quiet_period_seconds: 5 min\n",
            "alerting.quiet_period_seconds: '5 min' is not a number; write the seconds as a number: 300",
            id="seconds-as-5-min",
        ),
        pytest.param(
            "anomaly:\n  infer_every_seconds: 1h30m\n",
            "anomaly.infer_every_seconds: '1h30m' is not a number; write the seconds as a number: 5400",
            id="seconds-as-1h30m",
        ),
        pytest.param(
            "alerting:\n  remind_after_seconds: 4h\n",
            "alerting.remind_after_seconds: '4h' is not a number; write the seconds as a number: 14400",
            id="remind-after-as-4h",
        ),
        pytest.param(
            "alerting:\n  retention_days: 2 weeks\n",
            "alerting.retention_days: '2 weeks' is not a number; write the days as a number: 14",
            id="days-as-weeks",
        ),
        pytest.param(
            "alerting:\n  quiet_period_seconds: soon\n",
            "alerting.quiet_period_seconds: 'soon' is not a number; write the seconds as a number",
            id="seconds-as-a-word",
        ),
        pytest.param(
            "slack:\n  broadcast_resolutions: maybe\n",
            "slack.broadcast_resolutions: 'maybe' is not true or false; write true or false",
            id="not-a-boolean",
        ),
    ],
)
def test_config_validate_says_the_number_to_write_for_a_duration_written_in_words(
    tmp_path: Path, text: str, said: str
) -> None:
    """`quiet_period_seconds: 5 min` said "Input should be a valid number, unable to parse string as a
    number": the field and line, but not that the setting takes seconds, nor how many."""
    path = tmp_path / "c.yaml"
    path.write_text(text)
    result = runner.invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 1
    assert f"error: {path}:2: {said}" in " ".join(result.stderr.split()), result.stderr


@pytest.mark.parametrize(
    ("text", "said"),
    [
        pytest.param(
            "alertin:\n  quiet_period_seconds: 30\n",
            "alertin: unknown field; did you mean alerting?",
            id="section",
        ),
        pytest.param(
            "alerting:\n  quiet_perod_seconds: 30\n",
            "alerting.quiet_perod_seconds: unknown field; did you mean quiet_period_seconds?",
            id="field",
        ),
        pytest.param(
            "alerting:\n  quiet_period: 30\n",
            "alerting.quiet_period: unknown field; did you mean quiet_period_seconds?",
            id="without-unit",
        ),
        pytest.param(
            "anomaly:\n  queries:\n    - name: a\n      expr: up\n      step: 5\n",
            "anomaly.queries[0].step: unknown field; did you mean step_seconds?",
            id="list-item",
        ),
        pytest.param(
            "colour: blue\n", "colour: unknown field; remove it or check its spelling", id="nothing-close"
        ),
    ],
)
def test_config_validate_suggests_the_field_a_typo_was_meant_to_be(
    tmp_path: Path, text: str, said: str
) -> None:
    """A typo'd key said "unknown field; remove it or check its spelling", leaving the operator to find the
    right name in the README."""
    path = tmp_path / "c.yaml"
    path.write_text(text)
    result = runner.invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 1
    assert f"error: {path}:" in result.stderr and said in " ".join(result.stderr.split()), result.stderr


def test_config_validate_names_the_variable_of_each_problem_set_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("api:\n  port: x\n")
    monkeypatch.setenv("GPUWARDEN_EXPORTER__PORT", "y")
    result = runner.invoke(app, ["config", "validate", str(path)])
    said = " ".join(result.stderr.split())
    assert result.exit_code == 1 and f"{path}:2: api.port:" in said, said
    assert (
        "exporter.port: 'y' is not a whole number; write one" in said
        and "(set by GPUWARDEN_EXPORTER__PORT)" in said
    )


MANY_PROBLEMS = """\
alerting:
  sim_inventory: true
  slurm_inventory: true
  correlation_window_seconds: -1
anomaly:
  source: prometheus
  queries:
    - {name: up, expr: "rate(x[5m]"}
    - {name: up, expr: up}
webhooks:
  - {name: oncall, url: "http://127.0.0.1:9/a"}
  - {name: oncall, url: "http://127.0.0.1:9/b"}
tracing:
  sample_ratio: 5
api:
  port: 0
"""
"""A problem at lines 1 and 4 (one section: a cross-field check and a bound), 8 and 9 (found after
loading), 12 (likewise), 14 and 16 (bounds): pydantic's field errors, in its model's order, hid the rest."""


def test_config_validate_lists_every_problem_at_once_in_the_files_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It listed pydantic's field errors only (api.port before tracing before alerting), hiding the
    cross-field check of a section with a bad field and every check made after loading, so an operator
    fixed the file one run at a time."""
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")  # serve's: the file is about its other problems
    path = tmp_path / "many.yaml"
    path.write_text(MANY_PROBLEMS)
    result = runner.invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 1, result.stderr
    assert problem_lines(result.stderr, path) == [1, 4, 8, 9, 12, 14, 16], result.stderr
    said = " ".join(result.stderr.split())
    assert "cannot be combined with slurm_inventory" in said
    assert "'up' is also the name of anomaly.queries[0]" in said
    assert "'oncall' is also the name of webhooks[0]" in said


def test_a_check_of_a_section_with_a_bad_value_is_left_out_rather_than_run_on_its_default(
    tmp_path: Path,
) -> None:
    """The query without expr is left out of the model that the later checks see: "declares no query"
    would be about the file's default, not what it says."""
    path = tmp_path / "one.yaml"
    path.write_text("anomaly:\n  source: prometheus\n  queries:\n    - {name: up}\n")
    result = runner.invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 1
    assert problem_lines(result.stderr, path) == [4], result.stderr
    assert "anomaly.queries[0].expr: required field is missing" in " ".join(result.stderr.split())


@pytest.mark.parametrize(
    "command", [["serve", "--db", "{tmp}/x.db", "--log-format", "text"], ["anomaly", "run"], ["exporter"]]
)
def test_a_command_refusing_its_configuration_at_start_lists_every_problem_as_validate_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: list[str]
) -> None:
    """They printed the first problem and "(and 6 more problems)" without naming them. Each runs as a
    process: the exporter sets up logging before it reads its file, which CliRunner's closed stderr would
    leave behind for later tests."""
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")  # only serve needs it: validate would name it alone
    path = tmp_path / "many.yaml"
    path.write_text(MANY_PROBLEMS)
    validated = runner.invoke(app, ["config", "validate", str(path)])
    args = [part.format(tmp=tmp_path) for part in command]
    started = subprocess.run(
        [sys.executable, "-c", "from gpuwarden.cli import main; main()", *args, "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert started.returncode == 78, started.stderr
    assert problem_lines(started.stderr, path) == problem_lines(validated.stderr, path), started.stderr


def test_config_validate_lists_every_problem_its_checks_after_loading_find(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Its checks beyond the model (matchers, the store, the inventory file) stopped at the first."""
    path = tmp_path / "after.yaml"
    path.write_text(
        startable(monkeypatch) + "api:\n  db: ':memory:'\n"
        "alerting:\n  inventory_file: /nonexistent/inventory.yaml\n"
        "  inhibit_rules:\n    - source_matchers: ['a=~\"(\"']\n      target_matchers: ['b=\"1\"']\n"
    )
    result = runner.invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 1
    assert problem_lines(result.stderr, path) == [6, 8, 10], result.stderr


def test_config_validate_lists_every_problem_of_the_inventory_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An inventory file with three problems showed the first "(and 2 more problems)" and hid the others, so
    each took a run of its own to find."""
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("nodes:\n  - name: n1\n    gpus: many\n")
    path = tmp_path / "c.yaml"
    path.write_text(startable(monkeypatch) + f"alerting:\n  inventory_file: {inventory}\n")
    validated = runner.invoke(app, ["config", "validate", str(path)])
    started = runner.invoke(app, ["serve", "--db", str(tmp_path / "x.db"), "--config", str(path)])
    for result in (validated, started):  # serve listed them too, below the first's "(and 2 more problems)"
        said = result.stderr
        assert result.exit_code == (1 if result is validated else 78) and "more problem" not in said, said
        for field in ("nodes[0].cluster", "nodes[0].rack", "nodes[0].gpus"):
            assert f"alerting.inventory_file: {inventory}:" in said and f": {field}: " in said, said
    assert not (tmp_path / "x.db").exists()


@pytest.mark.parametrize("channel", ["''", "'  '"], ids=["empty", "blank"])
def test_an_empty_slack_channel_is_refused_at_its_line_saying_it_names_no_channel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, channel: str
) -> None:
    """validate passed it and serve started, warning only that it was "a name, not an id" (C...), though Slack
    refuses every post to no channel."""
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "gpuwarden.yaml"
    path.write_text(
        startable(monkeypatch, f"slack:\n  bot_token: {{env: SLACK_BOT_TOKEN}}\n  channel: {channel}\n")
    )
    expected = f"{path}:3: slack.channel: {channel} names no channel, so Slack would refuse every post"
    validated = runner.invoke(app, ["config", "validate", str(path)])
    # An address not of this machine stops serve with or without the channel's refusal: the test ends.
    served = runner.invoke(app, ["serve", "--config", str(path), "--host", "203.0.113.7"])
    for result in (validated, served):
        said = " ".join(result.output.split())
        assert result.exit_code == (1 if result is validated else 78), said
        assert " ".join(expected.split()) in said
        assert "set the channel's id (C0123456789" in said
        assert "not an id" not in said


def test_a_slack_channel_id_with_blanks_around_it_is_warned_of_as_such_not_as_a_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The warning said "' C0123456789' is a name, not an id (C...)" and to set the channel id: it is one."""
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    path = tmp_path / "gpuwarden.yaml"
    path.write_text(
        startable(monkeypatch, "slack:\n  bot_token: {env: SLACK_BOT_TOKEN}\n  channel: ' C0123456789'\n")
    )
    result = runner.invoke(app, ["config", "validate", str(path)])
    said = " ".join(result.stderr.split())
    assert result.exit_code == 0, said  # a warning, as for a name
    expected = f"warning: {path}:3: slack.channel: ' C0123456789' has blanks around a channel id"
    assert f"{expected}, which no Slack channel id has; write C0123456789" in said
    assert "is a name" not in said


def test_a_priority_channel_map_naming_no_priority_or_no_channel_is_refused_and_a_name_warned_of(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-1")
    path = tmp_path / "gpuwarden.yaml"
    routes = "  channels_by_priority:\n    P0: C0123456789\n    P1: '#gpu-oncall'\n"
    slack = "slack:\n  bot_token: {env: SLACK_BOT_TOKEN}\n  channel: C0123456780\n"
    path.write_text(startable(monkeypatch, slack + routes + "    p2: C0123456781\n    P3: ' '\n"))
    said = " ".join(runner.invoke(app, ["config", "validate", str(path)]).stderr.split())
    assert (
        f"error: {path}:7: slack.channels_by_priority: key 'p2': is not one of P0, P1, P2, P3;"
        " did you mean P2?" in said
    )
    assert f"error: {path}:8: slack.channels_by_priority.P3: ' ' names no channel" in said

    path.write_text(startable(monkeypatch, slack + routes))
    result = runner.invoke(app, ["config", "validate", str(path)])
    said = " ".join(result.stderr.split())
    assert result.exit_code == 0, said  # a name is a warning, as for slack.channel
    assert f"warning: {path}:6: slack.channels_by_priority.P1: '#gpu-oncall' is a name, not an id" in said
    assert "P0" not in said and "slack.channel:" not in said


@pytest.mark.parametrize(
    ("text", "line", "field", "value"),
    [
        pytest.param(
            "  fleet_queries:\n    - DCGM_FI_DEV_GPU_TEMP\n    - DCGM_FI_DEV_GPU_TEMP\n",  # under ANOMALY's
            7,
            "anomaly.fleet_queries[1]",
            "'DCGM_FI_DEV_GPU_TEMP' is also anomaly.fleet_queries[0]",
            id="anomaly-name-list",
        ),
        pytest.param(
            "webhooks:\n  - name: ops\n    url: http://127.0.0.1:1/\n"
            "    events: [opened, resolved, opened]\n",
            8,
            "webhooks[0].events[2]",
            "'opened' is also webhooks[0].events[0]",
            id="webhook-events",
        ),
        pytest.param(
            "webhooks:\n  - name: ops\n    url: http://127.0.0.1:1/\n    priorities: [P0, P0]\n",
            8,
            "webhooks[0].priorities[1]",
            "'P0' is also webhooks[0].priorities[0]",
            id="webhook-priorities",
        ),
        pytest.param(
            "sim:\n  mig_gpus: [node-01:7, node-01:7]\n",
            6,
            "sim.mig_gpus[1]",
            "'node-01:7' is also sim.mig_gpus[0]",
            id="mig-gpus",
        ),
        pytest.param(
            "alerting:\n  inhibit_rules:\n    - source_matchers: [a=b]\n      target_matchers: [c=d]\n"
            "      equal: [node, node]\n",
            9,
            "alerting.inhibit_rules[0].equal[1]",
            "'node' is also alerting.inhibit_rules[0].equal[0]",
            id="inhibit-equal",
        ),
        pytest.param(
            "alerting:\n  kubernetes_inventory:\n    cluster: k1\n"
            "    rack_labels:\n      - rack\n      - rack\n",
            10,
            "alerting.kubernetes_inventory.rack_labels[1]",
            "'rack' is also alerting.kubernetes_inventory.rack_labels[0]",
            id="k8s-rack-labels",
        ),
    ],
)
def test_an_entry_given_twice_in_a_list_setting_is_refused_at_its_line_naming_the_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, line: int, field: str, value: str
) -> None:
    """Each was taken silently: a list that names each query, event, priority or GPU once."""
    path = tmp_path / "gpuwarden.yaml"
    path.write_text(startable(monkeypatch) + text)  # after the anomaly section startable writes
    result = runner.invoke(app, ["config", "validate", str(path)])
    said = " ".join(result.stderr.split())
    assert result.exit_code == 1, said
    assert f"error: {path}:{line}: {field}: {value}; list each once" in said


@pytest.mark.parametrize(
    ("environ", "code"),
    [({}, 0), ({"GPUWARDEN_API__PORT": "abc"}, 1)],
    ids=["defaults", "bad-variable"],
)
def test_config_validate_without_a_file_checks_what_serve_runs_without_one_as_config_show_shows_it(
    environ: dict[str, str], code: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # `config show` printed serve's configuration without --config (defaults and GPUWARDEN_ variables), but
    # `config validate` refused to run without a path: "missing argument 'path'", exit 2.
    monkeypatch.chdir(tmp_path)  # serve's default store, gpuwarden.db, goes in the working directory
    validated = runner.invoke(app, ["config", "validate"], env=environ)
    shown = runner.invoke(app, ["config", "show"], env=environ)
    assert validated.exit_code == code, validated.output
    assert shown.exit_code == code, shown.output
    if code:  # the same problem, said in the same words, as serve says it at start
        assert "api.port: 'abc' is not a whole number" in validated.stderr
        assert validated.stderr == shown.stderr
    else:
        assert validated.stdout.strip() == "no file (defaults and GPUWARDEN_ variables): ok"


@pytest.mark.parametrize(
    "args",
    [
        ["config", "validate", "{d}"],
        ["config", "show", "{d}"],
        ["config", "validate", "--web.config.file", "{d}"],
        ["exporter", "--config", "{d}"],
    ],
    ids=["validate", "show", "web-config", "exporter"],
)
def test_a_directory_given_as_a_file_is_named_and_a_file_asked_for(tmp_path: Path, args: list[str]) -> None:
    """``config validate /etc/gpuwarden`` said only "/etc/gpuwarden: cannot read file: Is a directory":
    not what it takes instead."""
    given = [arg.format(d=tmp_path) for arg in args]
    refused = runner.invoke(app, given)
    said = " ".join(refused.stderr.split())
    assert refused.exit_code in (1, 78), refused.output
    assert said == (
        f"error: {tmp_path}: cannot read file: Is a directory; a file is expected: give the path of the file,"
        " not of its directory"
    )


def test_a_directory_as_a_file_setting_is_named_at_its_line_and_a_file_asked_for(tmp_path: Path) -> None:
    """``alerting.inventory_file`` and a web configuration's ``cert_file`` given a directory said only "Is
    a directory"."""
    path = tmp_path / "gpuwarden.yaml"
    path.write_text(f"alerting:\n  inventory_file: {tmp_path}\n")
    web = tmp_path / "web.yml"
    web.write_text(f"tls_server_config:\n  cert_file: {tmp_path}\n  key_file: {tmp_path}\n")
    validated = runner.invoke(app, ["config", "validate", str(path), "--web.config.file", str(web)])
    said = " ".join(validated.stderr.split())
    assert validated.exit_code == 1, validated.output
    asked = "Is a directory; a file is expected: give the path of the file, not of its directory"
    assert f"alerting.inventory_file: {tmp_path}: cannot read file: {asked}" in said, said
    assert f"tls_server_config.cert_file: cannot read {tmp_path}: {asked}" in said, said
