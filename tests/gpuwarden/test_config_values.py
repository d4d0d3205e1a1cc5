"""Values in the config file: bounds, sections or lists written as values, quoted numbers, exponents, YAML
booleans where numbers belong, and a top level that is no mapping."""

from pathlib import Path

import pytest

from gpuwarden.config import examine_config, load_config
from gpuwarden.errors import ConfigError
from tests.gpuwarden.config_files import write


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


@pytest.mark.parametrize(
    ("text", "field", "base"),
    [
        (
            "anomaly:\n  prometheus_url: http://prom:9090/api/v1/query\n",
            "anomaly.prometheus_url",
            "http://prom:9090",
        ),
        (
            "anomaly:\n  alert_url: http://serve:8080/api/v2/alerts\n",
            "anomaly.alert_url",
            "http://serve:8080",
        ),
        (
            "slack:\n  chart_prometheus_url: https://vm/select/0/prometheus/api/v1/\n",
            "slack.chart_prometheus_url",
            "https://vm/select/0/prometheus",
        ),
        (
            "alerting:\n  kubernetes_inventory:\n    cluster: c\n    gpu_assignment_url: http://prom/api/v1\n",
            "alerting.kubernetes_inventory.gpu_assignment_url",
            "http://prom",
        ),
    ],
    ids=["prometheus-query-path", "serve-alerts-path", "chart-prefix-and-api", "assignment-api-root"],
)
def test_a_url_its_client_appends_an_api_path_to_is_refused_with_one_already(
    tmp_path: Path, text: str, field: str, base: str
) -> None:
    """validate said ok; anomaly run then posted every alert to /api/v2/alerts/api/v2/alerts (or read
    /api/v1/query/api/v1/query_range), answered 404 at each tick."""
    with pytest.raises(ConfigError) as refused:
        load_config(write(tmp_path, text), environ={})
    said = str(refused.value)
    assert f"gpuwarden.yaml:{text.count(chr(10))}: {field}: " in said, said
    assert "holds an API path" in said and said.endswith(f"write the base URL: {base}"), said


def test_a_url_with_a_path_prefix_is_a_base_url(tmp_path: Path) -> None:
    text = (
        "anomaly:\n  prometheus_url: https://vm/select/0/prometheus/\n  alert_url: https://gw/gpuwarden\n"
        "slack:\n  chart_prometheus_url: http://thanos/apis/v1\n"
    )
    cfg = load_config(write(tmp_path, text), environ={})
    assert cfg.anomaly.prometheus_url == "https://vm/select/0/prometheus/"
    assert cfg.anomaly.alert_url == "https://gw/gpuwarden"


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("exporter:\n  port: 0x1F90\n", "exporter.port: '0x1F90' is not a whole number; write one"),
        ("exporter:\n  port: 9_400\n", "exporter.port: '9_400' is not a whole number as the command line"),
        ("alerting:\n  announce_delay_seconds: 1:30\n", "alerting.announce_delay_seconds: '1:30' is not a"),
        (
            "exporter:\n  collect_interval_seconds: 2_0.5\n",
            "exporter.collect_interval_seconds: '2_0.5' is not a number as the command",
        ),
    ],
    ids=["hex", "underscore", "base-60", "underscore-fraction"],
)
def test_a_number_yaml_1_1_writes_another_way_is_refused_as_its_quoted_text_is(
    tmp_path: Path, text: str, said: str
) -> None:
    """Unquoted, YAML read them as 8080, 9400, 90 and 20.5 and they were taken; quoted, refused."""
    with pytest.raises(ConfigError) as refused:
        load_config(write(tmp_path, text), environ={})
    assert f"gpuwarden.yaml:2: {said}" in str(refused.value), str(refused.value)


def test_a_number_with_a_leading_zero_is_decimal_not_yaml_1_1_octal(tmp_path: Path) -> None:
    """``port: 01234`` was read as octal, 668, and the exporter listened there; Go's flags read 1234."""
    cfg = load_config(
        write(tmp_path, "exporter:\n  port: 01234\n  collect_interval_seconds: 010\n"), environ={}
    )
    assert (cfg.exporter.port, cfg.exporter.collect_interval_seconds) == (1234, 10.0)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (
            "tracing:\n  service_name: no\n",
            "is read as a boolean, false (YAML reads yes, on and true as true;",
        ),
        ("anomaly:\n  fleet_peer_labels: [on]\n", "[0]: is read as a boolean, true (YAML reads"),
        (
            "tracing:\n  model_name: 1.0\n",
            "is read as a number, 1.0, not as text; quote it as written, in '...'",
        ),
        (
            "sim:\n  gpu_model: 2026-01-01\n",
            "is read as a date, 2026-01-01, not as text; quote it as written",
        ),
        ("tracing:\n  service_name:\n", "is empty; write a value, or remove the line for the default"),
    ],
    ids=["boolean", "boolean-item", "number", "date", "empty"],
)
def test_a_value_yaml_reads_as_no_text_where_text_belongs_says_so_and_to_quote_it(
    tmp_path: Path, text: str, said: str
) -> None:
    """pydantic's "Input should be a valid string" said neither that YAML read ``no`` as false nor to
    quote it."""
    with pytest.raises(ConfigError) as refused:
        load_config(write(tmp_path, text), environ={})
    assert said in str(refused.value), str(refused.value)
    assert "Input should" not in str(refused.value)


@pytest.mark.parametrize(
    ("text", "said"),
    [
        (
            "webhooks:\n  - name: a\n    url: http://127.0.0.1:9/x\n    events: [opend]\n",
            "webhooks[0].events[0]: 'opend' is not one of opened, updated, priority_changed, acknowledged,"
            " mitigating, resolved, reopened; did you mean opened?",
        ),
        (
            "webhooks:\n  - name: a\n    url: http://127.0.0.1:9/x\n    priorities: [p1, P9]\n",
            "webhooks[0].priorities[0]: 'p1' is not one of P0, P1, P2, P3; did you mean P1?",
        ),
        (
            "webhooks:\n  - name: a\n    url: http://127.0.0.1:9/x\n    priorities: [P9]\n",
            "webhooks[0].priorities[0]: 'P9' is not one of P0, P1, P2, P3; write one of them",
        ),
        (
            "tracing:\n  span_exporter: otlpp\n",
            "tracing.span_exporter: 'otlpp' is not one of auto, otlp, console, none; did you mean otlp?",
        ),
    ],
    ids=["misspelt-event", "priority-in-lower-case", "no-such-priority", "misspelt-exporter"],
)
def test_a_value_that_is_none_of_its_settings_choices_is_quoted_with_the_choice_it_was_meant_to_be(
    tmp_path: Path, text: str, said: str
) -> None:
    # pydantic's "Input should be 'P0', 'P1', 'P2' or 'P3'" quoted neither the value written nor which
    # choice it was probably meant to be, where an unknown field's error does ("did you mean port?").
    report = examine_config(write(tmp_path, text))
    assert any(said in str(p) for p in report.problems), [str(p) for p in report.problems]
