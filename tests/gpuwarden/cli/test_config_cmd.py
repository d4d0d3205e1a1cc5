"""``gpuwarden config show``: the effective configuration, with every secret masked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gpuwarden.cli import app
from tests.gpuwarden.startable import startable

runner = CliRunner()


@pytest.mark.parametrize(
    ("text", "url", "section", "field", "shown"),
    [
        (
            "api:\n  db: {env: URL}\n",
            "postgresql+psycopg://gw:S3cretPass@db.example:5432/gw",
            "api",
            "db",
            "postgresql+psycopg://gw:***@db.example:5432/gw",
        ),
        (
            "anomaly:\n  prometheus_url: {env: URL}\n",
            "http://reader:S3cretPass@prom.example:9090",
            "anomaly",
            "prometheus_url",
            "http://reader:***@prom.example:9090",
        ),
        (  # a token in the query was shown whole, a password only was hidden
            "tracing:\n  otlp_endpoint: {env: URL}\n",
            "http://otel:4318/v1/traces?token=S3cretPass&tenant=gpu",
            "tracing",
            "otlp_endpoint",
            "http://otel:4318/v1/traces?token=***&tenant=gpu",
        ),
        (
            "slack:\n  base_url: {env: URL}\n",
            "http://slack-proxy:8000/api/?api_key=S3cretPass",
            "slack",
            "base_url",
            "http://slack-proxy:8000/api/?api_key=***",
        ),
        (
            "slack:\n  runbook_base_url: {env: URL}\n",
            "https://git.example/raw/runbooks?private_token=S3cretPass",
            "slack",
            "runbook_base_url",
            "https://git.example/raw/runbooks?private_token=***",
        ),
        (  # a plain text setting, shown whole with its password
            "tracing:\n  pushgateway_url: {env: URL}\n",
            "http://pusher:S3cretPass@pushgateway:9091",
            "tracing",
            "pushgateway_url",
            "http://pusher:***@pushgateway:9091",
        ),
    ],
    ids=[
        "store-url",
        "prometheus-url",
        "otlp-token",
        "slack-api-key",
        "runbook-token",
        "pushgateway-password",
    ],
)
def test_config_show_hides_a_urls_password_as_serves_errors_do(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, url: str, section: str, field: str, shown: str
) -> None:
    """It said "secrets masked" and printed the PostgreSQL password of ``api.db: {env: DB_URL}`` in clear."""
    monkeypatch.setenv("URL", url)
    path = tmp_path / "gw.yaml"
    path.write_text(text)
    result = runner.invoke(app, ["config", "show", str(path)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)[section][field] == shown
    assert "S3cretPass" not in result.output


def test_config_show_keeps_a_sqlite_path_as_written(tmp_path: Path) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text("api:\n  db: /var/lib/gpuwarden/incidents.db\n")
    result = runner.invoke(app, ["config", "show", str(path)])
    assert json.loads(result.output)["api"]["db"] == "/var/lib/gpuwarden/incidents.db"


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
    assert validated.exit_code == served.exit_code == 1, validated.output
    assert served.stderr.startswith("error: OTEL_EXPORTER_OTLP_")
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


UNSET_SECRETS = """\
api:
  db: {env: CLI_TEST_DB_URL}
  token: {env: CLI_TEST_API_TOKEN}
slack:
  bot_token: {env: CLI_TEST_SLACK_TOKEN}
  channel: "#gpu"
anomaly:
  prometheus_url: {env: CLI_TEST_PROM_URL}
webhooks:
  - name: oncall
    url: {env: CLI_TEST_HOOK_URL}
"""


def test_config_show_marks_each_unset_secret_and_validate_still_requires_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It refused the whole file ("CLI_TEST_API_TOKEN ... is not set") though it shows no secret: a person
    checking a file on a laptop had to export every token first."""
    monkeypatch.setenv("CLI_TEST_SLACK_TOKEN", "xoxb-S3cret")
    path = tmp_path / "gw.yaml"
    path.write_text(UNSET_SECRETS)
    shown = runner.invoke(app, ["config", "show", str(path)])
    assert shown.exit_code == 0, shown.output
    cfg = json.loads(shown.stdout)
    assert cfg["api"]["token"] == "<unset: set CLI_TEST_API_TOKEN>"
    assert cfg["api"]["db"] == "<unset: set CLI_TEST_DB_URL>"  # a store URL, which no URL placeholder passes
    assert cfg["anomaly"]["prometheus_url"] == "<unset: set CLI_TEST_PROM_URL>"
    assert cfg["webhooks"][0]["url"] == "<unset: set CLI_TEST_HOOK_URL>"
    assert cfg["slack"]["bot_token"] == "**********" and "S3cret" not in shown.output  # a set one: masked
    assert "unset.invalid" not in shown.output
    assert "CLI_TEST_API_TOKEN" in shown.stderr
    validated = runner.invoke(app, ["config", "validate", str(path)])
    assert validated.exit_code == 1 and "not set" in validated.stderr


UNSET_IN_LISTS = """\
anomaly:
  presence_queries: ['up{job="a"}', {env: CLI_TEST_QUERY}]
alerting:
  inhibit_rules:
    - source_matchers: [{env: CLI_TEST_MATCHER}]
      target_matchers: ['severity="info"']
webhooks:
  - name: oncall
    url: http://hooks.example
    headers: {X.Team: {env: CLI_TEST_TEAM}}
"""


def test_config_show_marks_an_unset_reference_that_is_a_list_item_or_a_dotted_key(tmp_path: Path) -> None:
    """A reference that sat directly in a list (or under a header name with a dot) was shown as the
    placeholder it was loaded with, ``http://unset.invalid``, as if that were its value."""
    path = tmp_path / "gw.yaml"
    path.write_text(UNSET_IN_LISTS)
    shown = runner.invoke(app, ["config", "show", str(path)])
    assert shown.exit_code == 0, shown.output
    cfg = json.loads(shown.stdout)
    assert cfg["anomaly"]["presence_queries"] == ['up{job="a"}', "<unset: set CLI_TEST_QUERY>"]
    assert cfg["alerting"]["inhibit_rules"][0]["source_matchers"] == ["<unset: set CLI_TEST_MATCHER>"]
    assert cfg["webhooks"][0]["headers"] == {"X.Team": "<unset: set CLI_TEST_TEAM>"}
    assert "unset.invalid" not in shown.output
    assert "CLI_TEST_QUERY" in shown.stderr and "CLI_TEST_TEAM" in shown.stderr


def test_config_show_still_refuses_a_file_with_a_real_problem(tmp_path: Path) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text("api:\n  token: {env: CLI_TEST_API_TOKEN}\n  port: x\n")
    result = runner.invoke(app, ["config", "show", str(path)])
    assert result.exit_code == 1 and "api.port" in result.stderr and result.stdout == ""


def test_config_show_names_every_problem_of_the_file_not_only_the_first(tmp_path: Path) -> None:
    # It printed the first and "(and 1 more problem)" without saying which, as validate once did.
    path = tmp_path / "gw.yaml"
    path.write_text("api:\n  prot: 1\nalerting:\n  quiet_period_seconds: 5 min\n")
    result = runner.invoke(app, ["config", "show", str(path)])
    said = " ".join(result.stderr.split())
    assert result.exit_code == 1 and result.stdout == "", result.output
    assert f"error: {path}:2: api.prot: unknown field" in said
    assert f"error: {path}:4: alerting.quiet_period_seconds:" in said and "more problem" not in said


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


def problem_lines(stderr: str, path: Path) -> list[int]:
    """The file line each ``error:`` line names, in the order printed."""
    lines = [" ".join(line.split()) for line in stderr.strip().splitlines() if line.startswith("error:")]
    assert all(line.startswith(f"error: {path}:") for line in lines), lines
    return [int(line.removeprefix(f"error: {path}:").split(":")[0]) for line in lines]


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


@pytest.mark.parametrize("command", [["serve", "--db", "{tmp}/x.db"], ["anomaly", "run"], ["exporter"]])
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
    assert started.returncode == 1, started.stderr
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
        assert result.exit_code == 1 and "more problem" not in said, said
        for field in ("nodes[0].cluster", "nodes[0].rack", "nodes[0].gpus"):
            assert f"alerting.inventory_file: {inventory}:" in said and f": {field}: " in said, said
    assert not (tmp_path / "x.db").exists()


@pytest.mark.parametrize(
    ("text", "lines"),
    [
        pytest.param(
            "anomaly:\n  detectors: [adaptive]\n  infer_every_seconds: 30s\n  queries:\n"
            "    - {name: up, expr: 'sum(up'}\n",
            [3, 5],
            id="bad-value-and-unbalanced-query",
        ),
        pytest.param(
            "api:\n  token: {env: TEST_UNSET_API_TOKEN}\n  db: /nonexistent/gpuwarden/x.db\n",
            [2, 3],
            id="unset-token-and-store-directory",
        ),
    ],
)
def test_config_validate_lists_a_second_problem_of_a_section_with_a_bad_value(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, lines: list[int]
) -> None:
    """A section with one bad value was left out of every later check, so its other problems (an unclosed
    query, a store directory that does not exist) showed only once the first was fixed."""
    monkeypatch.delenv("TEST_UNSET_API_TOKEN", raising=False)
    path = tmp_path / "two.yaml"
    path.write_text(text)
    result = runner.invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 1
    assert problem_lines(result.stderr, path) == lines, result.stderr


def test_a_check_reading_a_bad_value_is_left_out_rather_than_run_on_its_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The query's step check reads infer_every_seconds: run on its default (30) it would warn that a step
    of 45 is longer than the tick, which the file (60, written as 60s) does not say."""
    path = tmp_path / "one.yaml"
    path.write_text(
        startable(monkeypatch, "anomaly:\n  infer_every_seconds: 60s\n")
        .replace("anomaly:\n  detectors", "  detectors")
        .replace("expr: up}", "expr: up, step_seconds: 45}")
    )
    result = runner.invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 1
    assert problem_lines(result.stderr, path) == [2], result.stderr
    assert "warning" not in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("sim", "line"),
    [
        pytest.param("  clusters: x\n  nodes_per_rack: 2\n", 2, id="clusters"),
        pytest.param("  clusters: 2\n  racks_per_cluster: -1\n  nodes_per_rack: 1\n", 3, id="racks"),
    ],
)
def test_a_bad_sim_size_is_not_compared_with_the_exporters_fleet_on_its_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, sim: str, line: int
) -> None:
    """One bad size of ``sim:`` stood in by its default (clusters 1) and was checked against
    ``exporter.simulate``: "2 nodes ... (clusters 1 x ...)" though the file says no such fleet."""
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")  # serve's: the file is about its sim section
    path = tmp_path / "sim.yaml"
    path.write_text(f"sim:\n{sim}exporter:\n  simulate: 4x8\nalerting:\n  sim_inventory: true\n")
    result = runner.invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 1
    assert problem_lines(result.stderr, path) == [line], result.stderr


@pytest.mark.parametrize("journal", ["[1]", '"a\\0b"'], ids=["not-a-string", "nul"])
def test_a_bad_journal_dir_does_not_check_the_journal_beside_the_store_instead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, journal: str
) -> None:
    """With alerting.journal_dir set aside, the journal was checked where it goes without one (beside the
    SQLite file) and a problem of that place was said at api.db's line, which the file does not put there."""
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    (tmp_path / "afile").write_text("")
    path = tmp_path / "journal.yaml"
    path.write_text(f"api:\n  db: {tmp_path}/afile/x.db\nalerting:\n  journal_dir: {journal}\n")
    result = runner.invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 1
    assert problem_lines(result.stderr, path) == [2, 4], result.stderr


@pytest.mark.parametrize(
    ("setting", "detector"),
    [
        pytest.param("presence_queries", "presence", id="presence"),
        pytest.param("fleet_queries", "fleet", id="fleet"),
        pytest.param("fleet_load_query", "fleet", id="fleet-load"),
        pytest.param("multivariate_queries", "multivariate", id="multivariate"),
    ],
)
def test_a_detectors_bad_query_list_is_not_warned_of_with_its_default_names(
    tmp_path: Path, setting: str, detector: str
) -> None:
    """With the detector's own list of queries set aside (``presence_queries: 5``), its default names were
    said to be missing from anomaly.queries: the file names none of them. Another detector's true warning
    (thermal's) is still given."""
    path = tmp_path / "anomaly.yaml"
    path.write_text(
        f"anomaly:\n  source: prometheus\n  detectors: [{detector}, thermal]\n  {setting}: {{x: 1}}\n"
        "  queries:\n    - {name: foo, expr: foo}\n"
    )
    result = runner.invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 1
    assert problem_lines(result.stderr, path) == [4], result.stderr
    assert f"detector {detector!r}" not in result.stderr, result.stderr
    assert "detector 'thermal'" in result.stderr, result.stderr


@pytest.mark.parametrize("setting", ["direction: sideways", "guard: maybe", "adaptive: maybe"])
def test_a_querys_bad_setting_is_not_range_guard_warned_of_on_its_default(
    tmp_path: Path, setting: str
) -> None:
    """With a query's direction, guard or adaptive set aside, the range-guard warning ran on its default
    (direction both, no guard, adaptive by name) and told a drop the query's own setting may rule out."""
    path = tmp_path / "guard.yaml"
    path.write_text(
        "anomaly:\n  source: prometheus\n  detectors: [adaptive]\n  adaptive_metrics: [reqs]\n  queries:\n"
        f"    - name: reqs\n      expr: sum by (pod) (rate(http_requests_total[5m]))\n      {setting}\n"
    )
    result = runner.invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 1
    assert problem_lines(result.stderr, path) == [8], result.stderr
    assert "warning" not in result.stderr, result.stderr


def test_a_bad_kubernetes_context_does_not_load_the_kubeconfig_with_its_current_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With alerting.kubernetes_inventory.context set aside, the kubeconfig was loaded with its current
    context instead, and one without ``current-context`` was refused at kubeconfig's line: a second, false
    problem."""
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")  # serve's: the file is about its inventory
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: c1\n  cluster: {server: 'https://127.0.0.1:6443'}\n"
        "users:\n- name: u1\n  user: {token: abc}\n"
        "contexts:\n- name: ctx1\n  context: {cluster: c1, user: u1}\n"
    )
    path = tmp_path / "kube.yaml"
    inventory = f"alerting:\n  kubernetes_inventory:\n    cluster: k1\n    kubeconfig: {kubeconfig}\n"
    path.write_text(f"{inventory}    context: ctx1\n")
    assert runner.invoke(app, ["config", "validate", str(path)]).exit_code == 0  # the context is the fix
    path.write_text(f"{inventory}    context: [ctx1]\n")
    result = runner.invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 1
    assert problem_lines(result.stderr, path) == [5], result.stderr


SET_IN_HEADERS = """\
webhooks:
  - name: oncall
    url: https://hooks.example/in
    headers: {X-Api-Key: {env: CLI_TEST_HOOK_KEY}, X-Team: gpu-infra}
"""


def test_config_show_masks_a_header_read_from_a_variable_as_it_masks_tokens(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A receiver's key sent as a header (``X-Api-Key``, which ``bearer_token`` cannot carry) written as the
    ``{env: ...}`` reference secrets are written as: ``config show`` printed the variable's value whole."""
    monkeypatch.setenv("CLI_TEST_HOOK_KEY", "k3y-S3cret")
    path = tmp_path / "gw.yaml"
    path.write_text(SET_IN_HEADERS)
    shown = runner.invoke(app, ["config", "show", str(path)])
    assert shown.exit_code == 0, shown.output
    headers = json.loads(shown.stdout)["webhooks"][0]["headers"]
    assert headers == {"X-Api-Key": "**********", "X-Team": "gpu-infra"}  # the literal one as written
    assert "S3cret" not in shown.output


ANOMALY_SHOWN_ORDER = [
    *("source", "prometheus_url", "query_timeout_seconds", "queries", "detectors", "adaptive_metrics"),
    *("adaptive_seasonality", "min_deviation_by_metric", "reescalate_alerts", "pending_ticks"),
    *("score_outside_data_range", "immediate_resolve_after", "infer_every_seconds", "fit_every_seconds"),
    *("alert_url", "listen_address", "port", "max_lookback_seconds", "latency_offset_seconds"),
    *("forget_after_seconds", "stale_after_seconds", "thresholds", "level_shift_queries", "fleet_queries"),
    *("multivariate_queries", "fleet_peer_labels", "fleet_k", "fleet_k_exit", "fleet_hold_ticks"),
    *("fleet_load_query", "fleet_load_adjusted", "fleet_min_deviation_by_metric", "thermal_lag_seconds"),
    *("thermal_alpha", "thermal_k", "thermal_min_deviation", "thermal_ridge_watts", "thermal_warmup"),
    *("thermal_hold_seconds", "thermal_settle_seconds", "thermal_peer_labels", "thermal_min_peers"),
    *("thermal_peer_tolerance", "presence_queries", "absent_after_seconds", "absent_forget_seconds"),
    *("multivariate_trees", "multivariate_history"),
    *("state_file", "state_save_seconds"),  # new settings come after the previous release's
]
THRESHOLDS_SHOWN_ORDER = [
    *("alpha", "scale_alpha", "seasonal_alpha", "k", "warmup", "direction", "min_deviation"),
    *("min_relative_deviation", "seasonality", "seasonal_gain", "clip", "fast_alpha", "volatility_k"),
    *("tail_quantile", "tail_k", "tail_rate", "error_clip", "seasonal_freeze", "resolve_after"),
]


def test_config_show_lists_the_anomaly_settings_in_the_order_of_the_previous_release(tmp_path: Path) -> None:
    # An operator diffs one release's `config show` against the next: a setting that moved (a section split
    # into modules, fields regrouped) reads as removed and added again.
    path = tmp_path / "gw.yaml"
    path.write_text("api:\n  db: /var/lib/gpuwarden/incidents.db\n")
    shown = json.loads(runner.invoke(app, ["config", "show", str(path)]).output)["anomaly"]
    assert list(shown) == ANOMALY_SHOWN_ORDER
    assert list(shown["thresholds"]) == THRESHOLDS_SHOWN_ORDER
