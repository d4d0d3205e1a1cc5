from pathlib import Path

import pytest
from typer.testing import CliRunner

from alerting.matchers import parse_matcher
from gpuwarden.cli import app
from gpuwarden.config import load_config
from gpuwarden.errors import ConfigError
from tests.gpuwarden.startable import startable


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gpuwarden.yaml"
    path.write_text(text)
    return path


def test_defaults_need_no_file() -> None:
    cfg = load_config(None)
    assert cfg.exporter.port == 9400
    assert cfg.exporter.collect_interval_seconds == 5.0
    assert cfg.sim.gpu_model == "NVIDIA H100 80GB HBM3"


def test_yaml_values_are_read(tmp_path: Path) -> None:
    cfg = load_config(write(tmp_path, "exporter:\n  port: 9500\nsim:\n  seed: 7\n"))
    assert cfg.exporter.port == 9500
    assert cfg.sim.seed == 7


def test_environment_overrides_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GPUWARDEN_EXPORTER__PORT", "9600")
    cfg = load_config(write(tmp_path, "exporter:\n  port: 9500\n  collect_interval_seconds: 2\n"))
    assert cfg.exporter.port == 9600
    assert cfg.exporter.collect_interval_seconds == 2.0


def test_unknown_field_names_file_line_and_field(tmp_path: Path) -> None:
    path = write(tmp_path, "exporter:\n  port: 9500\n  prot: 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.line == 3
    assert info.value.field == "exporter.prot"
    assert str(path) in str(info.value)
    assert "unknown field" in str(info.value)


@pytest.mark.parametrize(
    ("text", "key", "name"),
    [
        ("sim:\n  seed: 1\nApi:\n  port: 9500\n", "Api", "api"),
        ("sim:\n  seed: 1\nALERTING:\n  quiet_period_seconds: 5\n", "ALERTING", "alerting"),
        ("sim:\n  seed: 1\nApi:\n  port: 9500\napi:\n  port: 9600\n", "Api", "api"),
    ],
    ids=["capital", "upper", "beside-its-twin"],
)
def test_a_section_written_in_another_case_is_refused_at_its_line(
    tmp_path: Path, text: str, key: str, name: str
) -> None:
    """`Api:` was taken as `api:` (and beside `api:` overrode it) though `api: {Port: ...}` was refused."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert (info.value.field, info.value.line) == (key, 3)
    assert f"write {name}:" in str(info.value)
    assert str(path) in str(info.value)


def test_a_literal_secret_in_a_capitalised_section_is_not_taken(tmp_path: Path) -> None:
    """`Slack: {bot_token: xoxb-...}` passed `config validate`: the literal-secret check read `slack`."""
    path = write(tmp_path, "Slack:\n  bot_token: xoxb-1-2\n  channel: C1\n")
    result = CliRunner().invoke(app, ["config", "validate", str(path)], env={"GPUWARDEN_API_TOKEN": "t"})
    assert result.exit_code == 1
    assert f"{path}:1: Slack: section names are lower case: write slack:" in result.output


def test_a_key_in_another_case_suggests_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "api:\n  Db: x.db\n"))
    assert (info.value.field, info.value.line) == ("api.Db", 2)
    assert "did you mean db?" in str(info.value)


def test_wrong_type_names_the_field(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "sim:\n  gpus_per_node: lots\n"))
    assert info.value.field == "sim.gpus_per_node"
    assert info.value.line == 2


def test_broken_yaml_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "exporter:\n  port: [1, 2\n"))
    assert "invalid YAML" in str(info.value)
    assert info.value.line is not None


def test_secret_reference_reads_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLACK_BOT_TOKEN", "xoxb-test")
    cfg = load_config(write(tmp_path, "slack:\n  bot_token: {env: SLACK_BOT_TOKEN}\n"))
    assert cfg.slack.bot_token is not None
    assert cfg.slack.bot_token.get_secret_value() == "xoxb-test"
    assert "xoxb-test" not in repr(cfg)


def test_missing_secret_variable_is_a_config_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOPE_TOKEN", raising=False)
    with pytest.raises(ConfigError, match="NOPE_TOKEN") as info:
        load_config(write(tmp_path, "slack:\n  channel: C1\n  bot_token: {env: NOPE_TOKEN}\n"))
    assert (info.value.field, info.value.line) == ("slack.bot_token", 3)


SHARED = (
    "exporter:\n  port: 9401\napi:\n  token: {env: NOPE_API_TOKEN}\n"
    "slack:\n  channel: C1\n  bot_token: {env: NOPE_TOKEN}\n"
    "webhooks:\n  - {name: oncall, url: {env: NOPE_URL}}\n"
)


def test_a_command_loads_its_own_sections_without_the_secrets_of_sections_it_never_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("NOPE_API_TOKEN", "NOPE_TOKEN", "NOPE_URL"):
        monkeypatch.delenv(name, raising=False)
    path = write(tmp_path, SHARED)
    cfg = load_config(path, secrets_for={"exporter", "sim", "tracing"})
    assert cfg.exporter.port == 9401 and cfg.slack.bot_token is None and cfg.webhooks == []
    with pytest.raises(ConfigError, match="NOPE_API_TOKEN"):  # serve, config validate: every secret
        load_config(path)
    with pytest.raises(ConfigError, match="NOPE_TOKEN") as info:  # a section it reads: still refused
        load_config(path, secrets_for={"slack"})
    assert (info.value.field, info.value.line) == ("slack.bot_token", 7)


def test_a_shared_config_scores_a_csv_without_serves_and_slacks_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("NOPE_API_TOKEN", "NOPE_TOKEN", "NOPE_URL"):
        monkeypatch.delenv(name, raising=False)
    src, out = tmp_path / "in.csv", tmp_path / "out.csv"
    src.write_text("timestamp,value\n" + "".join(f"{1700000000 + 30 * i},{i % 3}\n" for i in range(20)))
    args = ["anomaly", "score", "--config", str(write(tmp_path, SHARED)), "--input", str(src)]
    result = CliRunner().invoke(app, [*args, "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text().startswith("timestamp,value,anomaly_score,label")


def test_config_validate_command_reports_ok_and_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    runner = CliRunner()
    text = startable(monkeypatch, "exporter:\n  port: 9401\n")
    good = runner.invoke(app, ["config", "validate", str(write(tmp_path, text))])
    assert good.exit_code == 0
    assert "ok" in good.output
    bad_path = tmp_path / "bad.yaml"
    bad_path.write_text("exporter:\n  port: -1\n")
    bad = runner.invoke(app, ["config", "validate", str(bad_path)])
    assert bad.exit_code == 1
    assert "exporter.port" in bad.output


def test_the_example_in_deploy_loads_and_its_matchers_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GPUWARDEN_API_TOKEN", "SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET"):
        monkeypatch.setenv(name, f"secret-{name}")
    example = Path(__file__).resolve().parents[2] / "deploy" / "gpuwarden.example.yaml"
    cfg = load_config(example)
    assert cfg.api.token is not None and cfg.api.token.get_secret_value() == "secret-GPUWARDEN_API_TOKEN"
    names = [q.name for q in cfg.anomaly.queries]
    assert names == [q.expr for q in cfg.anomaly.queries]  # detectors find queries by metric name
    assert cfg.anomaly.fleet_load_query in names
    assert {"DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_SM_CLOCK"} <= set(names) & set(cfg.anomaly.fleet_queries)
    ranges = {q.name: q.data_range for q in cfg.anomaly.queries}  # bands of non-negative metrics stay >= 0
    assert ranges["DCGM_FI_DEV_GPU_UTIL"] == (0.0, 100.0)
    # ... and a garbage reading (dcgm-exporter has served 808334905) is out of every gauge's range.
    assert all(r is not None and r[0] == 0.0 and 100.0 <= r[1] < 808334905.0 for r in ranges.values() if r)
    assert {"DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_POWER_USAGE", "DCGM_FI_DEV_FB_USED"} <= {
        name for name, r in ranges.items() if r is not None
    }
    rule = cfg.alerting.inhibit_rules[0]
    for matchers in (rule.source_matchers, rule.target_matchers):
        assert [parse_matcher(m) for m in matchers]
    assert cfg.alerting.maintenance_windows == []  # a dated window would mute r07 for whoever deploys it then


@pytest.mark.parametrize(
    ("alerting", "expected"),
    [
        (
            '  inhibit_rules:\n    - source_matchers: [\'node=~"("\']\n      target_matchers: ["a=b"]\n',
            "alerting.inhibit_rules[0].source_matchers[0]: invalid regular expression",
        ),
        (
            '  maintenance_windows:\n    - matchers: ["rack=r07", "no operator"]\n'
            "      starts_at: 2026-12-01T02:00:00Z\n      ends_at: 2026-12-01T04:00:00Z\n",
            "alerting.maintenance_windows[0].matchers[1]: cannot parse matcher",
        ),
        (
            '  maintenance_windows:\n    - matchers: ["rack=r07"]\n'
            "      starts_at: 2026-12-01T04:00:00Z\n      ends_at: 2026-12-01T02:00:00Z\n",
            ":3: alerting.maintenance_windows[0]: ends_at must be after starts_at",
        ),
        (
            '  maintenance_windows:\n    - matchers: ["rack=r07"]\n'
            "      starts_at: 2026-12-01T02:00:00\n      ends_at: 2026-12-01T04:00:00\n",
            "need a timezone",
        ),
    ],
    ids=["bad-regex", "bad-matcher", "window-backwards", "window-naive"],
)
def test_config_validate_refuses_what_serve_could_not_run_naming_file_and_field(
    tmp_path: Path, alerting: str, expected: str
) -> None:
    path = write(tmp_path, "alerting:\n" + alerting)
    result = CliRunner().invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 1
    output = " ".join(result.output.split())
    assert str(path) in output and expected in output


def test_a_secret_written_into_the_file_is_refused_naming_the_reference_to_write(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "slack:\n  channel: C1\n  bot_token: xoxb-123\n"), environ={})
    assert (info.value.field, info.value.line) == ("slack.bot_token", 3)
    assert "{env: SLACK_BOT_TOKEN}" in str(info.value)
    assert "xoxb-123" not in str(info.value)


def test_config_validate_reads_the_inventory_file_the_config_names(tmp_path: Path) -> None:
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text("nodes:\n  - name: n1\n    cluster: c1\n    rack: r1\n    gpus: many\n")
    path = write(tmp_path, f"alerting:\n  inventory_file: {inventory}\n")
    result = CliRunner().invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 1
    output = " ".join(result.output.split())
    assert "alerting.inventory_file" in output and "nodes[0].gpus" in output
    inventory.unlink()
    assert "cannot read" in " ".join(
        CliRunner().invoke(app, ["config", "validate", str(path)]).output.split()
    )


def test_the_simulated_fleet_does_not_combine_with_other_inventories(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("alerting:\n  sim_inventory: true\n  slurm_inventory: true\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "sim_inventory (the simulated fleet) cannot be combined with slurm_inventory" in str(err.value)
    assert "alerting" in str(err.value)


def test_a_kubernetes_inventory_needs_the_cluster_name_and_is_one_source(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"alerting:\n  kubernetes_inventory:\n    kubeconfig: {path}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "alerting.kubernetes_inventory.cluster" in str(err.value)
    path.write_text(f"alerting:\n  kubernetes_inventory:\n    cluster: k1\n    kubeconfig: {tmp_path}/nope\n")
    with pytest.raises(ConfigError, match=r"kubeconfig.*nope is not a file"):
        load_config(path)
    path.write_text("alerting:\n  slurm_inventory: true\n  kubernetes_inventory:\n    cluster: k1\n")
    both = load_config(path).alerting  # a Slurm training cluster beside a Kubernetes inference one
    assert both.slurm_inventory and both.kubernetes_inventory is not None
    path.write_text("alerting:\n  kubernetes_inventory:\n    cluster: k1\n    gpu_resources: []\n")
    with pytest.raises(ConfigError, match="gpu_resources"):
        load_config(path)
    path.write_text("alerting:\n  kubernetes_inventory:\n    cluster: k1\n")
    assert load_config(path).alerting.kubernetes_inventory.rack_labels[0] == "topology.kubernetes.io/rack"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ("alerting:\n  resolve_timeout_seconds: .inf\n", "alerting.resolve_timeout_seconds", "finite"),
        ("alerting:\n  quiet_period_seconds: 1e400\n", "alerting.quiet_period_seconds", "finite"),
        ("anomaly:\n  thresholds:\n    k: .nan\n", "anomaly.thresholds.k", "nan is not a number"),
        ("alerting:\n  remind_after_seconds: -4\n", "alerting.remind_after_seconds", "write 0 or more"),
        ("anomaly:\n  prometheus_url: not a url\n", "anomaly.prometheus_url", "http(s) URL"),
        ("anomaly:\n  alert_url: ftp://x\n", "anomaly.alert_url", "http(s) URL"),
        ("tracing:\n  otlp_endpoint: otel:4318\n", "tracing.otlp_endpoint", "http(s) URL"),
        # These passed `config validate`; the service then reported the source down ("connection
        # refused") or failed at its first request, never naming the setting.
        ("anomaly:\n  prometheus_url: http://127.0.0.1:99999\n", "anomaly.prometheus_url", "99999 is not in"),
        ("anomaly:\n  alert_url: http://:8080\n", "anomaly.alert_url", "names no host"),
        (
            f"slack:\n  chart_prometheus_url: http://{'p' * 64}.example\n",
            "slack.chart_prometheus_url",
            "idna",
        ),
    ],
    ids=[
        "inf",
        "overflow",
        "nan",
        "negative-reminder",
        "url-no-scheme",
        "url-ftp",
        "url-host-port-only",
        "url-port-out-of-range",
        "url-no-host",
        "url-host-label-too-long",
    ],
)
def test_values_no_setting_can_use_are_refused_naming_the_field(
    tmp_path: Path, text: str, field: str, words: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert info.value.field == field and words in str(info.value)


def test_non_utf8_config_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "gpuwarden.yaml"
    path.write_bytes(b"\xff\xfeexporter:\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value) and "UTF-8" in str(info.value)


@pytest.mark.parametrize(
    ("variable", "value", "field"),
    [("GPUWARDEN_ALERTING__INHIBIT_RULES", "[[", "alerting"), ("GPUWARDEN_API__PORT", "abc", "api.port")],
    ids=["invalid-json", "wrong-type"],
)
def test_a_bad_environment_override_names_the_environment_not_the_files_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "api:\n  port: 9700\nalerting:\n  inhibit_rules: []\n"))
    assert str(info.value).startswith("<environment>") and info.value.field == field
    assert info.value.line is None and variable in str(info.value)
    assert info.value.line is None


def test_a_json_section_override_is_not_blamed_for_the_files_value_beside_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GPUWARDEN_SLACK", '{"channel": "#x"}')  # merged with the file's slack section
    path = write(tmp_path, "slack:\n  timeout_seconds: 0\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert (info.value.path, info.value.line, info.value.field) == (str(path), 2, "slack.timeout_seconds")
    monkeypatch.setenv("GPUWARDEN_SLACK", '{"timeout_seconds": -1}')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.path == "<environment>" and "GPUWARDEN_SLACK" in str(info.value)


@pytest.mark.parametrize(
    ("variable", "value", "text", "words"),
    [
        ("GPUWARDEN_API__TOKEN", "", "", "api.token: is empty"),
        ("GPUWARDEN_API__TOKEN", " \n", "", "api.token: is empty"),
        ("GPUWARDEN_API__TOKEN", "tok\n", "", "api.token: begins or ends with a space"),
        ("GPUWARDEN_SLACK__BOT_TOKEN", "", "", "slack.bot_token: is empty"),
        ("EMPTY_TOKEN", "", "api:\n  token: {env: EMPTY_TOKEN}\n", "api.token: secret reference names"),
        ("EMPTY_SECRET", " ", "slack:\n  signing_secret: {env: EMPTY_SECRET}\n", "slack.signing_secret"),
        ("GPUWARDEN_API__TOKEN", "tökén", "", "api.token: holds characters an HTTP header cannot carry"),
        ("GPUWARDEN_SLACK__BOT_TOKEN", "xoxb-ü", "", "slack.bot_token: holds characters an HTTP header"),
    ],
    ids=[
        *(
            "token-variable-empty",
            "token-blank",
            "token-newline",
            "bot-token-empty",
            "ref-empty",
            "ref-blank",
        ),
        *("token-not-ascii", "bot-token-not-ascii"),
    ],
)
def test_an_empty_secret_is_refused_naming_the_setting_and_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, text: str, words: str
) -> None:
    monkeypatch.setenv(variable, value)  # an empty API token would let every request write
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert words in str(info.value) and variable in str(info.value)
    result = CliRunner().invoke(app, ["config", "validate", str(write(tmp_path, text))])
    assert result.exit_code == 1 and words in " ".join(result.output.split())


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        (
            "alerting:\n  correlation_window_seconds: 1e11\n",
            "alerting.correlation_window_seconds",
            "1e11 is more than 31622400, the most allowed; write 31622400 or less",
        ),
        ("alerting:\n  resolve_timeout_seconds: 1e12\n", "alerting.resolve_timeout_seconds", "31622400"),
        ("alerting:\n  retention_days: 1000000\n", "alerting.retention_days", "36525"),
        ("alerting:\n  quiet_period_seconds: 1e308\n", "alerting.quiet_period_seconds", "31622400"),
        ("alerting:\n  announce_delay_seconds: 1e308\n", "alerting.announce_delay_seconds", "31622400"),
        ("alerting:\n  reopen_window_seconds: 1e308\n", "alerting.reopen_window_seconds", "31622400"),
        ("alerting:\n  tick_interval_seconds: 1e308\n", "alerting.tick_interval_seconds", "604800"),
        ("alerting:\n  applier_stall_seconds: 1e308\n", "alerting.applier_stall_seconds", "604800"),
        ("alerting:\n  applier_stall_seconds: 0.01\n", "alerting.applier_stall_seconds", "1"),
        ("anomaly:\n  infer_every_seconds: 1e308\n", "anomaly.infer_every_seconds", "604800"),
        ("anomaly:\n  infer_every_seconds: 1e-300\n", "anomaly.infer_every_seconds", "0.001"),
        (  # a collection loop with no pause between passes spins a core
            "exporter:\n  collect_interval_seconds: 1e-300\n",
            "exporter.collect_interval_seconds",
            "1e-300 is less than 0.1, the least allowed; write 0.1 or more",
        ),
        ("anomaly:\n  fit_every_seconds: 1e308\n", "anomaly.fit_every_seconds", "31622400"),
        (
            "anomaly:\n  queries: [{name: a, expr: a, step_seconds: 0.0004}]\n",
            "anomaly.queries[0].step_seconds",
            "0.001",
        ),
        ("anomaly:\n  max_lookback_seconds: 1e308\n", "anomaly.max_lookback_seconds", "31622400"),
        ("anomaly:\n  query_timeout_seconds: 1e308\n", "anomaly.query_timeout_seconds", "604800"),
        ("store:\n  connect_timeout_seconds: 1\n", "store.connect_timeout_seconds", "2"),
        (
            "store:\n  connect_timeout_seconds: 2.5\n",
            "store.connect_timeout_seconds",
            "2.5 is not a whole number",
        ),
        ("store:\n  connect_timeout_seconds: 99999\n", "store.connect_timeout_seconds", "3600"),
        ("sim:\n  nodes_per_rack: 100000000\n", "sim", "a simulated fleet has at most 2048"),
        ("exporter:\n  simulate: banana\n", "exporter.simulate", "expected NODESxGPUS such as 2x8"),
        ("exporter:\n  simulate: 9999x8\n", "exporter.simulate", "nodes must be 1..2048"),
    ],
    ids=[
        *("correlation-window", "resolve-timeout", "retention", "quiet-period", "announce-delay", "reopen"),
        *(
            "tick-interval",
            "applier-stall",
            "applier-stall-tiny",
            "infer-every",
            "infer-every-tiny",
            "collect-interval-tiny",
            "fit-every",
            "step-below-1ms",
            "lookback",
        ),
        "query-timeout",
        *("store-connect-timeout-below-libpq-minimum", "store-connect-timeout-fraction"),
        "store-connect-timeout-too-long",
        *("sim-fleet-size", "simulate-not-a-spec", "simulate-too-many-nodes"),
    ],
)
def test_a_value_past_its_bound_is_refused_naming_the_field_before_anything_runs(
    tmp_path: Path, text: str, field: str, words: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert (info.value.path, info.value.field) == (str(path), field) and words in str(info.value)
    assert info.value.line == (1 if field == "sim" else 2)


@pytest.mark.parametrize(
    ("variable", "value", "words"),
    [
        ("GPUWARDEN_APII__PORT", "9", "no section 'apii'"),
        ("GPUWARDEN_APII__PORT", "9", "did you mean GPUWARDEN_API__PORT?"),
        ("GPUWARDEN_SLAK", "{}", "did you mean GPUWARDEN_SLACK?"),
        ("GPUWARDEN_PORT", "9", "write GPUWARDEN_EXPORTER__PORT"),
        ("GPUWARDEN_API_PORT", "9", "write GPUWARDEN_API__PORT (two underscores"),
    ],
    ids=[
        "section-typo-nested",
        "section-typo-nested-fix",
        "section-typo",
        "field-without-section",
        "one-underscore",
    ],
)
def test_a_variable_meant_for_a_setting_that_names_none_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, words: str
) -> None:
    monkeypatch.setenv(variable, value)  # pydantic-settings ignores it: the setting silently keeps its value
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, ""))
    assert info.value.path == "<environment>" and variable in str(info.value) and words in str(info.value)


def test_variables_that_commands_or_other_tools_read_are_not_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("GPUWARDEN_API_TOKEN", "GPUWARDEN_URL", "GPUWARDEN_TEST_PORTS", "GPUWARDEN_VENV"):
        monkeypatch.setenv(name, "x")
    assert load_config(None).api.port == 8080


@pytest.mark.parametrize(
    ("variable", "value", "field"),
    [
        ("GPUWARDEN_ANOMALY__QUERIES", '[{"name": "a"}]', "anomaly.queries[0].expr"),
        ("GPUWARDEN_ALERTING__INHIBIT_RULES", '[{"source_matchers": ["a=1"]}]', "alerting.inhibit_rules[0]"),
        ("GPUWARDEN_ALERTING__KUBERNETES_INVENTORY__KUBECONFIG", "/x", "alerting.kubernetes_inventory"),
    ],
    ids=["list-item-missing-a-field", "rule-missing-matchers", "section-made-by-a-variable"],
)
def test_a_field_missing_from_what_a_variable_set_blames_the_variable_not_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str
) -> None:
    monkeypatch.setenv(variable, value)
    path = write(tmp_path, "anomaly:\n  queries: [{name: q, expr: up}]\n")  # a list the variable replaces
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.path == "<environment>" and f"(set by {variable})" in str(info.value)
    assert info.value.field.startswith(field) and info.value.line is None


def test_an_error_found_after_loading_names_the_line_or_the_variable_of_its_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "api:\n  port: 9700\nalerting:\n  tick_interval_seconds: 5\n  inventory_file: x\n")
    cfg = load_config(path)
    found = cfg.locate(ConfigError("cannot read file", field="alerting.inventory_file"))
    assert (found.path, found.line) == (str(path), 5)
    monkeypatch.setenv("GPUWARDEN_ALERTING__INVENTORY_FILE", "/nonexistent")
    found = load_config(path).locate(ConfigError("cannot read file", field="alerting.inventory_file"))
    assert found.path == "<environment>" and "(set by GPUWARDEN_ALERTING__INVENTORY_FILE)" in str(found)


WINDOW = "      starts_at: 2026-12-01T02:00:00Z\n      ends_at: 2026-12-01T04:00:00Z\n"


@pytest.mark.parametrize(
    ("alerting", "expected"),
    [
        (
            f"  maintenance_windows:\n    - matchers: ['rack=\"\"']\n{WINDOW}",
            ":5: alerting.maintenance_windows[0].matchers: at least one matcher must not match the empty",
        ),
        (
            f"  maintenance_windows:\n    - matchers: ['rack=r1']\n{WINDOW}    - matchers:\n"
            f"        - 'alertname=~\".*\"'\n{WINDOW}",
            ":8: alerting.maintenance_windows[1].matchers: at least one matcher must not match",
        ),
        (
            "  inhibit_rules:\n    - source_matchers: ['severity=~\".*\"']\n      target_matchers: [a=b]\n",
            ":5: alerting.inhibit_rules[0].source_matchers: at least one matcher must not match",
        ),
        (
            "  inhibit_rules:\n    - source_matchers: [a=b]\n      target_matchers: [c=d]\n"
            "      equal: ['']\n",
            ":7: alerting.inhibit_rules[0].equal[0]: empty; write a value or remove the item",
        ),
        (
            "  inhibit_rules:\n    - source_matchers: ['a==b']\n      target_matchers: [c=d]\n",
            ":5: alerting.inhibit_rules[0].source_matchers[0]: cannot parse matcher 'a==b'",
        ),
    ],
    ids=[
        "window-of-an-empty-value",
        "window-of-any-value",
        "inhibit-source-of-any",
        "equal-empty",
        "double-eq",
    ],
)
def test_mutes_that_would_hold_back_every_alert_or_that_are_typos_are_refused_at_their_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, alerting: str, expected: str
) -> None:
    path = write(tmp_path, "api:\n  port: 9700\nalerting:\n" + alerting)
    result = CliRunner().invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 1 and f"{path}{expected}" in " ".join(result.output.split())
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    served = CliRunner().invoke(app, ["serve", "--db", str(tmp_path / "x.db"), "--config", str(path)])
    assert served.exit_code == 1 and f"{path}{expected}" in " ".join(served.output.split())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gpuwarden.yaml"]  # no store, lock or journal


def test_an_inhibition_whose_targets_are_every_alert_is_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rule = "  inhibit_rules:\n    - source_matchers: [alertname=X]\n      target_matchers: ['a=~\".*\"']\n"
    path = write(tmp_path, startable(monkeypatch, "alerting:\n" + rule))
    result = CliRunner().invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 0, result.output  # "while the node is down, mute everything on it"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "anomaly:\n  detectors: [adaptive, bogus]\n",
            ":2: anomaly.detectors: unknown detector(s) ['bogus']",
        ),
        ("api:\n  db: ''\n", ":2: api.db: '' is an in-memory database"),
        ("api:\n  db: 'sqlite:///:memory:'\n", ":2: api.db: 'sqlite:///:memory:' is an in-memory database"),
        (
            "api:\n  listen_address: not an address\n",
            ":2: api.listen_address: cannot listen on 'not an address'",
        ),
        (
            "api:\n  listen_address: 192.0.2.1\n",  # TEST-NET-1 (RFC 5737): no machine has it
            ":2: api.listen_address: cannot listen on '192.0.2.1': not an address of this machine",
        ),
        ("exporter:\n  listen_address: 'a b'\n", ":2: exporter.listen_address: cannot listen on 'a b'"),
        ("anomaly:\n  listen_address: 'a b'\n", ":2: anomaly.listen_address: cannot listen on 'a b'"),
        (
            "alerting:\n  kubernetes_inventory:\n    cluster: k\n    kubeconfig: {tmp}/k.yaml\n",
            ":4: alerting.kubernetes_inventory.kubeconfig: {tmp}/k.yaml is not a kubeconfig: its YAML is str",
        ),
        (
            "tracing:\n  pushgateway_url: http://gw:9091/metrics/job/training\n",
            ":2: tracing.pushgateway_url: not a valid Pushgateway URL 'http://gw:9091/metrics/job/training':"
            " give the gateway's base URL (http://gw:9091,",
        ),
        (
            "tracing:\n  pushgateway_url: ftp://gw\n",
            ":2: tracing.pushgateway_url: not a valid Pushgateway URL",
        ),
        (
            "exporter:\n  simulate: 2x8\nsim:\n  nodes_per_rack: 3\n  gpus_per_node: 4\n",
            ":5: sim.gpus_per_node: 3 nodes of 4 GPUs",
        ),
    ],
    ids=[
        "unknown-detector",
        "db-empty",
        "db-in-memory",
        "api-address",
        "api-address-of-another-machine",
        "exporter-address",
        "anomaly-address",
        "kubeconfig-a-string",
        "pushgateway-push-path",
        "pushgateway-ftp",
        "simulated-fleet-other-than-the-sim-section",
    ],
)
def test_config_validate_refuses_what_serve_exporter_or_anomaly_run_would_refuse(
    tmp_path: Path, text: str, expected: str
) -> None:
    (tmp_path / "k.yaml").write_text("just a string\n")
    path = write(tmp_path, text.replace("{tmp}", str(tmp_path)))
    result = CliRunner().invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit), result.output
    squeezed = "".join(result.output.split())  # the console wraps long paths anywhere
    assert "".join(f"{path}{expected.replace('{tmp}', str(tmp_path))}".split()) in squeezed


_PROM = "anomaly:\n  source: prometheus\n  queries:\n"


@pytest.mark.parametrize(
    ("queries", "message"),
    [
        ("", ":2: anomaly.source: prometheus, but anomaly.queries declares no query"),
        (
            "    - {name: dup, expr: up}\n    - {name: dup, expr: 'up == 0'}\n",
            ":5: anomaly.queries[1].name: 'dup' is also the name of anomaly.queries[0]",
        ),
        ("    - {name: empty, expr: ''}\n", ":4: anomaly.queries[0].expr: is empty; give query 'empty'"),
        ("    - {name: blank, expr: '  '}\n", ":4: anomaly.queries[0].expr: is empty"),
        (
            "    - {name: up, expr: up}\n    - {name: broken, expr: 'rate(DCGM_FI_DEV_POWER_USAGE[5m]'}\n",
            ":5: anomaly.queries[1].expr: query 'broken': '(' at character 5 is not closed",
        ),
        (
            "    - {name: broken2, expr: 'sum by (gpu DCGM_FI_DEV_POWER_USAGE'}\n",
            "anomaly.queries[0].expr: query 'broken2': '(' at character 8 is not closed",
        ),
        ("    - {name: b, expr: 'up{job=\"x}'}\n", 'the quote " at character 8 is not closed'),
        ("    - {name: b, expr: 'sum(up])'}\n", "']' at character 7 closes nothing (the '(' at character 4"),
        (
            "    - {name: r, expr: 'DCGM_FI_DEV_GPU_TEMP{gpu=~\"[0-\"}'}\n",
            "query 'r': the regex '[0-' of =~ at character 25 is broken (unterminated character set)",
        ),
        (
            "    - {name: r, expr: 'up{job!~\"*x\"}'}\n",
            "the regex '*x' of !~ at character 7 is broken (nothing",
        ),
        (
            "    - {name: r, expr: \"up{job=~'a(b'}\"}\n",
            "the regex 'a(b' of =~ at character 7 is broken (missing )",
        ),
    ],
    ids=[
        "no-queries",
        "same-name",
        "empty-expr",
        "blank-expr",
        "open-paren",
        "by-clause",
        "quote",
        "crossed",
        "regex-set",
        "regex-repeat",
        "regex-group-single-quotes",
    ],
)
def test_anomaly_queries_that_run_would_refuse_or_drop_are_refused_at_load_naming_the_query(
    tmp_path: Path, queries: str, message: str
) -> None:
    path = write(tmp_path, _PROM + queries if queries else "anomaly:\n  source: prometheus\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert (f"{path}{message}" if message.startswith(":") else message) in str(err.value), str(err.value)
    result = CliRunner().invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 1 and message in " ".join(result.output.split()), result.output


def test_brackets_and_quotes_inside_strings_and_comments_are_not_counted(tmp_path: Path) -> None:
    expr = 'sum by (gpu) (rate(x{job=~"a[(]b|[)]c"}[5m])) # a comment ( [\\n  > bool 1'
    path = write(tmp_path, _PROM + f"    - name: q\n      expr: '{expr}'\n")
    path.write_text(path.read_text().replace("\\\\n", "\\n"))
    assert load_config(path).anomaly.queries[0].name == "q"


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ("api: 5\n", "api", "api: is 5, not a section; write its settings below it as name: value pairs"),
        ("slack: [1]\n", "slack", "is [1], not a section"),
        (
            "webhooks: 5\n",
            "webhooks",
            "webhooks: is 5, not a list; write its items below it, each after '- '",
        ),
    ],
    ids=["section-number", "section-list", "list-number"],
)
def test_a_section_or_list_written_as_a_value_says_what_to_write(
    tmp_path: Path, text: str, field: str, words: str
) -> None:
    # pydantic's "Input should be a valid dictionary or instance of ApiConfig" named a class, not a fix.
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.field == field and words in str(info.value)


def test_load_names_every_literal_secret_unset_reference_and_bad_value_first_line_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A literal secret, then an unset variable, stopped the load before anything else was looked at."""
    monkeypatch.delenv("CFG_TEST_UNSET", raising=False)
    path = write(
        tmp_path,
        "api:\n  port: 0\nslack:\n  bot_token: xoxb-literal\n"
        "webhooks:\n  - name: a\n    url: {env: CFG_TEST_UNSET}\n    bearer_token: literal\n",
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    found = [(e.line, e.field) for e in (info.value, *info.value.more)]
    assert found == [
        (2, "api.port"),
        (4, "slack.bot_token"),
        (7, "webhooks[0].url"),
        (8, "webhooks[0].bearer_token"),
    ]


@pytest.mark.parametrize(
    "matcher",
    [
        r'{gpu=~"[0-9]+"}',
        r'{job=~"gpu\\.(a|b)"}',  # a PromQL string's \\ is the regex's one backslash
        r"{job=~`gpu\.(a|b)`}",
        r'{name=~"\\p{L}+"}',  # RE2 only: Python's re refuses \p, Prometheus takes it
        r'{name=~"(?<n>a)x\\z"}',
        r'{name=~"[[:alpha:]]+"}',
        r'{name!~"(?i)GPU.*"}',
    ],
)
def test_a_regex_prometheus_accepts_is_never_refused_at_load(tmp_path: Path, matcher: str) -> None:
    path = write(tmp_path, _PROM + f"    - name: q\n      expr: '{matcher.replace(chr(39), chr(39) * 2)}'\n")
    assert load_config(path).anomaly.queries[0].expr.startswith("{")


def test_a_store_given_as_a_libpq_connection_string_is_refused_without_its_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``api.db: host=db dbname=gw password=...`` (psql's way) was taken for a SQLite file's name: serve made
    that file in its working directory and named it, password and all, in its log."""
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    path = write(tmp_path, "api:\n  db: host=db.example dbname=gw user=gw password=S3cret\n")
    result = CliRunner().invoke(app, ["config", "validate", str(path)])
    said = " ".join(result.output.split())
    assert result.exit_code == 1 and "S3cret" not in said, said
    assert f"{path}:2: api.db: 'host=db.example dbname=gw user=gw password=***' is a libpq connection" in said
    assert "postgresql+psycopg://gw@db.example/gw" in said


@pytest.mark.parametrize(
    ("text", "environ", "said"),
    [
        (
            "exporter:\n  collect_interval_seconds: ' 5'\n",
            {},
            "gpuwarden.yaml:2: exporter.collect_interval_seconds: ' 5' is not a number as the command line"
            " takes one (digits, no blanks or _); write 5",
        ),
        ("api:\n  port: '1_000'\n", {}, "gpuwarden.yaml:2: api.port: '1_000' is not a whole number as"),
        (
            "anomaly:\n  infer_every_seconds: '6_0'\n",
            {},
            "anomaly.infer_every_seconds: '6_0' is not a number as",
        ),
        ("anomaly:\n  min_deviation_by_metric:\n    temp: '2 '\n", {}, "'2 ' is not a number as"),
        ("", {"GPUWARDEN_EXPORTER__COLLECT_INTERVAL_SECONDS": "1_0"}, "'1_0' is not a number as"),
        (
            "",
            {"GPUWARDEN_API__PORT": " 9400"},
            "api.port: ' 9400' is not a whole number as the command line takes",
        ),
    ],
    ids=[
        "blank-in-seconds",
        "underscore-in-a-port",
        "anomaly-section",
        "mapping-value",
        "variable",
        "variable-port",
    ],
)
def test_a_quoted_number_a_flag_would_refuse_is_refused_naming_the_line_and_the_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, environ: dict[str, str], said: str
) -> None:
    """``exporter --interval ' 5'`` was refused (Go's strconv syntax, as Prometheus' flags), while the
    same text in the file or a GPUWARDEN_ variable was read as 5 by pydantic's lax parsing."""
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as refused:
        load_config(write(tmp_path, text))
    shown = " ".join(str(problem) for problem in (refused.value, *refused.value.more))
    assert said in shown, shown


def test_a_quoted_number_written_as_a_flag_takes_it_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exporter, api = "exporter:\n  collect_interval_seconds: '1e1'\n", "api:\n  port: '9400'\n"
    monkeypatch.setenv("GPUWARDEN_EXPORTER__PORT", "+9401")  # a sign, as --port +9401 takes it
    cfg = load_config(write(tmp_path, exporter + api + "anomaly:\n  thresholds:\n    k: '.5'\n"))
    assert (cfg.exporter.collect_interval_seconds, cfg.api.port, cfg.exporter.port) == (10.0, 9400, 9401)
    assert cfg.anomaly.thresholds.k == 0.5


def test_an_unquoted_exponent_which_yaml_leaves_as_text_is_still_a_number(tmp_path: Path) -> None:
    """PyYAML (YAML 1.1) reads ``1e3`` as text, not a float: refusing every text where a number belongs
    would have refused it; it is what ``--interval 1e3`` takes."""
    cfg = load_config(write(tmp_path, "exporter:\n  collect_interval_seconds: 1e3\n"))
    assert cfg.exporter.collect_interval_seconds == 1000.0


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (
            "exporter:\n  collect_interval_seconds: yes\n",
            "exporter.collect_interval_seconds: true (a YAML boolean) is not a number; write the seconds as a"
            " number (YAML reads yes, on and true as true; no, off and false as false)",
        ),
        ("sim:\n  seed: true\n", "sim.seed: true (a YAML boolean) is not a whole number; write one (YAML"),
        ("api:\n  port: off\n", "api.port: false (a YAML boolean) is not a whole number; write one (YAML"),
    ],
    ids=["yes-in-seconds", "true-as-a-seed", "off-as-a-port"],
)
def test_a_yaml_boolean_where_a_number_belongs_is_refused_as_its_variable_is(
    tmp_path: Path, text: str, said: str
) -> None:
    """YAML 1.1 reads yes/no/on/off/true/false as booleans and pydantic took them as 1 and 0: a seconds
    setting of `yes` ran at 1 s, while GPUWARDEN_SIM__SEED=true was refused."""
    with pytest.raises(ConfigError) as refused:
        load_config(write(tmp_path, text), environ={})
    assert said in str(refused.value), str(refused.value)


@pytest.mark.parametrize(
    ("variable", "value", "said"),
    [
        (
            "GPUWARDEN_ANOMALY__QUERIES",
            '[{"name": "q", "expr": "up", "step_seconds": true}]',
            "anomaly.queries[0].step_seconds: true (a JSON boolean) is not a number; write the seconds as a"
            " number (JSON reads an unquoted true or false as a boolean)",
        ),
        (
            "GPUWARDEN_ANOMALY",
            '{"detectors": true}',
            "anomaly.detectors: is true, not a list; write its items as a JSON list, [item, ...]",
        ),
        (
            "GPUWARDEN_ANOMALY__QUERIES",
            "[1]",
            "anomaly.queries[0]: is 1, not a section; write its settings as a JSON object,"
            ' {"name": value, ...}',
        ),
    ],
    ids=["boolean", "not-a-list", "not-a-section"],
)
def test_a_variables_json_value_is_refused_in_jsons_words_not_yamls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, said: str
) -> None:
    """A variable's JSON value was refused in YAML's words: `true` as "(a YAML boolean) ... (YAML reads yes,
    on and true as true ...)", a list or a section to be written "below it, each after '- '"."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as refused:
        load_config(write(tmp_path, ""))
    message = str(refused.value)
    assert said in message and message.endswith(f"(set by {variable})"), message
    assert "YAML" not in message


def test_a_boolean_is_told_apart_from_the_text_true_of_a_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The refusal of YAML's `yes` said `'true' is not a number`: quoted, as the text 'true' that the file
    does not hold, and that a GPUWARDEN_ variable does."""
    with pytest.raises(ConfigError) as boolean:
        load_config(write(tmp_path, "sim:\n  seed: yes\n"), environ={})
    monkeypatch.setenv("GPUWARDEN_SIM__SEED", "true")
    with pytest.raises(ConfigError) as text:
        load_config(write(tmp_path, ""), environ={})
    assert "sim.seed: true (a YAML boolean) is not a whole number" in str(boolean.value)
    assert "sim.seed: 'true' is not a whole number; write one" in str(text.value)
    assert "YAML" not in str(text.value)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("exporter:\n  collect_interval_seconds: .nan\n", "nan is not a number; write one"),
        ("exporter:\n  collect_interval_seconds: 2024-01-01\n", "2024-01-01 is not a number; write one"),
        ("exporter:\n  collect_interval_seconds: .inf\n", "inf is not a finite number; write one"),
        ("exporter:\n  collect_interval_seconds: 1.0e+999\n", "inf is not a finite number; write one"),
        (f"exporter:\n  collect_interval_seconds: {'9' * 400}\n", "is more than a number can hold; write"),
        ("exporter:\n  collect_interval_seconds:\n", "is empty; write a number, or remove the line"),
        ("exporter:\n  collect_interval_seconds: [1]\n", "[1] is not a number; write one"),
        ("sim:\n  seed: {a: 1}\n", "{'a': 1} is not a whole number; write one"),
        ("sim:\n  seed: .inf\n", "inf is not a finite number; write one"),
        ("sim:\n  seed: 1.5\n", "1.5 is not a whole number; write one"),
    ],
    ids=[
        *("nan", "yaml-date", "yaml-inf", "overflowing-float", "huge-integer", "null", "list", "mapping"),
        "inf-seed",
        "fraction-seed",
    ],
)
def test_a_value_that_is_no_number_says_what_to_write(tmp_path: Path, text: str, said: str) -> None:
    """pydantic's "Input should be a valid number" / "a finite number" named no fix."""
    with pytest.raises(ConfigError) as refused:
        load_config(write(tmp_path, text), environ={})
    assert said in str(refused.value), str(refused.value)
    assert "Input should" not in str(refused.value)


@pytest.mark.parametrize(
    ("text", "what"),
    [
        ("- api\n- exporter\n", "a list"),
        ("api\n", "a single value ('api')"),
        ("yes\n", "a single value (true)"),  # YAML's boolean, as YAML writes it: it said (True)
        ("2024-01-01\n", "a single value (2024-01-01)"),  # it said (datetime.date(2024, 1, 1))
    ],
    ids=["list", "scalar", "boolean", "date"],
)
def test_a_file_whose_top_level_is_no_mapping_is_told_what_to_write(
    tmp_path: Path, text: str, what: str
) -> None:
    """It said "the top level must be a mapping" and no more: not what it was, nor what a mapping is here."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as refused:
        load_config(path, environ={})
    assert str(refused.value) == (
        f"{path}:1: the top level is {what}, not a mapping; write one `name:` line per section"
        " (sim, exporter, slack, api, store, anomaly, alerting, tracing, webhooks) at the start of a line"
    )


@pytest.mark.parametrize(
    ("entry", "said"),
    [
        ("temp: yes", "true (a YAML boolean) is not a number"),
        ("temp: '2 '", "'2 ' is not a number as the command line takes one"),
    ],
    ids=["boolean", "blank"],
)
def test_a_number_refused_in_a_mapping_is_said_at_its_own_line_and_key(
    tmp_path: Path, entry: str, said: str
) -> None:
    """The refusal named the mapping and its first line (`anomaly.min_deviation_by_metric`, line 2), not the
    entry that holds the value: a long mapping left the reader to find it."""
    path = write(tmp_path, f"anomaly:\n  min_deviation_by_metric:\n    util: 2\n    {entry}\n")
    with pytest.raises(ConfigError) as refused:
        load_config(path, environ={})
    assert str(refused.value).startswith(f"{path}:4: anomaly.min_deviation_by_metric.temp: {said}"), str(
        refused.value
    )
