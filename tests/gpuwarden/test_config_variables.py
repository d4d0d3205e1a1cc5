"""Environment variables as settings: ones that name no setting, ones other tools read, fields they leave
missing, and their JSON values refused in JSON's words."""

from pathlib import Path

import pytest

from gpuwarden.config import examine_config, load_config
from gpuwarden.errors import ConfigError
from tests.gpuwarden.config_files import write


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


def test_a_wrong_variable_hides_none_of_the_files_own_problems(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The file cannot leave out a variable's value, so no model was built past it and the checks made on
    # one (queries, names) never ran: config validate said the variable's problem alone, though "every
    # problem in one run" is the promise.
    monkeypatch.setenv("GPUWARDEN_EXPORTER__PORT", "0")
    path = write(tmp_path, "anomaly:\n  queries: [{name: q, expr: up}, {name: q, expr: 'rate(x[5m]'}]\n")
    report = examine_config(path)
    said = " | ".join(str(p) for p in report.problems)
    assert "exporter.port: 0 is less than 1" in said and "(set by GPUWARDEN_EXPORTER__PORT)" in said, said
    assert "anomaly.queries[1]" in said, said  # the file's own: found once the variable is set aside
    monkeypatch.setenv("GPUWARDEN_EXPORTER__PORT", "9500")  # set aside in that run only: read again
    fixed = write(tmp_path, "api:\n  port: 9000\n")
    assert load_config(fixed).exporter.port == 9500


@pytest.mark.parametrize(
    ("variable", "value", "field", "words"),
    [
        (
            "GPUWARDEN_WEBHOOKS",
            "not json",
            "webhooks",
            "GPUWARDEN_WEBHOOKS is not JSON (Expecting value: line 1",
        ),
        (
            "GPUWARDEN_API__ALLOWED_HOSTS",
            "localhost,gw.example",
            "api.allowed_hosts",
            "GPUWARDEN_API__ALLOWED_HOSTS is not JSON (Expecting value: line 1 column 1 (char 0))",
        ),
        (
            "GPUWARDEN_SLACK",
            '{"bot_token": "xoxb-secret"',
            "slack",
            "GPUWARDEN_SLACK is not JSON (Expecting ',' delimiter: line 1 column 28 (char 27))",
        ),
    ],
    ids=["list", "list-in-a-section", "section-holding-a-secret"],
)
def test_a_variable_whose_list_or_section_is_not_json_names_it_where_and_how_to_write_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, field: str, words: str
) -> None:
    # It said "api: error parsing value for field "api" from source "EnvSettingsSource"": pydantic-settings'
    # internals, at the section, not the setting, and not where the JSON broke.
    monkeypatch.setenv(variable, value)
    # Beside them, as where serve runs: the API token's variable, no section's field (it was a suspect,
    # "one of GPUWARDEN_API_TOKEN, GPUWARDEN_API__ALLOWED_HOSTS is not JSON", at `api`).
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "not-json-token")
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, ""))
    said = str(info.value)
    assert info.value.path == "<environment>" and info.value.field == field, said
    assert "GPUWARDEN_API_TOKEN" not in said, said
    assert words in said and 'a list as \'["a", "b"]\'' in said, said
    assert "EnvSettingsSource" not in said and "xoxb-secret" not in said, said
