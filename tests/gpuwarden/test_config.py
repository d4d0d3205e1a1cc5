"""Loading the config: defaults, YAML and environment overrides, names in another case, secrets and their
references, each command's own sections, and errors that name the file, line or variable."""

from pathlib import Path

import pytest

from gpuwarden.cli import app
from gpuwarden.config import load_config
from gpuwarden.errors import ConfigError
from tests.gpuwarden.cli.built_runner import BuiltCliRunner
from tests.gpuwarden.config_files import write

runner = BuiltCliRunner()


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
    result = runner.invoke(app, ["config", "validate", str(path)], env={"GPUWARDEN_API_TOKEN": "t"})
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
    result = runner.invoke(app, [*args, "--output", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text().startswith("timestamp,value,anomaly_score,label")


def test_non_utf8_config_is_a_config_error_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "gpuwarden.yaml"
    path.write_bytes(b"\xff\xfeexporter:\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert str(path) in str(info.value) and "UTF-8" in str(info.value)


@pytest.mark.parametrize(
    ("variable", "value", "field"),
    [
        ("GPUWARDEN_ALERTING__INHIBIT_RULES", "[[", "alerting.inhibit_rules"),
        ("GPUWARDEN_API__PORT", "abc", "api.port"),
    ],
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
    result = runner.invoke(app, ["config", "validate", str(write(tmp_path, text))])
    assert result.exit_code == 1 and words in " ".join(result.output.split())


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


def test_a_store_given_as_a_libpq_connection_string_is_refused_without_its_password(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``api.db: host=db dbname=gw password=...`` (psql's way) was taken for a SQLite file's name: serve made
    that file in its working directory and named it, password and all, in its log."""
    monkeypatch.setenv("GPUWARDEN_API_TOKEN", "t")
    path = write(tmp_path, "api:\n  db: host=db.example dbname=gw user=gw password=S3cret\n")
    result = runner.invoke(app, ["config", "validate", str(path)])
    said = " ".join(result.output.split())
    assert result.exit_code == 1 and "S3cret" not in said, said
    assert f"{path}:2: api.db: 'host=db.example dbname=gw user=gw password=***' is a libpq connection" in said
    assert "postgresql+psycopg://gw@db.example/gw" in said


def test_a_literal_secret_written_as_yaml_binary_is_refused_like_any_literal(tmp_path: Path) -> None:
    """`bot_token: !!binary eG94Yi0xLTI=` (base64 of xoxb-1-2) passed `config validate` and serve took the
    decoded token: the literal-secret check looked for text only, and YAML reads `!!binary` as bytes."""
    path = write(tmp_path, "slack:\n  bot_token: !!binary eG94Yi0xLTI=\n  channel: C1\n")
    result = runner.invoke(app, ["config", "validate", str(path)], env={"GPUWARDEN_API_TOKEN": "t"})
    assert result.exit_code == 1
    assert f"{path}:2: slack.bot_token: a secret written into the file (!!binary" in result.output
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "write {env: SLACK_BOT_TOKEN}" in str(info.value)


@pytest.mark.parametrize("written", ["123456789", "2026-01-01", "true"], ids=["number", "date", "boolean"])
def test_a_literal_secret_yaml_reads_as_no_text_is_refused_as_a_literal_without_showing_it(
    tmp_path: Path, written: str
) -> None:
    """`api.token: 123456789` was said `is read as a number, 123456789, not as text; quote it as written`:
    the secret shown in the output, and quoted as told it was then refused as a literal secret."""
    path = write(tmp_path, f"api:\n  token: {written}\n")
    result = runner.invoke(app, ["config", "validate", str(path)])
    assert result.exit_code == 1
    assert result.output.strip() == (
        f"error: {path}:2: api.token: a secret written into the file; write {{env: GPUWARDEN_API_TOKEN}} and"
        " export GPUWARDEN_API_TOKEN"
    )
